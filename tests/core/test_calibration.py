"""Calibration (temperature, Platt), calibration metrics, the operating point and the
reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.errors import ModelError
from histoviewer.core.models.calibration import (
    Calibration,
    calibrated_probability,
    fit_calibration,
    fit_platt,
    fit_temperature,
    log_loss,
)
from histoviewer.core.models.calibration_metrics import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.features import extract_features
from histoviewer.core.models.operating_point import (
    calibrate_and_choose,
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)
from histoviewer.core.models.reliability_plot import write_reliability_png


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _labels_from(true_logit, seed):
    return (np.random.default_rng(seed).random(true_logit.size) < _sigmoid(true_logit)).astype(np.int64)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0.0, 2.0, 40_000)
    y = _labels_from(true_logit, 1)
    for t_true in (0.5, 2.5):
        overconfident = true_logit * t_true  # what a mis-scaled network outputs
        assert fit_temperature(overconfident, y) == pytest.approx(t_true, rel=0.05)
    cal = fit_calibration(true_logit * 2.5, y, "temperature")
    assert cal.nll_after < cal.nll_before  # the fit helps the data it was fitted on
    assert cal.nll_after == pytest.approx(log_loss(y, _sigmoid(true_logit)), abs=2e-3)


def test_platt_scaling_recovers_a_known_slope_and_offset():
    rng = np.random.default_rng(2)
    raw = rng.normal(0.5, 2.0, 40_000)
    a_true, b_true = 0.6, -0.8
    y = _labels_from(a_true * raw + b_true, 3)
    a, b = fit_platt(raw, y)
    assert a == pytest.approx(a_true, abs=0.04) and b == pytest.approx(b_true, abs=0.05)


def test_calibration_round_trips_and_applies_the_same_map():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 3, 500)
    y = _labels_from(z / 2, 5)
    for method in ("temperature", "platt", "isotonic", "none"):
        cal = fit_calibration(z, y, method)
        stored = cal.to_dict()
        np.testing.assert_allclose(calibrated_probability(z, stored), cal.apply(z))
        assert Calibration.from_dict(stored) == cal
        p = cal.apply(z)
        assert p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1
    # temperature and Platt keep the ranking: probabilities increase with the logit
    for method in ("temperature", "platt"):
        p = fit_calibration(z, y, method).apply(np.sort(z))
        assert np.all(np.diff(p) >= 0)
    # no calibration stored: the plain sigmoid
    np.testing.assert_allclose(calibrated_probability(z, None), _sigmoid(z), rtol=1e-6)
    with pytest.raises(ModelError, match="both classes"):
        fit_calibration(z, np.ones_like(y), "temperature")
    with pytest.raises(ModelError, match="unknown calibration"):
        calibrated_probability(z, {"method": "magic"})


def test_ece_and_brier_on_a_hand_computed_case():
    # 15 bins of width 1/15. 0.05 and 0.06 share bin 0 (mean p 0.055, 0 of 2 tumour: gap 0.055);
    # 0.5 and 0.52 share bin 7 (mean 0.51, 1 of 2: gap 0.01); 0.95 and 1.0 share bin 14
    # (mean 0.975, 2 of 2: gap 0.025). ECE = (2*0.055 + 2*0.01 + 2*0.025) / 6 = 0.03.
    p = np.array([0.05, 0.06, 0.5, 0.52, 0.95, 1.0])
    y = np.array([0, 0, 1, 0, 1, 1])
    assert expected_calibration_error(y, p) == pytest.approx(0.03)
    brier = np.mean((p - y) ** 2)
    assert brier_score(y, p) == pytest.approx(brier)
    bins = reliability_bins(y, p)
    assert bins.counts.tolist() == [2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 2]
    assert np.isnan(bins.mean_probability[1])
    perfect = np.repeat([0.2, 0.8], 5)
    assert expected_calibration_error(np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 0]), perfect) == pytest.approx(0.0)
    m = calibration_metrics(y, p)
    assert m.to_dict()["ece_bins"] == 15 and m.to_dict()["ece"] == pytest.approx(0.03)


def test_operating_point_meets_its_target_on_validation():
    rng = np.random.default_rng(6)
    y = (rng.random(1500) < 0.4).astype(np.int64)
    p = np.clip(_sigmoid(rng.normal(0, 1.3, y.size) + 2.0 * (2 * y - 1)), 0, 1).astype(np.float32)
    for target in (0.9, 0.95, 0.99):
        c = threshold_for_sensitivity(y, p, target)
        sens = np.mean(p[y == 1] >= c.threshold)
        assert sens >= target and c.sensitivity == pytest.approx(sens)
        # the highest such threshold: the next distinct positive score above misses the target
        above = np.unique(p[(y == 1) & (p >= c.threshold)])
        if above.size > 1:
            assert np.mean(p[y == 1] >= above[1]) < target
        # float32 and float64 comparisons agree: the threshold lies between two scores
        assert np.mean(p[y == 1] >= np.float32(c.threshold)) == pytest.approx(sens)
    s = threshold_for_specificity(y, p, 0.95)
    assert np.mean(p[y == 0] < s.threshold) >= 0.95 and s.specificity >= 0.95
    j = youden_threshold(y, p)
    best = max(np.mean(p[y == 1] >= t) + np.mean(p[y == 0] < t) for t in np.unique(p))
    assert j.sensitivity + j.specificity == pytest.approx(best)


def test_calibrate_and_choose_fills_the_model_info():
    rng = np.random.default_rng(7)
    true_logit = rng.normal(-0.4, 2.0, 800)
    y = _labels_from(true_logit, 9)
    z = 3.0 * true_logit  # over-confident logits
    info = ModelInfo(name="m", kind="cnn", architecture="x")
    new, cal, probs = calibrate_and_choose(info, z, y, method="temperature", target_sensitivity=0.95,
                                           rule="sensitivity")
    point = new.operating_point
    assert cal.params["temperature"] > 1.5  # softened
    assert point.sensitivity >= 0.95 and point.n_valid == 800 and point.target == "sensitivity >= 0.95"
    assert np.mean(probs[y == 1] >= point.threshold) == pytest.approx(point.sensitivity)
    opts = new.extra["threshold_options"]
    assert set(opts) == {"chosen", "youden", "sensitivity_0.95", "sensitivity_0.90", "specificity_0.95"}
    assert opts["chosen"] == opts["sensitivity_0.95"]
    # the default rule is Youden's: the best sensitivity + specificity on validation
    youden, _, _ = calibrate_and_choose(info, z, y, method="temperature")
    j = youden.operating_point.sensitivity + youden.operating_point.specificity
    assert youden.operating_point.target.startswith("Youden") and j >= point.sensitivity + point.specificity
    for other in opts.values():
        assert j >= other["sensitivity"] + other["specificity"] - 1e-12
    assert opts["sensitivity_0.90"]["threshold"] >= point.threshold
    assert new.extra["calibration"]["method"] == "temperature"
    assert ModelInfo.from_dict(new.to_dict()) == new
    assert "sensitivity" in point.describe() and "on validation" in point.describe()


def test_reliability_png_is_written(tmp_path):
    rng = np.random.default_rng(8)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(np.int64)
    out = write_reliability_png(tmp_path / "rel.png", calibration_metrics(y, p), "toy", "400 patches")
    img = Image.open(out)
    assert img.size == (640, 640)
    # the curve is drawn in blue somewhere inside the axes
    arr = np.asarray(img.convert("RGB")).astype(int)
    blue = (arr[..., 2] > 150) & (arr[..., 0] < 80)
    assert blue[60:580, 70:620].sum() > 200


def test_the_cnn_applies_its_stored_temperature_in_predict_proba():
    from histoviewer.core.models.cnn import CnnClassifier

    info = ModelInfo(name="t", kind="cnn", architecture="strided-cnn")
    model = CnnClassifier.new(info, device="cpu")
    x = np.random.default_rng(0).integers(0, 255, (4, 96, 96, 3), dtype=np.uint8)
    z = model.logits(x)
    np.testing.assert_allclose(model.predict_proba(x), _sigmoid(z), rtol=1e-5)
    model.info = ModelInfo(name="t", kind="cnn", architecture="strided-cnn",
                           extra={"calibration": {"method": "temperature", "temperature": 4.0}})
    np.testing.assert_allclose(model.predict_proba(x), _sigmoid(z / 4.0), rtol=1e-5)


def test_a_trained_handcrafted_model_file_carries_calibration_and_operating_point(tmp_path):
    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.models.model_file import load_model, save_model
    from histoviewer.core.training import TrainConfig, train_handcrafted

    from .model_helpers import ArrayPatchSet, toy_patches

    x, y = toy_patches(160, seed=21)
    data = ArrayPatchSet(x, y, InputSpec(), description="toy")
    result = train_handcrafted(data, TrainConfig(target_sensitivity=0.9, operating_rule="sensitivity"))
    info = result.classifier.info
    assert info.operating_point is not None and info.operating_point.sensitivity >= 0.9
    assert info.extra["calibration"]["method"] == "platt" and "valid_ece" in info.metrics
    assert result.n_test >= 24 and info.extra["sources"][0]["split"]["n_test"] == result.n_test
    save_model(tmp_path / "m.safetensors", result.classifier)
    loaded = load_model(tmp_path / "m.safetensors", device="cpu")
    assert loaded.info.operating_point == info.operating_point
    np.testing.assert_allclose(loaded.predict_proba(x[:8]), result.classifier.predict_proba(x[:8]))
    raw_logit = loaded.logits_features(extract_features(x[:8], 0.972))
    cal = info.extra["calibration"]
    np.testing.assert_allclose(loaded.predict_proba(x[:8]), _sigmoid(cal["a"] * raw_logit + cal["b"]),
                               rtol=1e-4, atol=1e-6)
