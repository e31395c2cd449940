"""The case view's review column: per node what is left to review and the pN as reviewed,
following the decisions taken in the viewer."""

from __future__ import annotations

import json
import shutil

import pytest

from histoviewer.core.analysis.review_queue import build_queue, decide
from histoviewer.core.annotations.review import Verdict
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.qt.ai_panel import AiSettings
from histoviewer.qt.case_dialog import COLUMNS
from histoviewer.qt.main_window import MainWindow
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff

NODES = ("patient_020_node_0.tif", "patient_020_node_1.tif")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("review-case")
    source = write_synthetic_tiff(root / "synthetic.tiff")
    (root / "slides").mkdir()
    summaries = {}
    for name in NODES:
        shutil.copy(source, root / "slides" / name)
        summaries[name] = analyze_slide(root / "slides" / name, root / "analysis" / name.removesuffix(".tif"),
                                        LesionFractionModel(), AnalyzeOptions(batch_size=64))
    return root, summaries


@pytest.fixture
def case(analysed, tmp_path):
    root, summaries = analysed
    shutil.copytree(root / "slides", tmp_path / "slides")
    shutil.copytree(root / "analysis", tmp_path / "analysis")
    for name in NODES:  # the copied analysis names the copied slides
        path = tmp_path / "analysis" / name.removesuffix(".tif") / "summary.json"
        data = json.loads(path.read_text())
        data["slide"] = str(tmp_path / "slides" / name)
        path.write_text(json.dumps(data))
    return tmp_path / "slides", tmp_path / "analysis", summaries


def test_case_view_shows_review_progress_and_the_stage_as_reviewed(qtbot, case):
    slides, analysis, summaries = case
    win = MainWindow(cache_mb=64, ai=AiSettings(enabled=False))
    qtbot.addWidget(win)
    win.show()
    dialog = win.cases.open_case([slides / n for n in NODES])
    qtbot.addWidget(dialog)
    column = COLUMNS.index("Review")
    # the default output folder holds no analysis: the hotspots are not known
    assert dialog.table.item(0, column).text() == "not analysed: the AI's hotspots are not known"
    dialog.set_output_dir(analysis)
    dialog.refresh_review()
    assert [dialog.table.item(r, column).text() for r in range(2)] == ["1 of 1 unreviewed"] * 2
    assert "Review: 0 of 2 hotspots reviewed" in dialog.review_label.text()
    assert "pN as reviewed unknown (AI: pN1mi)" in dialog.review_label.text()
    # decisions in the open slides' documents (as the Review keys take them): the view follows
    for name, verdict in zip(NODES, (Verdict.NOT_TUMOUR, Verdict.TUMOUR)):
        summary = summaries[name]
        tab = next(t for t in win.slide_tabs() if t.path.endswith(name) or str(t.path).endswith(name))
        queue = build_queue(summary.lesions, [], summary.model.content_hash)
        tab.annotations.set_decision(decide(queue.hotspots[0], verdict, summary.model.content_hash, "dr. a"))
    dialog.refresh_review()
    assert [dialog.table.item(r, column).text() for r in range(2)] == ["reviewed (1)"] * 2
    assert "Review: 2 of 2 hotspots reviewed (1 tumour, 1 not tumour, 0 unsure)" in dialog.review_label.text()
    assert "pN as reviewed pN1mi (AI: pN1mi)" in dialog.review_label.text()
    assert "Node label as reviewed: negative (AI: micro)" in dialog.table.item(0, column).toolTip()
    dialog.close()
    win.close()
