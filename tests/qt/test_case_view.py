"""The case view: a patient's node slides opened together, analysed in the background with the
same code as ``histoviewer analyze``, each node's label and the pN stage with what decided it.

Phantom nodes with known lesions are the ground truth. The default run analyses one
micrometastasis node (pN1mi); the three-node case (negative, micro, ITC -> pN1mi) is slow.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from histoviewer.qt.case_dialog import LEARNED_COLUMN, case_slides_in, default_output_dir


def _node(folder, name, lesions, seed):
    from histoviewer.core.phantom import write_phantom

    # 2 x 2 mm at 0.5 um/px: room for a 0.8 mm micrometastasis, ~400 patches to classify
    return write_phantom(folder / name, width=4000, height=4000, mpp=0.5, lesions=lesions, seed=seed)


@pytest.fixture(scope="module")
def micro_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("patient_010")
    _node(folder, "patient_010_node_2.tif", "micro:0.7", 11)
    (folder / "patient_010_node_2.geojson").write_text("{}")  # not a slide: must be left out
    return folder


def _run_case(qtbot, window, folder, tmp_path, timeout_ms):
    paths = case_slides_in(folder)
    dialog = window.cases.open_case(paths)
    assert dialog is not None and window.tabs.count() == len(paths)
    dialog.set_output_dir(tmp_path / "analysis")
    dialog.analyse_all()
    qtbot.waitUntil(lambda: not dialog.analysis.running and dialog.analyse_button.isEnabled(), timeout=timeout_ms)
    assert dialog.outputs is not None, dialog.status_label.text()
    return dialog


def test_case_slides_and_default_output(micro_case, tmp_path):
    slides = case_slides_in(micro_case)
    assert [p.name for p in slides] == ["patient_010_node_2.tif"]
    assert default_output_dir(slides).parts[-2:] == ("analyses", "patient_010")


def test_one_node_case_gives_micro_and_pn1mi(window, qtbot, micro_case, tmp_path):
    dialog = _run_case(qtbot, window, micro_case, tmp_path, 120_000)
    assert dialog.table.item(0, 0).text() == "patient_010_node_2.tif"
    assert dialog.table.item(0, 1).text() == "MICROMETASTASIS"
    # the size as the lesions panel states it (describe_size: class in brackets, or a border range)
    assert re.fullmatch(r"lesion-1: 0\.\d\d mm \(micro\); 1 lesion", dialog.table.item(0, 2).text())
    assert dialog.table.item(0, 3).text() == "100%"
    assert dialog.bars[0].format() == "done"
    assert dialog.stage_label.text() == "pN stage: pN1mi"
    assert "micrometastases only, in patient_010_node_2.tif" in dialog.reason_label.text()
    assert "patient_010_node_2.tif \u2192 lesion-1" in dialog.reason_label.text()
    # the same files `histoviewer analyze` writes
    out = tmp_path / "analysis"
    rows = list(csv.reader((out / "stages.csv").open()))
    assert rows == [["patient", "stage"], ["patient_010.zip", "pN1mi"], ["patient_010_node_2.tif", "micro"]]
    summary = json.loads((out / "patient_010_node_2" / "summary.json").read_text())
    assert summary["node_label"] == "micro" and (out / "patient_010_node_2" / "lesions.geojson").is_file()
    # the learned classifier's label beside it (a second opinion; the rules decide pN)
    assert summary["learned_label"]["rule_label"] == "micro" and summary["learned_label"]["reason"] is None
    assert "rules" in dialog.table.item(0, LEARNED_COLUMN).text()
    assert dialog.out_label.text() == f"Output: {out}"
    dialog.close()


def test_cancel_writes_no_case_files(window, qtbot, micro_case, tmp_path):
    dialog = window.cases.open_case(case_slides_in(micro_case))
    dialog.set_output_dir(tmp_path / "analysis")
    dialog.analyse_all()
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.analysis.running, timeout=60_000)
    qtbot.waitUntil(lambda: dialog.analyse_button.isEnabled(), timeout=5_000)
    assert dialog.status_label.text() == "Cancelled: no case files written."
    assert dialog.outputs is None and not (tmp_path / "analysis" / "stages.csv").exists()
    assert dialog.bars[0].format() in ("cancelled", "done")  # cancelled, or it finished first
    dialog.close()


def test_a_folder_without_slides_says_so(window, tmp_path):
    assert window.cases.open_case(case_slides_in(tmp_path)) is None
    assert "no slide" in window.last_error


@pytest.mark.slow
def test_three_node_case_negative_micro_itc_gives_pn1mi(window, qtbot, tmp_path_factory, tmp_path):
    folder = tmp_path_factory.mktemp("patient_011")
    _node(folder, "patient_011_node_0.tif", "", 21)
    _node(folder, "patient_011_node_1.tif", "micro:0.8", 22)
    _node(folder, "patient_011_node_4.tif", "itc:0.15", 23)
    dialog = _run_case(qtbot, window, folder, tmp_path, 300_000)
    labels = [dialog.table.item(r, 1).text() for r in range(3)]
    assert labels == ["NEGATIVE", "MICROMETASTASIS", "ITC (isolated tumour cells)"]
    assert dialog.stage_label.text() == "pN stage: pN1mi"
    assert "in patient_011_node_1.tif" in dialog.reason_label.text()
    rows = list(csv.reader((tmp_path / "analysis" / "stages.csv").open()))
    assert rows[1] == ["patient_011.zip", "pN1mi"]
    assert [r[1] for r in rows[2:]] == ["negative", "micro", "itc"]
    # double-clicking a node's row shows its slide
    window.tabs.setCurrentIndex(0)
    dialog.table.cellDoubleClicked.emit(2, 1)
    assert window.current_tab().path.endswith("patient_011_node_4.tif")
    dialog.close()


def test_restaging_from_the_pathologists_annotations(window, qtbot, micro_case, tmp_path):
    """Labels follow the edited annotations when asked: a 2.5 mm tumour annotation makes the
    node a macrometastasis and the patient pN1, without re-running the AI; deleting it
    leaves a node that is neither analysed nor annotated, which cannot be staged."""
    from histoviewer.core.annotations import Annotation, ShapeKind

    dialog = window.cases.open_case(case_slides_in(micro_case))
    dialog.set_output_dir(tmp_path / "analysis")
    tab = window.current_tab()
    uid = tab.annotations.add(Annotation(ShapeKind.ELLIPSE, ((500.0, 500.0), (5500.0, 1500.0)), "Tumor", "T1"))
    (result,) = dialog.restage_from_annotations()
    assert result.stage.value == "pN1" and result.deciding[0].largest_lesion == "T1"
    assert dialog.table.item(0, 1).text() == "MACROMETASTASIS (annotations)"
    assert dialog.stage_label.text() == "pN stage: pN1"
    tab.annotations.remove([uid])  # the pathologist: not tumour after all, this region is normal
    normal = tab.annotations.add(Annotation(ShapeKind.RECTANGLE, ((100.0, 100.0), (900.0, 900.0)), "Normal", "N"))
    (result,) = dialog.restage_from_annotations()
    assert result.stage.value == "pN0" and dialog.table.item(0, 1).text() == "NEGATIVE (annotations)"
    tab.annotations.remove([normal])  # no annotations at all: the AI's label (not analysed here)
    assert dialog.restage_from_annotations() == []
    assert "neither analysed nor annotated" in dialog.reason_label.text()
    assert not (tmp_path / "analysis").exists()  # restaging writes nothing


def test_restaging_refuses_one_node_given_twice(window, qtbot, micro_case, tmp_path):
    """Review of issue 14: restaging from annotations staged patient_010_node_2.tif and
    patient_010_node_02.tiff as two nodes (analyze refuses them as one node twice)."""
    import shutil

    from histoviewer.core.annotations import Annotation, ShapeKind

    folder = tmp_path / "patient_010"
    folder.mkdir()
    for name in ("patient_010_node_2.tif", "patient_010_node_02.tiff"):
        shutil.copyfile(micro_case / "patient_010_node_2.tif", folder / name)  # a link opens one tab
    dialog = window.cases.open_case(case_slides_in(folder))
    assert window.tabs.count() == 2
    dialog.set_output_dir(tmp_path / "analysis")
    for i in range(window.tabs.count()):
        window.tabs.widget(i).annotations.add(
            Annotation(ShapeKind.ELLIPSE, ((500.0, 500.0), (5500.0, 1500.0)), "Tumor", f"T{i}"))
    assert dialog.restage_from_annotations() == []
    assert "are the same node (patient_010 node 2)" in dialog.reason_label.text()


def test_the_case_view_says_what_model_stages_and_its_caveat(window, micro_case):
    dialog = window.cases.open_case(case_slides_in(micro_case))
    text = dialog.model_warning.text()
    assert not dialog.model_warning.isHidden() and "DEMONSTRATION" not in text
    assert "cnn-pcam" in text and "real PatchCamelyon patches" in text and "not validated for clinical use" in text
    assert "lesions at threshold" in text


def test_the_case_view_and_the_cli_write_the_same_analysis(qtbot, monkeypatch, tmp_path):
    """One orchestration path: ``histoviewer analyze`` and the case view's "Analyse all" run
    ``core.jobs.analyze_case`` and leave the same files (times and output paths aside)."""
    from histoviewer.cli import main
    from histoviewer.core.jobs import analysis as jobs_analysis
    from histoviewer.qt.case_dialog import CaseAnalysis
    from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff

    monkeypatch.setattr(jobs_analysis, "open_model", lambda _spec, device="auto": LesionFractionModel())
    slide = write_synthetic_tiff(tmp_path / "patient_031_node_0.tiff")
    assert main(["analyze", str(slide), "--model", "fraction", "--out", str(tmp_path / "cli"), "--json"]) == 0
    analysis = CaseAnalysis([slide], tmp_path / "gui", "fraction")
    with qtbot.waitSignal(analysis.finished, timeout=60_000) as finished:
        analysis.start()
    assert analysis.wait(30) and finished.args[1] == "" and finished.args[0] is not None

    def files(root):
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    cli, gui = tmp_path / "cli", tmp_path / "gui"
    assert files(cli) == files(gui) and "patient_031_node_0/lesions.geojson" in files(cli)
    for name in files(cli):
        if name.endswith("summary.json"):
            a, b = (json.loads((root / name).read_text()) for root in (cli, gui))
            for varying in ("timing", "out_dir", "files"):
                a.pop(varying), b.pop(varying)
            assert a == b and a["classified_patches"] > 0
        else:
            assert (cli / name).read_bytes() == (gui / name).read_bytes(), name


def test_an_output_folder_that_is_a_file_is_shown_in_a_message_box(window, qtbot, micro_case, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    dialog = window.cases.open_case(case_slides_in(micro_case))
    (tmp_path / "analysis").write_text("a file, not a folder")
    dialog.set_output_dir(tmp_path / "analysis")
    dialog.analyse_all()
    qtbot.waitUntil(lambda: not dialog.analysis.running and dialog.analyse_button.isEnabled(), timeout=60_000)
    assert dialog.outputs is None and "it is a file, not a folder" in dialog.status_label.text()
    boxes = [b for b in dialog.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and str(tmp_path / "analysis") in boxes[0].text()
    boxes[0].close()
    dialog.close()


def _border_slide(path, side_px):
    """The synthetic slide (``inference_helpers``) with its lesion a ``side_px`` square at
    0.25 um/px: 1000 px (0.25 mm) gives a micrometastasis whose diameter interval on the
    fraction model's grid straddles 0.2 mm (were it ITC, the node would be pN0(i+))."""
    import numpy as np
    import tifffile

    from tests.core import inference_helpers as h

    img = h.synthetic_rgb(grain=False)
    x, y, w, hh = (int(v) for v in h.LESION_RECT)
    img[y : y + hh, x : x + w] = h.TISSUE
    img[y : y + side_px, x : x + side_px] = h.LESION
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]  # the grain after the edit, as synthetic_rgb lays it
    img[..., 2][((yy // h.GRAIN_L0_PX + xx // h.GRAIN_L0_PX) % 2).astype(bool)] -= h.GRAIN_BLUE
    px_per_cm = 1e4 / h.MPP
    tifffile.imwrite(path, img, photometric="rgb", resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
    return path


def _fraction_dialog(qtbot, monkeypatch, paths, out):
    """A case view over ``paths`` analysed with the fake fraction model into ``out``."""
    from histoviewer.core.jobs import analysis as jobs_analysis
    from histoviewer.qt.case_dialog import CaseDialog
    from tests.core.inference_helpers import LesionFractionModel

    monkeypatch.setattr(jobs_analysis, "open_model", lambda _spec, device="auto": LesionFractionModel())
    dialog = CaseDialog(paths, "fraction")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.set_output_dir(out)
    dialog.analyse_all()
    qtbot.waitUntil(lambda: not dialog.analysis.running and dialog.analyse_button.isEnabled(), timeout=60_000)
    assert dialog.outputs is not None, dialog.status_label.text()
    return dialog


def test_a_stage_resting_on_a_border_lesion_is_cautioned_under_the_stage(qtbot, monkeypatch, tmp_path):
    """Issue 14: a node whose largest lesion lies at the 0.2 mm border decides pN1mi; were
    it ITC the stage would be pN0(i+). The case view says so under the stage, as the reports
    do, in the dialog's caution colour; a clear lesion gives no caution."""
    from histoviewer.qt.case_dialog import CAUTION_COLOUR

    slide = _border_slide(tmp_path / "patient_040_node_1.tiff", 1000)
    dialog = _fraction_dialog(qtbot, monkeypatch, [slide], tmp_path / "analysis")
    assert dialog.stage_label.text() == "pN stage: pN1mi"
    assert "ITC/micro border" in dialog.table.item(0, 2).text()
    (result,) = dialog.outputs.results
    assert result.border_warning  # the staging's own words, shown whole
    text = dialog.border_label.text()
    assert text == f"Caution: {result.border_warning}."
    assert text.startswith("Caution: pN1mi rests on a lesion at a size-class border (patient_040_node_1.tiff: lesion-1 ")
    assert "were it ITC, the stage would be pN0(i+)" in text and text.endswith("measure it on the glass before signing out.")
    assert dialog.border_label.isVisible() and dialog.border_label.wordWrap()
    assert CAUTION_COLOUR in dialog.border_label.styleSheet()
    # restaging from annotations (none here: the AI's labels) keeps the same staging and caution
    (restaged,) = dialog.restage_from_annotations()
    assert restaged.border_warning == result.border_warning and dialog.border_label.text() == text
    # a new run clears it until its own stage is known
    dialog.analyse_all()
    assert dialog.border_label.isHidden()
    qtbot.waitUntil(lambda: not dialog.analysis.running and dialog.analyse_button.isEnabled(), timeout=60_000)
    assert dialog.border_label.text() == text
    dialog.close()

    clear = _border_slide(tmp_path / "patient_041_node_1.tiff", 1800)  # 0.45 mm: micro, far from 0.2 mm
    dialog = _fraction_dialog(qtbot, monkeypatch, [clear], tmp_path / "analysis-clear")
    assert dialog.stage_label.text() == "pN stage: pN1mi" and "border" not in dialog.table.item(0, 2).text()
    assert dialog.border_label.isHidden() and dialog.border_label.text() == ""
    dialog.close()


def test_renamed_slide_folders_are_noted_and_used(qtbot, monkeypatch, tmp_path):
    """Issue 14: two slides named node.tiff in different folders go to ``node`` and
    ``node-2`` (``jobs.slide_folders``, as analyze names them); the case view states the
    rename as the CLI does, gives each row its folder, and finds each node's results in it."""
    from histoviewer.core.analysis.summary import SlideSummary
    from histoviewer.core.jobs.slide_folders import slide_folders
    from histoviewer.qt.case_dialog import CaseDialog
    from tests.core.inference_helpers import write_synthetic_tiff

    paths = []
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        paths.append(write_synthetic_tiff(tmp_path / folder / "node.tiff"))
    out = tmp_path / "analysis"
    dialog = _fraction_dialog(qtbot, monkeypatch, paths, out)
    assert [f.path for f in dialog.folders] == [out / "node", out / "node-2"]
    assert dialog.folder_notes.isVisible()
    assert dialog.folder_notes.text() == (
        f"Note: {paths[1]}: results in {out / 'node-2'} (another slide or file has that name)")
    assert all(isinstance(s, SlideSummary) for s in dialog.summaries.values())
    assert [Path(dialog.summaries[r].out_dir) for r in (0, 1)] == [out / "node", out / "node-2"]
    assert f"Results in {out / 'node-2'}" in dialog.table.item(1, 0).toolTip()
    # what analyze would choose now is what the dialog used: each slide keeps its folder
    assert [f.note for f in slide_folders(out, paths)] == [f.note for f in dialog.folders]
    dialog.close()

    # a case view opened later reads each node's results from its own folder (node-2 included)
    again = CaseDialog(paths, "fraction")
    qtbot.addWidget(again)
    again.set_output_dir(out)
    again.refresh_review()
    review = [again.table.item(r, 5).text() for r in (0, 1)]
    assert all(not t.startswith("not analysed") for t in review), review
    again.close()
