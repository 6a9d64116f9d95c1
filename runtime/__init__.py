"""Torch-free runtime: load an exported LSNet artifact and run it (``load(path)(batch)``).

``classify(engine, images)`` adds the preprocessing stored in the artifact's metadata. The
PyTorch baseline (``runtime.torch``) and bench are imported only by whoever asks for them.
"""

from lsnet_deploy.errors import LsnetDeployError

from .engine import BACKENDS, Engine, load
from .preprocess import classify, open_image, preprocess, top_k

__all__ = ["BACKENDS", "Engine", "LsnetDeployError", "classify", "load", "open_image", "preprocess", "top_k"]
