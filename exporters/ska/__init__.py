"""SKA lowerings for export, one module each, registered by name (see :mod:`.base`)."""

from . import custom, dwconv, shift, unfold  # noqa: F401 - importing registers them
from .base import LOWERINGS, Lowering, get_lowering, lowered, register

__all__ = ["LOWERINGS", "Lowering", "get_lowering", "lowered", "register"]
