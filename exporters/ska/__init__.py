"""SKA lowerings for export, one module each, registered by name (see :mod:`.base`).

Every module of this package is imported here, so a new lowering is one new file.
"""

import importlib
import pkgutil

from .base import LOWERINGS, Lowering, get_lowering, lowered, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # importing registers the lowering

__all__ = ["LOWERINGS", "Lowering", "get_lowering", "lowered", "register"]
