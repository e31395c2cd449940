"""pN staging rules (table-driven), the CAMELYON17 CSV and cases from analyze summaries."""

from __future__ import annotations

import json

import pytest

from histoviewer.core.analysis.camelyon17 import (
    case_of, group_cases, read_node_labels, read_patient_stages, stage_cases, submission_csv,
)
from histoviewer.core.analysis.case import node_result, stage_summaries, write_case_outputs
from histoviewer.core.analysis.staging import NodeResult, PNStage, stage_patient
from histoviewer.core.analysis.summary import SlideFailure
from histoviewer.core.errors import StagingError
from histoviewer.core.staging_terms import NodeLabel
from tests.core.summary_helpers import summary

N, I, MI, MA, U = "negative", "itc", "micro", "macro", "unknown"


def nodes(*labels: str) -> list[NodeResult]:
    return [NodeResult(f"patient_001_node_{i}.tif", NodeLabel(lbl)) for i, lbl in enumerate(labels)]


@pytest.mark.parametrize("labels, stage, deciding", [
    ((N,), "pN0", [0]),
    ((N, N, N, N, N), "pN0", [0, 1, 2, 3, 4]),
    ((I,), "pN0(i+)", [0]),
    ((N, I, N, I), "pN0(i+)", [1, 3]),
    ((MI,), "pN1mi", [0]),
    ((MI, I, N), "pN1mi", [0]),  # ITC nodes are not positive nodes
    ((MI, MI, MI, MI, MI), "pN1mi", [0, 1, 2, 3, 4]),  # micro only: pN1mi whatever the count
    ((MA,), "pN1", [0]),
    ((MA, MI, MI), "pN1", [0, 1, 2]),  # 3 positive nodes: still pN1
    ((MA, I, I, I, N), "pN1", [0]),  # ITC nodes do not count: 1 positive node
    ((MA, MI, MI, MI), "pN2", [0, 1, 2, 3]),  # 4 positive nodes with a macro
    ((MI, MA, MA, MA, MA), "pN2", [0, 1, 2, 3, 4]),
    ((MA,) * 9, "pN2", list(range(9))),  # 9: the last pN2 count
    ((MI,) * 12, "pN1mi", list(range(12))),  # no macro: the pN2/pN3 node counts never apply
    ((MA, U), "pN1", [0]),  # at most 2 positive nodes with a macro: pN1 whatever node 1 holds
    ((MA, MI, MI, U), "unknown", [3]),  # node 3 positive would make 4 nodes: pN2; at least pN1
    ((N, U, N), "unknown", [1]),  # an unmeasured node could hold anything
])
def test_pn_rules(labels, stage, deciding):
    result = stage_patient("patient_001", nodes(*labels))
    assert result.stage is PNStage(stage)
    assert [int(n.node.split("_node_")[1].split(".")[0]) for n in result.deciding] == deciding
    assert result.reason


def test_ten_positive_nodes_with_a_macro_is_outside_the_scheme():
    with pytest.raises(StagingError, match="patient_001: metastases in 10 nodes.*pN3.*outside the CAMELYON17"):
        stage_patient("patient_001", nodes(MA, *(MI,) * 9))
    with pytest.raises(StagingError, match="no nodes"):
        stage_patient("patient_001", [])


def test_result_names_deciding_lesions():
    ns = [NodeResult("patient_002_node_0.tif", NodeLabel.NEGATIVE),
          NodeResult("patient_002_node_1.tif", NodeLabel.MACRO, "lesion-1", 3.1),
          NodeResult("patient_002_node_2.tif", NodeLabel.MICRO, "lesion-2", 0.4, provisional=True)]
    d = stage_patient("patient_002", ns).to_dict()
    # node 2 is only partly classified: unresolved, at least micro; 2 or 3 positive nodes
    # with a macro are pN1 either way, so the stage is final and names node 2 as unresolved
    assert d["stage"] == "pN1" and d["provisional"] is False
    assert d["unresolved_nodes"] == [{"node": "patient_002_node_2.tif", "reason": "part of the tissue not classified",
                                      "label_so_far": "micro"}]
    assert d["deciding_nodes"] == ["patient_002_node_1.tif", "patient_002_node_2.tif"]
    assert d["deciding_lesions"] == [{"node": "patient_002_node_1.tif", "lesion": "lesion-1", "diameter_mm": 3.1},
                                     {"node": "patient_002_node_2.tif", "lesion": "lesion-2", "diameter_mm": 0.4}]


def test_stage_order_and_parse():
    assert [s.rank for s in (PNStage.PN0, PNStage.PN0_ITC, PNStage.PN1MI, PNStage.PN1, PNStage.PN2)] == [0, 1, 2, 3, 4]
    assert PNStage.parse(" PN0(I+) ") is PNStage.PN0_ITC
    with pytest.raises(ValueError, match="pN3"):
        PNStage.parse("pN3")


LABELS = """patient,stage
patient_004.zip,pN2
patient_004_node_3.tif,macro
patient_004_node_0.tif,negative
patient_010_node_1.tif, itc
patient_004_node_10.tif,micro

patient_002_node_0.tif,Negative
"""


def test_read_labels_and_write_submission(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("\ufeff" + LABELS)  # a BOM from a spreadsheet
    cases = read_node_labels(path)
    assert list(cases) == ["patient_002", "patient_004", "patient_010"]
    assert [n.node for n in cases["patient_004"]] == [
        "patient_004_node_0.tif", "patient_004_node_3.tif", "patient_004_node_10.tif"]
    text = submission_csv(stage_cases(cases))
    assert text == ("patient,stage\n"
                    "patient_002.zip,pN0\npatient_002_node_0.tif,negative\n"
                    "patient_004.zip,pN1\npatient_004_node_0.tif,negative\npatient_004_node_3.tif,macro\n"
                    "patient_004_node_10.tif,micro\n"
                    "patient_010.zip,pN0(i+)\npatient_010_node_1.tif,itc\n")
    out = tmp_path / "sub.csv"
    out.write_text(text)
    assert read_patient_stages(out) == {"patient_002": PNStage.PN0, "patient_004": PNStage.PN1,
                                        "patient_010": PNStage.PN0_ITC}


@pytest.mark.parametrize("text, message", [
    ("name,label\npatient_001_node_0.tif,macro\n", r"labels.csv:1: expected the header 'patient,stage'"),
    ("patient,stage\npatient_001_node_0.tif,huge\n", r"labels.csv:2: unknown node label 'huge'"),
    ("patient,stage\npatient_001_node_0.tif\n", r"labels.csv:2: expected 2 columns"),
    ("patient,stage\n\nslide7.tif,macro\n", r"labels.csv:3: 'slide7.tif' is neither a node"),
    ("patient,stage\npatient_001_node_0.tif,macro\npatient_001_node_0.tif,micro\n",
     r"labels.csv:3: node patient_001_node_0.tif \(micro\) is patient_001_node_0.tif of .*labels.csv:2 \(macro\)"),
    ("patient,stage\npatient_001.zip,pN1\n", r"labels.csv: no node rows"),
    ("", r"labels.csv: empty label file"),
])
def test_label_file_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(StagingError, match=message):
        read_node_labels(path)


def test_patient_stage_errors(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("patient,stage\npatient_001.zip,pN4\n")
    with pytest.raises(StagingError, match=r"ref.csv:2: unknown pN stage 'pN4'"):
        read_patient_stages(path)


def test_cases_from_names_and_folders(tmp_path):
    assert case_of("/x/patient_017_node_4.tif") == ("patient_017", 4)
    assert case_of(tmp_path / "mrs_x" / "left.svs") == ("mrs_x", None)
    groups = group_cases(["/a/patient_002_node_1.tif", "/b/patient_002_node_0.tif", "/c/patient_1_node_0.tif"])
    # patient_1 is CAMELYON17's patient_001 (leading zeros do not make another patient)
    assert groups == {"patient_001": ["/c/patient_1_node_0.tif"],
                      "patient_002": ["/b/patient_002_node_0.tif", "/a/patient_002_node_1.tif"]}


def test_case_outputs_from_summaries(tmp_path):
    summaries = [
        summary("/s/patient_003_node_0.tif", "macro", (2.5,)),
        summary("/s/patient_003_node_1.tif", "itc", (0.1,)),
        SlideFailure("/s/patient_005_node_0.tif", "cannot open"),
        summary("/s/patient_005_node_1.tif", "micro", (1.0,)),
    ]
    assert node_result(summaries[2]).label is NodeLabel.UNKNOWN
    out = write_case_outputs(tmp_path, summaries)
    assert out.stages_csv.read_text() == ("patient,stage\npatient_003.zip,pN1\npatient_003_node_0.tif,macro\n"
                                          "patient_003_node_1.tif,itc\npatient_005.zip,unknown\n"
                                          "patient_005_node_0.tif,unknown\npatient_005_node_1.tif,micro\n")
    doc = json.loads(out.cases_json.read_text())
    assert doc["cases"][0]["deciding_lesions"] == [
        {"node": "patient_003_node_0.tif", "lesion": "lesion-1", "diameter_mm": 2.5}]
    assert "analysis failed: cannot open" in doc["cases"][1]["reason"]  # the failure says why
    assert doc["cases"][1]["stage_at_least"] == "pN1mi"  # node 1's micro is known: at least pN1mi
    assert doc["failed_slides"] == [{"slide": "/s/patient_005_node_0.tif", "error": "cannot open"}]


def test_analyze_stage_files_of_slides_without_camelyon_names_read_back(tmp_path):
    """``analyze`` names a folder's case after the folder and lists its nodes after that row:
    ``stage`` and ``evaluate kappa`` read its own output."""
    path = tmp_path / "stages.csv"
    path.write_text("patient,stage\ntest.zip,pN1\nphantom-201.tiff,macro\nphantom-202.tiff,micro\n"
                    "phantom-203.tiff,negative\n")
    labels = read_node_labels(path)
    assert list(labels) == ["test"]
    assert [(n.node, n.label.value) for n in labels["test"]] == [
        ("phantom-201.tiff", "macro"), ("phantom-202.tiff", "micro"), ("phantom-203.tiff", "negative")]
    assert read_patient_stages(path) == {"test": PNStage.PN1}
    # a case named after a folder keeps its name when staged again (it was lower-cased:
    # MyCase.zip came back as mycase.zip); kappa still matches the patients without case
    path.write_text("patient,stage\nMyCase.zip,pN1\nphantom-201.tiff,macro\n")
    (result,) = stage_cases(read_node_labels(path))
    assert result.patient == "MyCase" and "MyCase.zip,pN1" in submission_csv([result])
    assert read_patient_stages(path) == {"mycase": PNStage.PN1}


def _border_summary(slide: str, diameter_mm: float, low_mm: float, high_mm: float):
    from dataclasses import replace

    from histoviewer.core.staging_terms import classify_diameter_mm

    s = summary(slide, classify_diameter_mm(diameter_mm).value, (diameter_mm,))
    return replace(s, lesions=(replace(s.lesions[0], diameter_low_mm=low_mm, diameter_high_mm=high_mm),))


def test_a_border_lesion_that_decides_the_stage_is_warned_about_in_words(tmp_path):
    """A lone micrometastasis of 0.21 mm whose interval (0.19-0.23 mm) reaches into ITC:
    as ITC the stage would be pN0(i+), not pN1mi. The stage stays pN1mi (the best estimate),
    cases.json says why it may be wrong; a border lesion that cannot change the stage (a
    macro in another node decides it) gives no warning."""
    summaries = [_border_summary("/s/patient_007_node_0.tif", 0.21, 0.19, 0.23),
                 summary("/s/patient_007_node_1.tif", "negative")]
    (result,), _errors = stage_summaries(summaries)
    assert result.stage is PNStage.PN1MI  # not changed by the warning
    node = result.nodes[0]
    assert node.border_label is NodeLabel.ITC and "ITC/micro border" in node.border_note
    assert "pN1mi rests on a lesion at a size-class border" in result.border_warning
    assert "patient_007_node_0.tif" in result.border_warning and "pN0(i+)" in result.border_warning
    out = write_case_outputs(tmp_path, summaries)
    case = json.loads(out.cases_json.read_text())["cases"][0]
    assert case["stage"] == "pN1mi" and "pN0(i+)" in case["border_warning"]
    assert case["nodes"][0]["border_label"] == "itc"
    # the submission file keeps its two columns: the stage as estimated
    assert "patient_007.zip,pN1mi" in out.stages_csv.read_text()
    # an ITC whose interval reaches micro decides pN0(i+) -> pN1mi: warned the other way
    (up,), _ = stage_summaries([_border_summary("/s/patient_008_node_0.tif", 0.19, 0.17, 0.21)])
    assert up.stage is PNStage.PN0_ITC and "were it micro, the stage would be pN1mi" in up.border_warning
    # the same border micro beside a macro: pN1 either way, no warning
    (calm,), _ = stage_summaries([_border_summary("/s/patient_009_node_0.tif", 0.21, 0.19, 0.23),
                                  summary("/s/patient_009_node_1.tif", "macro", (3.0,))])
    assert calm.stage is PNStage.PN1 and calm.border_warning == ""
    assert calm.nodes[0].border_label is NodeLabel.ITC  # the node itself is still at a border


def test_a_symlinked_slide_belongs_to_the_folder_it_was_given_in(tmp_path):
    """``cases/MyCase/node.svs`` -> ``store/scans/x.svs``: its case is MyCase (the link's
    folder), not ``scans`` (the target's), as it was."""
    store = tmp_path / "store" / "scans"
    store.mkdir(parents=True)
    (store / "x.svs").write_bytes(b"")
    case_dir = tmp_path / "cases" / "MyCase"
    case_dir.mkdir(parents=True)
    (case_dir / "node.svs").symlink_to(store / "x.svs")
    assert case_of(case_dir / "node.svs") == ("MyCase", None)
    assert case_of(tmp_path / "cases" / "MyCase" / ".." / "MyCase" / "node.svs") == ("MyCase", None)
