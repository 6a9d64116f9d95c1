"""lsnet-deploy: export, run and benchmark LSNet on edge devices.

Importing this package is cheap and never imports torch; the heavy parts live in
``lsnet_deploy.models`` / ``lsnet_deploy.exporters`` (torch) and ``lsnet_deploy.runtime`` (no torch).
The floors (docs/architecture.md): ``core`` <- ``models``, ``runtime`` <- ``exporters`` <- ``workflows``,
``evaluate`` <- ``commands`` + ``cli``.
"""

from lsnet_deploy.core import __version__

__all__ = ["__version__"]
