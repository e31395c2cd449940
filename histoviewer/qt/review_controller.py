"""The review queue in the main window: the Review menu, its keys, the panel, fly-to.

``ReviewController`` walks the pathologist through the AI's hotspots of the slide in front
(``core.analysis.review_queue``): J / Page Down next, K / Page Up previous, T tumour,
N not tumour, U unsure (each decision moves on to the next unreviewed hotspot). Decisions
go into the slide's annotation document (``AnnotationDocument.set_decision``), so they are
undone with Ctrl+Z, autosaved with the annotations and restored after a crash. The queue is
rebuilt whenever the lesions or the document change; the current hotspot is kept by its id.

Patch inspector hook: every time the view flies to a hotspot, ``hotspotShown(tab, hotspot)``
is emitted and ``inspector`` (when set: ``callable(tab, hotspot)``) is called, so a patch
inspector can show that hotspot's patches beside the view.
"""

from __future__ import annotations

import getpass
import weakref
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QMenu, QWidget

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.analysis.review_queue import (
    Hotspot,
    ReviewedLabel,
    ReviewQueue,
    build_queue,
    decide,
    reviewed_label,
)
from histoviewer.core.annotations.document import DocumentChange
from histoviewer.core.annotations.review import Verdict
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON
from histoviewer.qt.actions import make_action
from histoviewer.qt.review_panel import ReviewPanel
from histoviewer.qt.slide_tab import SlideTab
from histoviewer.qt.window_host import TabHost

# Keys: none of them is used elsewhere in the window (tests/qt/test_review_queue.py checks).
NEXT_KEYS = ("J", "PgDown")
PREVIOUS_KEYS = ("K", "PgUp")
NEXT_UNREVIEWED_KEYS = ("Shift+J",)
VERDICT_KEYS = {Verdict.TUMOUR: "T", Verdict.NOT_TUMOUR: "N", Verdict.UNSURE: "U"}


def current_reviewer() -> str:
    """Who decides: the login name (recorded with every decision)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name (some containers)
        return "unknown"


class ReviewController(QObject):
    hotspotShown = Signal(object, object)  # (SlideTab, Hotspot): the view flew there
    queueChanged = Signal()  # the queue of the slide in front was rebuilt

    def __init__(self, host: TabHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.reviewer = current_reviewer()
        self.inspector: Callable[[SlideTab, Hotspot], None] | None = None
        # a model that states its uncertainty: (tab, lesion) -> uncertainty or None; ranks ties
        self.uncertainty_of: Callable[[SlideTab, Lesion], float | None] | None = None
        self.panel = ReviewPanel(parent)
        # "12 of 40 reviewed" in the status bar (the window places it): visible whatever dock is in front
        self.status_label = QLabel("")
        self.status_label.setToolTip("Review of the AI's hotspots on this slide (Review menu: J/K move, T/N/U decide)")
        self.status_label.hide()
        self.panel.rowActivated.connect(self.go_to)
        self.panel.stepRequested.connect(self.step)
        self.panel.decisionRequested.connect(self.decide)
        self.queue: ReviewQueue | None = None
        self.reviewed: ReviewedLabel | None = None
        self.position: int | None = None
        self._model_hash = ""
        self._current_id: weakref.WeakKeyDictionary[SlideTab, str] = weakref.WeakKeyDictionary()
        menu = QMenu("&Review", parent)
        self.menu = menu
        self.next_action = make_action(self, "&Next hotspot", lambda: self.step(+1), shortcut=list(NEXT_KEYS),
                                       menu=menu)
        self.previous_action = make_action(self, "&Previous hotspot", lambda: self.step(-1),
                                           shortcut=list(PREVIOUS_KEYS), menu=menu)
        self.next_unreviewed_action = make_action(self, "Next &unreviewed hotspot", self.next_unreviewed,
                                                  shortcut=list(NEXT_UNREVIEWED_KEYS), menu=menu)
        menu.addSeparator()
        self.verdict_actions: dict[Verdict, QAction] = {}
        for verdict, text in ((Verdict.TUMOUR, "&Tumour (accept)"), (Verdict.NOT_TUMOUR, "&Not tumour (reject)"),
                              (Verdict.UNSURE, "Un&sure")):
            self.verdict_actions[verdict] = make_action(self, text, lambda _=False, v=verdict: self.decide(v),
                                                        shortcut=VERDICT_KEYS[verdict], menu=menu)
        self.clear_action = make_action(self, "&Clear decision", self.clear_decision, menu=menu)
        menu.addSeparator()
        self.panel_action = self.panel.toggleViewAction()
        self.panel_action.setText("Review &queue panel")
        menu.addAction(self.panel_action)
        host.currentTabChanged.connect(lambda _tab: self.refresh())
        self.refresh()

    def reviewed_summary(self) -> tuple[str, bool]:
        """The label as reviewed for the summary panel: ("" , False) before any decision."""
        if self.reviewed is None or self.queue is None or not (self.queue.progress.reviewed or self.reviewed.own_tumour):
            return "", False
        progress = self.queue.progress
        return f"{self.reviewed.text} ({progress.text})", self.reviewed.final

    @property
    def actions(self) -> tuple[QAction, ...]:
        return (self.next_action, self.previous_action, self.next_unreviewed_action, *self.verdict_actions.values(),
                self.clear_action)

    def attach(self, tab: SlideTab) -> None:
        """A slide was opened: its queue follows its lesions and its annotation document."""
        ref = weakref.ref(tab)
        tab.lesions.changed.connect(lambda _snap: self._on_lesions(ref()))
        tab.heatmapChanged.connect(lambda: self._refresh_if_current(ref(), only_without_queue=True))
        tab.annotations.subscribe(lambda change: self._on_document_change(ref(), change))
        self._refresh_if_current(tab)

    def _on_lesions(self, tab: SlideTab | None) -> None:
        if tab is None:
            return
        tab.lesion_layer.review_marks = {}  # lesion indices change with the lesions: marked again below
        self._refresh_if_current(tab)

    def _refresh_if_current(self, tab: SlideTab | None, only_without_queue: bool = False) -> None:
        if tab is not None and tab is self.host.current_tab():
            if only_without_queue and self.queue is not None:
                return  # the heatmap's progress alone does not change the queue
            self.refresh()

    def _on_document_change(self, tab: SlideTab | None, change: DocumentChange) -> None:
        if tab is None or tab is not self.host.current_tab():
            return
        if change.source in ("undo", "redo") and change.decisions_changed:
            # undoing a decision goes back to that hotspot, as undo in an editor shows the edit
            self._current_id[tab] = change.decisions_changed[-1]
            self.refresh()
            if self.position is not None:
                self._fly(self.position)
            return
        self.refresh()

    # -- the queue -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the queue of the slide in front (or say why there is none)."""
        tab = self.host.current_tab()
        self.queue, self.reviewed, self.position = None, None, None
        message = self._why_no_queue(tab)
        if message is not None:
            if tab is not None:
                tab.lesion_layer.review_marks = {}
            self.panel.show_message(message)
            self.status_label.hide()
            self._update_actions()
            self.queueChanged.emit()
            return
        snapshot = tab.lesions.snapshot
        self._model_hash = snapshot.model_hash
        uncertainties = None
        if self.uncertainty_of is not None:
            found = {les.index: self.uncertainty_of(tab, les) for les in snapshot.result.lesions}
            uncertainties = {i: u for i, u in found.items() if u is not None}
        queue = build_queue(snapshot.result.lesions, tab.annotations.decisions(), self._model_hash, uncertainties)
        self.queue = queue
        complete = not snapshot.result.provisional
        self.reviewed = reviewed_label(tab.annotations, queue, map_complete=complete)
        current = self._current_id.get(tab)
        self.position = queue.index_of(current) if current is not None else None
        if self.position is None and queue.hotspots:
            self.position = 0 if current is None else queue.next_unreviewed(None)
            if self.position is not None:
                self._current_id[tab] = queue.hotspots[self.position].hotspot_id
        notices = []
        if not complete:
            notices.append(f"The AI's map covers {snapshot.result.coverage:.0%} of the tissue: hotspots may still "
                           "appear or change, and the label as reviewed is not final.")
        if snapshot.domain.out_of_domain:
            notices.append(f"AI result unreliable: {OUT_OF_DOMAIN_REASON}.")
        if queue.other_decisions:
            n = len(queue.other_decisions)
            notices.append(f"{n} earlier decision{'s' if n != 1 else ''} match no hotspot of this map (another "
                           "model or an earlier map); kept with the annotations.")
        self.panel.show_queue(queue, self.position, notices)
        tab.lesion_layer.review_marks = {h.lesion.index: h.decision.verdict.display_name
                                         for h in queue.hotspots if h.decision is not None}
        tab.view.update()
        resolution = snapshot.result.resolution
        ai_text = resolution.label.value if resolution.reason is None else \
            f"{resolution.label_so_far.value} so far ({resolution.reason})"
        self.panel.show_labels(ai_text, self.reviewed)
        progress = queue.progress
        self.status_label.setText(f"Review: {progress.text}" if progress.total else "Review: no hotspots")
        self.status_label.setStyleSheet("color: #1a6e1a;" if progress.complete else "color: #a05a00; font-weight: bold;")
        self.status_label.show()
        self._update_actions()
        self.queueChanged.emit()

    def _why_no_queue(self, tab: SlideTab | None) -> str | None:
        if tab is None:
            return "No slide open."
        snapshot = tab.lesions.snapshot  # the lesions of the running overlay's map (None: none yet)
        if snapshot is None:
            if tab.heatmap is None:
                return "AI overlay off: no hotspots to review. Turn it on in the AI menu."
            if tab.heatmap_error:
                return f"AI overlay unavailable: {tab.heatmap_error}"
            return tab.lesions.error or "Classifying\u2026 the hotspots appear as the map fills in."
        if not snapshot.model_hash:
            return ("This model has no content hash (an unsaved model): decisions could not be tied to its "
                    "hotspots. Save the model and load it from its file to review.")
        return None

    def _update_actions(self) -> None:
        has = self.queue is not None and bool(self.queue.hotspots)
        for action in self.actions:
            action.setEnabled(has)
        if has:
            current = self.current_hotspot()
            self.clear_action.setEnabled(current is not None and current.decision is not None)

    def live_queue(self, tab: SlideTab) -> tuple[ReviewQueue | None, bool]:
        """``tab``'s queue (None unless it is the slide in front) and whether its map is whole."""
        if tab is not self.host.current_tab() or self.queue is None:
            return None, False
        snapshot = tab.lesions.snapshot
        return self.queue, snapshot is not None and not snapshot.result.provisional

    def current_hotspot(self) -> Hotspot | None:
        if self.queue is None or self.position is None:
            return None
        return self.queue.hotspots[self.position]

    # -- moving --------------------------------------------------------------------------------
    def show_panel(self) -> None:
        """The queue in front (reviewing from the keyboard brings it up)."""
        if not self.panel.isVisible():
            self.panel.show()
        self.panel.raise_()

    def go_to(self, position: int) -> None:
        """Make hotspot ``position`` (in queue order) current and fly there."""
        self.show_panel()
        tab = self.host.current_tab()
        if tab is None or self.queue is None or not 0 <= position < len(self.queue.hotspots):
            return
        self.position = position
        self._current_id[tab] = self.queue.hotspots[position].hotspot_id
        self.panel.set_position(position)
        self._update_actions()
        self._fly(position)

    def step(self, delta: int) -> None:
        if self.queue is None or not self.queue.hotspots:
            return
        n = len(self.queue.hotspots)
        start = self.position if self.position is not None else (-1 if delta > 0 else 0)
        self.go_to((start + delta) % n)

    def next_unreviewed(self) -> None:
        if self.queue is None:
            return
        found = self.queue.next_unreviewed(self.position)
        if found is None:
            self.host.show_message("Every hotspot of this slide has a decision.", 5000)
            return
        self.go_to(found)

    def _fly(self, position: int) -> None:
        tab = self.host.current_tab()
        if tab is None or self.queue is None:
            return
        hotspot = self.queue.hotspots[position]
        tab.fly_to_lesion(hotspot.lesion.index)
        self.hotspotShown.emit(tab, hotspot)
        if self.inspector is not None:
            self.inspector(tab, hotspot)

    # -- deciding ------------------------------------------------------------------------------
    def decide(self, verdict: Verdict) -> None:
        """Record ``verdict`` on the current hotspot (one undo step), then go on to the next
        unreviewed one (stay when every hotspot is decided)."""
        tab = self.host.current_tab()
        hotspot = self.current_hotspot()
        if tab is None or hotspot is None or self.queue is None:
            return
        decision = decide(hotspot, verdict, self._model_hash, self.reviewer)
        position = self.position
        tab.annotations.set_decision(decision, f"Review hotspot {position + 1}: {verdict.display_name}")
        # the document's change rebuilt the queue; move on from where the decision was taken
        if self.queue is not None and self.queue.hotspots:
            following = self.queue.next_unreviewed(position)
            self.go_to(following if following is not None else min(position, len(self.queue.hotspots) - 1))
            if following is None:
                self.host.show_message(f"Review complete: {self.queue.progress.text}.", 8000)

    def clear_decision(self) -> None:
        tab = self.host.current_tab()
        hotspot = self.current_hotspot()
        if tab is None or hotspot is None or hotspot.decision is None:
            return
        tab.annotations.clear_decision(hotspot.decision.hotspot_id,
                                       f"Clear review decision on hotspot {self.position + 1}")
