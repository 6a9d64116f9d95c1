"""Issue #15: the memory estimate of a batch, and the one-line warning when the machine has less free."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from lsnet_deploy.core.errors import DeployWarning
from lsnet_deploy.runtime import footprint
from lsnet_deploy.runtime.footprint import ACTIVATION_FACTOR, estimate_bytes, input_bytes, memory_warning

GIB = 2 ** 30


def test_estimate_is_activations_of_the_largest_batch_plus_every_input_twice():
    one = 3 * 224 * 224 * 4
    assert input_bytes(1, 224) == one == 602_112
    assert estimate_bytes([1000], 224) == 1000 * one * ACTIVATION_FACTOR + 2 * 1000 * one
    assert estimate_bytes([1, 8], 224) == 8 * one * ACTIVATION_FACTOR + 2 * 9 * one
    assert estimate_bytes([1000], 224) / GIB == pytest.approx(5.61, abs=0.01)


def test_the_estimate_covers_what_onnxruntime_really_needs(tmp_path):
    """Measured, not assumed: a batch of 16 at 224 px raises onnxruntime's peak RSS by less than the estimate.

    Peak RSS (VmHWM) of a fresh process that runs batch 16, minus that of one that runs batch 1: tens of
    MB, far above the kernel's lag in folding per-thread RSS counters in (which made a same-process
    before/after reading of a 64 px batch show no growth at all).
    """
    from lsnet_deploy.exporters import ExportOptions, export

    art = export("lsnet_t", ExportOptions(dynamic=True, validate=False, output=tmp_path / "m.onnx")).path
    code = f"""
import sys, numpy as np
from lsnet_deploy import runtime
with runtime.load({str(art)!r}) as engine:
    engine(np.zeros((int(sys.argv[1]), 3, 224, 224), np.float32))
print(next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')))
"""
    one, batch = (int(subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True,
                                     check=True).stdout) for n in (1, 16))
    assert 16 * input_bytes(1, 224) < batch - one < estimate_bytes([16], 224)


def test_a_warning_only_when_short():
    assert memory_warning([8], 224, free=10 * GIB) is None
    line = memory_warning([1000], 224, free=3 * GIB)
    assert line == ("batch 1000 at 224 px needs about 5.6 GiB of memory, 3.0 GiB is free: expect swapping or an "
                    "out-of-memory kill (use a smaller --batch)")


def test_big_input_sizes_count_too():
    assert memory_warning([1], 4096, free=1 * GIB).startswith("batch 1 at 4096 px needs about 1.9 GiB")


def test_free_memory_is_read_from_the_kernel():
    free = footprint.available_bytes()
    assert free is None or 0 < free < 2 ** 50


def test_bench_warns_before_allocating(monkeypatch, tmp_path):
    from lsnet_deploy.exporters import ExportOptions, export
    from lsnet_deploy.runtime.bench import BenchOptions
    from lsnet_deploy.workflows.sweep import run_sweep as run_bench

    art = export("lsnet_t", ExportOptions(imgsz=32, dynamic=True, validate=False, output=tmp_path / "m.onnx"),
                 num_classes=3).path
    monkeypatch.setattr(footprint, "available_bytes", lambda: 1000)
    with pytest.warns(DeployWarning, match=r"^batch 2 at 32 px needs about 0\.0 GiB of memory, 0\.0 GiB is free"):
        report = run_bench(BenchOptions(str(art), backends=("onnxruntime",), batches=(1, 2), iters=2, warmup=0))
    assert any(w.startswith("batch 2 at 32 px needs about") for w in report.warnings)


def test_the_cli_prints_deploy_warnings_on_one_line():
    from lsnet_deploy import cli

    text = cli._format_warning(DeployWarning("batch 9 needs more"), DeployWarning, "x.py", 3)
    assert text == "warning: batch 9 needs more\n"
    with warnings.catch_warnings():
        assert "UserWarning" in cli._format_warning(UserWarning("other"), UserWarning, "x.py", 3)


def test_input_bytes_match_numpy():
    assert input_bytes(4, 32) == np.zeros((4, 3, 32, 32), np.float32).nbytes
