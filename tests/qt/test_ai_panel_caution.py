"""The AI panel names the running model with what it was trained on and colours from the
model's operating point unless the user moves the threshold slider."""

from __future__ import annotations

from dataclasses import replace

from histoviewer.core.models.classifier import DEMO_WARNING, ModelInfo, OperatingPoint
from histoviewer.qt.ai_panel import AiPanel, AiSettings

CAVEAT = "research model trained on 6,657 real PatchCamelyon patches; not validated for clinical use"
POINT = OperatingPoint(0.37, "sensitivity >= 0.95", 0.95, 0.88, 900)
INFO = ModelInfo(name="trained", kind="cnn", architecture="strided-cnn", caveat=CAVEAT, operating_point=POINT)


def test_the_panel_shows_the_caveat_and_the_operating_point(qtbot, tmp_path, monkeypatch):
    panel = AiPanel(AiSettings())
    qtbot.addWidget(panel)
    panel.show_model(INFO, "CPU")
    assert CAVEAT in panel.model_label.text() and "DEMONSTRATION" not in panel.model_label.text()
    assert "threshold 0.37: sensitivity 95 %, specificity 88 % on validation" in panel.threshold_label.text()
    assert panel.threshold_slider.value() == 37 and panel.settings.threshold_from_model
    assert AiSettings().style(0.37).threshold == 0.37
    # the user moves the slider: their threshold beats the model's, and the panel says so
    seen = []
    panel.settingsChanged.connect(lambda new, _old: seen.append(new))
    panel.threshold_slider.setValue(60)
    assert not panel.settings.threshold_from_model and panel.settings.threshold == 0.6
    assert seen[-1].style(0.37).threshold == 0.6
    assert "set by user" in panel.threshold_label.text() and not panel.model_threshold_box.isChecked()
    # and the box brings the model's operating point back
    panel.model_threshold_box.setChecked(True)
    assert panel.settings.threshold_from_model and panel.threshold_slider.value() == 37


def test_a_demonstration_model_keeps_its_warning_and_a_model_without_a_point_says_so(qtbot):
    panel = AiPanel(AiSettings())
    qtbot.addWidget(panel)
    panel.show_model(replace(INFO, demonstration=True, operating_point=None), "CPU")
    assert DEMO_WARNING in panel.model_label.text()
    assert "threshold 0.50 (default, model states none)" in panel.threshold_label.text()


def test_a_threshold_saved_before_operating_points_stays_the_users(tmp_path):
    import json

    from histoviewer.qt.ai_panel import load_ai_settings

    path = tmp_path / "ai-settings.json"
    path.write_text(json.dumps({"threshold": 0.3}))
    assert not load_ai_settings(path).threshold_from_model  # the user's own choice
    path.write_text(json.dumps({"threshold": 0.5}))
    assert load_ai_settings(path).threshold_from_model  # the old default: the model's now
