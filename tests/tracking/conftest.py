"""A real MLflow tracking server on 127.0.0.1 (SQLite backend store in a temp folder, a free port, one worker)."""

from __future__ import annotations

import os

import pytest

from mlflow_helpers import Server

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the server and the clients here: no usage pings
# a loaded CI machine can keep the test server busy past the 3 s default: tests of the timeouts set their own
os.environ.setdefault("LSNET_TRACK_TIMEOUT", "30")
pytest.importorskip("mlflow.server", reason="the MLflow server (the [dev] extra installs mlflow)")


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
