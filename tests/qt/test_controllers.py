"""The main window's controllers and the one GUI-thread hop (``qt/threads.py``).

Controllers own their actions and talk to the window through a small protocol, so most of
this runs them against a stand-in host; the window-level test swaps the AI overlay's engine
for a fake whose callbacks the test fires from a worker thread, to close a tab while results
are in flight.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import shiboken6
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QWidget

from histoviewer.qt import heatmap_layer
from histoviewer.qt.actions import make_action
from histoviewer.qt.ai_controller import STATUS_INTERVAL_MS, AiController
from histoviewer.qt.ai_panel import AiSettings
from histoviewer.qt.case_controller import CaseController
from histoviewer.qt.lesion_controller import LesionController
from histoviewer.qt.main_window import MainWindow
from histoviewer.qt.threads import gui_thread
from tests.qt.conftest import open_settled


class _Host(QObject):
    """A stand-in for the window: the ``window_host`` protocols, recorded."""

    currentTabChanged = Signal(object)

    def __init__(self, tabs=()) -> None:
        super().__init__()
        self.tabs = list(tabs)
        self.messages: list[str] = []
        self.errors: list[tuple[str, str]] = []
        self.opened: list[str] = []

    def current_tab(self):
        return self.tabs[0] if self.tabs else None

    def slide_tabs(self):
        return list(self.tabs)

    def show_message(self, text: str, timeout_ms: int) -> None:
        self.messages.append(text)

    def current_message(self) -> str:
        return self.messages[-1] if self.messages else ""

    def report_error(self, title: str, message: str) -> None:
        self.errors.append((title, message))

    def open_slide(self, path):
        self.opened.append(str(path))

    def show_slide(self, path) -> None:
        pass


def _on_worker(fn) -> None:
    """Run ``fn`` on a worker thread and wait for it (what it hands to the GUI is then in flight)."""
    thread = threading.Thread(target=fn, name="test-worker")
    thread.start()
    thread.join(5)
    assert not thread.is_alive()


def test_make_action_sets_keys_check_state_and_menu(qtbot):
    menu = QMenu()
    calls = []
    redo = make_action(menu, "&Redo", lambda: calls.append("redo"), menu=menu,
                       shortcut=[QKeySequence.StandardKey.Redo, "Ctrl+Y"])
    keys = [k.toString() for k in redo.shortcuts()]
    # every platform binding of the standard key, and Ctrl+Y (also one of them) only once
    assert keys[0] == QKeySequence(QKeySequence.StandardKey.Redo).toString() and keys.count("Ctrl+Y") == 1
    assert redo in menu.actions() and not redo.isCheckable()
    toggle = make_action(menu, "Show &heatmap", lambda on: calls.append(on), shortcut="H", checked=False)
    assert toggle.isCheckable() and not toggle.isChecked() and toggle not in menu.actions()
    assert [k.toString() for k in toggle.shortcuts()] == ["H"]
    redo.trigger()
    toggle.trigger()
    assert calls == ["redo", True]
    menu.deleteLater()


def test_turning_the_ai_on_brings_its_lesion_panel_to_the_front(qtbot):
    win = MainWindow(cache_mb=16, ai=AiSettings(enabled=False))
    qtbot.addWidget(win)
    win.show()
    win.annotation_actions.panel.raise_()  # the user was looking at the annotations
    qtbot.waitUntil(lambda: not win.annotation_actions.panel.visibleRegion().isEmpty())
    win.ai.run_action.trigger()
    qtbot.waitUntil(lambda: not win.lesions.panel.visibleRegion().isEmpty())
    assert win.annotation_actions.panel.visibleRegion().isEmpty()
    win.close()


def test_the_main_window_is_no_mixin():
    assert MainWindow.__bases__ == (QMainWindow,)


def test_ai_actions_change_the_settings_through_their_attributes(qtbot):
    host = _Host()
    owner = QWidget()  # owns the controller: its throttled status timer goes with it
    qtbot.addWidget(owner)
    ai = AiController(host, AiSettings(enabled=False, show=True, background=True), parent=owner)
    enabled = []
    ai.enabledChanged.connect(enabled.append)
    assert ai.menu.actions()[:3] == [ai.run_action, ai.heatmap_action, ai.background_action]
    assert ai.heatmap_action.shortcut().toString() == "H"

    ai.heatmap_action.trigger()
    assert not ai.settings.show and not ai.heatmap_action.isChecked()
    ai.run_action.trigger()
    assert ai.settings.enabled and enabled == [True]
    ai.background_action.trigger()
    assert not ai.settings.background
    # the panel's own controls move the actions too
    ai.panel.set_settings(replace(ai.settings, show=True, enabled=False))
    assert ai.heatmap_action.isChecked() and not ai.run_action.isChecked() and enabled == [True, False]
    ai.update_status()
    assert ai.status_label.text() == "" and ai.panel.progress_label.text() == ""  # no slide open
    # closing drops a pending (throttled) status update
    ai.status_label.setText("stale")
    ai.run_action.trigger()
    ai.close()
    qtbot.wait(2 * STATUS_INTERVAL_MS)
    assert ai.status_label.text() == "stale"


def test_lesion_and_case_controllers_act_on_the_hosts_slides(qtbot):
    class Tab:
        lesions_visible = True

        def set_lesions_visible(self, visible: bool) -> None:
            self.lesions_visible = visible

    host = _Host([Tab(), Tab()])
    owner = QWidget()
    qtbot.addWidget(owner)
    lesions = LesionController(host, parent=owner)
    assert lesions.menu_actions[0] is lesions.lesions_action
    lesions.lesions_action.trigger()
    assert [t.lesions_visible for t in host.tabs] == [False, False]
    host.tabs = []
    host.currentTabChanged.emit(None)
    assert lesions.panel.coverage_label.text() == "No slide open."

    cases = CaseController(host, lambda: AiSettings(), parent=owner)
    assert cases.open_case([]) is None and cases.dialog is None
    assert host.errors == [("No slides", "The folder holds no slide files.")] and host.opened == []


def test_gui_thread_runs_on_the_gui_thread_and_never_on_a_deleted_receiver(qtbot):
    class Receiver(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[int, str]] = []

        @gui_thread
        def deliver(self, value: int) -> None:
            self.calls.append((value, threading.current_thread().name))

    receiver = Receiver()
    receiver.deliver(1)  # on the GUI thread: at once
    assert receiver.calls == [(1, threading.main_thread().name)]
    _on_worker(lambda: receiver.deliver(2))
    assert len(receiver.calls) == 1  # queued, not run on the worker
    qtbot.waitUntil(lambda: len(receiver.calls) == 2)
    assert receiver.calls[1] == (2, threading.main_thread().name)

    _on_worker(lambda: receiver.deliver(3))
    calls = receiver.calls
    shiboken6.delete(receiver)  # deleted while the call is in flight
    qtbot.wait(50)  # a call into the deleted object would raise here (pytest-qt fails the test)
    assert calls == receiver.calls and len(calls) == 2


class _FakeLive:
    """Stands in for ``LiveHeatmap``: no model, no threads; the test fires its callbacks."""

    def __init__(self, slide_path, reader, options, style, *, region_source=None, on_ready=None,
                 on_update=None, on_failure=None, on_idle=None, on_error=None) -> None:
        self.on_update, self.on_failure, self.on_error = on_update, on_failure, on_error
        self.style = style
        self.raster = self.grid = self.model = None
        self.is_idle = False
        self.closed = False

    def set_interactive(self, _interactive: bool) -> None:
        pass

    def submit_view(self, _l0_rect, _l0_per_screen_px=None) -> None:
        pass

    def set_style(self, style) -> None:
        self.style = style

    def close(self) -> None:
        self.closed = True


def test_ai_actions_toggle_the_heatmap_and_closing_a_tab_drops_results_in_flight(window, qtbot, slide,
                                                                                   monkeypatch):
    monkeypatch.setattr(heatmap_layer, "LiveHeatmap", _FakeLive)
    tab = open_settled(window, qtbot, slide)
    assert tab.heatmap is None and not window.lesions.panel.isVisible()
    window.ai.run_action.trigger()  # AI > Classify tissue in view
    layer = tab.heatmap
    assert layer is not None and window.ai.settings.enabled and window.lesions.panel.isVisible()
    qtbot.waitUntil(lambda: window.ai.status_label.text() == "AI: starting\u2026")  # throttled status line
    window.ai.heatmap_action.trigger()  # AI > Show heatmap (H)
    assert not layer.visible and not tab.legend.isVisible()
    window.ai.heatmap_action.trigger()
    assert layer.visible and tab.legend.isVisible()

    live = layer.live
    failures, errors, tile_failures = [], [], []
    layer.failed.connect(failures.append)
    layer.error.connect(errors.append)
    tab.view.tileFailed.connect(tile_failures.append)
    _on_worker(lambda: live.on_failure("2 patches could not be classified"))
    qtbot.waitUntil(lambda: tab.heatmap_failure == "2 patches could not be classified")
    assert failures == ["2 patches could not be classified"]

    key = tab.session.loader.key(0, 0, 0)
    _on_worker(lambda: (live.on_failure("late"), live.on_error("late"), tab.view.on_tile_failed(key, "late")))
    window.close_tab(0)  # before the GUI thread got to them
    assert live.closed
    qtbot.waitUntil(lambda: not shiboken6.isValid(layer))  # the tab and its layer are deleted
    assert failures == ["2 patches could not be classified"] and errors == [] and tile_failures == []
    assert window.view_controls.load_label.text() == "" and window.current_tab() is None
    # and results arriving after the objects are gone are dropped without touching them
    _on_worker(lambda: (live.on_update((0, 1, 0, 1)), tab.view.on_tile_loaded(key)))
    qtbot.wait(50)
    window.ai.update_status()
    assert window.ai.status_label.text() == ""



def test_view_labels_and_magnifications_follow_the_tab_in_front(window, qtbot, cmu_small, slides_dir):
    first = open_settled(window, qtbot, cmu_small)
    second = open_settled(window, qtbot, slides_dir / "tcga-cr-7395-01a-01-ts1-no-mpp.svs")
    view = window.view_controls
    # the other slide, zoomed in: a label of its own
    second.view.zoom_by(4.0)
    second_text = view.mag_label.text()
    window.tabs.setCurrentWidget(first)
    base = first.session.info.base_magnification
    assert view.mag_label.text() == f"{base * first.view.viewport.scale:.1f}x" != second_text
    assert all(action.isEnabled() for action in view.mag_actions.values())
    window.tabs.setCurrentWidget(second)
    assert view.mag_label.text() == second_text
    window.close_all()
    assert view.mag_label.text() == "" and not any(a.isEnabled() for a in view.mag_actions.values())
