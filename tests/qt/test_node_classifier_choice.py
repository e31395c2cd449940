"""Choosing the learned node classifier in the viewer (AI menu and AI panel, as analyze's
``--node-classifier``): shipped, none or a file; remembered; a bad file refused naming it;
the summary panel's snapshot and the case view use the choice."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtWidgets import QMessageBox

from histoviewer.core.analysis.learned_label import default_node_classifier_path
from histoviewer.core.models.domain import DomainVerdict
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.qt.ai_panel import AiSettings, load_ai_settings, save_ai_settings
from histoviewer.qt.case_dialog import LEARNED_COLUMN, CaseAnalysis, CaseDialog
from histoviewer.qt.live_lesions import _learned
from tests.qt.test_learned_label_gui import _noisy_negative


def _menu_actions(win):
    menu = win.ai.node_classifier_menu
    win.ai._fill_node_classifier_menu()  # as aboutToShow does
    return {a.text(): a for a in menu.actions() if a.text()}


def test_the_ai_menu_and_panel_choose_the_node_classifier_and_refuse_a_bad_file(window, qtbot, tmp_path,
                                                                                monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text, *a, **k: warnings.append(text))
    ai = window.ai
    actions = _menu_actions(window)
    assert ai.settings.node_classifier == "default"
    assert actions["Shipped (trained on phantoms only)"].isChecked()
    assert not actions["None (rule-based label only)"].isChecked()
    assert "Other node classifier &file\u2026" in actions
    combo = ai.panel.node_classifier_combo
    assert combo.currentData() == "default"

    actions["None (rule-based label only)"].trigger()
    assert ai.settings.node_classifier == "none" and combo.currentData() == "none"
    assert _menu_actions(window)["None (rule-based label only)"].isChecked()

    bad = tmp_path / "broken-forest.safetensors"
    bad.write_bytes(b"not a node classifier at all")
    assert not ai.panel.choose_node_classifier(str(bad))
    assert len(warnings) == 1 and str(bad) in warnings[0]  # the message names the file
    assert ai.settings.node_classifier == "none" and combo.currentData() == "none"  # unchanged

    good = tmp_path / "my-forest.safetensors"
    shutil.copyfile(default_node_classifier_path(), good)
    assert ai.panel.choose_node_classifier(str(good))
    assert ai.settings.node_classifier == str(good) and combo.currentText() == good.name
    assert _menu_actions(window)[good.name].isChecked() and len(warnings) == 1


def test_the_choice_is_remembered_and_reaches_every_open_slides_lesions(window, qtbot, tmp_path, micro_phantom):
    settings_file = tmp_path / "ai-settings.json"
    save_ai_settings(AiSettings(node_classifier="none"), settings_file)
    assert load_ai_settings(settings_file).node_classifier == "none"
    tab = window.open_slide(micro_phantom.slide_path)
    assert tab.lesions.node_classifier == "default"
    window.ai.panel.choose_node_classifier("none")
    assert tab.lesions.node_classifier == "none"


def test_the_live_learned_label_follows_the_chosen_classifier(tmp_path):
    m, found = _noisy_negative()
    domain = DomainVerdict.not_assessed()
    shipped = _learned(m.encoded, found, domain, "default")
    assert shipped.shown and shipped.label is NodeLabel.NEGATIVE  # the forest's second opinion
    assert _learned(m.encoded, found, domain, "none") is None
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(default_node_classifier_path(), copy)
    from_file = _learned(m.encoded, found, domain, str(copy))
    assert from_file.label is shipped.label and from_file.classifier_hash == shipped.classifier_hash
    # a remembered file that has since become unusable: no label, with the reason, never the shipped one
    copy.write_bytes(b"truncated")
    gone = _learned(m.encoded, found, domain, str(copy))
    assert not gone.shown and str(copy) in gone.reason and gone.rule_label is found.label


def test_the_case_view_uses_the_chosen_classifier(qtbot, tmp_path):
    slides = [str(tmp_path / f"patient_031_node_{i}.tif") for i in range(2)]
    dialog = CaseDialog(slides, node_classifier="none")
    qtbot.addWidget(dialog)
    assert dialog.table.horizontalHeaderItem(LEARNED_COLUMN).text() == "Learned label (none chosen)"
    bad = tmp_path / "gone.safetensors"
    bad.write_bytes(b"\x00" * 16)
    analysis = CaseAnalysis(slides, tmp_path / "out", "cnn", "cpu", node_classifier=str(bad))
    with qtbot.waitSignal(analysis.finished, timeout=30_000) as done:
        analysis.start()
    outputs, error = done.args
    assert outputs is None and "node classifier" in error and str(bad) in error


def test_a_report_exported_from_the_viewer_uses_the_chosen_classifier(tmp_path):
    from histoviewer.core.errors import ModelLoadError
    from histoviewer.core.export.source import HeatmapData
    from histoviewer.core.report import slide_report_from_map
    from tests.core.test_node_classifier import MODEL

    m, _found = _noisy_negative()
    heatmap = HeatmapData(m.encoded, m.geometry, MODEL)
    path = "/slides/patient_041_node_1.tif"
    assert slide_report_from_map(path, heatmap).learned.classifier == "node-forest-phantom"
    assert slide_report_from_map(path, heatmap, node_classifier="none").learned is None
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match="bad.safetensors"):
        slide_report_from_map(path, heatmap, node_classifier=str(bad))
