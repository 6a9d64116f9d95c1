"""The int8 image split: held-out images (gate, agreement report) are never calibration images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsnet_deploy.core.errors import InputError
from lsnet_deploy.core.metadata import ArtifactMetadata
from lsnet_deploy.core.synthetic import write_folder
from lsnet_deploy.exporters.inputs import int8_images, split_files


def test_split_is_disjoint_seeded_and_holds_out_a_fifth():
    files = [Path(f"img_{i:03d}.png") for i in range(100)]
    calib, held = split_files(files, calib_size=300)
    assert (len(calib), len(held)) == (80, 20) and not set(calib) & set(held)
    assert set(calib) | set(held) == set(files)
    assert split_files(files, 300) == (calib, held)  # reproducible
    assert split_files(files, 300, seed=1)[1] != held
    small_calib, small_held = split_files(files, calib_size=10)
    assert len(small_calib) == 10 and small_held == held and set(small_calib) <= set(calib)


def test_tiny_folders_still_hold_one_image_out():
    calib, held = split_files([Path("a.png"), Path("b.png")], 300)
    assert len(calib) == len(held) == 1 and calib != held
    with pytest.raises(InputError, match="at least 2 images"):
        split_files([Path("a.png")], 300)


def test_int8_images_from_a_folder_never_share_an_image(tmp_path):
    write_folder(tmp_path, 10, seed=4, size=40)
    meta = ArtifactMetadata("lsnet_t", 2, img_size=32)
    images = int8_images(tmp_path, 100, meta)
    assert (len(images.calibration), len(images.held_out)) == (8, 2)
    flat_c, flat_h = images.calibration.reshape(8, -1), images.held_out.reshape(2, -1)
    assert not any(np.array_equal(c, h) for c in flat_c for h in flat_h)
    assert images.describe() == f"8 calibration / 2 held-out images ({tmp_path})"


def test_synthetic_int8_images_say_they_are_not_held_out():
    meta = ArtifactMetadata("lsnet_t", 2, img_size=32)
    with pytest.warns(Warning, match="SYNTHETIC"):
        images = int8_images(None, 4, meta, parity_size=3)
    assert images.calibration.shape == (4, 3, 32, 32) and images.held_out.shape == (3, 3, 32, 32)
    assert np.array_equal(images.calibration[:3], images.held_out)  # noise: nothing to hold out (see CALIBRATION_SEED)
    assert images.describe().endswith("(synthetic, not held out)")
