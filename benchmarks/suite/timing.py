"""Interleaved timing (now in the package: ``lsnet_deploy.runtime.timing.interleaved``)."""

from __future__ import annotations

from lsnet_deploy.runtime.timing import interleaved

__all__ = ["interleaved"]
