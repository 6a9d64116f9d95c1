"""Where the time goes: per-node profiles from onnxruntime (``enable_profiling``) and OpenVINO (``PERF_COUNT``).

Both are summed per operator type and per "SKA or not": a node belongs to SKA when its name is
under an ``/ska/`` scope (the exporter names nodes after the PyTorch module path; OpenVINO keeps
those names, also on the nodes it fuses). Kernel times exclude the runtime's per-call overhead,
so shares are of the summed kernel time; the wall time of the profiled runs is reported too.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SKA_SCOPE = "/ska/"


@dataclass
class Profile:
    """Per-op-type kernel time (µs per inference) of one engine, and the SKA part of it."""

    backend: str
    runs: int
    wall_us: float  #: median wall time of the profiled runs
    per_op: Counter = field(default_factory=Counter)
    ska_us: float = 0.0

    @property
    def kernel_us(self) -> float:
        return float(sum(self.per_op.values()))

    @property
    def ska_share(self) -> float:
        return self.ska_us / self.kernel_us if self.kernel_us else 0.0

    def add(self, node: str, op: str, us: float) -> None:
        self.per_op[op] += us / self.runs
        if SKA_SCOPE in node:
            self.ska_us += us / self.runs

    def as_dict(self) -> dict:
        return {"backend": self.backend, "runs": self.runs, "wall_us": round(self.wall_us, 1),
                "kernel_us": round(self.kernel_us, 1), "ska_us": round(self.ska_us, 1),
                "ska_share": round(self.ska_share, 4),
                "per_op_us": {k: round(v, 1) for k, v in self.per_op.most_common()}}


def _walls(run, x: np.ndarray, runs: int) -> list[float]:
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        run(x)
        walls.append((time.perf_counter() - t) * 1e6)
    return walls


def profile_onnxruntime(path: Path, x: np.ndarray, threads: int, runs: int, warmup: int = 5) -> Profile:
    """Kernel time per node from onnxruntime's JSON profile (session options as the engine's)."""
    import onnxruntime as ort

    from lsnet_deploy.runtime.onnxruntime import session_options

    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    walls = _walls(lambda a: session.run(None, {name: a}), x, warmup + runs)[warmup:]
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // (warmup + runs)
    prof = Profile("onnxruntime", runs, float(np.median(walls)))
    for e in kernels[warmup * per_run:]:
        prof.add(e["name"], e["args"]["op_name"], float(e["dur"]))
    return prof


def profile_openvino(path: Path, x: np.ndarray, threads: int, runs: int, warmup: int = 5) -> Profile:
    """Real time per executed node from OpenVINO's performance counters (compile config as the engine's)."""
    import openvino as ov

    from lsnet_deploy.runtime.openvino import compile_config

    core = ov.Core()
    model = core.read_model(str(path))
    compiled = core.compile_model(model, "CPU", {**compile_config("f32", threads), "PERF_COUNT": True})
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer({0: x})
    prof = Profile("OpenVINO", runs, 0.0)
    walls = []
    for _ in range(runs):
        walls += _walls(lambda a: request.infer({0: a}), x, 1)
        for p in request.profiling_info:
            prof.add(p.node_name, p.node_type, p.real_time.total_seconds() * 1e6)
    prof.wall_us = float(np.median(walls))
    return prof
