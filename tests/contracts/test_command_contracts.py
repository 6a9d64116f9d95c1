"""Every command of ``commands.COMMANDS`` and every report format of ``runtime.report.WRITERS`` keeps the same
contract: parametrized over the registries, so a new command or format is covered without editing this file."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.commands import COMMANDS
from lsnet_deploy.core.parity import Parity
from lsnet_deploy.runtime.report import WRITERS, write_reports
from lsnet_deploy.runtime.results import BenchReport, BenchRow
from lsnet_deploy.runtime.stats import summarize

#: format -> how its file is read back (a format not listed: a non-empty file)
READERS = {"json": lambda path: json.loads(path.read_text())["results"],
           "csv": lambda path: list(csv.DictReader(path.open(newline=""))),
           "md": lambda path: [line for line in path.read_text().splitlines() if line.startswith("| onnx")],
           "plot": lambda path: [path.read_bytes()[:8]] if path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" else []}


@pytest.fixture(scope="module")
def root_help() -> str:
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert run(["--help"]) == 0
    return out.getvalue()


@pytest.mark.parametrize("name", COMMANDS)
def test_help_exits_0_and_the_root_help_lists_it(name, root_help, capsys):
    assert run([name, "--help"]) == 0
    assert "Usage:" in capsys.readouterr().out and f" {name} " in root_help


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_option_is_one_error_line(name, capsys):
    assert run([name, "--no-such-option"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--no-such-option" in err


@pytest.fixture(scope="module")
def report() -> BenchReport:
    samples = np.array([10.0, 11.0, 9.0, 10.0])
    rows = [BenchRow("torch", "cpu", "fp32", 1, summarize(samples), samples, 50.0, 100.0, 300.0, 20.0),
            BenchRow("onnxruntime", "cpu", "fp32", 1, summarize(samples / 2), samples / 2, 50.0, 100.0, 300.0, 20.0,
                     parity=Parity(1e-6, 1e-6, 1.0, 1.0), parity_source="torch")]
    return BenchReport({"python": "3.11"}, {"model": "m.onnx", "device": "cpu", "warmup": 1, "iters": 4,
                                                   "seconds": None, "threads": None}, rows)


@pytest.mark.parametrize("fmt", WRITERS)
def test_each_report_format_writes_a_file_that_reads_back(fmt, report, tmp_path):
    writer = WRITERS[fmt]
    if writer.requires and importlib.util.find_spec(writer.requires) is None:
        pytest.skip(f"--{fmt} needs {writer.requires}")
    path = tmp_path / f"report{writer.suffixes[0] if writer.suffixes else '.' + fmt}"
    assert write_reports(report, **{f"{fmt}_path": path}) == [path]
    assert path.stat().st_size > 0 and list(tmp_path.iterdir()) == [path]  # no temporary left
    if fmt in READERS:
        assert len(READERS[fmt](path)) >= 1


@pytest.mark.parametrize("fmt", WRITERS)
def test_each_report_format_is_a_bench_option(fmt, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    assert run(["bench", "--help"]) == 0
    assert f"--{fmt} " in capsys.readouterr().out
