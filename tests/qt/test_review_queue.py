"""The review queue driven from the keyboard on a phantom slide: decisions, fly-to, undo and
redo, the autosave after a crash, and keys that clash with no other action."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication

from histoviewer.core.annotations import load_autosave
from histoviewer.core.annotations.review import Verdict
from histoviewer.qt.ai_panel import AiSettings
from histoviewer.qt.main_window import MainWindow
from histoviewer.qt.review_controller import (
    NEXT_KEYS,
    NEXT_UNREVIEWED_KEYS,
    PREVIOUS_KEYS,
    VERDICT_KEYS,
)
from tests.qt.review_helpers import blob_snapshot

# (row, col, side in map cells, P): two micros, two ITCs on the 6000 x 6000 px phantom
BLOBS = [(2, 2, 5, 0.95), (10, 10, 2, 0.9), (3, 11, 1, 0.7), (12, 2, 3, 0.99)]


@pytest.fixture
def slide(micro_phantom, tmp_path):
    """A copy of the phantom per test: its autosave (beside it) is the test's own."""
    path = tmp_path / "node.tiff"
    shutil.copy(micro_phantom.slide_path, path)
    return path


def open_window(qtbot, slide) -> MainWindow:
    win = MainWindow(cache_mb=64, ai=AiSettings(enabled=False))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    win.open_slide(slide)
    win.activateWindow()  # the Review menu's keys are window shortcuts: the window must be active
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    return win


def show_lesions(qtbot, win: MainWindow):
    """The AI's lesions arrive, as LiveLesions announces them."""
    tab = win.current_tab()
    snapshot = blob_snapshot(tab.session.info.dimensions, tab.session.info.mpp, BLOBS)
    tab.lesions.snapshot = snapshot
    with qtbot.waitSignal(win.review.queueChanged, timeout=5000):
        tab.lesions.changed.emit(snapshot)
    return tab, snapshot


def press(qtbot, win: MainWindow, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(win, key, modifier)


def verdicts(win: MainWindow) -> list[Verdict | None]:
    return [h.decision.verdict if h.decision else None for h in win.review.queue.hotspots]


def test_keyboard_review_of_a_phantoms_hotspots_with_fly_to_and_undo(qtbot, slide):
    win = open_window(qtbot, slide)
    review = win.review
    assert review.panel.progress_label.text() == "AI overlay off: no hotspots to review. Turn it on in the AI menu."
    assert not review.verdict_actions[Verdict.TUMOUR].isEnabled()
    tab, snapshot = show_lesions(qtbot, win)
    assert len(review.queue) == 4 and review.panel.progress_label.text() == "0 of 4 reviewed"
    assert win.lesions.panel.reviewed_label.isHidden()  # nothing reviewed yet
    # ranked: micros first (the more probable first), then the ITCs
    assert [h.lesion.size_class.value for h in review.queue.hotspots] == ["micro", "micro", "itc", "itc"]
    assert [h.lesion.max_probability for h in review.queue.hotspots][:2] == sorted(
        [h.lesion.max_probability for h in review.queue.hotspots][:2], reverse=True)
    shown = []
    review.inspector = lambda t, h: shown.append(h.hotspot_id)  # the patch inspector's hook

    # J flies to the next hotspot (from the first: the second)
    with qtbot.waitSignal(review.hotspotShown, timeout=2000) as blocker:
        press(qtbot, win, Qt.Key.Key_J)
    second = review.queue.hotspots[1]
    assert blocker.args[1].hotspot_id == second.hotspot_id and shown == [second.hotspot_id]
    x, y, w, h = second.lesion.l0_bbox
    cx, cy = tab.view.viewport.l0_cx, tab.view.viewport.l0_cy
    assert abs(cx - (x + w / 2)) < 1 and abs(cy - (y + h / 2)) < 1
    assert tab.lesion_layer.selected == second.lesion.index
    # K back to the first; T accepts it and moves on to the next unreviewed
    press(qtbot, win, Qt.Key.Key_K)
    assert review.position == 0
    with qtbot.waitSignal(review.hotspotShown, timeout=2000):
        press(qtbot, win, Qt.Key.Key_T)
    assert verdicts(win) == [Verdict.TUMOUR, None, None, None] and review.position == 1
    assert review.panel.progress_label.text() == "1 of 4 reviewed"
    press(qtbot, win, Qt.Key.Key_N)
    press(qtbot, win, Qt.Key.Key_U)
    assert verdicts(win) == [Verdict.TUMOUR, Verdict.NOT_TUMOUR, Verdict.UNSURE, None]
    assert review.panel.progress_label.text() == "3 of 4 reviewed" and review.position == 3
    assert review.status_label.text() == "Review: 3 of 4 reviewed" and review.status_label.isVisible()
    assert review.panel.isVisible()  # reviewing from the keyboard brought the queue up
    # the slide shows each decision on its lesion
    marks = tab.lesion_layer.review_marks
    assert [marks.get(h.lesion.index) for h in review.queue.hotspots] == ["tumour", "not tumour", "unsure", None]
    assert "1 hotspot not reviewed" in review.reviewed.text and "1 hotspot marked unsure" in review.reviewed.text
    # the decision is stored in the slide's annotation document, with the AI's numbers
    decision = tab.annotations.decision(review.queue.hotspots[0].hotspot_id)
    assert decision.ai_probability == review.queue.hotspots[0].lesion.max_probability
    assert decision.model_hash == snapshot.model_hash and decision.reviewer == review.reviewer

    # undo (Ctrl+Z) takes the last decision back and shows that hotspot; redo restores it
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert verdicts(win) == [Verdict.TUMOUR, Verdict.NOT_TUMOUR, None, None] and review.position == 2
    assert review.panel.progress_label.text() == "2 of 4 reviewed"
    press(qtbot, win, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert verdicts(win) == [Verdict.TUMOUR, Verdict.NOT_TUMOUR, Verdict.UNSURE, None] and review.position == 2
    # Shift+J: the next unreviewed (the last one); the review is then complete
    press(qtbot, win, Qt.Key.Key_J, Qt.KeyboardModifier.ShiftModifier)
    assert review.position == 3
    press(qtbot, win, Qt.Key.Key_N)
    assert review.panel.progress_label.text() == "4 of 4 reviewed" and "Review complete" in win.current_message()
    assert not review.reviewed.final  # one hotspot is still "unsure"
    press(qtbot, win, Qt.Key.Key_K)
    press(qtbot, win, Qt.Key.Key_N)  # changing a decision is one more undoable step
    assert verdicts(win) == [Verdict.TUMOUR, Verdict.NOT_TUMOUR, Verdict.NOT_TUMOUR, Verdict.NOT_TUMOUR]
    assert review.reviewed.final and review.reviewed.label.value == "micro"
    assert "As reviewed: <b style='color:#222'>micro</b>" in review.panel.reviewed_label.text()
    # the summary panel shows it beside the AI's label
    assert win.lesions.panel.reviewed_label.text() == "As reviewed: micro (4 of 4 reviewed)"
    # Shift+J with nothing left to review says so and stays
    press(qtbot, win, Qt.Key.Key_J, Qt.KeyboardModifier.ShiftModifier)
    assert "Every hotspot" in win.current_message()


def test_decisions_survive_a_crash_through_the_autosave(qtbot, slide):
    win = open_window(qtbot, slide)
    tab, _ = show_lesions(qtbot, win)
    tab.autosaver.delay_s = 0.05  # the autosave timer saves soon after the last edit
    press(qtbot, win, Qt.Key.Key_T)
    press(qtbot, win, Qt.Key.Key_N)

    def saved() -> bool:
        found = load_autosave(slide)
        return found is not None and len(found.annotation_set.decisions) == 2

    qtbot.waitUntil(saved, timeout=5000)  # the autosave timer wrote them; nothing flushed by hand
    # the viewer "crashes": the first window is never closed properly; a new one opens the slide
    tab._autosave_timer.stop()
    tab.autosaver.discard()  # nothing more from the crashed session reaches the disk
    win2 = open_window(qtbot, slide)
    tab2 = win2.current_tab()
    assert tab2.annotation_recovery is not None and "2 review decisions" in tab2.annotation_recovery.message
    show_lesions(qtbot, win2)
    assert win2.review.panel.progress_label.text() == "2 of 4 reviewed"
    assert verdicts(win2)[:2] == [Verdict.TUMOUR, Verdict.NOT_TUMOUR]
    assert not tab2.annotations.can_undo  # restored, not an edit
    win2.close()
    win.close()


def test_review_keys_clash_with_no_other_action(qtbot, slide):
    win = open_window(qtbot, slide)
    ours = set(win.review.actions)
    keys: dict[str, list[QAction]] = {}
    for action in win.findChildren(QAction):
        for seq in action.shortcuts():
            keys.setdefault(seq.toString(QKeySequence.SequenceFormat.PortableText), []).append(action)
    for key in (*NEXT_KEYS, *PREVIOUS_KEYS, *NEXT_UNREVIEWED_KEYS, *VERDICT_KEYS.values()):
        text = QKeySequence(key).toString(QKeySequence.SequenceFormat.PortableText)
        holders = keys.get(text, [])
        assert len(holders) == 1 and holders[0] in ours, f"{text}: {[a.text() for a in holders]}"


def test_a_model_that_states_its_uncertainty_ranks_ties_by_it(qtbot, slide):
    win = open_window(qtbot, slide)
    tab = win.current_tab()
    twins = blob_snapshot(tab.session.info.dimensions, tab.session.info.mpp, [(2, 2, 2, 0.9), (10, 10, 2, 0.9)])
    by_col = {les.index: les.l0_bbox[0] for les in twins.result.lesions}
    right = max(by_col, key=by_col.get)  # the lesion further right: the more uncertain one
    win.review.uncertainty_of = lambda _tab, les: 0.4 if les.index == right else 0.1
    tab.lesions.snapshot = twins
    with qtbot.waitSignal(win.review.queueChanged, timeout=5000):
        tab.lesions.changed.emit(twins)
    assert [h.lesion.index for h in win.review.queue.hotspots][0] == right
    assert win.review.queue.hotspots[0].uncertainty == 0.4
    assert "uncertainty 0.40" in win.review.panel.current_label.text()
