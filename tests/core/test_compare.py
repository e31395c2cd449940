"""Two models side by side (issue 17): the difference map and the lesions each finds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from histoviewer.core.analysis.lesion_match import (
    FOUND_BY_A,
    FOUND_BY_B,
    FOUND_BY_BOTH,
    match_lesions,
)
from histoviewer.core.analysis.lesions import LesionParams, MapFrame, find_lesions
from histoviewer.core.errors import OverwriteRefused
from histoviewer.core.jobs.compare import compare_models, difference_map
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.staging_terms import SizeClass
from tests.core.inference_helpers import MPP, LesionFractionModel, synthetic_rgb

FRAME = MapFrame(l0_cell=400.0, mpp=0.25)  # 0.1 mm cells


def _lesions(*boxes):
    m = np.zeros((60, 60), np.float32)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = 0.9
    return find_lesions(m, FRAME, LesionParams())


def test_overlapping_lesions_are_one_finding_and_the_others_are_one_models_alone():
    a = _lesions((5, 30, 5, 30), (45, 49, 45, 49))  # a big one, a small one
    b = _lesions((8, 35, 8, 35), (50, 53, 5, 8))  # overlaps A's big one; one elsewhere
    findings = match_lesions(a, b, raster_l0_px=100.0)
    assert [f.found_by for f in findings] == [FOUND_BY_BOTH, FOUND_BY_A, FOUND_BY_B]
    both = findings[0]
    assert (
        len(both.a) == len(both.b) == 1
        and both.size_class_a == both.size_class_b == SizeClass.MACRO
    )
    assert not both.classes_differ
    assert findings[1].a[0].l0_centroid[0] == pytest.approx(47 * 400, rel=0.02)


def test_one_lesion_seen_as_two_by_the_other_model_is_one_finding_and_classes_are_compared():
    a = _lesions((10, 13, 10, 30))  # 2 mm long: micro/macro by the window correction
    b = _lesions((10, 13, 10, 14), (10, 13, 25, 29))  # two small pieces on it
    findings = match_lesions(a, b, raster_l0_px=100.0)
    assert len(findings) == 1 and findings[0].found_by == FOUND_BY_BOTH
    assert len(findings[0].b) == 2
    assert findings[0].classes_differ == (
        findings[0].size_class_a != findings[0].size_class_b
    )
    assert findings[0].size_class_a in (SizeClass.MICRO, SizeClass.MACRO)
    assert findings[0].size_class_b == SizeClass.MICRO and findings[
        0
    ].classes_differ == (findings[0].size_class_a == SizeClass.MACRO)


def test_no_lesions_no_findings_and_a_bad_raster_is_refused():
    assert match_lesions((), (), 10.0) == ()
    with pytest.raises(ValueError):
        match_lesions((), (), 0.0)


def test_the_difference_is_a_minus_b_where_both_have_a_probability():
    a = np.array([[0.9, np.nan, -1.0, 0.2]], np.float32)
    b = np.array([[0.4, 0.5, 0.3, -2.0]], np.float32)
    d = difference_map(a, b)
    assert d[0, 0] == pytest.approx(0.5) and np.isnan(d[0, 1:]).all()


class ScaledModel(LesionFractionModel):
    """The fraction model with its probabilities scaled: a miscalibrated twin."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.info = ModelInfo(
            name=f"fraction-x{scale}",
            kind="fake",
            architecture="green-channel",
            content_hash="e" * 64,
        )

    def predict_proba(self, patches):
        return (super().predict_proba(patches) * self.scale).astype(np.float32)


def write_synthetic_pyramid(path):
    """``synthetic_rgb`` as a tiled pyramid (levels 1, 4, 16) that OpenSlide opens at once."""
    rgb = synthetic_rgb()
    px_per_cm = 1e4 / MPP
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            rgb,
            tile=(256, 256),
            compression="zlib",
            photometric="rgb",
            resolution=(px_per_cm, px_per_cm),
            resolutionunit="CENTIMETER",
            subifds=0,
        )
        for f in (4, 16):
            tif.write(
                np.ascontiguousarray(rgb[::f, ::f]),
                tile=(256, 256),
                compression="zlib",
                photometric="rgb",
                subfiletype=1,
                resolution=(px_per_cm / f, px_per_cm / f),
                resolutionunit="CENTIMETER",
            )
    return path


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_synthetic_pyramid(tmp_path_factory.mktemp("compare") / "slide.tiff")


def test_a_model_compared_with_itself_gives_a_zero_map_and_no_disagreement(
    slide, tmp_path
):
    result = compare_models(
        slide, tmp_path / "cmp", LesionFractionModel(), LesionFractionModel()
    )
    assert result.difference.cells == result.a.classified_patches > 0
    assert result.difference.mean_abs == 0.0 and result.difference.cells_apart == 0
    diff = tifffile.imread(tmp_path / "cmp" / "difference.tiff")
    finite = np.isfinite(diff)
    assert finite.sum() == result.difference.cells and not diff[finite].any()
    assert result.count(FOUND_BY_A) == result.count(FOUND_BY_B) == 0
    assert result.count(FOUND_BY_BOTH) == len(result.a.lesions) >= 1 and result.agree
    written = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert written["agree"] is True and written["counts"] == {
        "both": result.count(FOUND_BY_BOTH),
        "a_only": 0,
        "b_only": 0,
        "classes_differ": 0,
    }
    for name in (
        "difference.png",
        "lesions.png",
        "a/probability.tiff",
        "b/summary.json",
        "a/heatmap.png",
    ):
        assert (tmp_path / "cmp" / name).is_file()
    # paths in the sub-analyses point where the files are, not at the temporary folder
    assert json.loads((tmp_path / "cmp" / "b" / "summary.json").read_text())[
        "out_dir"
    ] == str(tmp_path / "cmp" / "b")


def test_a_model_scaled_below_the_threshold_loses_its_lesions_to_the_other(
    slide, tmp_path
):
    result = compare_models(
        slide, tmp_path / "cmp", LesionFractionModel(), ScaledModel(0.3)
    )
    assert result.b.lesions == () and len(result.a.lesions) >= 1
    assert (
        result.count(FOUND_BY_A) >= 1
        and result.count(FOUND_BY_B) == result.count(FOUND_BY_BOTH) == 0
    )
    assert not result.agree
    # A - B = 0.7 x the fraction: 0.7 where a patch is all lesion, never negative
    assert result.difference.max_a_over_b == pytest.approx(0.7, abs=1e-5)
    assert result.difference.max_b_over_a == 0.0
    finding = json.loads((tmp_path / "cmp" / "comparison.json").read_text())[
        "findings"
    ][0]
    assert finding["found_by"] == "a_only" and finding["a"][0]["size_class"] in (
        "micro",
        "macro",
    )
    # refused without overwrite, before any work; replaced with it
    with pytest.raises(OverwriteRefused):
        compare_models(
            slide, tmp_path / "cmp", LesionFractionModel(), LesionFractionModel()
        )
    again = compare_models(
        slide,
        tmp_path / "cmp",
        LesionFractionModel(),
        LesionFractionModel(),
        overwrite=True,
    )
    assert (
        again.agree
        and json.loads((tmp_path / "cmp" / "comparison.json").read_text())["agree"]
        is True
    )
