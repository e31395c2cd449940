"""The review queue panel: the slide's hotspots in review order, each one's decision, the
progress ("12 of 40 reviewed", always on top) and the node label as reviewed beside the AI's.

Pure display and buttons: ``show_queue`` takes a ``ReviewQueue`` (``core.analysis.
review_queue``) and the current position; the panel says ``rowActivated(position)`` when the
user picks a row and ``decisionRequested(verdict)`` / ``stepRequested(+1/-1)`` for its
buttons. The keyboard works through the controller's actions (``review_controller``); the
buttons name their keys.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QGridLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from histoviewer.core.analysis.lesions import describe_size
from histoviewer.core.analysis.review_queue import ReviewedLabel, ReviewQueue
from histoviewer.core.annotations.review import Verdict
from histoviewer.qt.lesion_layer import CLASS_COLOURS, CLASS_NAMES

VERDICT_COLOURS = {Verdict.TUMOUR: "#b0105a", Verdict.NOT_TUMOUR: "#1a6e1a", Verdict.UNSURE: "#a05a00"}
VERDICT_TEXT = {Verdict.TUMOUR: "tumour", Verdict.NOT_TUMOUR: "not tumour", Verdict.UNSURE: "unsure"}
COLUMNS = ("#", "Class", "\u2300 mm", "P max", "Decision")
WARNING_COLOUR = "#a05a00"


def _local_time(iso: str) -> str:
    """A decision's time (ISO, UTC) in the user's time zone, to the minute."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


class ReviewPanel(QDockWidget):
    rowActivated = Signal(int)  # position in the queue
    decisionRequested = Signal(object)  # Verdict
    stepRequested = Signal(int)  # +1 next, -1 previous

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Review", parent)
        self.setObjectName("review-panel")
        self.queue: ReviewQueue | None = None
        self.position: int | None = None
        body = QWidget(self)
        layout = QVBoxLayout(body)

        self.progress_label = QLabel("No hotspots to review.")
        self.progress_label.setStyleSheet("font-size: 17px; font-weight: bold;")
        self.progress_label.setWordWrap(True)  # its messages must not widen the dock
        layout.addWidget(self.progress_label)
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(8)
        layout.addWidget(self.progress_bar)
        self.detail_label = QLabel("")
        self.detail_label.setStyleSheet("color: #555;")
        layout.addWidget(self.detail_label)
        self.notice_label = QLabel("")
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet(f"color: {WARNING_COLOUR}; font-weight: bold;")
        self.notice_label.hide()
        layout.addWidget(self.notice_label)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the window's shortcuts
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(30)
        self.table.setMinimumHeight(160)
        self.table.cellClicked.connect(lambda row, _col: self.rowActivated.emit(row))
        layout.addWidget(self.table, 1)

        self.current_label = QLabel("")
        self.current_label.setWordWrap(True)
        layout.addWidget(self.current_label)
        buttons = QGridLayout()
        self.previous_button = self._button("\u25c0 Previous (K)", lambda: self.stepRequested.emit(-1))
        self.next_button = self._button("Next (J) \u25b6", lambda: self.stepRequested.emit(+1))
        self.tumour_button = self._button("Tumour (T)", lambda: self.decisionRequested.emit(Verdict.TUMOUR),
                                          VERDICT_COLOURS[Verdict.TUMOUR])
        self.not_tumour_button = self._button("Not tumour (N)",
                                              lambda: self.decisionRequested.emit(Verdict.NOT_TUMOUR),
                                              VERDICT_COLOURS[Verdict.NOT_TUMOUR])
        self.unsure_button = self._button("Unsure (U)", lambda: self.decisionRequested.emit(Verdict.UNSURE),
                                          VERDICT_COLOURS[Verdict.UNSURE])
        buttons.addWidget(self.previous_button, 0, 0)
        buttons.addWidget(self.next_button, 0, 2)
        buttons.addWidget(self.tumour_button, 1, 0)
        buttons.addWidget(self.not_tumour_button, 1, 1)
        buttons.addWidget(self.unsure_button, 1, 2)
        layout.addLayout(buttons)

        self.reviewed_label = QLabel("")
        self.reviewed_label.setWordWrap(True)
        self.reviewed_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.reviewed_label)
        self.setWidget(body)
        self._enable(False)

    def _button(self, text: str, slot, colour: str | None = None) -> QPushButton:
        button = QPushButton(text)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.setToolTip(text)
        # the dock shares its width with the other panels: buttons may shrink, not widen it
        button.setMinimumWidth(0)
        button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        if colour is not None:
            button.setStyleSheet(f"QPushButton {{ color: {colour}; font-weight: bold; }}")
        button.clicked.connect(slot)
        return button

    def _enable(self, enabled: bool) -> None:
        for b in (self.previous_button, self.next_button, self.tumour_button, self.not_tumour_button,
                  self.unsure_button):
            b.setEnabled(enabled)

    # -- display -------------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        """No queue (no slide, AI off, no lesions yet): say why."""
        self.queue, self.position = None, None
        self.progress_label.setText(text)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.detail_label.setText("")
        self.notice_label.hide()
        self.table.setRowCount(0)
        self.current_label.setText("")
        self.reviewed_label.setText("")
        self._enable(False)

    def show_queue(self, queue: ReviewQueue, position: int | None, notices: list[str]) -> None:
        self.queue, self.position = queue, position
        progress = queue.progress
        self.progress_label.setText(progress.text if progress.total else "No hotspots: nothing to review.")
        self.progress_label.setStyleSheet("font-size: 17px; font-weight: bold; color: %s;"
                                          % ("#1a6e1a" if progress.complete else "#222"))
        self.progress_bar.setRange(0, max(progress.total, 1))
        self.progress_bar.setValue(progress.reviewed)
        self.detail_label.setText(progress.detail if progress.total else "")
        self.notice_label.setText("\n".join(notices))
        self.notice_label.setVisible(bool(notices))
        self.table.setRowCount(len(queue.hotspots))
        for row, hotspot in enumerate(queue.hotspots):
            les = hotspot.lesion
            cells = (str(row + 1), CLASS_NAMES[les.size_class],
                     "?" if les.diameter_mm is None else f"{les.diameter_mm:.2f}", f"{les.max_probability:.2f}",
                     VERDICT_TEXT[hotspot.decision.verdict] if hotspot.decision else "\u2013")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setForeground(CLASS_COLOURS[les.size_class].darker(150))
                if col == 4 and hotspot.decision is not None:
                    item.setForeground(QColor(VERDICT_COLOURS[hotspot.decision.verdict]))
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if col in (2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self._enable(bool(queue.hotspots))
        self.set_position(position)

    def set_position(self, position: int | None) -> None:
        self.position = position
        queue = self.queue
        if queue is None or position is None or not 0 <= position < len(queue.hotspots):
            self.table.clearSelection()
            self.current_label.setText("")
            return
        self.table.selectRow(position)
        self.table.scrollToItem(self.table.item(position, 0), QAbstractItemView.ScrollHint.EnsureVisible)
        hotspot = queue.hotspots[position]
        les = hotspot.lesion
        decided = ""
        if hotspot.decision is not None:
            d = hotspot.decision
            decided = (f"<br>Decided: <b style='color:{VERDICT_COLOURS[d.verdict]}'>{VERDICT_TEXT[d.verdict]}</b>"
                       f" by {d.reviewer or 'unknown'}, {_local_time(d.decided_at)}")
        uncertainty = "" if hotspot.uncertainty is None else f", uncertainty {hotspot.uncertainty:.2f}"
        self.current_label.setText(f"<b>Hotspot {position + 1} of {len(queue.hotspots)}</b> ({les.name}): "
                                   f"{describe_size(les)}, P max {les.max_probability:.2f}{uncertainty}{decided}")

    def show_labels(self, ai_text: str, reviewed: ReviewedLabel | None) -> None:
        """The node label as reviewed beside the AI's."""
        if reviewed is None:
            self.reviewed_label.setText("")
            return
        colour = "#222" if reviewed.final else WARNING_COLOUR
        self.reviewed_label.setText(
            f"Node label \u2013 AI: <b>{ai_text}</b><br>As reviewed: <b style='color:{colour}'>{reviewed.text}</b>")
