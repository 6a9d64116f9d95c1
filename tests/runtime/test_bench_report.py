"""Bench reports (JSON/CSV/Markdown/plot) from a hand-made report with known numbers; the timing loop."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from lsnet_deploy.core.errors import BackendMissingError, OutputError
from lsnet_deploy.core.parity import Parity
from lsnet_deploy.runtime import report as rep
from lsnet_deploy.runtime.bench import add_speedups
from lsnet_deploy.runtime.engine import Engine
from lsnet_deploy.runtime.results import BenchReport, BenchRow, Skipped
from lsnet_deploy.runtime.stats import summarize
from lsnet_deploy.runtime.timing import time_engine

ROW_KEYS = {"backend", "device", "precision", "batch", "latency_ms", "throughput", "speedup_vs_torch", "parity"}


def make_row(backend: str, samples: list[float], parity: Parity | None = None, failures: tuple = (),
             power: float | None = None, batch: int = 1, source: str = "torch") -> BenchRow:
    x = np.asarray(samples, dtype=float)
    return BenchRow(backend, "cpu", "fp32", batch, summarize(x), x, first_inference_ms=50.0, load_ms=100.0,
                    peak_rss_mb=300.0, rss_delta_mb=20.0, parity=parity, parity_failures=list(failures),
                    power_mw=power, parity_source=source if parity else "baseline")


@pytest.fixture
def report() -> BenchReport:
    rows = [make_row("torch", [20, 20, 22, 18]),
            make_row("onnxruntime", [10, 10, 11, 9], Parity(2e-6, 1e-6, 1.0, 1.0)),
            make_row("openvino", [5, 5, 5, 5], Parity(0.5, 0.3, 0.9, 0.5), ("cosine 0.9000000 < 0.99999",),
                     source="golden")]
    out = BenchReport({"python": "3.11", "cpu": {"model": "Test CPU", "cores": 2}},
                      {"model": "m.onnx", "device": "cpu", "warmup": 1, "iters": 4, "seconds": None, "threads": None},
                      rows, skipped=[Skipped("tensorrt", None, "not installed")])
    add_speedups(out)
    return out


def test_speedups_and_throughput(report):
    torch, ort, ov = report.rows
    assert (torch.speedup_vs_torch, ort.speedup_vs_torch, ov.speedup_vs_torch) == (1.0, 2.0, 4.0)
    assert (torch.throughput, ort.throughput) == (50.0, 100.0)


def test_json_schema(report, tmp_path):
    path = tmp_path / "r.json"
    rep.write_json(report, path)
    data = json.loads(path.read_text())
    assert set(data) >= {"environment", "results"} and data["environment"]["python"] == "3.11"
    torch, ort, ov = data["results"]
    for row in data["results"]:
        assert ROW_KEYS <= set(row)
        assert list(row["latency_ms"]) == ["mean", "median", "p90", "p95", "p99", "min", "max", "std"]
    assert torch["parity"] is None and torch["parity_ok"] is None
    assert ort["parity"] == {"max_abs": 2e-6, "max_rel": 1e-6, "cosine": 1.0, "top1_agreement": 1.0,
                             "top1_decided": 1.0, "near_ties": 0}
    assert ort["parity_ok"] is True and ov["parity_ok"] is False
    assert (torch["parity_source"], ort["parity_source"], ov["parity_source"]) == ("baseline", "torch", "golden")
    assert ort["latency_ms"]["mean"] == 10.0 and ort["latency_ms"]["std"] == pytest.approx((2 / 3) ** 0.5)
    assert ort["speedup_vs_torch"] == 2.0 and ort["throughput"] == 100.0
    assert data["skipped"] == [{"backend": "tensorrt", "batch": None, "reason": "not installed"}]


def test_json_has_no_nan(report, tmp_path):
    report.rows[2].parity = Parity(float("inf"), float("inf"), 0.0, 0.0)
    rep.write_json(report, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["results"][2]["parity"]["max_abs"] is None


def test_csv_rows(report, tmp_path):
    rep.write_csv(report, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(rep.CSV_COLUMNS)
    assert [r["backend"] for r in rows] == ["torch", "onnxruntime", "openvino"]
    assert float(rows[1]["latency_ms_median"]) == 10.0 and float(rows[1]["speedup_vs_torch"]) == 2.0
    assert rows[0]["parity_cosine"] == "" and float(rows[2]["parity_cosine"]) == 0.9
    assert rows[2]["parity_ok"] == "False" and float(rows[0]["latency_ms_p90"]) == pytest.approx(21.4)


def test_markdown_table(report):
    md = rep.markdown(report)
    lines = md.splitlines()
    assert lines[0].startswith("m.onnx on cpu: Test CPU (2 cores); warmup 1, 4 iterations per row")
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 4 and table[0].startswith("| backend | precision | batch | median ms [95% CI]")
    assert "| 20.00 ± 1.63 |" in table[1] and "| 8.2% ! |" in table[1] and "| baseline |" in table[1]
    assert "| 10.00 ± 0.82 |" in table[2] and "| 2.00x |" in table[2]
    assert "| ok vs torch: 2.0e-06 / 1.000000 / 100% |" in table[2]
    assert "| WRONG vs golden: 5.0e-01 / 0.900000 / 50% |" in table[3] and "| 4.00x |" in table[3]
    assert "- skipped tensorrt: not installed" in lines


def test_power_columns_on_jetson_rows(report):
    for row in report.rows:
        row.power_mw = 6000.0
    # 6000 mW for 4 calls x 10 ms = 0.24 J over 4 images -> 60 mJ per image
    assert report.rows[1].energy_mj_per_img == pytest.approx(60.0)
    assert report.rows[1].as_dict()["energy_mj_per_img"] == pytest.approx(60.0)
    header = rep.table_header(report)
    assert header[-2:] == ["power mW", "mJ/img"] and rep.table_cells(report.rows[1])[-2:] == ["6000", "60.0"]


def test_plot_is_a_png(report, tmp_path):
    rep.write_plot(report, tmp_path / "r.png")
    data = (tmp_path / "r.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_write_reports_and_output_checks(report, tmp_path):
    paths = {"json_path": tmp_path / "a.json", "csv_path": tmp_path / "a.csv", "md_path": tmp_path / "a.md"}
    assert rep.write_reports(report, **paths) == list(paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "a.md"]  # no temporaries left
    with pytest.raises(OutputError, match="output folder does not exist"):
        rep.check_report_paths(json_path=tmp_path / "no" / "a.json")
    rep.check_report_paths(**paths)  # existing reports are replaced


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setattr(rep.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendMissingError, match=r"pip install lsnet-deploy\[plot\]"):
        rep.check_report_paths(plot_path=tmp_path / "p.png")


class SleepEngine(Engine):
    """Counts calls, sleeps 2 ms, returns the call number."""

    backend = "fake"

    def __init__(self):
        super().__init__(Path("fake.onnx"))
        self.input_shape, self.calls = (None, 3, 4, 4), 0

    def _run(self, batch):
        self.calls += 1
        time.sleep(0.002)
        return np.full((len(batch), 2), self.calls, np.float32)


def test_time_engine_counts_calls():
    engine, ticks = SleepEngine(), []
    timing = time_engine(engine, np.zeros((2, 3, 4, 4), np.float32), warmup=2, iters=5, tick=ticks.append)
    assert engine.calls == 8 and len(timing.samples_ms) == 5 and len(ticks) == 5
    assert timing.output.tolist() == [[1.0, 1.0], [1.0, 1.0]]  # the first call's output is kept
    assert timing.samples_ms.min() >= 2.0 and timing.first_ms >= 2.0


def test_time_engine_for_seconds():
    timing = time_engine(SleepEngine(), np.zeros((1, 3, 4, 4), np.float32), warmup=0, seconds=0.05)
    assert timing.end - timing.start >= 0.05
    assert 1 <= len(timing.samples_ms) <= 26
