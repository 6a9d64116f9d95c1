"""Issue #8, the runtime under load: threads, a 2,000-inference soak, fuzzed inputs; and safe loading."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from lsnet_deploy import runtime
from lsnet_deploy.cli import run
from lsnet_deploy.core.errors import InputError
from lsnet_deploy.runtime.engine import Engine

from helpers import BLOCK_TORCH, escaping_external_data, gradient_image, python_cmd

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
BACKENDS = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(not HAVE_OPENVINO,
                                                                               reason="OpenVINO is not installed"))]


# ---- threads ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_calls_match_serial_calls(onnx_artifact, backend):
    """8 threads share one engine (ONNX Runtime: one session; OpenVINO: one infer request per thread)."""
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((1 + i % 3, 3, 64, 64), dtype=np.float32) for i in range(8)]
    with runtime.load(onnx_artifact(), backend=backend, threads=1) as engine:
        serial = [engine(x) for x in inputs]
        start = threading.Barrier(8)

        def work(i: int) -> list[np.ndarray]:
            start.wait()
            return [engine(inputs[(i + k) % 8]) for k in range(6)]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
    for i, outs in enumerate(results):
        for k, out in enumerate(outs):
            np.testing.assert_array_equal(out, serial[(i + k) % 8])


class _Counting(Engine):
    """A backend that is not thread-safe: it notices when two calls overlap."""

    backend = "counting"

    def __init__(self):
        super().__init__(Path("x"))
        self.input_shape = (None, 3, 4, 4)
        self.inside = self.overlaps = 0

    def _run(self, batch):
        self.inside += 1
        self.overlaps += self.inside > 1
        time.sleep(0.002)
        self.inside -= 1
        return batch.sum(axis=(1, 2, 3))[:, None]


def test_backends_that_are_not_thread_safe_are_serialized():
    engine = _Counting()
    x = np.ones((1, 3, 4, 4), np.float32)
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda _: engine(x), range(60)))
    assert engine.overlaps == 0 and all(o[0, 0] == 48 for o in outs)
    engine.concurrent = True  # what a thread-safe backend declares: no lock, so overlaps happen
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: engine(x), range(60)))
    assert engine.overlaps > 0


# ---- soak and fuzz, each in its own process (torch blocked, as on a device) ----

SOAK = """
import json, sys
import numpy as np
from lsnet_deploy import runtime

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

engine = runtime.load(sys.argv[1], threads=1)
image = runtime.open_image(sys.argv[2])
x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
first = engine(x)
for _ in range(200):  # warm-up: arenas and caches reach their working size
    engine(x)
warm = rss_mb()
for i in range(2000):
    out = engine(x)
    if i % 100 == 0:
        runtime.classify(engine, [image], k=3)  # the preprocessing path too
print(json.dumps({"warm": warm, "end": rss_mb(), "same": bool(np.array_equal(out, first))}))
"""


@pytest.mark.slow
def test_soak_2000_inferences_keeps_memory_flat(onnx_artifact, tmp_path):
    image = gradient_image(tmp_path / "g.png")
    proc = subprocess.run(python_cmd(BLOCK_TORCH, SOAK) + [str(onnx_artifact()), str(image)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["same"]
    assert result["end"] < result["warm"] * 1.05, result


FUZZ = """
import collections, json, sys, warnings
import numpy as np
from lsnet_deploy import runtime
from lsnet_deploy.core.errors import InputError

warnings.simplefilter("ignore")
rng = np.random.default_rng(int(sys.argv[3]))
DTYPES = [np.float32] * 6 + [np.float16, np.float64, np.int8, np.uint8, np.int64, np.bool_, np.complex64, object]
NON_ARRAYS = [None, 3.0, "images", [[1.0]], {"images": 1}, b"\\x00" * 16]

def array():
    rank = rng.choice([4] * 6 + [0, 1, 2, 3, 5])
    shape = [1, 3, 64, 64][:rank] + [1] * max(0, rank - 4)
    for i in range(len(shape)):
        if rng.random() < 0.25:
            shape[i] = int(rng.integers(0, 9)) if i != 0 else int(rng.integers(0, 4))
    if rank == 4:
        shape[0] = int(rng.integers(1, 4)) if rng.random() < 0.8 else shape[0]
    x = np.asarray(rng.standard_normal(shape) * rng.choice([1e-30, 1, 1e30])).astype(rng.choice(DTYPES))
    if x.size and x.dtype.kind == "f" and rng.random() < 0.2:
        x.flat[int(rng.integers(0, x.size))] = rng.choice([np.nan, np.inf, -np.inf])
    if x.ndim == 4 and rng.random() < 0.2:
        x = x[:, ::-1]  # a strided view
    return x

counts, other = collections.Counter(), []
for backend in sys.argv[2].split(","):
    engine = runtime.load(sys.argv[1], backend=backend, threads=1)
    for i in range(200):
        x = NON_ARRAYS[i % len(NON_ARRAYS)] if rng.random() < 0.05 else array()
        try:
            out = engine(x)
            assert out.shape == (x.shape[0], 10) and out.dtype == np.float32
            counts["ok"] += 1
        except InputError:
            counts["refused"] += 1
        except BaseException as e:  # anything else is a defect
            other.append(f"{backend}: {type(e).__name__}: {e} for {getattr(x, 'shape', x)} {getattr(x, 'dtype', '')}")
print(json.dumps({"counts": counts, "other": other}))
"""


def test_fuzzed_arrays_are_refused_or_run_and_the_process_survives(onnx_artifact):
    backends = "onnxruntime,openvino" if HAVE_OPENVINO else "onnxruntime"
    proc = subprocess.run(python_cmd(BLOCK_TORCH, FUZZ) + [str(onnx_artifact()), backends, "8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]  # a segfault or abort would be a negative code
    result = json.loads(proc.stdout)
    assert result["other"] == []
    assert result["counts"]["ok"] >= 20 and result["counts"]["refused"] >= 100, result  # both paths taken


def test_fuzzed_image_files_are_refused_or_read(tmp_path):
    """Random byte flips and cuts of PNG/JPEG/BMP/GIF/TIFF/WebP files: InputError or a usable image
    (before the fix, a flipped size field escaped as PIL's DecompressionBombError with a traceback)."""
    import io

    from PIL import Image

    from lsnet_deploy.core.metadata import ArtifactMetadata
    from lsnet_deploy.runtime.preprocess import open_image, preprocess

    rng = np.random.default_rng(8)
    meta = ArtifactMetadata("lsnet_t", 10, img_size=64)
    seeds = {}
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buf, fmt)
        seeds[fmt] = buf.getvalue()
    outcomes = {"ok": 0, "refused": 0}
    for i in range(180):  # 30 per format
        fmt = list(seeds)[i % len(seeds)]
        data = bytearray(seeds[fmt])
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[:int(rng.integers(1, len(data)))]
        path = tmp_path / f"fuzz.{fmt.lower()}"
        path.write_bytes(bytes(data))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about the corrupt metadata it skips
                assert preprocess(open_image(path), meta).shape == (3, 64, 64)
            outcomes["ok"] += 1
        except InputError:
            outcomes["refused"] += 1
    assert outcomes["ok"] > 30 and outcomes["refused"] > 30, outcomes


# ---- safe loading: nothing in a file is executed ----

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_a_malicious_checkpoint_runs_no_code_through_the_cli(tmp_path, capsys, container):
    marker, ckpt = tmp_path / "pwned", tmp_path / "evil.pth"
    if container == "torch.save":
        torch.save({"model": _Evil(marker)}, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps({"model": _Evil(marker)}, protocol=2))
    for argv in (["info", "-w", str(ckpt)], ["export", "-w", str(ckpt), "-o", str(tmp_path / "m.onnx")]):
        assert run(argv) == 3
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: refusing to load {ckpt}: not a plain tensor checkpoint") and "\n" not in err
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
@pytest.mark.parametrize("location", ["../../secret.bin", "/etc/hostname"])
def test_openvino_refuses_external_data_outside_the_model_folder(tmp_path, location):
    model = escaping_external_data(tmp_path / "m.onnx", location)
    with pytest.raises(InputError, match="outside the base directory"):
        runtime.load(model, backend="openvino")


def test_onnxruntime_refuses_an_absolute_external_data_path(tmp_path):
    model = escaping_external_data(tmp_path / "m.onnx", "/etc/hostname")
    with pytest.raises(InputError, match="Absolute path not allowed"):
        runtime.load(model)
