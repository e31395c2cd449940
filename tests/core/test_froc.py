"""CAMELYON16 FROC / slide AUC and CAMELYON17 kappa on small examples checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histoviewer.core.analysis.froc import Detection, evaluate_slide, evaluation_mask, froc
from histoviewer.core.analysis.kappa import stage_kappa
from histoviewer.core.analysis.staging import PNStage
from histoviewer.core.analysis.truth import Truth, find_truth_file, read_truth
from histoviewer.core.annotations.asap_xml import write_asap_xml
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_geojson
from histoviewer.core.errors import EvaluationError

MPP = 1.0  # 1 um per level-0 px keeps the arithmetic readable


def square(x, y, side):
    return np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]], float)


def circle(cx, cy, r, n=64):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def test_dilation_grows_the_diameter_by_75_um_and_itc_rule():
    # 400 um square: evaluation region ~ 475 um wide; 150 um disc -> 225 um: ITC (< 275)
    mask = evaluation_mask(Truth((square(1000, 1000, 400), circle(3000, 3000, 75))), MPP, raster_um=2.0)
    assert mask.itc == (False, True)
    # points 30 um outside the square are inside its region, 45 um outside are not
    assert mask.region_at(1000 + 400 + 30, 1200) == 1
    assert mask.region_at(1000 + 400 + 45, 1200) == 0
    assert mask.region_at(3000, 3000) == 2  # labels in raster order: the square comes first
    # 200 um disc + 75 um = 275 um: the border case is not an ITC (below 275 is)
    m2 = evaluation_mask(Truth((circle(0, 0, 100, 256),)), MPP, raster_um=1.0)
    assert m2.major_axis_um[0] == pytest.approx(275, abs=4)


def test_nearby_lesions_merge_and_cut_outs_are_removed():
    # two squares 60 um apart: within 2 x 37.5 um, the dilated regions merge into one lesion
    mask = evaluation_mask(Truth((square(0, 0, 400), square(460, 0, 400))), MPP, raster_um=2.0)
    assert len(mask.itc) == 1
    # a large normal island cut out of a tumour leaves a ring; the hole inside is filled back
    ring = evaluation_mask(Truth((square(0, 0, 1000),), (square(300, 300, 400),)), MPP, raster_um=4.0)
    assert ring.region_at(500, 500) == 1


def hand_example():
    """Three slides, checked by hand.

    slide A: lesions L1 (big), L2 (big), ITC; detections: L1 at 0.9 and 0.6 (one lesion,
      counted once at 0.9), ITC at 0.8 (ignored), FP at 0.7, FP at 0.3.
    slide B: lesion L3 (big); detections: L3 at 0.4, FP at 0.95.
    slide C: negative; detections: FP at 0.5.
    Required lesions: L1 0.9, L2 missed, L3 0.4. FPs: 0.95, 0.7, 0.5, 0.3 over 3 slides.
    """
    a = Truth((square(0, 0, 500), square(2000, 0, 500), circle(5000, 5000, 40)))
    b = Truth((square(0, 0, 800),))
    c = Truth(())
    ev_a = evaluate_slide("A", a, [Detection(250, 250, 0.9), Detection(100, 100, 0.6), Detection(5000, 5000, 0.8),
                                   Detection(9000, 9000, 0.7), Detection(-500, 0, 0.3)], MPP)
    ev_b = evaluate_slide("B", b, [Detection(400, 400, 0.4), Detection(3000, 3000, 0.95)], MPP)
    ev_c = evaluate_slide("C", c, [Detection(10, 10, 0.5)], MPP)
    return ev_a, ev_b, ev_c


def test_slide_matching_by_hand():
    ev_a, ev_b, ev_c = hand_example()
    assert ev_a.lesion_scores == (0.9, None) and ev_a.fp_scores == (0.7, 0.3)
    assert ev_a.itc_lesions == 1 and ev_a.itc_detected == 1
    assert ev_b.lesion_scores == (0.4,) and ev_b.fp_scores == (0.95,)
    assert ev_c.lesion_scores == () and ev_c.fp_scores == (0.5,) and not ev_c.has_tumour


def test_froc_by_hand():
    result = froc(hand_example())
    # thresholds (descending) with FPs >= t per slide and sensitivity (of 3 lesions):
    #   0.95: 1 FP -> 1/3 FP/slide, 0/3     0.9: 1/3, 1/3      0.7: 2/3, 1/3
    #   0.5: 3/3 = 1, 1/3                   0.4: 1, 2/3        0.3: 4/3, 2/3
    assert result.thresholds == (0.95, 0.9, 0.7, 0.5, 0.4, 0.3)
    assert result.fps_per_slide == pytest.approx((1 / 3, 1 / 3, 2 / 3, 1, 1, 4 / 3))
    assert result.sensitivity == pytest.approx((0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3))
    # best sensitivity with at most f FPs/slide: 1/4 -> none (0); 1/2 -> 1/3; 1 -> 2/3; 2,4,8 -> 2/3
    assert result.sensitivity_at == pytest.approx({0.25: 0, 0.5: 1 / 3, 1.0: 2 / 3, 2.0: 2 / 3, 4.0: 2 / 3,
                                                   8.0: 2 / 3})
    assert result.score == pytest.approx((0 + 1 / 3 + 4 * 2 / 3) / 6)
    assert (result.lesions, result.itc_lesions, result.itc_detected, result.slides) == (3, 1, 1, 3)
    # slide scores: A 0.9, B 0.95 (tumour), C 0.5 (normal): both tumour slides above: AUC 1
    assert result.slide_auc == 1.0


def test_froc_perfect_and_undefined():
    t = Truth((square(0, 0, 500),))
    perfect = froc([evaluate_slide("A", t, [Detection(250, 250, 0.8)], MPP)])
    assert perfect.score == 1.0 and perfect.slide_auc is None  # one class only: AUC undefined
    with pytest.raises(EvaluationError, match="without lesions"):
        froc([evaluate_slide("N", Truth(()), [Detection(0, 0, 0.5)], MPP)])
    with pytest.raises(EvaluationError, match="microns per pixel"):
        evaluate_slide("A", t, [], None)


def test_slide_auc_by_hand():
    t = Truth((square(0, 0, 500),))
    slides = [evaluate_slide("T1", t, [Detection(250, 250, 0.8)], MPP),
              evaluate_slide("T2", t, [], MPP, slide_score=0.3),
              evaluate_slide("N1", Truth(()), [Detection(0, 0, 0.5)], MPP),
              evaluate_slide("N2", Truth(()), [], MPP)]
    # pairs (tumour, normal): (0.8,0.5) yes, (0.8,0) yes, (0.3,0.5) no, (0.3,0) yes -> 3/4
    assert froc(slides).slide_auc == pytest.approx(0.75)


def test_truth_readers_agree(tmp_path, shared_data):
    polys = [square(100, 100, 300), circle(2000, 2000, 150)]
    anns = [PolygonAnnotation(f"t{i}", tuple(map(tuple, p))) for i, p in enumerate(polys)]
    anns.append(PolygonAnnotation("hole", tuple(map(tuple, square(150, 150, 50))), classification="Exclusion",
                                  group="_2"))
    write_asap_xml(tmp_path / "s.xml", anns)
    write_geojson(tmp_path / "s.geojson", anns)
    for path in (tmp_path / "s.xml", tmp_path / "s.geojson"):
        truth = read_truth(path)
        assert len(truth.tumour) == 2 and len(truth.excluded) == 1
        np.testing.assert_allclose(truth.tumour[0], polys[0])
    assert find_truth_file(tmp_path, "s") == tmp_path / "s.xml"
    assert find_truth_file(tmp_path, "missing") is None
    real = read_truth(shared_data / "annotations" / "camelyon16-train" / "Tumor_001.json")
    assert len(real.tumour) == 2


def test_unsafe_xml_is_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<ASAP_Annotations>&b;</ASAP_Annotations>\n')
    with pytest.raises(EvaluationError, match="bomb.xml"):
        read_truth(bomb)
    bad = tmp_path / "bad.json"
    bad.write_text('{"positive": [{"name": "x"}]}')
    with pytest.raises(EvaluationError, match=r"bad.json: positive\[0\] has no 'vertices'"):
        read_truth(bad)


# -- kappa -----------------------------------------------------------------------------------
def stages(*values: str) -> dict[str, PNStage]:
    return {f"patient_{i:03d}": PNStage.parse(v) for i, v in enumerate(values)}


def test_quadratic_kappa_by_hand():
    ref = stages("pN0", "pN1", "pN2", "pN1mi")
    sub = stages("pN0", "pN2", "pN2", "pN1mi")
    # ranks ref (0, 3, 4, 2), sub (0, 4, 4, 2); weights (i - j)^2 / 16.
    # observed disagreement sum w*O / n = (1/16) / 4 = 1/64.
    # expected: mean over all 16 (ref, sub) pairs of w:
    #   ref 0: (0,16,16,4)/16; ref 3: (9,1,1,1)/16; ref 4: (16,0,0,4)/16; ref 2: (4,4,4,0)/16
    #   sum = (36 + 12 + 20 + 12) / 16 = 5, mean = 5 / 16
    # kappa = 1 - (1/64) / (5/16) = 1 - 1/20 = 0.95
    result = stage_kappa(ref, sub)
    assert result.kappa == pytest.approx(0.95)
    assert result.exact_agreement == 0.75
    assert result.disagreements == (("patient_001", "pN1", "pN2"),)
    assert result.confusion[3][4] == 1 and sum(map(sum, result.confusion)) == 4


def test_kappa_edge_cases():
    assert stage_kappa(stages("pN0", "pN1"), stages("pN0", "pN1")).kappa == 1.0
    assert stage_kappa(stages("pN1", "pN1"), stages("pN1", "pN1")).kappa is None  # 0/0
    assert stage_kappa(stages("pN1", "pN1"), stages("pN0", "pN0")).kappa == 0.0
    with pytest.raises(EvaluationError, match="missing from the submission: patient_001"):
        stage_kappa(stages("pN0", "pN1"), stages("pN0"))
    with pytest.raises(EvaluationError, match="unknown"):
        stage_kappa(stages("pN0"), {"patient_000": PNStage.UNKNOWN})


def test_kappa_symmetric_and_in_range():
    rng = np.random.default_rng(1)
    order = ["pN0", "pN0(i+)", "pN1mi", "pN1", "pN2"]
    a = stages(*rng.choice(order, 30))
    b = stages(*rng.choice(order, 30))
    k_ab, k_ba = stage_kappa(a, b).kappa, stage_kappa(b, a).kappa
    assert k_ab == pytest.approx(k_ba) and -1 <= k_ab <= 1 and not math.isnan(k_ab)


def test_detections_folder_ignores_the_tables_analyze_writes(tmp_path):
    """``analyze --report`` leaves lesions/slides/cases/stages CSVs beside the slide folders:
    they are not CAMELYON16 detection files."""
    from histoviewer.core.analysis.detections import ANALYZE_TABLES, read_detections

    (tmp_path / "tumor_1.csv").write_text("probability,x,y\n0.9,500,500\n")
    for name in ANALYZE_TABLES:
        (tmp_path / name).write_text("patient,slide,label\npatient_001,node.tif,micro\n")
    (only,) = read_detections(tmp_path)
    assert only.slide == "tumor_1" and len(only.detections) == 1
