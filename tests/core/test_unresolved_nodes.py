"""Nodes without a final label and node identity (issue 14: "All patches failed, still pN0",
"One node counted several times")."""

from __future__ import annotations

import json

import pytest

from histoviewer.cli import main
from histoviewer.cli.stage import EXIT_UNRESOLVED
from histoviewer.core.analysis.camelyon17 import node_identity, read_node_labels
from histoviewer.core.analysis.case import stage_summaries
from histoviewer.core.analysis.node_label import resolve_node_label
from histoviewer.core.analysis.staging import NodeResult, PNStage, stage_patient
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.errors import StagingError
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.report import SlideReport, build_report
from histoviewer.core.staging_terms import NodeLabel
from tests.core.summary_helpers import summary

N, I, MI, MA = NodeLabel.NEGATIVE, NodeLabel.ITC, NodeLabel.MICRO, NodeLabel.MACRO


def test_all_patches_failed_is_no_label_and_no_coverage():
    # the case: every tissue patch failed; the map shows nothing, so "negative"
    s = summary("/s/patient_001_node_0.tif", "negative", failed=100)
    assert (s.coverage, s.node_label, s.label_so_far) == (0.0, NodeLabel.UNKNOWN, NodeLabel.NEGATIVE)
    assert s.unknown_reason == "100 of 100 tissue patches failed" and s.provisional
    # a summary.json written before: failed cells counted as covered, label "negative"
    doc = s.to_dict()
    doc.update(coverage=1.0, node_label="negative", provisional=False)
    del doc["label_so_far"], doc["unresolved_reason"]
    old = SlideSummary.from_dict(doc)
    assert (old.coverage, old.node_label, old.provisional) == (0.0, NodeLabel.UNKNOWN, True)
    (result,), errors = stage_summaries([s])
    assert not errors and result.stage is PNStage.UNKNOWN and result.stage_text == "unknown"
    assert "100 of 100 tissue patches failed" in result.reason and result.provisional


@pytest.mark.parametrize("kwargs, reason", [
    ({"tissue": 10, "classified": 10, "failed": 0}, None),
    ({"tissue": 10, "classified": 9, "failed": 1}, "1 of 10 tissue patches failed"),
    ({"tissue": 10, "classified": 4, "failed": 0}, "6 of 10 tissue patches not classified (only 40 % of the tissue"),
    ({"tissue": 1000, "classified": 999, "failed": 0}, "only >99 % of the tissue"),  # never rounds up to 100 %
    ({"tissue": 10, "classified": 10, "failed": 0, "scale_known": False}, "the slide states no scale"),
    ({"tissue": 10, "classified": 10, "failed": 0, "out_of_domain_reason": "tissue unlike"}, "tissue unlike"),
])
def test_one_rule_for_a_final_label(kwargs, reason):
    res = resolve_node_label(NodeLabel.MICRO, **kwargs)
    if reason is None:
        assert res.resolved and res.label is NodeLabel.MICRO
    else:
        assert res.label is NodeLabel.UNKNOWN and reason in res.reason


def _unresolved(i: int, so_far: NodeLabel = N) -> NodeResult:
    return NodeResult(f"patient_001_node_{i}.tif", NodeLabel.UNKNOWN, reason="12 of 252 tissue patches failed",
                      at_least=so_far)


def _known(i: int, label: NodeLabel) -> NodeResult:
    return NodeResult(f"patient_001_node_{i}.tif", label)


@pytest.mark.parametrize("known, so_far, stage, at_least", [
    ((N, N), N, "unknown", None),  # the unresolved node could hold anything: nothing to state
    ((I,), N, "unknown", "pN0(i+)"),
    ((MI,), N, "unknown", "pN1mi"),  # a macro in the unresolved node would make pN1
    ((MA,), N, "pN1", None),  # at most 2 positive nodes with a macro: pN1 whatever
    ((MA, MI, MI), N, "unknown", "pN1"),  # a 4th positive node would make pN2
    ((MA, MI, MI), MI, "pN2", None),  # micro so far is a lower bound: 4 positive nodes
    ((MA,) * 9, N, "unknown", "pN2"),  # a 10th positive node would be pN3 (outside the scheme)
    ((N,), I, "unknown", "pN0(i+)"),  # ITC so far: at least pN0(i+)
])
def test_stage_with_an_unresolved_node_is_bounded(known, so_far, stage, at_least):
    nodes = [_known(i, lbl) for i, lbl in enumerate(known)] + [_unresolved(len(known), so_far)]
    r = stage_patient("patient_001", nodes)
    assert r.stage is PNStage(stage)
    assert r.at_least == (None if at_least is None else PNStage(at_least))
    assert [n.node for n in r.unresolved] == [nodes[-1].node] and nodes[-1].node in r.reason
    assert "12 of 252 tissue patches failed" in r.reason
    assert r.provisional == (stage == "unknown")


@pytest.mark.parametrize("name", ["patient_004_node_1.tif", "patient_004_node_1.tiff", "patient_004_node_1.svs",
                                  "patient_004_node_1", "patient_004_node_01.tif", "PATIENT_4_NODE_1.TIF",
                                  "/other/folder/patient_004_node_1.tif"])
def test_node_identity_ignores_extension_zeros_case_and_folder(name):
    assert node_identity(name) == ("patient_004", 1)


def _labels(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("twin", ["patient_004_node_1.tiff", "patient_004_node_1.svs", "patient_004_node_1",
                                  "patient_004_node_01.tif", "patient_4_node_1.tif"])
def test_a_node_given_twice_is_counted_once_or_refused(tmp_path, twin):
    warnings = []
    path = _labels(tmp_path, f"patient,stage\npatient_004_node_0.tif,macro\npatient_004_node_1.tif,micro\n{twin},micro\n")
    (nodes,) = read_node_labels(path, warn=warnings.append).values()
    assert [n.node for n in nodes] == ["patient_004_node_0.tif", "patient_004_node_1.tif"]  # was 3 nodes
    assert stage_patient("patient_004", nodes).stage is PNStage.PN1
    (warning,) = warnings
    assert f"labels.csv:4: node {twin} repeats patient_004_node_1.tif of line 3" in warning
    path = _labels(tmp_path, f"patient,stage\npatient_004_node_1.tif,micro\n{twin},macro\n")
    with pytest.raises(StagingError, match=rf"labels.csv:3: node {twin} \(macro\) is patient_004_node_1.tif of "
                                           r".*labels.csv:2 \(micro\) again, with a different label"):
        read_node_labels(path)


def test_two_slides_of_one_node_in_analyze_are_refused_naming_both():
    (result,), errors = stage_summaries([summary("/a/patient_004_node_0.tif", "macro", (3.0,)),
                                         summary("/a/patient_004_node_1.tif", "micro", (1.0,)),
                                         summary("/b/patient_004_node_01.svs", "micro", (1.0,)),
                                         summary("/a/patient_005_node_0.tif", "negative")])
    assert result.patient == "patient_005"
    message = errors["patient_004"]
    assert "/a/patient_004_node_1.tif" in message and "/b/patient_004_node_01.svs" in message
    assert "are the same node (patient_004 node 1)" in message
    # slides without CAMELYON17 names: one stem from one case folder, two extensions
    _results, errors = stage_summaries([summary("/x/case9/left.svs", "negative"),
                                        summary("/x/case9/left.tif", "negative")])
    assert "/x/case9/left.svs and /x/case9/left.tif are the same node" in errors["case9"]


def test_a_report_refuses_one_node_from_two_analyses():
    def slide(path: str) -> SlideReport:
        return SlideReport(path, "patient_004", 1, "micro", False, 1.0, 0.25, (10, 10), (),
                           ModelRecord(name="m", display_name="m"), 0.5, analysis_dir=path + ".out")

    # that case is not staged, naming both, as analyze does (before: the whole report was refused,
    # and analyze --report exited as if slides had failed)
    other = SlideReport("/c/patient_005_node_0.tif", "patient_005", 0, "negative", False, 1.0, 0.25, (10, 10), (),
                        ModelRecord(name="m", display_name="m"), 0.5, analysis_dir="/c/out",
                        tissue_patches=100, classified_patches=100)
    report = build_report([slide("/a/patient_004_node_1.tif"), slide("/b/patient_004_node_01.svs"), other])
    by_patient = {c.patient: c for c in report.cases}
    dup = by_patient["patient_004"]
    assert dup.stage == "unknown" and "patient_004_node_1.tif" in dup.error and "patient_004_node_01.svs" in dup.error
    assert "same node" in dup.error
    assert by_patient["patient_005"].stage == "pN0" and by_patient["patient_005"].error is None


def test_slides_from_two_folders_of_one_name_are_not_one_case():
    # review of issue 14: /p1/HE/a.svs and /p2/HE/b.svs (a per-patient layout with a stain
    # folder) were staged as one case "HE": four such micro nodes of four patients read as pN1mi
    # of one, four macro ones as pN2 of one
    slides = [summary(f"/p{i}/HE/slide{i}.svs", "macro", (3.0,)) for i in range(1, 5)]
    results, errors = stage_summaries(slides + [summary("/p9/case9/left.svs", "negative")])
    assert [r.patient for r in results] == ["case9"]  # the other case is still staged
    assert "/p1/HE/slide1.svs and /p2/HE/slide2.svs lie in two different folders named 'HE'" in errors["HE"]
    # CAMELYON17 names say their patient: the nodes of one patient may lie in several folders
    (result,), errors = stage_summaries([summary("/a/patient_004_node_0.tif", "macro", (3.0,)),
                                         summary("/b/patient_004_node_1.tif", "negative")])
    assert not errors and result.stage is PNStage.PN1
    # the report stages with the same rule: the case is an error, not a mixed stage
    def slide(path: str) -> SlideReport:
        return SlideReport(path, "HE", None, "macro", False, 1.0, 0.25, (10, 10), (),
                           ModelRecord(name="m", display_name="m"), 0.5, analysis_dir=path + ".out")

    (case,) = build_report([slide("/p1/HE/a.svs"), slide("/p2/HE/b.svs")]).cases
    assert case.error and "two different folders named 'HE'" in case.error
    assert case.stage is PNStage.UNKNOWN


def test_hostile_digit_runs_in_names_are_errors_not_tracebacks(tmp_path, capsys):
    # review of issue 14: a 5000-digit patient number raised ValueError (Python's 4300-digit
    # int limit) out of ``stage``; a folder named "case1²" ("²".isdigit() but no int) out of
    # analyze's and the report's natural sort
    huge = "9" * 5000
    path = _labels(tmp_path, f"patient,stage\npatient_{huge}_node_1.tif,macro\n")
    assert main(["stage", str(path)]) == 2
    assert "is neither a node" in capsys.readouterr().err
    results, errors = stage_summaries([summary(f"/x/patient_{huge}_node_1.tif", "negative"),
                                       summary("/x/case1\u00b2/left.svs", "negative"),
                                       summary(f"/x/case{huge}/left.svs", "negative")])
    assert not errors and len(results) == 3
    assert [r.patient for r in results][:1] == ["case1\u00b2"]  # natural order still holds
    assert node_identity("/x/patient_004_node_10.tif") == ("patient_004", 10)


def test_stage_cli_exits_3_with_an_unresolved_node(tmp_path, capsys):
    path = _labels(tmp_path, "patient,stage\npatient_004_node_0.tif,micro\npatient_004_node_1.tif,unknown\n")
    assert main(["stage", str(path), "--json"]) == EXIT_UNRESOLVED
    out, err = capsys.readouterr()
    (doc,) = json.loads(out)
    assert (doc["stage"], doc["stage_at_least"]) == ("unknown", "pN1mi")
    assert "1 node(s) without a final label (patient_004_node_1.tif)" in err
    ok = _labels(tmp_path, "patient,stage\npatient_004_node_0.tif,micro\npatient_004_node_1.tif,negative\n")
    assert main(["stage", str(ok)]) == 0
    assert "patient_004.zip,pN1mi" in capsys.readouterr().out


def test_a_slide_without_tissue_has_no_final_label():
    """0 of 0 tissue patches classified is not a negative node: a blank or wrongly masked slide
    gave a final 'negative' and pN0 (coverage 1.0, nothing classified)."""
    res = resolve_node_label(NodeLabel.NEGATIVE, tissue=0, classified=0, failed=0)
    assert not res.resolved and res.label is NodeLabel.UNKNOWN and "no tissue" in res.reason
    # a report entry whose counts are unknown but whose coverage says part is missing keeps that reason
    part = resolve_node_label(NodeLabel.NEGATIVE, tissue=0, classified=0, failed=0, coverage=0.5)
    assert "only 50 % of the tissue classified" in part.reason


def test_lesions_on_out_of_domain_tissue_get_no_size_class_in_the_tables(tmp_path):
    """Issue 13: the panel, PDF and labels gave no size class on tissue unlike the training data,
    but lesions.csv, slides.csv and report.json still said 'micro'."""
    from dataclasses import replace

    from histoviewer.core.atomic import atomic_write_text
    from histoviewer.core.models.domain import DomainVerdict
    from histoviewer.core.report import load_report, write_report_csv, write_report_json

    ood = DomainVerdict(assessed=True, out_of_domain=True, score=0.9, patch_threshold=3.0, share_threshold=0.5,
                        patches=100, median_distance=7.0)
    rows = {}
    for name, domain in (("patient_001_node_0.tif", ood), ("patient_001_node_1.tif", None)):
        s = summary(str(tmp_path / "slides" / name), "micro", (0.5,))
        if domain is not None:
            s = replace(s, domain=domain)
        folder = tmp_path / "out" / name.rsplit(".", 1)[0]
        folder.mkdir(parents=True)
        atomic_write_text(folder / "summary.json", json.dumps(replace(s, out_dir=str(folder)).to_dict()))
        rows[name] = folder
    report = load_report(list(rows.values()))
    lesions, slides, _ = write_report_csv(report, tmp_path / "csv")
    import csv
    by_slide = {r["slide"]: r for r in csv.DictReader(lesions.open())}
    assert by_slide["patient_001_node_0.tif"]["size_class"] == "unreliable"
    assert by_slide["patient_001_node_1.tif"]["size_class"] == "micro"
    slide_rows = {r["slide"]: r for r in csv.DictReader(slides.open())}
    assert slide_rows["patient_001_node_0.tif"]["largest_size_class"] == "unreliable"
    doc = json.loads(write_report_json(report, tmp_path / "report.json").read_text())
    classes = {s["slide"]: [les["size_class"] for les in s["lesions"]] for s in doc["slides"]}
    assert classes == {"patient_001_node_0.tif": [None], "patient_001_node_1.tif": ["micro"]}
