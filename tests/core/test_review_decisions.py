"""Review decisions on AI hotspots: identity, undo, storage with the annotations, labels."""

from __future__ import annotations

import json

import pytest

from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind, open_document
from histoviewer.core.annotations.geojson_io import geojson_bytes, parse_geojson
from histoviewer.core.annotations.review import (
    ReviewDecision,
    Verdict,
    find_decision,
    hotspot_id,
    review_labels,
)
from histoviewer.core.annotations.store import Autosaver, save_document
from histoviewer.core.staging_terms import SizeClass

MODEL = "a" * 64


def ring(x: float, y: float, size: float = 400.0) -> tuple[tuple[float, float], ...]:
    return ((x, y), (x + size, y), (x + size, y + size), (x, y + size))


def decision(x: float, verdict: Verdict, *, y: float = 1000.0, p: float = 0.9) -> ReviewDecision:
    outline = ring(x, y)
    return ReviewDecision(hotspot_id(outline, MODEL), outline, verdict, "dr. a", "2026-12-04T15:00:00+00:00",
                          MODEL, p, SizeClass.MICRO, ai_diameter_mm=0.14)


def test_hotspot_id_is_stable_for_the_same_lesion_and_model_only():
    outline = ring(1000, 2000)
    assert hotspot_id(outline, MODEL) == hotspot_id(outline, MODEL)
    # the same lesion found again with float noise in its outline: same id
    noisy = tuple((x + 0.3, y - 0.2) for x, y in outline)
    assert hotspot_id(noisy, MODEL) == hotspot_id(outline, MODEL)
    # another place, another size, another model: other hotspots
    assert hotspot_id(ring(1200, 2000), MODEL) != hotspot_id(outline, MODEL)
    assert hotspot_id(ring(1000, 2000, 800), MODEL) != hotspot_id(outline, MODEL)
    assert hotspot_id(outline, "b" * 64) != hotspot_id(outline, MODEL)
    with pytest.raises(ValueError):
        hotspot_id(outline, "")


def test_find_decision_matches_a_lesion_that_moved_across_a_rounding_step():
    d = decision(1000, Verdict.TUMOUR)
    moved = tuple((x + 9.0, y) for x, y in d.l0_outline)  # 9 px: may cross the 16-px grid
    assert find_decision([d], d.l0_outline, MODEL) == d
    assert find_decision([d], moved, MODEL) == d
    assert find_decision([d], moved, "b" * 64) is None  # another model's lesion is another hotspot
    assert find_decision([d], ring(3000, 1000), MODEL) is None


def test_decisions_are_undoable_steps_and_notify():
    doc = AnnotationDocument(mpp=0.25)
    changes = []
    doc.subscribe(changes.append)
    accepted = decision(0, Verdict.TUMOUR)
    doc.set_decision(accepted)
    assert doc.decisions() == [accepted] and doc.undo_text == "Review: tumour"
    assert changes[-1].decisions_changed == (accepted.hotspot_id,)
    changed = ReviewDecision(**{**accepted.__dict__, "verdict": Verdict.NOT_TUMOUR})
    doc.set_decision(changed)
    assert doc.decision(accepted.hotspot_id).verdict is Verdict.NOT_TUMOUR and len(doc.decisions()) == 1
    assert doc.undo() and doc.decision(accepted.hotspot_id) == accepted
    assert doc.undo() and doc.decisions() == [] and changes[-1].source == "undo"
    assert doc.redo() and doc.redo() and doc.decision(accepted.hotspot_id).verdict is Verdict.NOT_TUMOUR
    doc.clear_decision(accepted.hotspot_id)
    assert doc.decisions() == []
    assert doc.undo() and doc.decisions() == [changed]
    with pytest.raises(KeyError):
        doc.clear_decision("hs-none")
    # in a group: one step with the annotation edits
    with doc.group("Review and annotate"):
        doc.set_decision(decision(2000, Verdict.UNSURE))
        doc.add(Annotation(ShapeKind.POLYGON, ring(5000, 5000), class_name="Tumor"))
    assert doc.undo_text == "Review and annotate"
    doc.undo()
    assert len(doc) == 0 and doc.decisions() == [changed]


def test_review_labels_give_accepted_1_rejected_0_and_leave_unsure_out():
    doc = AnnotationDocument(mpp=0.25)
    a, r, u = decision(0, Verdict.TUMOUR), decision(1000, Verdict.NOT_TUMOUR), decision(2000, Verdict.UNSURE)
    for d in (a, r, u):
        doc.set_decision(d)
    labels = review_labels(doc)
    assert [(poly, label) for poly, label in labels] == [(a.l0_outline, 1), (r.l0_outline, 0)]
    assert labels[0].l0_polygon == a.l0_outline and labels[1].label == 0


def test_geojson_round_trip_keeps_decisions_apart_from_annotations_and_qupath_readable():
    doc = AnnotationDocument(mpp=0.25)
    doc.add(Annotation(ShapeKind.POLYGON, ring(9000, 9000), class_name="Tumor", name="mine"))
    d = decision(0, Verdict.NOT_TUMOUR, p=0.73)
    doc.set_decision(d)
    data = geojson_bytes(doc.to_set())
    features = json.loads(data)["features"]
    review = [f for f in features if f["properties"]["name"].startswith("Review")]
    assert len(features) == 2 and len(review) == 1
    props = review[0]["properties"]
    assert props["objectType"] == "annotation" and props["classification"]["name"] == "Not tumor"
    assert props["measurements"]["AI probability"] == pytest.approx(0.73)
    assert props["metadata"]["Review decision"] == "not tumour" and props["metadata"]["AI size class"] == "micro"
    back = parse_geojson(data, "x.geojson").annotation_set
    assert [a.name for a in back.annotations] == ["mine"]
    assert back.decisions == (d,)


def test_decisions_are_autosaved_and_restored_after_a_crash(tmp_path):
    slide = tmp_path / "node.svs"
    doc = AnnotationDocument(mpp=0.25)
    now = [0.0]
    saver = Autosaver(doc, slide, delay_s=1.0, clock=lambda: now[0])
    doc.set_decision(decision(0, Verdict.TUMOUR))
    doc.set_decision(decision(1000, Verdict.NOT_TUMOUR))
    now[0] = 2.0
    assert saver.tick() is not None
    # the process dies here: nothing else is flushed; the slide is opened again
    restored, recovery = open_document(slide, 0.25)
    assert recovery is not None and "2 review decisions" in recovery.message
    assert restored.decisions() == doc.decisions() and not restored.can_undo
    # a file saved explicitly round-trips too
    save_document(restored, slide)
    again, _ = open_document(slide, 0.25)
    assert [x.verdict for x in again.decisions()] == [Verdict.TUMOUR, Verdict.NOT_TUMOUR]


def test_a_malformed_decision_feature_is_an_error_naming_the_file():
    from histoviewer.core.errors import AnnotationFormatError

    doc = AnnotationDocument()
    doc.set_decision(decision(0, Verdict.TUMOUR))
    bad = json.loads(geojson_bytes(doc.to_set()))
    bad["features"][0]["properties"]["histoviewer"]["review"]["verdict"] = "maybe"
    with pytest.raises(AnnotationFormatError, match="bad.geojson"):
        parse_geojson(json.dumps(bad).encode(), "bad.geojson")
