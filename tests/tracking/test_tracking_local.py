"""Issue #23 without a server: the local store (MLflow's default SQLite file), the missing extra (exit 4), an
unreachable or silent server (one warning, the run queued, bounded time), and the regression rules on numbers."""

from __future__ import annotations

import importlib.util
import json
import socket
import time

import mlflow
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.tracking import collect, compare, hook, store
from lsnet_deploy.tracking.common import RunInfo

from helpers import gradient_image


@pytest.fixture(scope="module")
def artifact(small_export):
    return small_export("unfold").path


def test_track_alone_writes_mlflows_default_local_store(artifact, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert run(["verify", "--track", str(artifact)]) == 0  # --track alone, then the artifact: the default store
    assert "tracked: run " in capsys.readouterr().err
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (got,) = client.search_runs([client.get_experiment_by_name("lsnet-deploy/lsnet_t").experiment_id])
    assert got.data.metrics["passed"] == 1.0 and got.data.tags["lsnet.command"] == "verify"
    assert got.data.metrics["parity_cosine"] > 0.99999 and got.data.params["input_size"] == "64"
    assert run(["runs", "--track", f"sqlite:///{tmp_path}/mlflow.db", "--baseline", got.info.run_id]) == 0


def test_eval_track_to_a_file_store_matches_its_json(artifact, tmp_path, capsys, monkeypatch):
    """``eval --track file:...``: every tracked number is the ``--json`` report's (MLflow's file store is opt-in)."""
    for k, cls in enumerate(("clean", "dirty")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            gradient_image(tmp_path / "data" / cls / f"{i}.png", (60 + 7 * i + 20 * k, 50 + 5 * i))
    uri = (tmp_path / "mlruns").as_uri()
    argv = ["eval", "-m", str(artifact), "--data", str(tmp_path / "data"), "--json", str(tmp_path / "e.json"),
            "--track", uri, "--experiment", "eval-local"]
    monkeypatch.delenv(store.FILE_STORE_ENV, raising=False)
    assert run(argv) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert f"refuses the file store unless {store.FILE_STORE_ENV}=true" in warning and "run queued in" in warning
    monkeypatch.setenv(store.FILE_STORE_ENV, "true")
    assert run(argv) == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=uri)
    (got,) = client.search_runs([client.get_experiment_by_name("eval-local").experiment_id])
    m, label = doc["models"][0], artifact.stem
    expected = {"top1": m["accuracy"], "macro_recall": m["macro_recall"], "roc_auc": m["binary"]["roc_auc"],
                "class.dirty.recall": m["per_class"]["dirty"]["recall"],
                "at_threshold.threshold": m["binary"]["at_threshold"]["threshold"]}
    assert {k: got.data.metrics[f"{label}.{k}"] for k in expected} == expected
    assert got.data.params["images"] == "6" and got.data.params[f"{label}.backend"] == "onnxruntime"
    assert {a.path for a in client.list_artifacts(got.info.run_id, "reports")} == {"reports/e.json",
                                                                                 "reports/eval.json"}
    assert capsys.readouterr().err.startswith("tracked: run ")


def test_a_local_store_without_the_extra_is_one_line_exit_4(artifact, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert run(["verify", str(artifact), "--track", "sqlite:///x.db"]) == 4
    err = capsys.readouterr().err.splitlines()
    assert err == ['error: --track sqlite:///x.db needs the MLflow client: pip install "lsnet-deploy[track]" '
                   "(Python >= 3.10; or track to an http(s):// server, which needs no extra)"]


def silent_port():
    """A port that accepts connections and never answers (a hung server)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
def test_an_unreachable_server_costs_one_warning_and_a_queued_run(artifact, tmp_path, monkeypatch, capsys, silent):
    listener = silent_port()
    port = listener.getsockname()[1]
    if not silent:
        listener.close()
    monkeypatch.chdir(tmp_path)  # verify writes no report: the queue is in the current folder
    monkeypatch.setenv(hook.TIMEOUT_ENV, "0.5")
    start = time.monotonic()
    try:
        code = run(["verify", str(artifact), "--track", f"http://127.0.0.1:{port}"])
    finally:
        listener.close()
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 0 and out.rstrip().endswith("matches the PyTorch fp32 logits stored at export")
    (warning,) = err.splitlines()
    assert warning.startswith(f"warning: tracking to http://127.0.0.1:{port} failed (") and "runs sync" in warning
    assert elapsed < 10  # verify itself takes ~1 s; a silent server one 0.5 s timeout
    (queued,) = (tmp_path / "lsnet-track-queue").glob("*-verify-*.json")
    record = json.loads(queued.read_text())
    assert record["uri"] == f"http://127.0.0.1:{port}" and record["metrics"]["passed"] == 1.0
    assert record["documents"]["verify.json"]["parity"]["cosine"] == record["metrics"]["parity_cosine"]


def row(run_id: str, start: int, median: float, ci: tuple, ok: bool = True, command: str = "bench", **tags):
    metrics = {"onnxruntime.fp32.b1.latency_median_ms": median, "onnxruntime.fp32.b1.median_ci_low_ms": ci[0],
               "onnxruntime.fp32.b1.median_ci_high_ms": ci[1], "onnxruntime.fp32.b1.parity_ok": float(ok),
               "onnxruntime.fp32.b1.parity_top1_agreement": 1.0 if ok else 0.75}
    return RunInfo(run_id, start_ms=start, tags={"lsnet.command": command, **tags}, metrics=metrics)


def test_regression_rules_on_hand_numbers():
    base = row("base", 1, 10.0, (9.8, 10.2), host="orin")
    within = row("within", 2, 10.7, (10.2 * 1.05, 11.0))  # CI low exactly at the tolerance: not flagged
    slower = row("slower", 3, 10.9, (10.2 * 1.05 + 0.01, 11.2))
    wrong = row("wrong", 4, 10.0, (9.8, 10.2), ok=False)
    older = row("older", 0, 50.0, (49.0, 51.0))  # older than the baseline: not judged
    table = compare.compare([wrong, slower, within, base, older], "host=orin")
    flags = {r.run.run_id: r.flags for r in table}
    assert flags["within"] == [] and flags["older"] == [] and flags["base"] == []
    assert flags["slower"] == ["slower: median 10.9 ms, CI low 10.72 > baseline CI high 10.2 +5%"]
    assert flags["wrong"] == ["parity_ok changed: pass -> FAIL", "parity_top1_agreement 0.75 < baseline 1"]
    assert [r.run.run_id for r in table if r.compared] == ["wrong", "slower", "within"]
    assert compare.pick_baseline([wrong, slower, within, base], "latest") is slower
    assert compare.pick_baseline([wrong, slower], "slo") is slower
    assert {r.run.run_id for r in compare.compare([wrong, base], "base", accuracy_tolerance=0.3) if r.flags} == {
        "wrong"}  # the verdict still changed


def test_bench_metrics_keys_and_values():
    doc = {"results": [{"backend": "openvino", "precision": "int8", "batch": 8, "latency_ms": {"median": 2.5, "p99": 4},
                        "median_ci95_ms": [2.4, 2.6], "throughput": 3200.0, "parity": {"cosine": 0.991},
                        "parity_ok": True, "peak_rss_mb": None, "cv": float("nan")}]}
    assert collect.bench_metrics(doc) == {
        "openvino.int8.b8.latency_median_ms": 2.5, "openvino.int8.b8.latency_p99_ms": 4.0,
        "openvino.int8.b8.median_ci_low_ms": 2.4, "openvino.int8.b8.median_ci_high_ms": 2.6,
        "openvino.int8.b8.throughput": 3200.0, "openvino.int8.b8.parity_cosine": 0.991,
        "openvino.int8.b8.parity_ok": 1.0}
    assert collect.key("Schmutz/ä b") == "Schmutz/_ b"


def test_eval_labels_are_unique_row_keys():
    model = {"backend": "onnxruntime", "precision": "int8", "kind": "artifact", "per_class": {}}
    doc = {"models": [{**model, "model": "a/lsnet_t.int8.onnx", "accuracy": 0.5},
                      {**model, "model": "b/lsnet_t.int8.onnx", "accuracy": 0.25}],
           "agreement": [{"a": "a/lsnet_t.int8.onnx", "b": "b/lsnet_t.int8.onnx", "top1_agreement": 0.75}]}
    params, metrics = collect.eval_params_metrics(doc)
    assert metrics == {"lsnet_t_int8.top1": 0.5, "lsnet_t_int8_1.top1": 0.25,
                       "agreement.lsnet_t_int8~lsnet_t_int8_1": 0.75}
    assert params["lsnet_t_int8_1.model"] == "b/lsnet_t.int8.onnx"
    rows = compare.rows_of(RunInfo("r", tags={"lsnet.command": "eval"}, metrics=metrics))
    assert [(r.key, r.metrics) for r in rows] == [("-", {"agreement.lsnet_t_int8~lsnet_t_int8_1": 0.75}),
                                                  ("lsnet_t_int8", {"top1": 0.5}), ("lsnet_t_int8_1", {"top1": 0.25})]
