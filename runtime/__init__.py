"""Torch-free runtime: load an exported LSNet artifact and run it (``load(path)(batch)``).

``classify(engine, images)`` adds the preprocessing stored in the artifact's metadata;
``predict_files(engine, find_images(specs), k)`` streams files, folders and patterns. The
PyTorch baseline (``runtime.torch``) and bench are imported only by whoever asks for them.
"""

from lsnet_deploy.core.errors import LsnetDeployError

from .engine import BACKENDS, Engine, load
from .images import IMAGE_SUFFIXES, find_images
from .predict import Prediction, predict_files
from .preprocess import classify, open_image, preprocess, top_k

__all__ = ["BACKENDS", "IMAGE_SUFFIXES", "Engine", "LsnetDeployError", "Prediction", "classify", "find_images",
           "load", "open_image", "predict_files", "preprocess", "top_k"]
