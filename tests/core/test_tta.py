"""Test-time augmentation (``core.explain.tta``): the 8 dihedral views, and uncertainty that is
zero where orientation cannot matter and high where the model depends on it."""

from __future__ import annotations

import numpy as np
import pytest

from histoviewer.core.errors import ModelError
from histoviewer.core.explain.tta import (
    N_VIEWS,
    VIEW_NAMES,
    TTAResult,
    dihedral_views,
    model_threshold,
    tta_predict,
)
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.classifier import (
    ModelInfo,
    OperatingPoint,
    PatchClassifier,
)

P = 32


class TopHeavyModel(PatchClassifier):
    """P(tumour) = share of the patch's brightness in its top half: depends on orientation by
    construction. Counts calls and patches, to check the batching."""

    def __init__(self, operating_point: OperatingPoint | None = None) -> None:
        self.info = ModelInfo(
            name="top-heavy",
            kind="fake",
            architecture="top-half",
            input=InputSpec(patch_px=P, mpp=1.0),
            operating_point=operating_point,
        )
        self.calls: list[int] = []

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        arr = self.prepare_patches(patches).astype(np.float64).sum(axis=3)
        self.calls.append(len(arr))
        top = arr[:, : P // 2].sum(axis=(1, 2))
        return (top / np.maximum(arr.sum(axis=(1, 2)), 1e-9)).astype(np.float32)


def _random_patches(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, P, P, 3), dtype=np.uint8)


def _symmetric(patches: np.ndarray) -> np.ndarray:
    """The elementwise maximum over the 8 views: unchanged by every rotation and mirror."""
    return dihedral_views(patches).max(axis=0)


def test_views_are_the_eight_distinct_rotations_and_mirrors():
    patch = _random_patches(1)
    views = dihedral_views(patch)
    assert views.shape == (N_VIEWS, 1, P, P, 3) and len(VIEW_NAMES) == N_VIEWS == 8
    assert np.array_equal(views[0], patch)
    assert np.array_equal(
        views[1, 0], np.rot90(patch[0])
    )  # counter-clockwise, axes (0, 1)
    assert np.array_equal(views[4, 0], patch[0][:, ::-1])
    flat = {views[v].tobytes() for v in range(N_VIEWS)}
    assert len(flat) == 8  # a random patch has no symmetry: 8 different views
    # the group is closed: every view of a view is one of the 8 views
    for v in range(N_VIEWS):
        assert {w.tobytes() for w in dihedral_views(views[v])} == flat


def test_rotation_invariant_patch_has_zero_uncertainty_even_for_an_orientation_model():
    model = TopHeavyModel()
    sym = _symmetric(_random_patches(5, seed=1))
    result = tta_predict(model, sym)
    assert result.view_probability.shape == (8, 5)
    np.testing.assert_array_equal(result.uncertainty, 0.0)
    np.testing.assert_array_equal(result.disagreement, 0.0)
    np.testing.assert_allclose(
        result.mean_probability, result.plain_probability, atol=1e-6
    )


def test_orientation_dependent_model_gives_high_uncertainty():
    model = TopHeavyModel(
        OperatingPoint(
            threshold=0.6, target="t", sensitivity=0.9, specificity=0.9, n_valid=10
        )
    )
    patch = np.zeros((1, P, P, 3), np.uint8)
    patch[:, : P // 2] = 200  # bright on top, dark below
    result = tta_predict(model, patch)
    probs = result.view_probability[:, 0]
    # as is: all bright on top (1.0); turned 180: none (0.0); turned 90/270: half (0.5)
    np.testing.assert_allclose(probs[[0, 2]], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(probs[[1, 3]], 0.5, atol=1e-6)
    assert result.mean_probability[0] == pytest.approx(0.5, abs=1e-6)
    assert result.uncertainty[0] == pytest.approx(np.std(probs), abs=1e-6)
    assert result.uncertainty[0] > 0.3  # of at most 0.5
    # the mean (0.5) is below the model's threshold 0.6; the two views at 1.0 are above it
    assert result.threshold == 0.6 == model_threshold(model)
    assert result.disagreement[0] == pytest.approx(2 / 8)


def test_view_zero_is_the_plain_answer_and_chunks_do_not_change_results():
    model = TopHeavyModel()
    patches = _random_patches(7, seed=2)
    whole = tta_predict(model, patches, chunk_patches=100)
    assert model.calls == [56]  # one call of 8 x 7 views
    np.testing.assert_allclose(
        whole.plain_probability, model.predict_proba(patches), atol=1e-6
    )
    model.calls.clear()
    chunked = tta_predict(model, patches, chunk_patches=3)
    assert model.calls == [24, 24, 8]
    np.testing.assert_array_equal(whole.view_probability, chunked.view_probability)
    assert whole.threshold == 0.5  # no operating point: the default


def test_from_view_probability_and_errors():
    views = np.tile(
        np.array([[0.2], [0.9]], np.float32), (4, 1)
    )  # 4 views at 0.2, 4 at 0.9
    result = TTAResult.from_view_probability(views, threshold=0.5)
    assert result.mean_probability[0] == pytest.approx(0.55)
    assert result.uncertainty[0] == pytest.approx(0.35)
    assert result.disagreement[0] == pytest.approx(0.5)
    with pytest.raises(ModelError):
        TTAResult.from_view_probability(np.zeros((4, 3)), 0.5)
    with pytest.raises(ModelError):
        tta_predict(TopHeavyModel(), np.zeros((2, P + 1, P + 1, 3), np.uint8))
    empty = tta_predict(TopHeavyModel(), np.zeros((0, P, P, 3), np.uint8))
    assert empty.view_probability.shape == (8, 0) and empty.n_patches == 0


def test_real_cnn_runs_through_tta(tmp_path):
    # the shipped default architecture (random weights): 8 finite probabilities per patch,
    # view 0 equal to the plain predict path
    from histoviewer.core.models.model_file import load_model
    from tests.core.inference_helpers import write_fresh_cnn

    model = load_model(write_fresh_cnn(tmp_path), device="cpu")
    patches = np.random.default_rng(3).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    result = tta_predict(model, patches)
    assert np.all(np.isfinite(result.view_probability))
    np.testing.assert_allclose(
        result.plain_probability, model.predict_proba(patches), atol=1e-4
    )
    assert np.all(result.uncertainty > 0)  # random weights are not rotation invariant
