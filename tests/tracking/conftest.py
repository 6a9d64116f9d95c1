"""A real MLflow tracking server on 127.0.0.1 (SQLite backend store in a temp folder, a free port, one worker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the server and the clients here: no usage pings
pytest.importorskip("mlflow.server", reason="the MLflow server (the [dev] extra installs mlflow)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` over ``folder/mlflow.db`` and ``folder/artifacts``; :meth:`stop` and :meth:`start` again
    keep the store and the port."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> "Server":
        return self.launch().wait(timeout)

    def launch(self) -> "Server":
        argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db",
                "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1"]
        log = open(self.folder / "server.log", "ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        return self

    def wait(self, timeout: float) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server not up in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own process group (uvicorn's worker too); SQLite
            self.process.wait()  # commits each request, so nothing is lost
        self.process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, small_export):
    """A running server for the session (tests use their own experiment names); the 64 px export the tests
    bench is made while it boots."""
    server = Server(tmp_path_factory.mktemp("mlflow_server")).launch()
    try:
        small_export("unfold")
        yield server.wait(90)
    finally:
        server.stop()
