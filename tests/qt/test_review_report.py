"""Review decisions reach the reports: report.json, the CSV tables and the PDF state the node
label and the pN stage as reviewed beside the AI's."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess

import pytest

from histoviewer.core.annotations.review import Verdict
from histoviewer.core.report import load_report
from histoviewer.core.report.tables import cases_csv, slides_csv
from histoviewer.qt.report_pdf import write_report_pdf
from tests.core.review_case_helpers import analyse_case, copy_case, review_node

NODES = ("patient_040_node_0.tif", "patient_040_node_1.tif")


@pytest.fixture(scope="module")
def analysed_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("review-report")
    return root, analyse_case(root, NODES)


def test_reports_state_the_review_beside_the_ai(analysed_case, tmp_path, qapp):
    root, summaries = analysed_case
    slides, analysis = copy_case(root, tmp_path, NODES)
    # nothing reviewed: the report says nothing of a review
    report = load_report([analysis])
    assert all(s.review is None for s in report.slides) and report.cases[0].reviewed_stage is None
    # node 0's micrometastasis rejected, node 1's accepted
    review_node(slides / NODES[0], summaries[NODES[0]], Verdict.NOT_TUMOUR)
    review_node(slides / NODES[1], summaries[NODES[1]], Verdict.TUMOUR)
    report = load_report([analysis])
    by_name = {s.slide_name: s for s in report.slides}
    first = by_name[NODES[0]].review
    assert first.progress.text == "1 of 1 reviewed" and first.reviewed.label.value == "negative"
    assert first.text == "negative (1 of 1 reviewed: 0 tumour, 1 not tumour, 0 unsure)"
    case = report.cases[0]
    assert case.stage_text == "pN1mi" and case.reviewed_stage == "pN1mi"
    data = json.loads(report.to_json())
    slide0 = next(s for s in data["slides"] if s["slide"] == NODES[0])
    assert slide0["node_label"] == "micro" and slide0["review"]["label_as_reviewed"]["label"] == "negative"
    assert slide0["review"]["decisions"][0]["verdict"] == "not_tumour"
    assert data["cases"][0]["stage_as_reviewed"] == "pN1mi"
    rows = {r["slide"]: r for r in csv.DictReader(io.StringIO(slides_csv(report)))}
    assert rows[NODES[0]]["label_as_reviewed"] == "negative" and rows[NODES[0]]["hotspots_reviewed"] == "1"
    assert next(csv.DictReader(io.StringIO(cases_csv(report))))["pn_stage_as_reviewed"] == "pN1mi"
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed: the PDF text is not checked")
    pdf = write_report_pdf(report, tmp_path / "report.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout
    pages = text.split("\f")
    assert "As reviewed: pN1mi" in pages[0]
    assert "As reviewed by the pathologist: negative" in " ".join(pages[1].split())


def test_a_report_from_the_live_map_states_the_saved_review(tmp_path):
    from histoviewer.core.analysis.review_queue import build_queue, decide
    from histoviewer.core.annotations import AnnotationDocument, save_document
    from histoviewer.core.report.review import map_slide_review
    from tests.qt.review_helpers import MODEL_HASH, blob_snapshot

    slide = tmp_path / "node.tiff"  # only its autosave's place matters here
    found = blob_snapshot((6000, 6000), 0.25, [(2, 2, 5, 0.95), (10, 10, 2, 0.9)]).result
    assert map_slide_review(str(slide), found, MODEL_HASH, 0.25) is None  # nothing decided: no review
    doc = AnnotationDocument(mpp=0.25)
    queue = build_queue(found.lesions, [], MODEL_HASH)
    doc.set_decision(decide(queue.hotspots[0], Verdict.TUMOUR, MODEL_HASH, "dr. a"))
    save_document(doc, slide)
    review = map_slide_review(str(slide), found, MODEL_HASH, 0.25)
    assert review.progress.text == "1 of 2 reviewed" and not review.reviewed.final
    assert review.text.startswith("micro so far (1 hotspot not reviewed)")
    # a model without a hash: the decisions cannot be matched, and the report says so
    unmatched = map_slide_review(str(slide), found, "", 0.25)
    assert unmatched.reviewed is None and "no hash" in unmatched.text
