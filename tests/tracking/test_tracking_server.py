"""Issue #23 against a real MLflow server (127.0.0.1, SQLite store): what ``--track`` logs, read back through
MLflow's own client and compared with the command's JSON report; ``runs`` across two machines and its regression
exit code; a server that stops in the middle of a run; the standard-library client on Python 3.8."""

from __future__ import annotations

import copy
import csv
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from lsnet_deploy.cli import run
from lsnet_deploy.core.artifacts import file_sha256
from lsnet_deploy.tracking import hook, rest

from helpers import find_python38
from mlflow_helpers import Server

ROOT = Path(__file__).resolve().parents[2]
PYTHON38 = find_python38()
STATS = {"latency_median_ms": ("latency_ms", "median"), "latency_p99_ms": ("latency_ms", "p99"),
         "median_ci_low_ms": ("median_ci95_ms", 0), "median_ci_high_ms": ("median_ci95_ms", 1),
         "throughput": ("throughput",), "first_inference_ms": ("first_inference_ms",),
         "parity_cosine": ("parity", "cosine")}


def client(server) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=server.uri)


def runs_of(server, experiment: str) -> list:
    exp = client(server).get_experiment_by_name(experiment)
    return client(server).search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


def assert_rows_logged(run, doc: dict) -> None:
    """Every row's numbers in the run equal the JSON report's (the same floats)."""
    assert doc["results"]
    for row in doc["results"]:
        key = f"{row['backend']}.{row['precision']}.b{row['batch']}"
        for stat, path in STATS.items():
            value = row
            for part in path:
                value = value[part] if value is not None else None
            if value is not None:
                assert run.data.metrics[f"{key}.{stat}"] == pytest.approx(value, rel=1e-12), (key, stat)


@pytest.fixture(scope="module")
def bench_json(small_export, tmp_path_factory):
    """The 64 px export ``bench --track`` runs on (onnxruntime, parity vs torch), and a folder for reports."""
    return small_export("unfold").path, tmp_path_factory.mktemp("bench")


def bench_argv(artifact: Path, out: Path, uri: str, experiment: str, *extra: str) -> list:
    return ["bench", "-m", str(artifact), "-b", "onnxruntime", "--iters", "8", "--warmup", "1",
            "--json", str(out / "b.json"), "--csv", str(out / "b.csv"), "--track", uri, "--experiment", experiment,
            *extra]


def test_bench_two_machines_then_a_slower_run_is_flagged(mlflow_server, bench_json, capsys, monkeypatch):
    artifact, out = bench_json
    assert run(bench_argv(artifact, out, mlflow_server.uri, "two-machines", "--track-tag", "board=x86")) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("tracked: run ")]
    doc = json.loads((out / "b.json").read_text())
    (first,) = runs_of(mlflow_server, "two-machines")
    assert_rows_logged(first, doc)
    assert first.data.params["variant"] == "lsnet_t" and first.data.params["input_size"] == "64"
    assert first.data.params["classes"] == "2" and first.data.params["lowering"] == "unfold"
    assert first.data.tags["lsnet.tag.board"] == "x86" and first.data.tags["lsnet.host"] == platform.node()
    names = {a.path for a in client(mlflow_server).list_artifacts(first.info.run_id, "reports")}
    assert names == {"reports/b.json", "reports/b.csv", "reports/bench.json"}

    # the second machine: another host, every median CI 10 % above the baseline's tolerance, the verdict flipped
    slow = copy.deepcopy(doc)
    for row in slow["results"]:
        high = row["median_ci95_ms"][1] * 1.05
        row["median_ci95_ms"] = [high * 1.1, high * 1.3]
        row["latency_ms"]["median"] = high * 1.2
        if row["parity_ok"] is not None:
            row["parity_ok"] = False
    monkeypatch.setattr(platform, "node", lambda: "orin-01")
    hook.publish_bench(hook.Tracker.from_options(mlflow_server.uri, "two-machines"), slow, {})
    second = runs_of(mlflow_server, "two-machines")[0]
    assert second.data.tags["lsnet.host"] == "orin-01"
    assert_rows_logged(second, slow)

    table = out / "runs.json"
    assert run(["runs", "--track", mlflow_server.uri, "--experiment", "two-machines", "--json", str(table),
                "--csv", str(out / "runs.csv"), "--md", str(out / "runs.md")]) == 0
    rows = json.loads(table.read_text())
    assert {r["tags"]["lsnet.host"] for r in rows} == {first.data.tags["lsnet.host"], "orin-01"}
    lines = list(csv.DictReader((out / "runs.csv").open()))
    assert [(r["host"], r["row"], float(r["latency_median_ms"])) for r in lines] == [
        (host, f"{x['backend']}.fp32.b1", x["latency_ms"]["median"])
        for host, d in (("orin-01", slow), (first.data.tags["lsnet.host"], doc)) for x in d["results"]]
    assert (out / "runs.md").read_text().count("| orin-01 |") == len(doc["results"])
    assert run(["runs", "--track", mlflow_server.uri, "--experiment", "two-machines", "--baseline",
                first.info.run_id[:10], "--json", str(table)]) == 5
    flagged = {r["row"]: r["regressions"] for r in json.loads(table.read_text()) if r["regressions"]}
    assert set(flagged) == {f"{r['backend']}.fp32.b1" for r in doc["results"]}
    assert all(any(f.startswith("slower: ") for f in flags) for flags in flagged.values())
    assert any("parity_ok changed: pass -> FAIL" in f for f in flagged["onnxruntime.fp32.b1"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("tracked: ")]
    assert len(err) == 1 and err[0].startswith(f"error: {len(flagged)} regression(s) against baseline ")
    # the same numbers again on the first machine: no regression against its latest run
    monkeypatch.undo()
    hook.publish_bench(hook.Tracker.from_options(mlflow_server.uri, "two-machines"), doc, {})
    assert run(["runs", "--track", mlflow_server.uri, "--experiment", "two-machines", "--baseline", "latest",
                "--filter", f"tags.`lsnet.host` = '{first.data.tags['lsnet.host']}'"]) == 0


def test_eval_and_verify_runs_with_the_artifact(mlflow_server, small_export, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a server too slow to answer queues the run in the current folder, not the clone's
    artifact = small_export("unfold").path
    argv = ["verify", "--track", mlflow_server.uri, str(artifact), "--experiment", "verify-e", "--track-artifact"]
    assert run(argv) == 0
    (verified,) = runs_of(mlflow_server, "verify-e")
    assert verified.data.metrics["passed"] == 1.0 and verified.data.metrics["frames"] >= 1
    assert verified.data.params["artifact_sha256"] == file_sha256(artifact)
    assert {a.path for a in client(mlflow_server).list_artifacts(verified.info.run_id, "artifact")} == {
        f"artifact/{artifact.name}"}
    local = client(mlflow_server).download_artifacts(verified.info.run_id, f"artifact/{artifact.name}", str(tmp_path))
    assert file_sha256(local) == file_sha256(artifact)

    doc = {"data": "d", "images": 8, "class_names": ["clean", "dirty"], "models": [
        {"model": "a.onnx", "backend": "onnxruntime", "precision": "fp32", "kind": "artifact", "accuracy": 0.875,
         "top5_accuracy": None, "macro_precision": 0.9, "macro_recall": 0.85,
         "per_class": {"clean": {"precision": 1.0, "recall": 0.75, "support": 4},
                       "dirty": {"precision": 0.8, "recall": 1.0, "support": 4}},
         "binary": {"roc_auc": 0.9375, "pr_auc": 0.95, "at_threshold": {"threshold": 0.5, "accuracy": 0.875}}}],
           "agreement": []}
    tracker = hook.Tracker.from_options(mlflow_server.uri, "eval-e")
    hook.publish_eval(tracker, doc, {}, "cpu")
    worse = copy.deepcopy(doc)
    worse["models"][0]["accuracy"] = 0.75
    hook.publish_eval(hook.Tracker.from_options(mlflow_server.uri, "eval-e"), worse, {}, "cpu")
    latest = runs_of(mlflow_server, "eval-e")[0].data.metrics
    assert latest["a.top1"] == 0.75 and latest["a.class.clean.recall"] == 0.75 and latest["a.roc_auc"] == 0.9375
    assert latest["a.at_threshold.threshold"] == 0.5
    capsys.readouterr()
    assert run(["runs", "--track", mlflow_server.uri, "--experiment", "eval-e", "--baseline", "latest"]) == 5
    assert "a: top1 0.75 < baseline 0.875" in capsys.readouterr().err
    assert run(["runs", "--track", mlflow_server.uri, "--experiment", "eval-e", "--baseline", "latest",
                "--accuracy-tolerance", "0.2"]) == 0


def test_a_server_that_stops_mid_run_costs_a_warning_and_a_later_sync(mlflow_server, bench_json, capsys,
                                                                      monkeypatch):
    """The server freezes (SIGSTOP) after the run is created: the command keeps its result and exit code, says so
    in one line, queues the run beside its reports; once the server is back, ``runs sync`` lands it whole."""
    artifact, out = bench_json[0], bench_json[1] / "stops"
    out.mkdir()
    create = rest.RestStore.create_run

    def create_then_stop(self, *args, **kwargs):
        made = create(self, *args, **kwargs)
        os.killpg(mlflow_server.process.pid, signal.SIGSTOP)
        return made

    monkeypatch.setattr(rest.RestStore, "create_run", create_then_stop)
    monkeypatch.setenv(hook.TIMEOUT_ENV, "1")
    start = time.monotonic()
    try:
        assert run(bench_argv(artifact, out, mlflow_server.uri, "stops")) == 0
        elapsed = time.monotonic() - start
    finally:
        os.killpg(mlflow_server.process.pid, signal.SIGCONT)
    monkeypatch.undo()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: tracking")]
    assert len(warnings) == 1 and "run queued in" in warnings[0] and "lsnet-deploy runs sync" in warnings[0]
    (queued,) = sorted((out / "lsnet-track-queue").glob("*.json"))
    partial = json.loads(queued.read_text())["partial_run_id"]
    assert partial and elapsed < 60
    doc = json.loads((out / "b.json").read_text())  # the report is whole

    assert run(["runs", "sync", "--queue", str(out / "lsnet-track-queue")]) == 0
    assert not list((out / "lsnet-track-queue").glob("*.json"))
    (landed,) = runs_of(mlflow_server, "stops")  # the partial run is deleted, the synced one replaces it
    assert landed.info.run_id != partial and landed.info.status == "FINISHED"
    assert client(mlflow_server).get_run(partial).info.lifecycle_stage == "deleted"
    assert_rows_logged(landed, doc)
    assert {a.path for a in client(mlflow_server).list_artifacts(landed.info.run_id, "reports")} == {
        "reports/b.json", "reports/b.csv", "reports/bench.json"}


def test_the_stdlib_client_on_python_38(mlflow_server):
    if PYTHON38 is None:
        pytest.skip("no Python 3.8 here")
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from lsnet_deploy.tracking.rest import RestStore; "
            "s = RestStore(sys.argv[1]); e = s.experiment_id('py38'); r, a = s.create_run(e, 'py38', 1000, "
            "{'lsnet.host': 'jetson'}); s.log_batch(r, {'variant': 'lsnet_t'}, {}, {'x.median_ms': 1.25}, 2000); "
            "s.end_run(r, 'FINISHED', 3000); print(r)")
    done = subprocess.run([PYTHON38, "-I", "-c", code, mlflow_server.uri, str(ROOT)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    got = client(mlflow_server).get_run(done.stdout.strip())
    assert got.data.metrics == {"x.median_ms": 1.25} and got.data.params == {"variant": "lsnet_t"}
    assert got.data.tags["lsnet.host"] == "jetson" and got.info.end_time == 3000


@pytest.mark.slow
def test_a_server_killed_mid_run_and_restarted_on_its_store(bench_json, tmp_path, capsys, monkeypatch):
    """The process dies (SIGKILL) between creating the run and logging it; a new server on the same SQLite store
    and port takes the queued run from ``runs sync``."""
    server = Server(tmp_path).start()
    artifact, out = bench_json[0], tmp_path / "reports"
    out.mkdir()
    create = rest.RestStore.create_run

    def create_then_kill(self, *args, **kwargs):
        made = create(self, *args, **kwargs)
        server.stop()
        return made

    monkeypatch.setattr(rest.RestStore, "create_run", create_then_kill)
    try:
        assert run(bench_argv(artifact, out, server.uri, "killed")) == 0
        monkeypatch.undo()
        (warning,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: tracking")]
        assert "Connection re" in warning  # refused, or reset while the process died
        assert run(["runs", "sync", "--queue", str(out / "lsnet-track-queue")]) == 4  # still down: kept
        assert len(list((out / "lsnet-track-queue").glob("*.json"))) == 1
        server.start()
        assert run(["runs", "sync", "--queue", str(out / "lsnet-track-queue")]) == 0
        (landed,) = runs_of(server, "killed")
        assert_rows_logged(landed, json.loads((out / "b.json").read_text()))
    finally:
        server.stop()


def test_log_batch_beyond_mlflows_limits(mlflow_server):
    """150 params and 1700 metrics: three requests (100 + 800, 50 + 800, 100), all of it read back."""
    store = rest.RestStore(mlflow_server.uri)
    run_id, _ = store.create_run(store.experiment_id("limits"), "limits", 1000, {})
    params = {f"p{i}": str(i) for i in range(150)}
    metrics = {f"m{i}": i / 7 for i in range(1700)}
    store.log_batch(run_id, params, {"t": "x"}, metrics, 2000)
    got = client(mlflow_server).get_run(run_id).data
    assert got.params == params and got.metrics == metrics and got.tags["t"] == "x"
