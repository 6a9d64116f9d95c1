"""The benchmark suite's parts (``benchmarks/suite``), the eager/fused baseline, and a ``--quick`` smoke run."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxslim
import pytest
import torch
from torch import nn

from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.exporters.ska import get_lowering
from lsnet_deploy.exporters.ska.custom import attach_function
from lsnet_deploy.runtime.torch import TorchEngine

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from suite.engines import inlined  # noqa: E402
from suite.profiling import Profile  # noqa: E402
from suite.roofline import ideal_ska_cost, ska_cost  # noqa: E402
from suite.timing import interleaved  # noqa: E402

N, C, H, W = 1, 16, 7, 5  # one SKA call, 8 groups of 2 weight channels


class OneSKA(nn.Module):
    """One lowered SKA under a ``ska`` scope, as in LSNet (``/ska/...`` node names)."""

    def __init__(self, lowering: str):
        super().__init__()
        self.ska = get_lowering(lowering)()

    def forward(self, x, w):
        return self.ska(x, w)


def export_one(lowering: str, folder: Path) -> Path:
    x, w = torch.randn(N, C, H, W), torch.randn(N, C // 8, 9, H, W)
    buf = io.BytesIO()
    torch.onnx.export(OneSKA(lowering), (x, w), buf, dynamo=False, opset_version=17, input_names=["x", "w"],
                      output_names=["y"])
    path = folder / f"{lowering}.onnx"  # simplified, as the suite's exports are (constant kernels folded)
    onnx.save(attach_function(onnxslim.slim(onnx.load_from_string(buf.getvalue()))), str(path))
    return path


@pytest.mark.filterwarnings("ignore")
def test_ska_cost_counts_dwconv_and_shift_exactly(tmp_path):
    elems = N * C * H * W
    dw = ska_cost(export_one("dwconv", tmp_path))
    # one-hot depthwise Conv: 9 outputs per element, 9 MACs each; Mul 9 per element; ReduceSum reads 9
    assert dw["flops"] == 2 * 81 * elems + 9 * elems + 9 * elems
    shift = ska_cost(export_one("shift", tmp_path))
    assert shift["flops"] == 9 * elems + 8 * elems  # 9 Mul + 8 Add, one output element each
    assert shift["nodes"] > dw["nodes"] >= 4


@pytest.mark.filterwarnings("ignore")
def test_inlined_custom_nodes_keep_their_ska_name(tmp_path):
    path = inlined(export_one("custom", tmp_path))
    proto = onnx.load(str(path))
    assert not proto.functions and len(proto.graph.node) > 20
    assert all(n.name.startswith("/ska/") for n in proto.graph.node)
    assert ska_cost(path)["flops"] == 9 * N * C * H * W + 9 * N * C * H * W  # Mul, then ReduceSum over 9 taps


def test_ideal_ska_cost_of_lsnet_t(tame_model):
    cost = ideal_ska_cost(tame_model("lsnet_t"), 1)
    x = 128 * 14 * 14 + 4 * 256 * 7 * 7  # one LSConv at 14x14 (stage 2), four at 7x7 (stage 3)
    assert cost == {"calls": 5, "flops": 18 * x, "bytes": 4 * (2 * x + 9 * x // 8)}


def test_profile_splits_ska_from_the_rest():
    prof = Profile("x", runs=2, wall_us=0.0)
    for _ in range(2):
        prof.add("/blocks2/blocks2.3/mixer/ska/Mul", "Mul", 30.0)
        prof.add("/blocks2/blocks2.3/ffn/Conv", "Conv", 90.0)
    assert prof.per_op == {"Mul": 30.0, "Conv": 90.0}
    assert (prof.kernel_us, prof.ska_us, prof.ska_share) == (120.0, 30.0, 0.25)


def test_interleaved_alternates_engines():
    calls = []
    engines = {k: (lambda x, k=k: calls.append(k) or x) for k in "ab"}
    stats = interleaved(engines, np.zeros(1), rounds=3, iters=2, warmup=0)
    assert stats["a"].n == stats["b"].n == 6
    per_round = 1 + 2  # time_engine's first call, then the timed ones (warm-up 1 after round 0)
    assert calls[:per_round] == ["a"] * per_round and calls[per_round:2 * per_round] == ["b"] * per_round


def test_torch_baseline_is_unfused_unless_asked(tame_model):
    model = tame_model("lsnet_t")
    meta = ArtifactMetadata("lsnet_t", 1000)
    eager, fused = TorchEngine(model, meta), TorchEngine(model, meta, fuse=True)
    count = lambda m: sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert count(eager.model) == count(model) > count(fused.model)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_quick_suite_writes_results(tmp_path):
    import run

    result = run.main(["--quick", "--lowerings", "shift,dwconv", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "suite.json").read_text())
    (config,) = saved["configs"]
    labels = [(r["backend"], r["lowering"], r["precision"]) for r in config["rows"]]
    assert labels[:2] == [("PyTorch eager", "reference", "fp32"), ("PyTorch fused", "reference", "fp32")]
    assert {("onnxruntime", "dwconv", "fp32"), ("OpenVINO", "shift", "fp32")} <= set(labels)
    assert all(r["cosine"] > 0.99999 for r in config["rows"] if r["precision"] == "fp32")
    assert len(saved["profiles"]) == 4 and all(p["ska_us"] > 0 for p in saved["profiles"])
    assert result["machine"]["model"] in (tmp_path / "suite.md").read_text()
