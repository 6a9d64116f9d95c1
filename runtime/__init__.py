"""Torch-free runtime: load an exported LSNet artifact and run it (``load(path)(batch)``)."""

from lsnet_deploy.errors import LsnetDeployError

from .engine import BACKENDS, Engine, load

__all__ = ["BACKENDS", "Engine", "LsnetDeployError", "load"]
