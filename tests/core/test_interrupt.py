"""Issue #15: Ctrl-C/SIGTERM keep the finished bench rows (marked partial, exit 130); a closed stdout is no error."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import Interrupted
from lsnet_deploy.core.interrupt import keep_partial, save_partial
from lsnet_deploy.exporters import ExportOptions, export
from lsnet_deploy.runtime import bench

from fs_helpers import leftovers

EXE = Path(sys.executable).with_name("lsnet-deploy")


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    """A dynamic-batch 32 px, 3-class ONNX artifact and a picture beside it."""
    d = tmp_path_factory.mktemp("interrupt")
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))[..., None].repeat(3, 2)).save(d / "a.png")
    return export("lsnet_t", ExportOptions(imgsz=32, dynamic=True, validate=False, output=d / "m.onnx"),
                  num_classes=3).path


def test_keep_partial_and_save_partial():
    saved = []
    with pytest.raises(Interrupted, match=r"^interrupted; partial results written to r.json$") as info:
        with save_partial(lambda result: saved.append(result) or [Path("r.json")]):
            with keep_partial({"rows": [1]}, finish=lambda r: r.update(partial=True)):
                raise KeyboardInterrupt
    assert saved == [{"rows": [1], "partial": True}] and info.value.exit_code == 130
    with pytest.raises(Interrupted, match="^interrupted$"), save_partial(lambda result: []):
        with keep_partial([]):
            raise KeyboardInterrupt


def _reports(folder: Path) -> list:
    return ["--json", str(folder / "r.json"), "--csv", str(folder / "r.csv"), "--md", str(folder / "r.md")]


def test_ctrl_c_in_bench_writes_the_finished_rows_marked_partial(art, tmp_path, monkeypatch, capsys):
    calls = []
    real = bench.time_engine

    def third_is_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "time_engine", third_is_interrupted)
    argv = ["bench", "-m", str(art), "-b", "onnxruntime", "--batch", "1,2,4", "--iters", "2", "--warmup", "0"]
    assert run([*argv, *_reports(tmp_path)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: interrupted; partial results written to {tmp_path / 'r.json'}, {tmp_path / 'r.csv'}, "
                   f"{tmp_path / 'r.md'}"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["partial"] is True and [r["batch"] for r in data["results"]] == [1, 2]
    assert "PARTIAL: interrupted after 2 finished row(s)" in data["warnings"]
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(r["batch"], r["partial"]) for r in rows] == [("1", "True"), ("2", "True")]
    assert "PARTIAL: interrupted after 2 finished row(s)" in (tmp_path / "r.md").read_text()
    assert leftovers(tmp_path) == []


def test_interrupted_before_any_row_writes_nothing(art, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "time_engine", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run(["bench", "-m", str(art), "-b", "onnxruntime", "--iters", "2", *_reports(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["error: interrupted"]
    assert list(tmp_path.iterdir()) == []


DRIVER = textwrap.dedent("""
    import os, signal, sys
    from lsnet_deploy.runtime import bench
    real = bench.score_row
    def score_then_sigterm(row, timing, ctx):
        real(row, timing, ctx)
        if row.batch == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` would, while the second row is scored
    bench.score_row = score_then_sigterm
    from lsnet_deploy.cli import main
    sys.argv = ["lsnet-deploy", *sys.argv[1:]]
    main()
""")


def test_sigterm_in_bench_writes_the_rows_finished_before_it(art, tmp_path):
    argv = ["bench", "-m", str(art), "-b", "onnxruntime", "--batch", "1,2,4", "--iters", "2", "--warmup", "0",
            "--json", str(tmp_path / "r.json")]
    done = subprocess.run([sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: interrupted; partial results written to "
                                                f"{tmp_path / 'r.json'}"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["partial"] is True and [r["batch"] for r in data["results"]] == [1]
    assert "Traceback" not in done.stderr and leftovers(tmp_path) == []


def _closed_stdout(*argv: str) -> subprocess.CompletedProcess:
    """Run the CLI with stdout a pipe whose reader is gone (what `| head -1` leaves behind)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([str(EXE), *argv], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)


@pytest.mark.parametrize("command", ["predict", "doctor"])
def test_a_closed_stdout_ends_quietly_with_exit_0(art, command):
    argv = ["predict", "-m", str(art), str(art.with_name("a.png")), "-k", "3"] if command == "predict" else [command]
    done = _closed_stdout(*argv)
    assert (done.returncode, done.stderr) == (0, "")


def test_bench_with_a_closed_stdout_still_writes_its_report(art, tmp_path):
    done = _closed_stdout("bench", "-m", str(art), "-b", "onnxruntime", "--iters", "2", "--warmup", "0",
                          "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0 and "error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["backend"] == "onnxruntime"


def test_a_pipe_into_head_is_quiet(art):
    """The shell pipeline itself; `head` leaving early must not make lsnet-deploy fail."""
    image = art.with_name("a.png")
    script = f"set -o pipefail; {EXE} predict -m {art} {' '.join([str(image)] * 200)} -k 3 | head -1"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", f"{image}\n")
