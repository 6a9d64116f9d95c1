"""The runtime's network input equals upstream's torchvision eval transform, pixel for pixel.

torchvision cannot be installed beside this torch, so its semantics are re-implemented here
from its source (``transforms.functional.resize`` / ``center_crop`` / ``to_tensor`` /
``normalize`` for PIL images) and composed as upstream's ``data/datasets.py: build_transform``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lsnet_deploy.core.errors import InputError, UsageError
from lsnet_deploy.core.metadata import ArtifactMetadata, Preprocessing
from lsnet_deploy.core.untrusted import read_metadata
from lsnet_deploy.runtime.preprocess import preprocess, resize_and_crop

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ODD_SIZES = [(451, 300), (1001, 750), (300, 451), (1920, 1080)]  # (width, height)


# --- torchvision, re-implemented from its source (PIL paths only) ---------------------------------
def tv_resize(img: Image.Image, size) -> Image.Image:
    """``F.resize(img, size, interpolation=BICUBIC)``: an int sets the shorter edge, a pair (h, w) both."""
    w, h = img.size
    if isinstance(size, int):
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_h, new_w = size
    if [h, w] == [new_h, new_w]:
        return img
    return img.resize((new_w, new_h), Image.BICUBIC)


def tv_center_crop(img: Image.Image, size: int) -> Image.Image:
    """``F.center_crop(img, size)`` (pads with zeros when the crop is larger than the image)."""
    crop_h = crop_w = size
    w, h = img.size
    if crop_w > w or crop_h > h:
        left, top = (crop_w - w) // 2 if crop_w > w else 0, (crop_h - h) // 2 if crop_h > h else 0
        padded = Image.new(img.mode, (max(w, crop_w), max(h, crop_h)))
        padded.paste(img, (left, top))
        img, (w, h) = padded, padded.size
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def tv_to_tensor_normalized(img: Image.Image) -> np.ndarray:
    """``Normalize(MEAN, STD)(ToTensor()(img))`` in float64."""
    chw = np.array(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float64) / 255
    return (chw - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]


def upstream_eval(img: Image.Image, input_size: int, finetune: bool) -> np.ndarray:
    """Upstream's ``build_transform(is_train=False, args)``."""
    if finetune:
        img = tv_resize(img, (input_size, input_size))
    else:
        img = tv_center_crop(tv_resize(img, int((256 / 224) * input_size)), input_size)
    return tv_to_tensor_normalized(img)


# ---------------------------------------------------------------------------------------------------
def busy_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients plus noise: any one-pixel shift or rounding difference shows."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    base = np.stack([x, y, (x * y)], axis=-1) * 180
    return Image.fromarray(np.clip(base + rng.integers(0, 75, (height, width, 3)), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", ["center", "squash"])
def test_odd_sizes_match_torchvision_exactly(size, mode):
    image = busy_image(*size)
    got = preprocess(image, Preprocessing(224, crop_mode=mode, crop_pct=1.0 if mode == "squash" else 0.875))
    want = upstream_eval(image, 224, finetune=mode == "squash")
    assert got.shape == want.shape == (3, 224, 224) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-6


@pytest.mark.parametrize("input_size", [160, 256, 384])
def test_other_input_sizes_match_upstream(input_size):
    image = busy_image(1001, 750, seed=1)
    for finetune in (False, True):
        cfg = Preprocessing(input_size, crop_mode="squash" if finetune else "center",
                            crop_pct=1.0 if finetune else 0.875)
        assert np.abs(preprocess(image, cfg) - upstream_eval(image, input_size, finetune)).max() <= 1e-6


def test_crop_pct_is_timm_squash_then_crop():
    """timm's squash with crop_pct < 1: Resize((s, s)) then CenterCrop."""
    image = busy_image(451, 300, seed=2)
    want = tv_to_tensor_normalized(tv_center_crop(tv_resize(image, (int(224 / 0.9), int(224 / 0.9))), 224))
    assert np.abs(preprocess(image, Preprocessing(224, crop_pct=0.9, crop_mode="squash")) - want).max() <= 1e-6


def test_torchvision_geometry_on_1001x750():
    """int() for the long side (341, not 342) and round-half-even crop offsets (58.5 -> 58)."""
    assert resize_and_crop(1001, 750, Preprocessing(224)) == ((341, 256), (58, 16, 282, 240))
    assert resize_and_crop(750, 1001, Preprocessing(224)) == ((256, 341), (16, 58, 240, 282))
    assert resize_and_crop(1920, 1080, Preprocessing(224, crop_pct=1.0, crop_mode="squash")) == \
        ((224, 224), (0, 0, 224, 224))


def test_the_comparison_sees_a_one_pixel_shift():
    """The test images are busy enough that the old arithmetic (round, floor-halved offsets) fails 1e-6."""
    image = busy_image(1001, 750)
    shifted = tv_to_tensor_normalized(tv_resize(image, 256).crop((59, 16, 283, 240)))
    assert np.abs(preprocess(image, Preprocessing(224)) - shifted).max() > 0.5


def test_frames_and_metadata_give_the_same_input():
    image = busy_image(451, 300)
    meta = ArtifactMetadata("lsnet_t", 2, crop_mode="squash", crop_pct=1.0)
    by_meta = preprocess(np.asarray(image), meta)
    np.testing.assert_array_equal(by_meta, preprocess(image, meta.preprocessing))
    assert np.abs(by_meta - upstream_eval(image, 224, finetune=True)).max() <= 1e-6


def test_old_artifacts_with_resize_only_get_upstreams_center_crop():
    old = {"lsnet.variant": "lsnet_t", "lsnet.num_classes": "10", "lsnet.img_size": "64", "lsnet.resize": "73",
           "lsnet.interpolation": "bicubic", "lsnet.mean": "[0.485, 0.456, 0.406]"}
    cfg = read_metadata(old).preprocessing
    assert (cfg.crop_mode, cfg.crop_pct, cfg.resize, cfg.img_size) == ("center", 0.875, 73, 64)


def test_metadata_round_trips_the_new_fields():
    meta = ArtifactMetadata("lsnet_t", 2, crop_pct=0.95, crop_mode="squash", checkpoint_key="model_ema")
    assert read_metadata(meta.to_props()) == meta


@pytest.mark.parametrize("kwargs, message", [
    ({"crop_mode": "border"}, "unknown crop mode 'border'"),
    ({"crop_pct": 0.0}, r"crop_pct must be in \(0, 1\]"),
    ({"crop_pct": 1.2}, r"crop_pct must be in \(0, 1\]"),
    ({"interpolation": "cubic"}, "unknown interpolation 'cubic'"),
])
def test_bad_preprocessing_is_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Preprocessing(224, **kwargs)
    with pytest.raises(InputError, match="artifact metadata: " + message):
        _ = ArtifactMetadata("lsnet_t", 2, **kwargs).preprocessing
