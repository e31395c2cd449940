"""Handcrafted features and the logistic-regression classifier on top of them (no Qt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from histoviewer.core.errors import ModelError, ModelLoadError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models import features as feat
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.features import FEATURE_DESCRIPTIONS, FEATURE_NAMES, extract_features
from histoviewer.core.models.handcrafted import KNOT_QUANTILES, HandcraftedClassifier, fit_handcrafted

MPP = 0.972
P = 64
BACKGROUND = (232, 190, 215)  # eosin-pink stroma, H optical density ~0.005
DARK = (70, 40, 120)  # lymphocyte-like nucleus, H ~0.13
PALE = (140, 110, 175)  # vesicular tumour-like nucleus, H ~0.06
REAL_PATCHES = Path(__file__).resolve().parents[3] / "shared" / "data" / "patches" / "camelyon16-256px-40x"


def col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def draw_discs(
    centres: list[tuple[float, float]], radii: list[float], colour=DARK, size: int = P, background=BACKGROUND
) -> np.ndarray:
    """A uint8 RGB patch with filled discs (radius in px) on a flat background."""
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((size, size, 3), np.uint8)
    img[:] = background
    for (cy, cx), r in zip(centres, radii):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    return img


def grid_centres(n_side: int, size: int = P) -> list[tuple[float, float]]:
    step = size / n_side
    return [(step * (i + 0.5), step * (j + 0.5)) for i in range(n_side) for j in range(n_side)]


def toy_patch(rng: np.random.Generator, tumour: bool) -> np.ndarray:
    """Small dense dark dots (normal) or fewer, larger, pale, varied blobs (tumour), random places."""
    if tumour:
        n, radii, colour = rng.integers(4, 8), rng.uniform(4.5, 8.0, 8), PALE
    else:
        n, radii, colour = rng.integers(15, 30), rng.uniform(2.0, 3.2, 30), DARK
    centres = [tuple(c) for c in rng.uniform(0, P, (n, 2))]
    img = draw_discs(centres, list(radii[:n]), colour).astype(np.int16)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def edge_case_patches(size: int = P) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.stack(
        [
            np.full((size, size, 3), 255, np.uint8),  # blank glass
            np.zeros((size, size, 3), np.uint8),  # black
            np.full((size, size, 3), DARK, np.uint8),  # one nucleus colour everywhere
            np.full((size, size, 3), BACKGROUND, np.uint8),
            rng.integers(0, 256, (size, size, 3), dtype=np.uint8),  # noise
            draw_discs(grid_centres(4, size), [size / 10] * 16, size=size),
        ]
    )


# -- features ----------------------------------------------------------------------------------
def test_feature_names_are_unique_and_match_the_columns():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    out = extract_features(edge_case_patches(), MPP)
    assert out.shape == (6, len(FEATURE_NAMES)) and out.dtype == np.float32


@pytest.mark.parametrize("size", [8, 32, 96])
def test_features_are_finite_on_edge_cases(size):
    out = extract_features(edge_case_patches(size), MPP)
    assert np.all(np.isfinite(out))
    white, black, nucleus_colour = out[0], out[1], out[2]
    assert white[col("white_fraction")] == 1.0 and white[col("nuclei_density_per_mm2")] == 0
    assert black[col("black_fraction")] == 1.0
    assert white[col("glcm_correlation_d1")] == 1.0  # graycoprops' convention for a flat image
    # A patch of uniform haematoxylin is one big "nucleus" covering everything.
    assert nucleus_colour[col("nuclei_area_fraction")] == 1.0


def test_empty_batch_and_bad_input():
    assert extract_features(np.zeros((0, P, P, 3), np.uint8), MPP).shape == (0, len(FEATURE_NAMES))
    with pytest.raises(ValueError):
        extract_features(np.zeros((2, P, P, 3), np.float32), MPP)
    with pytest.raises(ValueError):
        extract_features(np.zeros((2, P, P + 1, 3), np.uint8), MPP)
    with pytest.raises(ValueError):
        extract_features(np.zeros((2, P, P, 3), np.uint8), 0.0)


def test_stain_channels_match_skimage_rgb2hed():
    from skimage.color import rgb2hed

    patches = edge_case_patches()
    h, e = feat._stain_channels(patches)
    ref = rgb2hed(patches)
    np.testing.assert_allclose(h, ref[..., 0], atol=1e-6)
    np.testing.assert_allclose(e, ref[..., 1], atol=1e-6)


def test_nuclei_are_counted_and_measured_in_physical_units():
    radius = 5.0
    patch = draw_discs(grid_centres(4), [radius] * 16)
    row = extract_features(patch, MPP)[0]
    field_mm2 = (P * MPP / 1000) ** 2
    assert row[col("nuclei_density_per_mm2")] == pytest.approx(16 / field_mm2, rel=1e-5)
    disc_um2 = np.pi * radius**2 * MPP**2
    assert row[col("nuclei_area_mean_um2")] == pytest.approx(disc_um2, rel=0.2)
    assert row[col("nuclei_area_std_um2")] == pytest.approx(0, abs=1e-3)  # identical discs
    assert row[col("nuclei_eccentricity_mean")] < 0.3  # round


def test_larger_blobs_give_larger_nuclear_area_and_scale_with_mpp():
    centres = grid_centres(3)
    small = draw_discs(centres, [3.0] * 9)
    large = draw_discs(centres, [7.0] * 9)
    f = extract_features(np.stack([small, large]), MPP)
    a = col("nuclei_area_mean_um2")
    assert f[1, a] > 3.5 * f[0, a]
    # Same pixels at twice the pixel size: each nucleus covers four times the um^2 and there
    # are a quarter as many per mm^2. Smoothing is defined in um, so allow a little slack.
    f2 = extract_features(np.stack([small, large]), 2 * MPP)
    np.testing.assert_allclose(f2[:, a] / f[:, a], 4.0, rtol=0.02)
    d = col("nuclei_density_per_mm2")
    np.testing.assert_allclose(f2[:, d] / f[:, d], 0.25, rtol=1e-5)


def test_pleomorphism_raises_area_spread():
    centres = grid_centres(3)
    uniform = draw_discs(centres, [5.0] * 9)
    varied = draw_discs(centres, [3.0, 7.0, 4.0, 8.0, 3.5, 6.0, 2.5, 7.5, 5.0])
    f = extract_features(np.stack([uniform, varied]), MPP)
    assert f[1, col("nuclei_area_cv")] > f[0, col("nuclei_area_cv")] + 0.3


def test_every_feature_has_a_description():
    assert set(FEATURE_DESCRIPTIONS) == set(FEATURE_NAMES)
    assert all(FEATURE_DESCRIPTIONS[n].strip() for n in FEATURE_NAMES)


def test_pure_eosin_has_no_haematoxylin_and_no_nuclei():
    # Eosin's stain vector as rgb2hed's matrix has it, at a moderate optical density.
    from skimage.color import hed2rgb

    hed = np.zeros((1, P, P, 3))
    hed[..., 1] = 0.3
    eosin = (hed2rgb(hed[0]) * 255).round().astype(np.uint8)[None]
    row = extract_features(eosin, MPP)[0]
    assert row[col("h_od_p90")] < 0.01 and row[col("e_od_mean")] > 0.2
    assert row[col("nuclei_density_per_mm2")] == 0


def test_more_and_larger_nuclei_raise_density_size_and_crowding():
    few = draw_discs(grid_centres(3), [3.0] * 9)
    many = draw_discs(grid_centres(6), [3.0] * 36)
    large = draw_discs(grid_centres(3), [6.0] * 9)
    f = extract_features(np.stack([few, many, large]), MPP)
    assert f[1, col("nuclei_density_per_mm2")] > 3 * f[0, col("nuclei_density_per_mm2")]
    # nearest neighbours: 64/3 px apart on the sparse grid, 64/6 px on the dense one
    assert f[0, col("nuclei_neighbour_distance_um")] == pytest.approx(64 / 3 * MPP, rel=0.05)
    assert f[1, col("nuclei_neighbour_distance_um")] == pytest.approx(64 / 6 * MPP, rel=0.05)
    assert f[0, col("nuclei_neighbour_distance_cv")] < 0.05  # a regular grid
    assert f[2, col("nuclei_area_mean_um2")] > 3 * f[0, col("nuclei_area_mean_um2")]
    # the blob spectrum shifts from small to large diameters with the nuclei
    small_blob, large_blob = col("h_blob_energy_4um"), col("h_blob_energy_10um")
    assert f[2, large_blob] / f[2, small_blob] > 1.2 * f[0, large_blob] / f[0, small_blob]


def test_irregular_outlines_and_darker_nuclei_are_measured():
    yy, xx = np.mgrid[:P, :P]
    star = np.empty((P, P, 3), np.uint8)
    star[:] = BACKGROUND
    angle = np.arctan2(yy - 32, xx - 32)
    star[np.hypot(yy - 32, xx - 32) <= 12 + 6 * np.cos(6 * angle)] = DARK  # six-pointed outline
    disc = draw_discs([(32, 32)], [12.5])
    pale = draw_discs([(32, 32)], [12.5], colour=PALE)
    f = extract_features(np.stack([disc, star, pale]), MPP)
    irr = col("nuclei_contour_irregularity")
    assert f[1, irr] > 1.3 * f[0, irr]
    assert f[0, col("nuclei_h_od_mean")] > 1.5 * f[2, col("nuclei_h_od_mean")]  # hyperchromasia


def test_batch_result_equals_per_patch_result(monkeypatch):
    rng = np.random.default_rng(3)
    batch = np.concatenate([edge_case_patches(), np.stack([toy_patch(rng, i % 2 == 0) for i in range(10)])])
    together = extract_features(batch, MPP)
    one_by_one = np.concatenate([extract_features(p, MPP) for p in batch])
    np.testing.assert_array_equal(together, one_by_one)
    monkeypatch.setattr(feat, "_CHUNK", 5)  # chunk boundaries must not matter either
    np.testing.assert_array_equal(extract_features(batch, MPP), together)


def test_texture_matches_skimage():
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

    rng = np.random.default_rng(4)
    patches = np.stack([toy_patch(rng, t) for t in (True, False, True)])
    grey = feat._grey_uint8(patches)
    glcm = feat._glcm_features(grey)
    lbp = feat._lbp_histogram(grey)
    props = ("contrast", "homogeneity", "energy", "correlation")
    diag = [np.pi / 4, 3 * np.pi / 4]
    for k, g in enumerate(grey):
        q = ((g.astype(np.uint16) * feat.GLCM_LEVELS) >> 8).astype(np.uint8)
        m1 = graycomatrix(q, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True, normed=True)
        m2a = graycomatrix(q, [2], [0, np.pi / 2], levels=32, symmetric=True, normed=True)
        m2b = graycomatrix(q, [2 * np.sqrt(2)], diag, levels=32, symmetric=True, normed=True)
        ref1 = [graycoprops(m1, p).mean() for p in props]
        ref2 = [(graycoprops(m2a, p).sum() + graycoprops(m2b, p).sum()) / 4 for p in props]
        np.testing.assert_allclose(glcm[k], ref1 + ref2, rtol=1e-9, atol=1e-12)
        codes = local_binary_pattern(g, 8, 1, "uniform")[1:-1, 1:-1].astype(int)
        ref_hist = np.bincount(codes.ravel(), minlength=10) / codes.size
        # float32 interpolation may break a rare exact tie differently from skimage's float64
        np.testing.assert_allclose(lbp[k], ref_hist, atol=2e-3)


# -- classifier ----------------------------------------------------------------------------------
SPEC = InputSpec(patch_px=P, mpp=MPP)


@pytest.fixture(scope="module")
def toy_data():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    patches = np.stack([toy_patch(rng, bool(t)) for t in y])
    return patches, y, extract_features(patches, MPP)


@pytest.fixture(scope="module")
def toy_model(toy_data):
    _, y, f = toy_data
    return fit_handcrafted(f[:120], y[:120], spec=SPEC, seed=0, name="toy", training_data="synthetic discs")


def test_toy_problem_is_learned(toy_data, toy_model):
    from sklearn.metrics import roc_auc_score

    patches, y, f = toy_data
    prob = toy_model.predict_proba(patches[120:])
    assert prob.dtype == np.float32 and prob.shape == (80,)
    assert np.all((prob >= 0) & (prob <= 1))
    assert roc_auc_score(y[120:], prob) > 0.95
    np.testing.assert_array_equal(prob, toy_model.predict_proba_features(f[120:]))
    # predict_proba is the logistic function of the logit, which is the sum of the features' shares
    logit = toy_model.logits(patches[120:])
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logit)), rtol=1e-6, atol=1e-7)
    shares = toy_model.contributions(f[120:])
    assert shares.shape == (80, len(FEATURE_NAMES))
    np.testing.assert_allclose(shares.sum(axis=1) + toy_model.intercept, logit, rtol=1e-12, atol=1e-12)
    z = toy_model.embed_features(f[:120])
    assert z.shape == (120, len(FEATURE_NAMES))
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=0.2)  # standardised on these very patches
    info = toy_model.info
    assert info.kind == "handcrafted" and "logistic regression" in info.architecture
    assert tuple(info.extra["feature_names"]) == FEATURE_NAMES and isinstance(info.extra["feature_version"], int)
    assert info.input.patch_px == P and info.input.mpp == MPP


def test_tensors_round_trip_gives_identical_predictions(toy_data, toy_model):
    patches, _, _ = toy_data
    tensors = toy_model.tensors()
    assert set(tensors) == {"feature_mean", "feature_scale", "knots", "coef", "intercept"}
    assert all(t.dtype in (np.float32, np.float64) for t in tensors.values())
    info = ModelInfo.from_dict(json.loads(json.dumps(toy_model.info.to_dict())))  # as a file header would
    loaded = HandcraftedClassifier.from_tensors(info, tensors)
    np.testing.assert_array_equal(loaded.predict_proba(patches[120:]), toy_model.predict_proba(patches[120:]))


def _with_extra(info: ModelInfo, **changes) -> ModelInfo:
    return ModelInfo.from_dict({**info.to_dict(), "extra": {**info.extra, **changes}})


def test_model_made_for_other_features_is_refused(toy_model):
    tensors, info = toy_model.tensors(), toy_model.info
    renamed = list(FEATURE_NAMES)
    renamed[3] = "something_else"
    for bad in (
        _with_extra(info, feature_names=renamed),
        _with_extra(info, feature_names=list(FEATURE_NAMES)[::-1]),
        _with_extra(info, feature_names=list(FEATURE_NAMES)[:-1]),
        _with_extra(info, feature_version=info.extra["feature_version"] + 1),
        ModelInfo.from_dict({**info.to_dict(), "extra": {}}),
        ModelInfo.from_dict({**info.to_dict(), "kind": "cnn"}),
    ):
        with pytest.raises(ModelLoadError):
            HandcraftedClassifier.from_tensors(bad, tensors)


def test_a_feature_version_1_model_is_refused_with_a_clear_message(toy_model):
    # What a model file from before feature_version 2 holds: 53 names, four (F,) arrays.
    old_names = [n for n in FEATURE_NAMES if not n.startswith("h_blob") and n not in (
        "nuclei_h_od_spread", "nuclei_chromatin_std_od", "nuclei_contour_irregularity",
        "nuclei_neighbour_distance_um", "nuclei_neighbour_distance_cv")]
    assert len(old_names) == 53
    info = _with_extra(toy_model.info, feature_names=old_names, feature_version=1)
    old = {k: np.zeros(53) for k in ("feature_mean", "coef")} | {"feature_scale": np.ones(53),
                                                                 "intercept": np.zeros(1)}
    with pytest.raises(ModelLoadError, match=r"feature_version 1 vs 2.*retrain"):
        HandcraftedClassifier.from_tensors(info, old)


@pytest.mark.parametrize(
    "change",
    [
        {"coef": np.zeros((len(KNOT_QUANTILES) + 1, len(FEATURE_NAMES) - 1))},
        {"coef": np.zeros(len(FEATURE_NAMES))},  # a plain logistic regression's (F,) coefficients
        {"knots": np.zeros((len(KNOT_QUANTILES) + 1, len(FEATURE_NAMES)))},
        {"intercept": np.zeros(2)},
        {"feature_scale": np.zeros(len(FEATURE_NAMES))},
        {"feature_mean": np.full(len(FEATURE_NAMES), np.nan)},
        {"coef": np.zeros((len(KNOT_QUANTILES) + 1, len(FEATURE_NAMES)), np.int64)},
        {"extra_array": np.zeros(3)},
    ],
)
def test_bad_tensors_are_refused(toy_model, change):
    tensors = {**toy_model.tensors(), **change}
    with pytest.raises(ModelLoadError):
        HandcraftedClassifier.from_tensors(toy_model.info, tensors)


def test_missing_tensor_is_refused(toy_model):
    tensors = toy_model.tensors()
    del tensors["intercept"]
    with pytest.raises(ModelLoadError):
        HandcraftedClassifier.from_tensors(toy_model.info, tensors)


def test_bad_inputs_are_refused(toy_data, toy_model):
    patches, y, f = toy_data
    with pytest.raises(ModelError):
        toy_model.predict_proba(np.zeros((2, P + 1, P + 1, 3), np.uint8))
    with pytest.raises(ModelError):
        toy_model.predict_proba(patches[:2].astype(np.float32))
    with pytest.raises(ModelError):
        toy_model.predict_proba_features(f[:2, :-1])
    with pytest.raises(ModelError):
        fit_handcrafted(f[:10], np.zeros(10), spec=SPEC)  # one class only
    with pytest.raises(ModelError):
        fit_handcrafted(f[:10, :-1], y[:10], spec=SPEC)
    with pytest.raises(ModelError):
        fit_handcrafted(f[:10], y[:10], spec=SPEC, C=0.0)


# -- real patches (sanity only; no performance claims on 89 patches) ------------------------------
@pytest.mark.skipif(not REAL_PATCHES.is_dir(), reason="shared real data (../shared/data) not present")
def test_real_camelyon_patches_give_plausible_features():
    from PIL import Image

    files = sorted((REAL_PATCHES / "tumor").glob("*.png"))[:4] + sorted((REAL_PATCHES / "normal").glob("*.png"))[:4]
    # 256 px at ~0.243 um/px, box-downsampled 4x to PatchCamelyon's ~0.97 um/px
    patches = np.stack([np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.Resampling.BOX)) for f in files])
    f = extract_features(patches, 0.972)
    assert np.all(np.isfinite(f))
    density = f[:, col("nuclei_density_per_mm2")]
    # lymph-node tissue: thousands of nuclei per mm^2, not zero and not one per pixel
    assert np.all(density > 500) and np.all(density < 50_000)
    assert np.all(f[:, col("white_fraction")] < 0.5)
