"""Stain normalisation (Reinhard, Macenko): target statistics, published references, degenerate patches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from histoviewer.core.errors import ModelError
from histoviewer.core.models import stain_norm as sn
from histoviewer.core.models.stain_norm import StainNormaliser, fit_stain_normaliser

P = 96
# Ruifrok & Johnston 2001 ("Quantification of histochemical staining by color deconvolution",
# Anal Quant Cytol Histol 23:291) H&E optical-density vectors, R G B (before normalising).
RUIFROK_H = np.array([0.65, 0.70, 0.29])
RUIFROK_E = np.array([0.07, 0.99, 0.11])
# The reference target of Macenko's published code (mitkovetta/staining-normalization; the
# default of torchstain): H and E unit OD vectors (columns) and max concentrations.
MACENKO_REF_HE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
MACENKO_REF_MAXC = np.array([1.9705, 1.0308])


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def beer_lambert(h_od: np.ndarray, e_od: np.ndarray, seed: int, n: int = 4) -> np.ndarray:
    """``n`` synthetic H&E patches: per-pixel H and E concentrations (nuclei blobs, stroma,
    some glass) rendered with the Beer-Lambert law at Macenko's Io = 240."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:P, :P]
    out = []
    for _ in range(n):
        c_h = np.zeros((P, P))
        for cy, cx, r in zip(rng.uniform(0, P, 25), rng.uniform(0, P, 25), rng.uniform(3, 7, 25)):
            c_h += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        # Eosin fills the stroma and gives way inside nuclei, so both pure stains occur.
        c_e = (0.6 + 0.3 * rng.random((P, P))) * np.clip(1.0 - c_h, 0.0, 1.0)
        c_e[:, : P // 8] = 0.0  # a strip of glass
        c_h[:, : P // 8] = 0.0
        c_h += 0.05 * rng.random((P, P))
        od = c_h[..., None] * unit(h_od) + c_e[..., None] * unit(e_od)
        out.append(np.clip(240.0 * np.exp(-od) - 1.0, 0, 255).round().astype(np.uint8))
    return np.stack(out)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(unit(a) @ unit(b), -1, 1))))


@pytest.fixture(scope="module")
def real_patches(shared_data) -> np.ndarray:
    """200 real PatchCamelyon patches (kaggle-sample), in file-name order."""
    from PIL import Image

    folder = shared_data / "patches" / "kaggle-sample" / "train"
    files = sorted(folder.glob("*.tif"))[:200]
    if len(files) < 200:
        pytest.skip(f"kaggle-sample patches not found in {folder}")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def tissue_only(patches: np.ndarray) -> np.ndarray:
    _, _, ok = sn.macenko_parameters(patches)
    return patches[ok]


# -- colour conversion: the published CIELAB definition (scikit-image implements it) ----------


def test_lab_matches_scikit_image_and_round_trips():
    from skimage.color import rgb2lab

    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(sn.rgb_to_lab(rgb), rgb2lab(rgb), atol=2e-3)
    np.testing.assert_array_equal(sn.lab_to_rgb(sn.rgb_to_lab(rgb)), rgb)


# -- (a) a normalised patch takes the target's statistics ------------------------------------


def test_reinhard_output_takes_target_lab_statistics(real_patches):
    patches = tissue_only(real_patches)[:40]
    target = fit_stain_normaliser("reinhard", patches[:1])
    result = target.apply(patches[1:])
    assert result.normalised.all()
    mean, std, _ = sn.reinhard_parameters(result.patches)
    # uint8 rounding and gamut clipping move the statistics a little; the sources spread far more.
    src_mean, _, _ = sn.reinhard_parameters(patches[1:])
    assert np.abs(src_mean - target.lab_mean).max() > 10
    np.testing.assert_allclose(np.median(mean, axis=0), target.lab_mean, atol=0.5)
    np.testing.assert_allclose(np.median(std, axis=0), target.lab_std, rtol=0.05)
    assert np.abs(mean - target.lab_mean).max() < 3.0


def test_macenko_output_takes_target_stain_matrix(real_patches):
    patches = tissue_only(real_patches)[:40]
    target = fit_stain_normaliser("macenko", patches[:1])
    result = target.apply(patches[1:])
    assert result.normalised.mean() > 0.9
    stains, max_c, ok = sn.macenko_parameters(result.patches[result.normalised])
    target_he = np.array(target.stain_od).T
    src_stains, _, _ = sn.macenko_parameters(patches[1:])
    h_before = [angle_deg(s[:, 0], target_he[:, 0]) for s in src_stains]
    h_after = [angle_deg(s[:, 0], target_he[:, 0]) for s in stains[ok]]
    e_after = [angle_deg(s[:, 1], target_he[:, 1]) for s in stains[ok]]
    assert np.median(h_before) > 2 * np.median(h_after)
    assert np.median(h_after) < 3.0 and np.median(e_after) < 3.0
    # Re-estimating from a rounded, clipped image: the concentrations come back within 10 %.
    np.testing.assert_allclose(np.median(max_c[ok], axis=0), target.max_concentration, rtol=0.1)


# -- (b) published references ------------------------------------------------------------------


def test_macenko_recovers_published_stain_vectors():
    """Patches rendered from Macenko's published reference H&E vectors give those vectors back."""
    stains, _, ok = sn.macenko_parameters(
        beer_lambert(MACENKO_REF_HE[:, 0], MACENKO_REF_HE[:, 1], seed=1))
    assert ok.all()
    for s in stains:
        assert angle_deg(s[:, 0], MACENKO_REF_HE[:, 0]) < 3.0
        assert angle_deg(s[:, 1], MACENKO_REF_HE[:, 1]) < 3.0


def test_macenko_recovers_ruifrok_haematoxylin():
    """Ruifrok-Johnston's haematoxylin comes back. (Their eosin absorbs so little red that
    pure-eosin pixels fall under Macenko's OD threshold of 0.15 in every channel and are
    dropped as glass, by the method's definition; so only H is checked here.)"""
    stains, _, ok = sn.macenko_parameters(beer_lambert(RUIFROK_H, RUIFROK_E, seed=1))
    assert ok.all()
    for s in stains:
        assert angle_deg(s[:, 0], RUIFROK_H) < 3.0
        assert angle_deg(s[:, 1], RUIFROK_H) > 20.0


def test_macenko_maps_onto_published_reference_target():
    """Normalising Ruifrok-stained patches to Macenko's published reference target yields an
    image whose stain vectors and concentrations are that target's."""
    ref = StainNormaliser("macenko", stain_od=tuple(map(tuple, MACENKO_REF_HE.T)),
                          max_concentration=tuple(MACENKO_REF_MAXC))
    out = ref.apply(beer_lambert(RUIFROK_H, RUIFROK_E, seed=2))
    stains, max_c, ok = sn.macenko_parameters(out.patches)
    assert out.normalised.all() and ok.all()
    for s in stains:
        assert angle_deg(s[:, 0], MACENKO_REF_HE[:, 0]) < 3.0
        assert angle_deg(s[:, 1], MACENKO_REF_HE[:, 1]) < 3.0
    np.testing.assert_allclose(max_c, np.tile(MACENKO_REF_MAXC, (len(max_c), 1)), rtol=0.05)


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_agrees_with_torchstain_on_real_patches(real_patches, method):
    """torchstain 1.4.1's numpy normalisers (MIT; Macenko after the published reference code)
    on real patches: the same target, and the same images to rounding (torchstain truncates
    to uint8, we round: half a level on average)."""
    torchstain = pytest.importorskip("torchstain")
    patches = tissue_only(real_patches)[:30]
    ts = (torchstain.normalizers.ReinhardNormalizer(backend="numpy") if method == "reinhard"
          else torchstain.normalizers.MacenkoNormalizer(backend="numpy"))
    ts.fit(patches[0])
    ours = fit_stain_normaliser(method, patches[:1])
    if method == "macenko":
        np.testing.assert_allclose(np.array(ours.stain_od).T, ts.HERef, atol=1e-4)
        np.testing.assert_allclose(ours.max_concentration, ts.maxCRef, rtol=1e-4)
    result = ours.apply(patches[1:])
    for patch, mine, done in zip(patches[1:], result.patches, result.normalised):
        assert done
        theirs = ts.normalize(patch) if method == "reinhard" else ts.normalize(patch, stains=False)[0]
        diff = np.abs(theirs.astype(int) - mine.astype(int))
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 2


# -- (c) degenerate patches --------------------------------------------------------------------


def degenerate_patches() -> dict[str, np.ndarray]:
    white = np.full((P, P, 3), 245, np.uint8)
    pink = np.full((P, P, 3), (200, 120, 170), np.uint8)
    sparse = white.copy()
    sparse[40:44, 40:44] = (90, 50, 130)
    black = np.zeros((P, P, 3), np.uint8)
    noise = np.random.default_rng(3).integers(240, 256, (P, P, 3), dtype=np.uint8)
    return {"white": white, "single colour": pink, "almost no tissue": sparse, "black": black,
            "bright noise": noise}


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_degenerate_patches_pass_through_counted(method):
    tissue = beer_lambert(RUIFROK_H, RUIFROK_E, seed=4, n=2)
    odd = degenerate_patches()
    batch = np.concatenate([tissue, np.stack(list(odd.values()))])
    norm = fit_stain_normaliser(method, tissue)
    with np.errstate(all="raise"):  # no NaN, no division by zero on the way
        result = norm.apply(batch)
    assert result.patches.dtype == np.uint8 and result.patches.shape == batch.shape
    assert result.normalised.tolist() == [True, True] + [False] * len(odd)
    assert result.n_unnormalised == len(odd)
    np.testing.assert_array_equal(result.patches[2:], batch[2:])


def test_fit_rejects_a_sample_without_tissue_and_unknown_methods():
    white = np.full((4, P, P, 3), 250, np.uint8)
    with pytest.raises(ModelError, match="no patch had enough tissue"):
        fit_stain_normaliser("macenko", white)
    with pytest.raises(ModelError, match="unknown stain normalisation"):
        fit_stain_normaliser("vahadane", white)


# -- the stored record --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_record_round_trips_through_json_and_describes_itself(method):
    norm = fit_stain_normaliser(method, beer_lambert(RUIFROK_H, RUIFROK_E, seed=5))
    back = StainNormaliser.from_extra(json.loads(json.dumps({sn.EXTRA_KEY: norm.to_dict()})))
    assert back == norm
    assert method.capitalize() in norm.describe()
    assert StainNormaliser.from_extra({}) is None
    batch = beer_lambert(RUIFROK_H, RUIFROK_E, seed=6, n=2)
    np.testing.assert_array_equal(back.apply(batch).patches, norm.apply(batch).patches)


def test_incomplete_record_is_refused():
    with pytest.raises(ModelError, match="incomplete"):
        StainNormaliser.from_dict({"method": "reinhard", "lab_mean": [60, 20, -10]})
    with pytest.raises(ModelError, match="incomplete"):
        StainNormaliser.from_dict({"method": "macenko", "stain_od": [[1, 0, 0]],
                                   "max_concentration": [1.0, float("nan")]})


# -- the model option: fitted in training, applied by every classifier -------------------------


def stained_toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The toy problem, darkened so its background counts as tissue (Macenko's OD rule)."""
    from tests.core.model_helpers import toy_patches

    x, y = toy_patches(n, seed=seed)
    return (x.astype(np.float32) * 0.8).astype(np.uint8), y


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_cnn_training_stores_the_normaliser_and_inference_applies_it(tmp_path, method):
    from dataclasses import replace

    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.models.cnn import CnnClassifier
    from histoviewer.core.models.model_file import load_model, save_model
    from histoviewer.core.training import TrainConfig, train_cnn
    from tests.core.model_helpers import ArrayPatchSet

    spec = InputSpec()
    x, y = stained_toy(48, seed=0)
    xv, yv = stained_toy(24, seed=1)
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0, device="cpu", stain_norm=method)
    result = train_cnn(ArrayPatchSet(x, y, spec), cfg, valid_set=ArrayPatchSet(xv, yv, spec), spec=spec)
    model = result.classifier
    norm = StainNormaliser.from_extra(model.info.extra)
    assert norm is not None and norm.method == method and norm.n_fit > 0
    assert model.info.input.normalisation.startswith(norm.describe())
    assert model.info.extra["training"]["stain_norm"] == method
    # The same network without the record, fed normalised patches, gives the same answer.
    bare = CnnClassifier(model.network, replace(model.info, extra={
        k: v for k, v in model.info.extra.items() if k != sn.EXTRA_KEY}), device="cpu")
    xt, _ = stained_toy(8, seed=2)
    expected = bare.predict_proba(norm.apply(xt).patches)
    np.testing.assert_allclose(model.predict_proba(xt), expected, atol=1e-6)
    # Compared on logits: calibration of a one-epoch toy model may flatten its probabilities.
    assert not np.allclose(bare.logits(xt), bare.logits(norm.apply(xt).patches), atol=1e-4)
    # The model file carries it: a loaded model normalises too.
    save_model(tmp_path / "m.safetensors", model)
    loaded = load_model(tmp_path / "m.safetensors", device="cpu")
    assert StainNormaliser.from_extra(loaded.info.extra) == norm
    np.testing.assert_allclose(loaded.predict_proba(xt), expected, atol=1e-5)
    # The validation AUC training recorded is the one of the normalised validation patches.
    from histoviewer.core.models.metrics import binary_metrics

    assert binary_metrics(yv, loaded.predict_proba(xv)).auc == pytest.approx(
        model.info.metrics["valid_auc"], abs=1e-4)


def test_handcrafted_training_and_prediction_normalise_alike():
    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.models.features import extract_features
    from histoviewer.core.training import TrainConfig, train_handcrafted
    from tests.core.model_helpers import ArrayPatchSet

    spec = InputSpec()
    x, y = stained_toy(40, seed=3)
    result = train_handcrafted(ArrayPatchSet(x, y, spec), TrainConfig(seed=0, stain_norm="reinhard"),
                               spec=spec)
    model = result.classifier
    norm = StainNormaliser.from_extra(model.info.extra)
    assert norm is not None and norm.method == "reinhard"
    assert model.info.input.normalisation.startswith("Reinhard")
    xt, _ = stained_toy(6, seed=4)
    xt[0] = 250  # glass: left as it is, and counted
    before = model.stain_unnormalised
    np.testing.assert_allclose(
        model.predict_proba(xt),
        model.predict_proba_features(extract_features(norm.apply(xt).patches, spec.mpp)), atol=1e-6)
    assert model.stain_unnormalised == before + 1


def test_a_model_without_the_option_reads_patches_unchanged():
    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.models.classifier import ModelInfo
    from histoviewer.core.models.cnn import CnnClassifier

    model = CnnClassifier.new(ModelInfo(name="t", kind="cnn", architecture="strided-cnn",
                                        extra={"arch_config": {}}), device="cpu")
    x, _ = stained_toy(3, seed=5)
    np.testing.assert_array_equal(model.prepare_patches(x), x)
    assert InputSpec().normalisation == model.info.input.normalisation
