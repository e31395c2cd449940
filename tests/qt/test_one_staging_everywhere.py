"""One staging result feeds every output (issue 14: "All patches failed, still pN0" and
"Report and submission disagree").

One case, patient_004, goes through every output that states a node label or a pN stage:
``stages.csv`` and ``cases.json`` (``analyze``), ``report.json``, ``cases.csv`` and
``slides.csv`` (``report``), the PDF and the case view. Node 0 is a macrometastasis and
nodes 2 and 3 micrometastases (3 positive nodes: pN1), so node 1 decides between pN1 and pN2.
Node 1 fails in each of the ways a node can have no final label: all its patches failed,
some failed, no scale (its analysis fails), tissue unlike the model's training data. Every
output must say the stage is unknown (at least pN1) and name node 1 with why; before, the
failed node vanished from the report (pN1 there, ``unknown`` in stages.csv), and an
all-failed node was a provisional ``negative`` counted as pN0 with coverage 1.0.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from dataclasses import replace

import pytest

from histoviewer.core.analysis.case import write_case_outputs
from histoviewer.core.analysis.summary import SlideFailure, SlideSummary
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.models.domain import DomainVerdict
from histoviewer.core.report import load_report, write_report_csv, write_report_json
from tests.core.summary_helpers import summary

NODE1 = "patient_004_node_1.tif"
KINDS = ("all_failed", "some_failed", "no_scale", "out_of_domain", "some_failed_micro_so_far")


def _node1(kind: str, slide: str):
    if kind == "all_failed":  # 100 tissue patches, every one failed: nothing is known
        return replace(summary(slide, "negative", failed=100), coverage=1.0)  # the old coverage: failed = covered
    if kind == "some_failed":
        return summary(slide, "negative", failed=12)
    if kind == "some_failed_micro_so_far":  # a micro in the classified part: 4 positive nodes, pN2 whatever
        return summary(slide, "micro", (0.5,), failed=12)
    if kind == "no_scale":  # analyze refuses a slide without a scale
        return SlideFailure(slide, f"{slide}: the slide states no pixel size (microns per pixel)")
    ood = DomainVerdict(assessed=True, out_of_domain=True, score=0.9, patch_threshold=3.0, share_threshold=0.5,
                        patches=100, median_distance=7.0)
    return replace(summary(slide, "negative"), domain=ood)


def _case(tmp_path, kind: str):
    slides = tmp_path / "slides"
    outcomes = [summary(str(slides / "patient_004_node_0.tif"), "macro", (3.0,)),
                _node1(kind, str(slides / NODE1)),
                summary(str(slides / "patient_004_node_2.tif"), "micro", (1.0,)),
                summary(str(slides / "patient_004_node_3.tif"), "micro", (0.8,))]
    out = tmp_path / "out"
    for o in outcomes:  # each analysed slide's folder, as analyze writes it
        if isinstance(o, SlideSummary):
            folder = out / o.node.rsplit(".", 1)[0]
            folder.mkdir(parents=True)
            o = replace(o, out_dir=str(folder))
            atomic_write_text(folder / "summary.json", json.dumps(o.to_dict(), indent=2))
    return outcomes, out


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("kind", KINDS)
def test_every_output_states_the_same_staging(tmp_path, qtbot, kind):
    outcomes, out = _case(tmp_path, kind)
    cases = write_case_outputs(out, outcomes)
    assert cases.unresolved  # analyze / stage / report exit with status 3

    # node 1 decides between pN1 and pN2, unless what it showed so far already decides
    stage, at_least, stage_text = (("pN2", None, "pN2") if kind == "some_failed_micro_so_far"
                                   else ("unknown", "pN1", "unknown (at least pN1)"))
    # stages.csv (CAMELYON17 format): node 1 unknown
    submission = cases.stages_csv.read_text().splitlines()
    assert submission[1] == f"patient_004.zip,{stage}" and f"{NODE1},unknown" in submission
    # cases.json
    (case,) = json.loads(cases.cases_json.read_text())["cases"]
    assert (case["stage"], case["stage_at_least"], case["stage_text"]) == (stage, at_least, stage_text)
    (unresolved,) = case["unresolved_nodes"]
    assert unresolved["node"] == NODE1
    why = unresolved["reason"]
    expected_why = {"all_failed": "100 of 100 tissue patches failed", "some_failed": "12 of 100 tissue patches failed",
                    "some_failed_micro_so_far": "12 of 100 tissue patches failed",
                    "no_scale": "analysis failed", "out_of_domain": "unlike"}[kind]
    assert expected_why in why

    # the report, from the analysis folder (the failed slide comes from cases.json)
    report = load_report([out])
    assert [s.slide_name for s in report.slides] == [f"patient_004_node_{i}.tif" for i in range(4)]
    (c,) = report.cases
    assert (c.stage.value, c.stage_text, c.unresolved) == (stage, stage_text, ((NODE1, why),))
    doc = json.loads(write_report_json(report, tmp_path / "report.json").read_text())
    assert (doc["cases"][0]["stage"], doc["cases"][0]["stage_text"]) == (stage, stage_text)
    assert doc["cases"][0]["unresolved_nodes"] == [{"node": NODE1, "reason": why}]
    node1 = next(s for s in doc["slides"] if s["slide"] == NODE1)
    assert node1["node_label"] == "unknown" and node1["unknown_reason"] == why
    _lesions, slides_csv, cases_csv = (_rows(p.read_text()) for p in write_report_csv(report, tmp_path / "tables"))
    (case_row,) = cases_csv
    assert (case_row["pn_stage"], case_row["pn_stage_at_least"]) == (stage, at_least or "")
    assert case_row["unresolved_nodes"] == f"{NODE1}: {why}"
    assert [r["slide"] for r in slides_csv] == [s.slide_name for s in report.slides]  # the failed node too
    row1 = next(r for r in slides_csv if r["slide"] == NODE1)
    assert (row1["node_label"], row1["unknown_reason"]) == ("unknown", why)
    if kind == "all_failed":  # failed patches are not coverage, and no label so far is claimed final
        assert (row1["coverage"], row1["failed_patches"], row1["label_so_far"]) == ("0.0", "100", "negative")

    # the case view
    from histoviewer.qt.case_dialog import CaseDialog

    dialog = CaseDialog([tmp_path / "slides" / f"patient_004_node_{i}.tif" for i in range(4)], model_spec="handcrafted")
    qtbot.addWidget(dialog)
    for row, outcome in enumerate(outcomes):
        dialog._on_node(row, outcome)
    dialog._on_finished(cases, "")
    assert dialog.stage_label.text() == f"pN stage: {stage_text}"
    assert dialog.table.item(1, 1).text().startswith("UNKNOWN") and why in dialog.reason_label.text()

    # the PDF
    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils (pdftotext) not installed: the PDF's text cannot be checked")
    from histoviewer.qt.report_pdf import write_report_pdf

    pdf = write_report_pdf(report, tmp_path / "report.pdf")
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True,
                                   timeout=60).stdout.split())
    assert stage_text in text and "provisional)" not in text
    assert f"{NODE1} has no final label" in text and NODE1 in text
