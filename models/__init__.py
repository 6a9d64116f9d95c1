"""PyTorch LSNet (upstream-faithful), reference SKA, checkpoint loading and FLOP counting."""

from .checkpoint import infer_variant, load_model, read_state_dict
from .init import RANDOM_WEIGHTS_SEED, init_tame, random_weights_model
from .lsnet import VARIANTS, LSNet, build_model, fuse_model
from .ska import SKA, ska

__all__ = ["RANDOM_WEIGHTS_SEED", "LSNet", "SKA", "VARIANTS", "build_model", "fuse_model", "infer_variant",
           "init_tame", "load_model", "random_weights_model", "read_state_dict", "ska"]
