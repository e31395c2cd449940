"""Help > About: the version, the shipped models' cards, the third-party licences; and the
packaging smoke check (exit 0 only after a complete, non-blank first frame)."""

from __future__ import annotations

from PySide6.QtGui import QImage

from histoviewer import __version__
from histoviewer.core.licenses import THIRD_PARTY, licence_summary
from histoviewer.core.models.registry import DEFAULT_MODEL_NAMES
from histoviewer.qt.about_dialog import AboutDialog, model_card_html, shipped_models
from histoviewer.qt.smoke import arm_smoke_test, image_is_blank


def test_help_menu_opens_about_with_version_model_cards_and_licences(window, qtbot):
    titles = [a.text() for a in window.menuBar().actions()]
    assert "&Help" in titles
    help_menu = window.menuBar().actions()[titles.index("&Help")].menu()
    about = next(a for a in help_menu.actions() if a.text().startswith("&About"))
    about.trigger()
    dialog = window.findChild(AboutDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.addWidget(dialog)
    assert f"HistoViewer {__version__}" in dialog.version_label.text()
    assert "not validated for clinical use" in dialog.version_label.text()
    cards = dialog.models_view.toPlainText()
    for model in shipped_models():
        assert model.key in cards
        assert model.info.caution in cards
    assert (
        "kaggle-test" in cards and "camelyon16" in cards and "Operating point" in cards
    )
    # the screening model and the learned node classifier are shipped models too (issue 15)
    screening = cards.split("screen (screening model): ", 1)[1]
    assert "screen-pcam" in screening and "sensitivity >= 0.99" in screening and "margin 1 patch" in screening
    forest = screening.split("node classifier: node-forest-phantom", 1)[1]
    assert "trained on phantoms only" in forest and "644 nodes of 160 patients" in forest
    assert "SHA-256 abddb10fcfdd1eef" in forest and "trees 104ac7348544ffc4" in forest
    assert dialog.licence_list.count() == len(THIRD_PARTY)
    rows = [
        dialog.licence_list.item(i).text() for i in range(dialog.licence_list.count())
    ]
    assert any(r.startswith("Qt 6") and "LGPL-3.0" in r for r in rows)
    assert any(r.startswith("OpenSlide (") and "LGPL-2.1" in r for r in rows)
    assert any(r.startswith("PatchCamelyon") and "CC0" in r for r in rows)
    dialog.licence_list.setCurrentRow([c.key for c in THIRD_PARTY].index("openslide"))
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in dialog.licence_text.toPlainText()
    # every licence in full, wrapped in the list (they were cut: "LGPL-3.0-only OR ...", and
    # OpenSlide's ran off the list's edge)
    for row, component in zip(rows, THIRD_PARTY):
        assert licence_summary(component) in row and "\u2026" not in row
    dialog.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: dialog.licence_list.isVisible())
    assert dialog.licence_list.wordWrap() and not dialog.licence_list.horizontalScrollBar().isVisible()
    dialog.close()


def test_model_card_states_held_out_numbers_and_operating_point():
    models = {m.key: m for m in shipped_models()}
    assert set(models) == set(DEFAULT_MODEL_NAMES)
    card = model_card_html(models["cnn-resnet"])
    info = models["cnn-resnet"].info
    auc = info.extra["evaluations"]["kaggle-test"]["auc"]
    assert f"{auc:.3f}" in card
    assert f"threshold {info.operating_point.threshold:.2f}" in card
    assert "6,656 real PatchCamelyon" in card


def test_model_card_says_which_engine_runs_the_model(monkeypatch):
    """Help > About names the engine as ``histoviewer models`` does: onnxruntime for the chain
    CNN on a CPU-only machine, torch for the residual network and when torch is forced."""
    from histoviewer.core.models import model_engine

    monkeypatch.setattr(model_engine, "_gpu_possible", lambda: False)  # the same on any machine
    monkeypatch.delenv(model_engine.ENGINE_ENV, raising=False)
    models = {m.key: m for m in shipped_models()}
    assert "Runs on: onnxruntime (a chain CNN on the CPU)" in model_card_html(models["cnn"])
    assert "Runs on: torch (architecture resnet runs on torch only)" in model_card_html(models["cnn-resnet"])
    monkeypatch.setenv(model_engine.ENGINE_ENV, "torch")
    assert "Runs on: torch (torch requested" in model_card_html(models["cnn"])


def test_blank_image_detection():
    image = QImage(64, 64, QImage.Format.Format_RGB32)
    image.fill(0xFFFFFF)
    assert image_is_blank(image)
    for x in range(32):
        for y in range(64):
            image.setPixel(x, y, 0x8040A0)
    assert not image_is_blank(image)


class _App:
    code: int | None = None

    def exit(self, code: int) -> None:
        self.code = code


def test_smoke_check_exits_0_after_the_first_complete_frame(
    window, qtbot, tiny_svs, monkeypatch
):
    monkeypatch.setenv("HISTOVIEWER_SMOKE_TEST", "30")
    window.show()
    window.open_slide(tiny_svs)
    app = _App()
    arm_smoke_test(app, window)
    qtbot.waitUntil(lambda: app.code is not None, timeout=20_000)
    assert app.code == 0


def test_smoke_check_fails_without_a_slide(window, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOVIEWER_SMOKE_TEST", "30")
    window.show()
    window.open_slide(tmp_path / "missing.svs")
    app = _App()
    arm_smoke_test(app, window)
    qtbot.waitUntil(lambda: app.code is not None, timeout=5_000)
    assert app.code == 1


def test_smoke_check_is_off_without_the_variable(window, monkeypatch):
    monkeypatch.delenv("HISTOVIEWER_SMOKE_TEST", raising=False)
    app = _App()
    arm_smoke_test(app, window)
    assert app.code is None


def test_application_icon_has_the_drawn_sizes(qapp):
    from histoviewer.qt.about_dialog import application_icon

    sizes = {(s.width(), s.height()) for s in application_icon().availableSizes()}
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= sizes
