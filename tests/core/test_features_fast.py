"""The tissue check's LBP-free feature path equals the full features with the LBP columns dropped.

The domain profiles' thresholds and the shipped handcrafted model were fitted on
``extract_features``; ``tissue_descriptor`` now skips the LBP histogram it drops, so its values
must be bit-identical to the descriptor of the full features (issue 15).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.domain import (
    DESCRIPTOR_NAMES,
    descriptor_of_features,
    tissue_descriptor,
)
from histoviewer.core.models.features import (
    FEATURE_NAMES,
    FEATURE_NAMES_WITHOUT_LBP,
    _erode_cross,
    extract_features,
    extract_features_without_lbp,
)


def _synthetic_patches(n: int, side: int, seed: int) -> np.ndarray:
    """H&E-like patches: pink background, purple blobs of several sizes, noise, plus edge cases."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    out = np.empty((n, side, side, 3), np.uint8)
    for k in range(n):
        img = np.full((side, side, 3), (235, 170, 200), np.float64) + rng.normal(
            0, 8, (side, side, 3)
        )
        for _ in range(rng.integers(0, 25)):
            cy, cx, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(2, 8)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[inside] = (90, 50, 140) + rng.normal(0, 10, 3)
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    out[0] = 255  # blank glass
    out[1] = 0  # black
    out[2] = (200, 120, 180)  # one colour
    return out


def test_without_lbp_is_bit_identical_to_full_features_on_synthetic_patches():
    patches = _synthetic_patches(40, 96, seed=3)
    full = extract_features(patches, 0.972)
    fast = extract_features_without_lbp(patches, 0.972)
    keep = [FEATURE_NAMES.index(n) for n in FEATURE_NAMES_WITHOUT_LBP]
    assert fast.shape == (40, len(FEATURE_NAMES) - 10)
    assert fast.dtype == full.dtype
    np.testing.assert_array_equal(fast, full[:, keep])
    # The descriptor the tissue check uses is exactly what it was fitted on.
    assert DESCRIPTOR_NAMES == FEATURE_NAMES_WITHOUT_LBP
    np.testing.assert_array_equal(
        tissue_descriptor(patches, 0.972), descriptor_of_features(full)
    )


def test_without_lbp_validates_like_extract_features():
    with pytest.raises(ValueError):
        extract_features_without_lbp(np.zeros((2, 8, 8, 3), np.float32), 0.5)
    with pytest.raises(ValueError):
        extract_features_without_lbp(np.zeros((2, 8, 8, 3), np.uint8), 0.0)
    single = _synthetic_patches(3, 32, seed=1)[2]
    assert extract_features_without_lbp(single, 0.5).shape == (
        1,
        len(FEATURE_NAMES_WITHOUT_LBP),
    )


def test_tissue_descriptor_is_bit_identical_on_real_patches(shared_data):
    from histoviewer.core.patches.open import open_patch_set

    kaggle = shared_data / "patches" / "kaggle-sample"
    if not kaggle.is_dir():
        pytest.skip("kaggle-sample not found")
    spec = InputSpec()
    ps = open_patch_set(kaggle, spec, layout="kaggle", split="train")
    x = ps.read(list(range(0, min(len(ps), 2000), 31)))
    np.testing.assert_array_equal(
        tissue_descriptor(x, spec.mpp),
        descriptor_of_features(extract_features(x, spec.mpp)),
    )


def test_cross_erosion_equals_scipys_binary_erosion():
    """The contour's erosion (four shifted ANDs) against the ndimage call it replaced."""
    rng = np.random.default_rng(5)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    for density in (0.3, 0.7, 0.95):
        mask = rng.random((6, 17, 17)) < density
        mask[0] = True  # all set: only the patch edge could erode it, and it must not
        mask[1] = False
        expected = ndimage.binary_erosion(mask, structure=structure, border_value=1)
        np.testing.assert_array_equal(_erode_cross(mask), expected)
    assert _erode_cross(np.ones((2, 5, 5), bool)).all()
