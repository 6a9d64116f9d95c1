"""The ncnn engine (issue 26): without torch, the golden round trip through ``verify``, a bench row, the precision
options, and every damaged, mismatched or hostile file of an ncnn artifact refused in one line with exit 3.

On a tiny artifact (``helpers.tiny_ncnn``: global pooling and one dense layer, real metadata and golden data),
so these run in a second and without pnnx; the exported LSNet file: tests/exporters/test_export_ncnn.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.runtime import bench
from lsnet_deploy.runtime.bench import BenchOptions, run_bench

from helpers import BLOCK_TORCH, tiny_ncnn

ncnn_runtime = pytest.importorskip("lsnet_deploy.runtime.ncnn", reason="the ncnn extra is not installed")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_ncnn(tmp_path_factory.mktemp("ncnn") / "tiny.param")


def test_runs_with_torch_blocked(tiny):
    code = BLOCK_TORCH + """
import json, sys
import numpy as np
from lsnet_deploy import runtime
from lsnet_deploy.runtime.golden import self_test
with runtime.load(sys.argv[1], threads=2) as engine:
    logits = engine(np.zeros((3, 3, 32, 32), np.float32))
    verdict = self_test(engine)
print(json.dumps({"shape": list(logits.shape), "passed": verdict.passed, "backend": engine.backend,
                  "torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                  "heavy": [m for m in ("lsnet_deploy.models", "lsnet_deploy.exporters", "pnnx") if m in sys.modules]}))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tiny)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"shape": [3, 2], "passed": True, "backend": "ncnn", "torch": False,
                                       "heavy": []}


def test_verify_round_trip_and_a_bench_row(tiny, capsys, monkeypatch):
    assert run(["verify", str(tiny), "--threads", "2"]) == 0
    assert capsys.readouterr().out.endswith("PASS: tiny.param (ncnn/cpu, fp32) matches the PyTorch fp32 logits "
                                            "stored at export\n")
    monkeypatch.setattr(bench, "torch_available", lambda: False)  # a device: parity from the golden data
    report = run_bench(BenchOptions(str(tiny), batches=(2,), warmup=1, iters=3))
    (row,) = report.rows
    assert (row.backend, row.precision, row.batch, row.parity_source) == ("ncnn", "fp32", 2, "golden")
    assert row.parity_failures == [] and row.parity.max_rel < 1e-4 and row.latency.median > 0


def test_without_the_extras_one_line_names_them(tmp_path):
    """ncnn and pnnx missing (``sys.modules[name] = None``: not importable, not found): exit 4, the extra named."""
    (tmp_path / "m.param").write_text("7767517\n")
    code = """
import contextlib, io, json, sys
sys.modules["ncnn"] = sys.modules["pnnx"] = None
from lsnet_deploy.cli import run
got = []
for argv in (["verify", sys.argv[1]], ["export", "-t", "ncnn", "-o", sys.argv[2]]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        got.append((run(argv), err.getvalue().strip().splitlines()))
print(json.dumps(got))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.param"), str(tmp_path / "new.param")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    (verify, verify_err), (export, export_err) = json.loads(done.stdout)
    assert verify == 4 and len(verify_err) == 1 and 'pip install "lsnet-deploy[ncnn]"' in verify_err[0]
    assert export == 4 and len(export_err) == 1 and 'pip install "lsnet-deploy[ncnn-export]"' in export_err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.param"]


@pytest.mark.parametrize("env,expected", [("3", 3), ("", None), ("0", None), ("two", None), ("-1", None)])
def test_threads_default_to_omp_num_threads(env, expected, tiny, monkeypatch):
    import ncnn

    monkeypatch.setenv("OMP_NUM_THREADS", env)
    own = ncnn.Option().num_threads  # ncnn's default: the big cores
    with runtime.load(tiny) as engine, runtime.load(tiny, threads=2) as given:
        assert engine.net.opt.num_threads == (expected or own) and given.net.opt.num_threads == 2


def test_cpu_only_and_fp16_from_the_artifact(tiny, tmp_path):
    with pytest.raises(UsageError, match="the ncnn backend runs on the CPU here"):
        runtime.load(tiny, device="gpu")
    with runtime.load(tiny) as fp32, runtime.load(tiny_ncnn(tmp_path / "half.param", precision="fp16")) as fp16:
        assert (fp32.fp16, fp16.fp16, fp16.precision) == (False, True, "fp16")  # fp16: ncnn's ARM default
        assert not fp32.net.opt.use_fp16_arithmetic and fp16.net.opt.use_fp16_arithmetic
        assert fp16.net.opt.use_fp16_storage and fp16.net.opt.use_fp16_packed and not fp16.net.opt.use_vulkan_compute
    with ncnn_runtime.NcnnEngine(tiny, fp16=True) as forced:
        assert forced.fp16 and forced.net.opt.use_fp16_storage


# --- damaged, mismatched and hostile files: one line, exit 3, before ncnn reads them

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sidecar(folder: Path) -> dict:
    return json.loads((folder / "m.param.json").read_text())


def _write_sidecar(folder: Path, doc: dict) -> None:
    (folder / "m.param.json").write_text(json.dumps(doc))


def _param_text(folder: Path, text: bytes) -> None:
    """A new ``.param`` with the sidecar's digest updated: what only the checks after the digests can catch."""
    (folder / "m.param").write_bytes(text)
    _write_sidecar(folder, {**_sidecar(folder), "param_sha256": _sha(folder / "m.param")})


def _metadata(folder: Path, **props: str) -> None:
    doc = _sidecar(folder)
    _write_sidecar(folder, {**doc, "metadata": {**doc["metadata"], **{f"lsnet.{k}": v for k, v in props.items()}}})


def _placeholder(folder: Path) -> None:
    text = (folder / "m.param").read_bytes()
    _param_text(folder, text.replace(b"\nPooling ", b"\nTensor.reshape ", 1))


def _truncate_weights(folder: Path) -> None:
    weights = folder / "m.ncnn.bin"
    weights.write_bytes(weights.read_bytes()[:20])


def _other_weights(folder: Path) -> None:
    weights = folder / "m.ncnn.bin"
    data = bytearray(weights.read_bytes())
    data[4:8] = b"\x00\x00\x80\x3f"  # one weight set to 1.0: same size, other weights
    weights.write_bytes(bytes(data))


def _bad(name: str, message: str, damage) -> object:
    return pytest.param(message, damage, id=name)


#: (part of the one error line, what is done to a copy of the artifact)
CASES = [
    _bad("sidecar-missing", "its sidecar m.param.json is missing", lambda f: (f / "m.param.json").unlink()),
    _bad("sidecar-not-json", "unreadable ncnn sidecar", lambda f: (f / "m.param.json").write_text("{oops")),
    _bad("sidecar-other-format", "format is 'lsnet-deploy tensorrt sidecar 1'",
         lambda f: _write_sidecar(f, {**_sidecar(f), "format": "lsnet-deploy tensorrt sidecar 1"})),
    _bad("sidecar-digest-mistyped", "'weights_sha256'", lambda f: _write_sidecar(f, {**_sidecar(f),
                                                                                     "weights_sha256": 7})),
    _bad("sidecar-blob-with-space", "'input_blob'", lambda f: _write_sidecar(f, {**_sidecar(f), "input_blob": "in 0"})),
    _bad("weights-missing", "its weights m.ncnn.bin are missing", lambda f: (f / "m.ncnn.bin").unlink()),
    _bad("weights-truncated", "m.ncnn.bin does not match its sidecar", _truncate_weights),
    _bad("weights-of-another-export", "m.ncnn.bin does not match its sidecar", _other_weights),
    _bad("param-edited", "m.param does not match its sidecar",
         lambda f: (f / "m.param").write_bytes((f / "m.param").read_bytes().replace(b"0=", b"0=1", 1))),
    _bad("param-not-ncnn", "does not start with ncnn's magic number", lambda f: _param_text(f, b"<net/>\n")),
    _bad("param-layer-count", "declares 1 layers and holds 0", lambda f: _param_text(f, b"7767517\n1 1\n")),
    _bad("param-placeholder", "does not have: Tensor.reshape x1", _placeholder),
    _bad("metadata-img-size-huge", "lsnet.img_size is 100000, outside 32..2048",
         lambda f: _metadata(f, img_size="100000")),
    _bad("metadata-precision-other", "precision 'fp32', but its metadata says 'fp16'",
         lambda f: _metadata(f, precision="fp16")),
    _bad("output-blob-unknown", "expected input blob 'in0' and output blob 'logits'",
         lambda f: _write_sidecar(f, {**_sidecar(f), "output_blob": "logits"})),
]


@pytest.mark.parametrize(("message", "damage"), CASES)
def test_a_bad_artifact_is_one_line_and_exit_3(message, damage, tiny, tmp_path, capsys):
    for source, name in ((tiny, "m.param"), (ncnn_runtime.sidecar_path(tiny), "m.param.json"),
                         (ncnn_runtime.weights_path(tiny), "m.ncnn.bin")):
        shutil.copyfile(source, tmp_path / name)
    damage(tmp_path)
    assert run(["verify", str(tmp_path / "m.param")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    with pytest.raises(InputError, match="m.param"):  # the library raises the same, naming the file
        runtime.load(tmp_path / "m.param")


def test_engine_output_is_checked(tiny):
    with runtime.load(tiny) as engine:
        object.__setattr__(engine.metadata, "num_classes", 5)  # this engine's own copy of the metadata
        with pytest.raises(InputError, match="ncnn returned 2 values .*expected 5 logits"):
            engine(np.zeros((1, 3, 32, 32), np.float32))
