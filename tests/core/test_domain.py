"""The domain profile and the slide verdict: fit, distance, file round trip, old files,
and what an out-of-domain slide does to the node label and pN in every output."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from histoviewer.core.analysis.case import stage_summaries
from histoviewer.core.analysis.staging import PNStage
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.disk_cache import HeatmapCache
from histoviewer.core.inference.grid import (
    CellState,
    PredictionGrid,
    domain_sample_lattice,
)
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.domain import (
    DESCRIPTOR_NAMES,
    OUT_OF_DOMAIN_REASON,
    DomainLimits,
    DomainProfile,
    DomainVerdict,
    fit_domain_profile,
    judge_slide,
    split_domain_tensors,
)
from histoviewer.core.models.features import FEATURE_NAMES
from histoviewer.core.models.handcrafted import fit_handcrafted
from histoviewer.core.models.model_file import load_model, read_model_info, save_model
from histoviewer.core.report.model import build_report, load_slide_report
from histoviewer.core.report.tables import slides_csv
from histoviewer.core.staging_terms import NodeLabel
from tests.core.summary_helpers import summary


def _gaussian(n: int, seed: int, d: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T + d * np.eye(d)
    mean = rng.normal(size=d) * 10
    return rng.multivariate_normal(mean, cov, size=n), mean, cov


def test_mahalanobis_distance_matches_the_known_gaussian():
    x, mean, cov = _gaussian(20000, 0)
    held, _, _ = _gaussian(20000, 1)  # same Gaussian (same seed draws the same mean and cov)
    held = np.random.default_rng(2).multivariate_normal(mean, cov, size=20000)
    profile = fit_domain_profile(x, held, feature="test")
    probe = np.random.default_rng(3).multivariate_normal(mean, 4 * cov, size=200)
    diff = probe - mean
    true = np.sqrt(np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff))
    got = profile.distance(probe)
    assert got.dtype == np.float32 and got.shape == (200,)
    np.testing.assert_allclose(got, true, rtol=0.03)
    # the 99th percentile of a 4-D Gaussian's Mahalanobis distance is sqrt(chi2_4(0.99)) = 3.64
    assert profile.patch_threshold == pytest.approx(3.644, rel=0.03)
    assert profile.heldout_share_beyond == pytest.approx(0.01, abs=0.002)
    # a patch's distance does not depend on its batch
    assert profile.distance(probe[:1])[0] == got[0]


def test_verdict_rule_and_not_assessed_cases():
    limits = DomainLimits(patch_threshold=10.0, slide_share_threshold=0.25)
    assert judge_slide(np.full(100, 5.0), None).status == "not assessed"
    few = judge_slide(np.full(10, 50.0), limits)
    assert not few.assessed and not few.out_of_domain and "too few" in few.reason
    assert judge_slide(np.full(10, 50.0), limits, complete=True).out_of_domain  # a small slide, all of it
    d = np.r_[np.full(76, 5.0), np.full(24, 11.0), np.full(50, np.nan)]  # NaN: not judged
    v = judge_slide(d, limits)
    assert v.assessed and v.patches == 100 and v.score == pytest.approx(0.24) and not v.out_of_domain
    v = judge_slide(np.r_[np.full(75, 5.0), np.full(25, 11.0)], limits)  # share 0.25 reaches the limit
    assert v.out_of_domain and v.status == "out of domain" and OUT_OF_DOMAIN_REASON in v.describe()
    assert DomainVerdict.from_dict(v.to_dict()) == v
    old = DomainVerdict.from_dict(None)  # a summary from before domain checks
    assert not old.assessed and not old.out_of_domain and old.status == "not assessed"


def _handcrafted_with_profile(seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(200, len(FEATURE_NAMES)))
    y = (feats[:, 0] > 0).astype(int)
    model = fit_handcrafted(feats, y, spec=InputSpec())
    desc = rng.normal(size=(300, len(DESCRIPTOR_NAMES))) * 3 + 1
    model.domain = fit_domain_profile(desc[:200], desc[200:], data="synthetic")
    return model, desc


def test_model_file_round_trip_keeps_the_profile(tmp_path):
    model, desc = _handcrafted_with_profile()
    info = save_model(tmp_path / "m.safetensors", model)
    assert info.extra["domain"]["patch_threshold"] == pytest.approx(model.domain.patch_threshold)
    assert DomainLimits.of_info(read_model_info(tmp_path / "m.safetensors")).patch_threshold == pytest.approx(
        model.domain.patch_threshold)
    loaded = load_model(tmp_path / "m.safetensors")
    assert set(loaded.tensors()) == {"feature_mean", "feature_scale", "knots", "coef", "intercept"}  # split off
    np.testing.assert_array_equal(loaded.domain.distance(desc), model.domain.distance(desc))
    assert loaded.domain.to_json() == model.domain.to_json()
    patches = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3), dtype=np.uint8)
    scores = loaded.classify(patches)
    assert scores.domain_distance.shape == (3,) and np.all(np.isfinite(scores.domain_distance))
    np.testing.assert_array_equal(scores.probability, loaded.predict_proba(patches))


def test_cnn_file_round_trip_and_sampled_distances(tmp_path):
    pytest.importorskip("torch")
    from histoviewer.core.models.classifier import ModelInfo
    from histoviewer.core.models.cnn import CnnClassifier

    cnn = CnnClassifier.new(ModelInfo(name="t", kind="cnn", architecture="strided-cnn"), device="cpu")
    _, desc = _handcrafted_with_profile()
    cnn.domain = fit_domain_profile(desc[:200], desc[200:])
    save_model(tmp_path / "c.safetensors", cnn)
    loaded = load_model(tmp_path / "c.safetensors", device="cpu")
    assert loaded.domain is not None and "domain.mean" not in loaded.tensors()
    patches = np.random.default_rng(1).integers(0, 255, (4, 96, 96, 3), dtype=np.uint8)
    scores = loaded.classify(patches, domain_mask=np.array([True, False, True, False]))
    np.testing.assert_allclose(scores.probability, loaded.predict_proba(patches), rtol=1e-6)
    assert np.isfinite(scores.domain_distance[[0, 2]]).all() and np.isnan(scores.domain_distance[[1, 3]]).all()


def test_old_model_file_without_profile_is_not_assessed(tmp_path):
    model, _ = _handcrafted_with_profile()
    model.domain = None
    save_model(tmp_path / "old.safetensors", model)
    loaded = load_model(tmp_path / "old.safetensors")
    assert loaded.domain is None and DomainLimits.of_info(loaded.info) is None
    patches = np.random.default_rng(0).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    assert loaded.classify(patches).domain_distance is None
    verdict = judge_slide(np.full(100, np.nan), loaded.domain, complete=True)
    assert not verdict.assessed and not verdict.out_of_domain


def test_profile_for_other_descriptor_features_is_dropped_not_misapplied(caplog):
    model, _ = _handcrafted_with_profile()
    tensors = model.domain.tensors()
    meta = {**model.domain.to_json(), "feature_version": -1}
    with caplog.at_level(logging.WARNING):
        own, profile = split_domain_tensors({**tensors, "w": np.zeros(1)}, {"domain": meta})
    assert profile is None and set(own) == {"w"} and "other descriptor" in caplog.text


def test_out_of_domain_summary_makes_label_and_pn_unknown_everywhere(tmp_path):
    ood = DomainVerdict(assessed=True, out_of_domain=True, score=0.46, patch_threshold=16.7,
                        share_threshold=0.25, patches=81, median_distance=16.0)
    slide = str(tmp_path / "node.tif")
    s = replace(summary(slide, "unknown", (0.5,)), domain=ood)
    assert s.unknown_reason == OUT_OF_DOMAIN_REASON
    back = SlideSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.to_dict()["domain"]["out_of_domain"] is True
    other = summary(str(tmp_path / "other.tif"), "negative")
    stages, errors = stage_summaries([s, other])
    assert not errors and stages[0].stage is PNStage.UNKNOWN and OUT_OF_DOMAIN_REASON in stages[0].reason
    node = [n for n in stages[0].nodes if n.node == "node.tif"][0]
    assert node.label is NodeLabel.UNKNOWN and node.to_dict()["reason"] == OUT_OF_DOMAIN_REASON
    # the report, read back from the analysis folder, and its tables
    out = tmp_path / "node"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(s.to_dict()))
    rep = load_slide_report(out)
    assert rep.node_label is NodeLabel.UNKNOWN and rep.unknown_reason == OUT_OF_DOMAIN_REASON
    report = build_report([rep])
    assert report.cases[0].stage is PNStage.UNKNOWN
    csv = slides_csv(report)
    assert "out of domain" in csv and OUT_OF_DOMAIN_REASON in csv
    # a report built from a micro label that is out of domain still says unknown
    assert replace(rep, node_label=NodeLabel.MICRO).node_label is NodeLabel.UNKNOWN


def test_grid_keeps_domain_distances_sample_lattice_and_cache(tmp_path):
    geometry = GridGeometry.for_slide((4800, 4800), 1.0, 1.0, 96)  # 50 x 50 cells
    tissue = np.ones(geometry.shape, bool)
    tissue[:, :10] = False
    grid = PredictionGrid(geometry, tissue)
    lattice = grid.domain_sample
    assert not lattice[~tissue].any() and 150 <= lattice.sum() <= 700
    assert domain_sample_lattice(np.ones((5, 5), bool)).all()  # a small slide: every patch
    cells = np.flatnonzero(tissue)[:10]
    grid.set_values(cells, np.full(10, 0.2, np.float32), np.arange(10, dtype=np.float32))
    grid.set_values(np.flatnonzero(tissue)[10:12], np.full(2, 0.3, np.float32))  # no distance given
    d = grid.domain_distances()
    assert len(d) == 12 and np.count_nonzero(np.isfinite(d)) == 10
    enc = grid.encoded_domain_map()
    assert enc.reshape(-1)[cells[3]] == 3.0 and enc[0, 0] == -1.0 and np.isnan(enc.reshape(-1)[cells[-1] + 1])
    cache = HeatmapCache("slide", "model", geometry, folder=tmp_path)
    cache.save(grid)
    again = PredictionGrid(geometry, tissue)
    assert cache.load(again)
    np.testing.assert_array_equal(again.domain_snapshot(), grid.domain_snapshot())
    assert again.state.reshape(-1)[cells[0]] == CellState.COMPUTED


def write_slide(rgb: np.ndarray, path, mpp: float, tile: int = 512):
    """A small pyramidal JPEG TIFF of ``rgb`` at ``mpp`` (as benchmarks/bench_domain.py builds them)."""
    import math

    from PIL import Image

    from histoviewer.core.slide.pyramid_writer import (
        EncodedRow,
        encode_jpeg,
        write_pyramidal_tiff,
    )

    h, w = rgb.shape[:2]
    big = np.full((math.ceil(h / tile) * tile, math.ceil(w / tile) * tile, 3), 255, np.uint8)
    big[:h, :w] = rgb
    rows = (EncodedRow(tuple(encode_jpeg(np.ascontiguousarray(big[r:r + tile, c:c + tile]), 90)
                             for c in range(0, big.shape[1], tile)),
                       np.asarray(Image.fromarray(big[r:r + tile]).reduce(2)))
            for r in range(0, big.shape[0], tile))
    write_pyramidal_tiff(path, rows, width=w, height=h, tile_size=tile, jpeg_quality=90, mpp=mpp,
                         pad_rgb=(255, 255, 255))
    return path


# -- real tissue (slow: ~1,000 real patches' features, then two whole-slide analyses) -----------
@pytest.fixture(scope="session")
def real_tissue_model(shared_data):
    """A handcrafted model trained on 800 real kaggle-sample patches, its domain profile fitted
    on those and judged on 600 others (the split training uses)."""
    from histoviewer.core.models.domain import descriptor_of_features
    from histoviewer.core.models.features import extract_features
    from histoviewer.core.patches.open import open_patch_set

    kaggle = shared_data / "patches" / "kaggle-sample"
    if not kaggle.is_dir():
        pytest.skip("kaggle-sample not found")
    spec = InputSpec()
    ps = open_patch_set(kaggle, spec, layout="kaggle", split="train")
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(ps), 1400, replace=False))
    fit_idx, held_idx = idx[::7].tolist() + idx[1::7].tolist() + idx[2::7].tolist() + idx[3::7].tolist(), idx[4::7]
    x_fit, x_held = ps.read(sorted(fit_idx)), ps.read(held_idx.tolist())
    f_fit, f_held = extract_features(x_fit, spec.mpp), extract_features(x_held, spec.mpp)
    model = fit_handcrafted(f_fit, np.asarray(ps.labels)[sorted(fit_idx)], spec=spec)
    model.domain = fit_domain_profile(descriptor_of_features(f_fit), descriptor_of_features(f_held), data="kaggle")
    return model


@pytest.mark.slow
def test_cmu1_skin_is_flagged_and_a_camelyon17_node_tile_is_not(real_tissue_model, cmu_small, shared_data, tmp_path):
    from PIL import Image

    from histoviewer.core.inference.analyze import analyze_slide

    flagged = analyze_slide(cmu_small, tmp_path / "cmu", real_tissue_model)
    assert flagged.domain.out_of_domain, flagged.domain
    assert flagged.node_label is NodeLabel.UNKNOWN and flagged.unknown_reason == OUT_OF_DOMAIN_REASON
    on_disk = json.loads((tmp_path / "cmu" / "summary.json").read_text())
    assert on_disk["domain"]["out_of_domain"] is True and on_disk["node_label"] == "unknown"
    assert (tmp_path / "cmu" / "domain.tiff").is_file()
    tile = sorted((shared_data / "tiles").glob("centre_0_*.jpeg"))
    if not tile:
        pytest.skip("CAMELYON17 tiles not found")
    slide = write_slide(np.asarray(Image.open(tile[0]).convert("RGB")), tmp_path / "c0.tiff", 0.5)
    normal = analyze_slide(slide, tmp_path / "c0", real_tissue_model)
    assert normal.domain.assessed and not normal.domain.out_of_domain, normal.domain


def test_training_fits_the_profile_on_training_patches_with_thresholds_from_validation(tmp_path):
    from histoviewer.core.training import TrainConfig, train_cnn
    from tests.core.model_helpers import ArrayPatchSet, toy_patches

    SPEC = InputSpec()

    x, y = toy_patches(64, seed=0)
    xv, yv = toy_patches(32, seed=1)
    cfg = TrainConfig(epochs=1, batch_size=32, seed=0, device="cpu", name="toy")
    result = train_cnn(ArrayPatchSet(x, y, SPEC), cfg, valid_set=ArrayPatchSet(xv, yv, SPEC), spec=SPEC)
    profile = result.classifier.domain
    assert profile is not None and profile.n_fit == 64 and profile.n_heldout == 32
    save_model(tmp_path / "toy.safetensors", result.classifier)
    assert load_model(tmp_path / "toy.safetensors", device="cpu").domain.to_json() == profile.to_json()


def test_domain_map_file_round_trip(tmp_path):
    from histoviewer.core.analysis.map_io import read_domain_map
    from histoviewer.core.inference.outputs import write_domain_map

    geometry = GridGeometry.for_slide((960, 480), 1.0, 1.0, 96)  # 5 x 10 cells
    grid = PredictionGrid(geometry)
    grid.set_values(np.arange(20), np.full(20, 0.5, np.float32), np.linspace(0, 19, 20, dtype=np.float32))
    path = write_domain_map(tmp_path, grid.encoded_domain_map(), geometry, patch_threshold=7.5, slide="s.tif")
    back = read_domain_map(tmp_path)
    assert path.name == "domain.tiff" and back.patch_threshold == 7.5 and back.geometry == geometry
    np.testing.assert_array_equal(back.values.reshape(-1)[:20], np.linspace(0, 19, 20))
    assert np.isnan(back.values.reshape(-1)[20:]).all()  # not computed


def test_add_domain_fits_on_the_models_own_training_part_and_never_reads_its_test_part():
    from histoviewer.core.domain_training import add_domain_profile
    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.patches.split import three_way_split
    from histoviewer.core.training import TrainConfig, train_handcrafted

    from .model_helpers import ArrayPatchSet, toy_patches

    class Recording(ArrayPatchSet):
        def _read(self, indices):
            self.seen.update(int(i) for i in np.asarray(indices).ravel())
            return super()._read(indices)

    x, y = toy_patches(200, seed=5)
    data = Recording(x, y, InputSpec(), description="toy")
    data.seen = set()
    model = train_handcrafted(data, TrainConfig(seed=0)).classifier
    model.domain = None  # as a model file from before profiles
    data.seen = set()
    rule = model.info.extra["sources"][0]["split"]
    cut = three_way_split(data, rule["valid_fraction"], rule["test_fraction"], rule["seed"])
    profile = add_domain_profile(model, [data])
    assert model.domain is profile and profile.n_heldout == len(cut.part("valid"))
    assert data.seen and data.seen.isdisjoint(int(i) for i in cut.part("test"))
    assert data.seen <= set(int(i) for i in cut.part("train")) | set(int(i) for i in cut.part("valid"))
