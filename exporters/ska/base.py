"""The SKA lowering interface, a registry keyed by name, and the swap used at export time.

A lowering is an ``nn.Module`` with ``forward(x, w)`` that computes exactly the SKA contract of
:mod:`lsnet_deploy.models.ska` with operators a target understands. Adding one = one new file
that subclasses :class:`Lowering` and decorates itself with :func:`register`; what is special
about it (ONNX post-processing, TensorRT fitness, dynamo op translations) is a hook below, so no
exporter names a lowering.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from torch import nn

from lsnet_deploy.core.errors import UsageError
from lsnet_deploy.models.ska import SKA

if TYPE_CHECKING:
    import onnx

#: name -> lowering class, filled by :func:`register`
LOWERINGS: dict[str, type[Lowering]] = {}


class Lowering(nn.Module):
    """Base class: ``forward(x, w)`` with x (N, C, H, W), w (N, C/G, 9, H, W) -> (N, C, H, W).

    Class attributes are literals: ``--help`` reads them from the source without importing torch
    (``exporters.lowering_facts``).
    """

    name = ""
    min_opset = 13  #: lowest ONNX opset the lowering exports at (the exporter's own minimum applies too)
    summary = ""  #: one line for ``--help`` and the docs
    tensorrt_ok = True  #: TensorRT parses the exported graph with its stock ONNX parser
    int8_ok = True  #: made of standard ops that QDQ int8 quantization (``--target onnx --int8``) can wrap
    ncnn_ok = False  #: every tensor at most 4-D with the batch axis untouched: pnnx maps it to native ncnn layers

    @classmethod
    def finalize(cls, model: onnx.ModelProto) -> onnx.ModelProto:
        """Post-process the exported (or simplified) ONNX model; the default keeps it as it is."""
        return model

    @classmethod
    def dynamo_translations(cls, opset: int) -> dict[Any, Any]:
        """``custom_translation_table`` entries the dynamo exporter needs for this lowering's own ops."""
        return {}


def register(cls: type[Lowering]) -> type[Lowering]:
    """Class decorator adding ``cls`` to :data:`LOWERINGS` under ``cls.name``."""
    LOWERINGS[cls.name] = cls
    return cls


def get_lowering(name: str) -> type[Lowering]:
    """The lowering class called ``name``; :class:`UsageError` listing the choices otherwise."""
    try:
        return LOWERINGS[name]
    except KeyError:
        raise UsageError(f"unknown SKA lowering {name!r}; choose one of: {', '.join(sorted(LOWERINGS))}") from None


@contextmanager
def lowered(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Swap every :class:`SKA` in ``model`` for the lowering ``name``; restore them on exit."""
    cls = get_lowering(name)
    swapped = [(parent, attr, child) for parent in model.modules()
               for attr, child in parent.named_children() if isinstance(child, SKA)]
    try:
        for parent, attr, _ in swapped:
            setattr(parent, attr, cls())
        yield model
    finally:
        for parent, attr, child in swapped:
            setattr(parent, attr, child)
