"""lsnet-deploy: export, run and benchmark LSNet on edge devices.

Importing this package is cheap and never imports torch; the heavy parts live in
``lsnet_deploy.models`` / ``lsnet_deploy.exporters`` (torch) and ``lsnet_deploy.runtime`` (no torch).
"""

__version__ = "0.1.0"
