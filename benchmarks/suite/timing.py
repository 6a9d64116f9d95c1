"""Interleaved timing (now in the package: ``lsnet_deploy.runtime.interleave``)."""

from __future__ import annotations

from lsnet_deploy.runtime.interleave import interleaved

__all__ = ["interleaved"]
