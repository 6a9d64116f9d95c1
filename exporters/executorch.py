"""LSNet -> ExecuTorch program (``.pte``), delegated to XNNPACK, in fp32 or int8 (PT2E: :mod:`.xnnpack_int8`).

``torch.export`` of the fused model with SKA as ``shift4d`` and GroupNorm in a 4-D reshape/mean form
(:class:`GroupNorm4d`, swapped in for the export only: the model and its state dict stay as they are),
``constant_prop_pass`` (folds the attention-bias gather into a constant; after ``to_edge`` it would break
the linear conversion), then ``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` and one pass of
ours (:func:`tidy_views`: the attention's no-op ``expand_copy`` dropped, its q/k/v split as slices) so that
XNNPACK takes the whole graph. The delegated and non-delegated op counts are the export's notes.

The program carries its metadata and golden self-test data: a constant method ``lsnet_props`` returns
them as JSON text (``runtime.executorch``), so ``verify`` works on the host and a device app reads the
preprocessing from the one file. Every program is gated in ExecuTorch's own runtime against PyTorch on
held-out inputs (int8: the calibration folder's held-out split, cosine and top-1 agreement) before it
is put in place. docs/executorch.md: the stack, the pins, the device guide.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lsnet_deploy.core.artifacts import backend_write
from lsnet_deploy.core.errors import BackendMissingError, InputError, UsageError, reason
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.probes import int8_isa
from lsnet_deploy.models import fuse_model
from lsnet_deploy.runtime import golden as runtime_golden

from .base import ExportOptions, ExportResult, Source, TargetConfig
from .inputs import int8_images, parity_images
from .publish import Built, gate_engine, publish
from .ska import Lowering, lowered

INSTALL_HINT = 'pip install "lsnet-deploy[executorch]"'
PROPS_METHOD = "lsnet_props"  #: the program's method returning its properties (``runtime.executorch``)
#: loggers that print import-time noise (torchao's optional CUDA kernels, a pytree deprecation)
_QUIET = ("torchao", "torch.utils._pytree", "executorch")


@dataclass(frozen=True)
class ExecuTorchConfig(TargetConfig):
    """The ``executorch`` target: one ``.pte`` program for ExecuTorch's XNNPACK delegate (fp32, int8)."""

    name = "executorch"
    no_onnx = "writes no ONNX (it lowers with torch.export)"
    backend = "executorch"
    default_ska = "shift4d"
    requires = ("torch", "executorch")
    extra = "lsnet-deploy[executorch]"
    precisions = ("fp32", "int8")
    notes = {"int8": "PT2E, XNNPACK"}

    threads: int | None = None  #: ExecuTorch's thread pool during the parity run (process-wide)

    def check(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


class GroupNorm4d(nn.Module):
    """``nn.GroupNorm`` as 4-D reshape / mean / rsqrt (XNNPACK delegates these; ``native_group_norm`` it does
    not), computing with the wrapped module's own weight and bias."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        groups = self.norm.num_groups
        y = x.reshape(n, groups, c // groups, h * w)
        centered = y - y.mean(dim=(2, 3), keepdim=True)
        var = (centered * centered).mean(dim=(2, 3), keepdim=True)
        y = (centered * torch.rsqrt(var + self.norm.eps)).reshape(n, c, h, w)
        return y * self.norm.weight.view(1, c, 1, 1) + self.norm.bias.view(1, c, 1, 1)


@contextmanager
def groupnorm_4d(model: nn.Module) -> Iterator[nn.Module]:
    """Swap every affine ``nn.GroupNorm`` in ``model`` for :class:`GroupNorm4d` around it; restore them on exit."""
    swapped = [(parent, attr, child) for parent in model.modules() for attr, child in parent.named_children()
               if isinstance(child, nn.GroupNorm) and child.affine]
    try:
        for parent, attr, child in swapped:
            setattr(parent, attr, GroupNorm4d(child))
        yield model
    finally:
        for parent, attr, child in swapped:
            setattr(parent, attr, child)


def import_stack():
    """``(exir, XnnpackPartitioner, constant_prop_pass)``; :class:`BackendMissingError` without ExecuTorch."""
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from executorch import exir
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir.passes.constant_prop_pass import constant_prop_pass
    except ImportError as e:
        raise BackendMissingError(f"ExecuTorch is not installed ({e.name or e}): {INSTALL_HINT}") from e
    return exir, XnnpackPartitioner, constant_prop_pass


def tidy_views(gm: torch.fx.GraphModule):
    """Edge pass before partitioning: drop ``expand_copy`` to the input's own shape (matmul's decomposition
    leaves one per operand) and turn ``split_with_sizes_copy`` (the attention's q/k/v) into ``slice_copy``
    nodes, which XNNPACK delegates."""
    from executorch.exir.dialects._ops import ops
    from torch.fx.passes.infra.pass_base import PassResult

    edge, changed = ops.edge.aten, False
    for node in list(gm.graph.nodes):
        if node.target == edge.expand_copy.default and node.args[0].meta["val"].shape == node.meta["val"].shape:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            changed = True
        elif node.target == edge.split_with_sizes_copy.default:
            _split_as_slices(gm.graph, node, edge.slice_copy.Tensor)
            changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return PassResult(gm, changed)


def _split_as_slices(graph: torch.fx.Graph, node: torch.fx.Node, slice_op) -> None:
    """Replace ``split_with_sizes_copy(x, sizes, dim)`` and its ``getitem`` users by one slice each."""
    x, sizes = node.args[0], list(node.args[1])
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for user in list(node.users):
        i = user.args[1]
        with graph.inserting_before(user):
            piece = graph.call_function(slice_op, (x, dim, starts[i], starts[i] + sizes[i]))
        piece.meta = dict(user.meta)
        user.replace_all_uses_with(piece)
        graph.erase_node(user)
    graph.erase_node(node)


@dataclass(frozen=True)
class Delegation:
    """How much of the program XNNPACK runs: ops inside its partitions, and the ops left outside by name."""

    delegated: int
    partitions: int
    outside: dict[str, int]

    def summary(self) -> str:
        left = sum(self.outside.values())
        names = ", ".join(f"{name} x{count}" for name, count in sorted(self.outside.items()))
        return (f"XNNPACK: {self.delegated} ops delegated in {self.partitions} partition(s); "
                f"{left} outside" + (f" ({names})" if names else ""))


def delegation(program) -> Delegation:
    """Count the delegated and non-delegated ops of an edge program manager's ``forward`` after lowering."""
    gm = program.exported_program().graph_module
    delegated, partitions, outside = 0, 0, Counter()
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target.__name__ == "getitem":
            continue
        if node.target.__name__ == "executorch_call_delegate":
            inner = getattr(gm, node.args[0].target).original_module.graph_module
            delegated += sum(1 for n in inner.graph.nodes if n.op == "call_function")
            partitions += 1
        else:
            outside[str(getattr(node.target, "_name", node.target)).replace("aten::", "")] += 1
    return Delegation(delegated, partitions, dict(outside))


def prepared_model(source: Source, options: ExportOptions) -> nn.Module:
    """A fused fp32 copy of the source model, eval mode (the reference keeps the unfused original)."""
    model = copy.deepcopy(source.model).float().eval()
    return fuse_model(model) if options.fuse else model


def lower(model: nn.Module, example: torch.Tensor, props: dict[str, str], calibration: np.ndarray | None):
    """``(program bytes, Delegation)`` of ``model`` (SKA and GroupNorm already in their XNNPACK forms); int8
    when ``calibration`` is given (:mod:`.xnnpack_int8`: SKA and GroupNorm stay float)."""
    exir, partitioner, constant_prop_pass = import_stack()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.export and exir warn about internals on every export
        exported = constant_prop_pass(torch.export.export(model, (example,)))  # before int8: it folds dequantize
        if calibration is not None:
            from .xnnpack_int8 import quantized

            float_types = (type(next(m for m in model.modules() if isinstance(m, Lowering))), GroupNorm4d)
            exported = torch.export.export(quantized(exported, calibration, float_types), (example,))
        edge = exir.to_edge_transform_and_lower(exported, transform_passes=[tidy_views],
                                                partitioner=[partitioner()],
                                                constant_methods={PROPS_METHOD: json.dumps(props)})
        counts = delegation(edge)
        return edge.to_executorch().buffer, counts


def int8_recipe() -> str:
    """The metadata's ``quantization`` string of :mod:`.xnnpack_int8`'s recipe (docs/executorch.md "int8")."""
    from .quantize import MIN_MACS, PERCENTILE

    return (f"pt2e xnnpack s8 per-channel percentile{PERCENTILE:g}; int8 conv/linear >= {MIN_MACS} MACs; "
            "float: residual adds, SKA, GroupNorm")


def default_path(meta: ArtifactMetadata) -> Path:
    """``lsnet_t_224_shift4d_b1[_int8].pte``-style name (classes added when not 1000)."""
    classes = "" if meta.num_classes == 1000 else f"_{meta.num_classes}c"
    suffix = "_int8" if meta.precision == "int8" else ""
    return Path(f"{meta.variant}{classes}_{meta.img_size}_{meta.ska}_b{meta.batch}{suffix}.pte")


def check(options: ExportOptions) -> None:
    """Before the model loads (after :func:`.preflight.preflight`): what an ExecuTorch program cannot hold."""
    if options.dynamic:
        raise UsageError("--dynamic: an ExecuTorch program has a static batch (the engine runs any number of images "
                         "in chunks of it); export with --batch N")


def export(source: Source, options: ExportOptions) -> ExportResult:
    """The program in ``options.precision``, gated in ExecuTorch's runtime against ``source``'s PyTorch model."""
    from lsnet_deploy.runtime.executorch import ExecuTorchEngine

    int8 = options.int8
    meta = source.metadata(batch=options.batch, precision=options.precision, ska=options.lowering,
                           quantization=int8_recipe() if int8 else "", gate_isa=int8_isa() if int8 else "")
    path = Path(options.output or default_path(meta))
    threshold = options.gate()
    with source.reference() as reference:
        split = int8_images(options.data, options.calib_size, meta, options.parity_size) if int8 else None
        checked = split.held_out if int8 else parity_images(options.data, meta, options.parity_size)
        props = {**meta.to_props(), **runtime_golden.record(meta, reference).to_props()}
        model = prepared_model(source, options)
        example = torch.zeros(options.batch, 3, meta.img_size, meta.img_size)
        with lowered(model, options.lowering), groupnorm_4d(model):
            try:
                data, counts = lower(model, example, props, split.calibration if int8 else None)
            except (RuntimeError, ValueError, AssertionError) as e:  # torch.export / exir refuse with these
                raise InputError(f"ExecuTorch cannot lower the model (--ska {options.lowering}): {reason(e)}") from e

        def write(temps: Sequence[Path]) -> Built:
            with backend_write(path, need=len(data)):
                temps[0].write_bytes(data)
            notes = (counts.summary(),) + ((f"int8 calibration: {split.describe()}",) if int8 else ())
            return Built(notes=list(notes), details=counts)

        def check(temps: Sequence[Path], built: Built):
            images = "held-out images" if int8 else "ExecuTorch runtime"
            return gate_engine(lambda: ExecuTorchEngine(temps[0], threads=options.target_config().threads),
                               reference, checked, options,
                               f"{path.name} (--ska {options.lowering}, {options.precision}, {images})", threshold)

        return publish(path, options, meta, write, check, partners=(), gate=threshold)


__all__ = ["Delegation", "ExecuTorchConfig", "GroupNorm4d", "check", "delegation", "export", "groupnorm_4d",
           "tidy_views"]
