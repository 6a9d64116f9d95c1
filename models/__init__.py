"""PyTorch LSNet (upstream-faithful), reference SKA, checkpoint loading and FLOP counting."""

from .checkpoint import infer_variant, load_model, read_state_dict
from .init import init_tame
from .lsnet import VARIANTS, LSNet, build_model, fuse_model
from .ska import SKA, ska

__all__ = ["LSNet", "SKA", "VARIANTS", "build_model", "fuse_model", "infer_variant", "init_tame",
           "load_model", "read_state_dict", "ska"]
