"""The review queue's order, progress, decisions, and the node label and pN "as reviewed"."""

from __future__ import annotations

from datetime import datetime, timezone

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.analysis.review_queue import (
    build_queue,
    decide,
    lesion_hotspot_id,
    reviewed_label,
)
from histoviewer.core.analysis.staging import stage_patient
from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind
from histoviewer.core.annotations.review import Verdict
from histoviewer.core.staging_terms import NodeLabel, SizeClass, classify_diameter_mm

MODEL = "m" * 64
MPP = 0.25  # um per level-0 px


def lesion(index: int, x: float, diameter_mm: float, p: float) -> Lesion:
    side = diameter_mm * 1000 / MPP / 1.4142  # a square whose diagonal is the diameter
    outline = ((x, 0.0), (x + side, 0.0), (x + side, side), (x, side))
    return Lesion(index, outline, (x + side / 2, side / 2), (x, 0.0, side, side), ((x, 0.0), (x + side, side)),
                  side * 1.4142, diameter_mm, (diameter_mm / 1.4142) ** 2, p, p * 0.8, 10,
                  classify_diameter_mm(diameter_mm))


LESIONS = [
    lesion(1, 0, 3.0, 0.70),  # macro
    lesion(2, 20000, 0.5, 0.99),  # micro, very confident
    lesion(3, 40000, 0.1, 0.95),  # ITC
    lesion(4, 60000, 0.9, 0.80),  # micro
]
WHEN = datetime(2026, 12, 4, 15, 0, tzinfo=timezone.utc)


def test_queue_is_ranked_by_size_class_then_probability_then_uncertainty():
    queue = build_queue(LESIONS, [], MODEL)
    assert [h.lesion.index for h in queue.hotspots] == [1, 2, 4, 3]
    # equal size class and probability: the more uncertain first
    twins = [lesion(1, 0, 0.5, 0.9), lesion(2, 20000, 0.5, 0.9)]
    assert [h.lesion.index for h in build_queue(twins, [], MODEL, {1: 0.1, 2: 0.4}).hotspots] == [2, 1]
    # P equal to two decimals (a confident model's 1.00): the larger lesion first
    saturated = [lesion(1, 0, 0.4, 0.9991), lesion(2, 20000, 0.9, 0.9990)]
    assert [h.lesion.index for h in build_queue(saturated, [], MODEL).hotspots] == [2, 1]
    assert queue.progress.text == "0 of 4 reviewed" and queue.next_unreviewed(None) == 0


def test_decisions_find_their_hotspots_again_after_reanalysis():
    doc = AnnotationDocument(mpp=MPP)
    queue = build_queue(LESIONS, [], MODEL)
    doc.set_decision(decide(queue.hotspots[0], Verdict.TUMOUR, MODEL, "dr. a", WHEN))
    doc.set_decision(decide(queue.hotspots[3], Verdict.NOT_TUMOUR, MODEL, "dr. a", WHEN))
    # analysed again: same lesions (a new list, new objects) -> same ids, same decisions
    again = build_queue([lesion(le.index, le.l0_bbox[0], le.diameter_mm, le.max_probability) for le in LESIONS],
                        doc.decisions(), MODEL)
    assert again.progress.text == "2 of 4 reviewed" and again.progress.detail == "1 tumour, 1 not tumour, 0 unsure"
    assert again.hotspots[0].decision.verdict is Verdict.TUMOUR
    assert again.hotspots[3].decision.verdict is Verdict.NOT_TUMOUR
    assert again.next_unreviewed(0) == 1 and again.next_unreviewed(2) == 1
    # another model's queue: those decisions are not its own
    other = build_queue(LESIONS, doc.decisions(), "o" * 64)
    assert other.progress.reviewed == 0 and len(other.other_decisions) == 2
    d = doc.decisions()[0]
    assert d.ai_size_class is SizeClass.MACRO and d.ai_probability == 0.70 and d.decided_at.startswith("2026-12-04")
    assert d.hotspot_id == lesion_hotspot_id(LESIONS[0], MODEL)


def test_reviewed_label_from_accepted_lesions_and_own_tumour_annotations():
    doc = AnnotationDocument(mpp=MPP)
    queue = build_queue(LESIONS, [], MODEL)
    by_index = {h.lesion.index: h for h in queue.hotspots}
    # nothing reviewed: negative so far, not final
    label = reviewed_label(doc, queue)
    assert label.label is NodeLabel.NEGATIVE and not label.final and "4 hotspots not reviewed" in label.text
    # the macro rejected, the micros accepted, the ITC rejected: micro, final
    for idx, verdict in ((1, Verdict.NOT_TUMOUR), (2, Verdict.TUMOUR), (4, Verdict.TUMOUR), (3, Verdict.NOT_TUMOUR)):
        doc.set_decision(decide(by_index[idx], verdict, MODEL, "dr. a", WHEN))
    queue = build_queue(LESIONS, doc.decisions(), MODEL)
    label = reviewed_label(doc, queue)
    assert label.final and label.label is NodeLabel.MICRO and label.accepted == 2
    assert label.largest_diameter_mm == 0.9
    # the pathologist's own tumour annotation of 2.5 mm makes it macro
    side = 2.5 * 1000 / MPP / 1.4142
    doc.add(Annotation(ShapeKind.RECTANGLE, ((0, 90000), (side, 90000 + side)), class_name="Tumor", name="mine"))
    label = reviewed_label(doc, queue)
    assert label.label is NodeLabel.MACRO and label.own_tumour == 1 and label.largest_name == "mine"
    # unsure is reviewed but leaves the label open
    doc.set_decision(decide(by_index[3], Verdict.UNSURE, MODEL, "dr. a", WHEN))
    label = reviewed_label(doc, build_queue(LESIONS, doc.decisions(), MODEL))
    assert not label.final and "1 hotspot marked unsure" in label.text
    # without a scale a tumour region cannot be sized: unknown, never a guess
    doc_no_scale = AnnotationDocument(mpp=None)
    doc_no_scale.add(Annotation(ShapeKind.RECTANGLE, ((0, 0), (100, 100)), class_name="Tumor"))
    assert reviewed_label(doc_no_scale, build_queue([], [], MODEL)).label is NodeLabel.UNKNOWN
    # an incomplete map: not final
    assert not reviewed_label(doc, build_queue(LESIONS, doc.decisions(), MODEL), map_complete=False).final


def test_pn_as_reviewed_follows_the_camelyon17_rules():
    def node(name: str, verdicts: dict[int, Verdict]):
        doc = AnnotationDocument(mpp=MPP)
        queue = build_queue(LESIONS, [], MODEL)
        for h in queue.hotspots:
            doc.set_decision(decide(h, verdicts.get(h.lesion.index, Verdict.NOT_TUMOUR), MODEL, "dr. a", WHEN))
        return reviewed_label(doc, build_queue(LESIONS, doc.decisions(), MODEL)).node_result(name)

    # an accepted macro -> pN1
    nodes = [node("n1", {1: Verdict.TUMOUR}), node("n2", {}), node("n3", {})]
    assert stage_patient("p", nodes).stage.value == "pN1"
    # only micros accepted -> pN1mi; only the ITC accepted -> pN0(i+); everything rejected -> pN0
    assert stage_patient("p", [node("n1", {2: Verdict.TUMOUR}), node("n2", {})]).stage.value == "pN1mi"
    assert stage_patient("p", [node("n1", {3: Verdict.TUMOUR}), node("n2", {})]).stage.value == "pN0(i+)"
    assert stage_patient("p", [node("n1", {}), node("n2", {})]).stage.value == "pN0"
    # a macro and metastases in 4 nodes -> pN2
    four = [node(f"n{i}", {1: Verdict.TUMOUR} if i == 1 else {2: Verdict.TUMOUR}) for i in range(1, 5)]
    assert stage_patient("p", four).stage.value == "pN2"
    # an unreviewed node that could change the stage leaves it open, with the lower bound
    doc = AnnotationDocument(mpp=MPP)
    open_node = reviewed_label(doc, build_queue(LESIONS, [], MODEL)).node_result("n2")
    stage = stage_patient("p", [node("n1", {2: Verdict.TUMOUR}), open_node])
    assert stage.stage.value == "unknown" and stage.stage_text == "unknown (at least pN1mi)"
