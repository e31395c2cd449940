"""The case view in the main window: File › Open case, and the case dialog it opens.

``CaseController`` owns ``case_action`` (the window places it in the File menu) and the
open ``CaseDialog``. It sees the window only through ``CaseHost``; the model and device the
case is analysed with come from the AI settings (``ai_settings``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QWidget

from histoviewer.core.annotations.labels import SlideLabel, slide_label
from histoviewer.qt.ai_panel import AiSettings
from histoviewer.qt.case_dialog import CaseDialog, case_slides_in
from histoviewer.qt.window_host import CaseHost


class CaseController(QObject):
    def __init__(self, host: CaseHost, ai_settings: Callable[[], AiSettings], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self._ai_settings = ai_settings
        self._dialog_parent = parent
        self.dialog: CaseDialog | None = None
        # tab -> (its review queue or None, whether its map is whole): the window sets it
        self.live_review: Callable[[object], tuple[object | None, bool]] | None = None
        self.case_action = QAction("Open &case (a patient's nodes)\u2026", self)
        self.case_action.triggered.connect(self.open_case_dialog)

    def open_case_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self._dialog_parent,
                                                  "Open a case: the folder of one patient's node slides")
        if folder:
            self.open_case(case_slides_in(folder))

    def open_case(self, paths: Iterable[str | os.PathLike[str]]) -> CaseDialog | None:
        """Open a patient's node slides in tabs and the case view over them."""
        paths = [str(p) for p in paths]
        if not paths:
            self.host.report_error("No slides", "The folder holds no slide files.")
            return None
        for path in paths:
            self.host.open_slide(path)  # a node open before stays in its tab (see open_slide)
        if self.dialog is not None:
            self.dialog.close()
        settings = self._ai_settings()
        self.dialog = CaseDialog(paths, settings.model, settings.device, self._dialog_parent,
                                 node_classifier=settings.node_classifier)
        self.dialog.nodeActivated.connect(self.host.show_slide)
        self.dialog.annotation_labels = self._annotation_label_of
        self.dialog.open_nodes = self._open_nodes
        self.dialog.refresh_review()
        self.dialog.show()
        return self.dialog

    def _annotation_label_of(self, path: Path) -> SlideLabel | None:
        """The slide label from the open slide's annotations, or None when the slide has no
        annotations at all (or is not open). A slide annotated without any tumour-class area
        (the pathologist removed the AI's false positives and marked, say, a Normal region)
        is negative."""
        for tab in self.host.slide_tabs():
            doc = getattr(tab, "annotations", None)
            if Path(tab.path) == Path(path) and doc is not None:
                # Detections (QuPath cells) imported alone are not an annotated slide.
                return slide_label(doc) if any(a.is_region for a in doc.annotations()) else None
        return None

    def _open_nodes(self):
        """The open slides' annotation documents (unsaved decisions included) and their live
        review queues (``live_review``), for the case's review column."""
        out = {}
        for tab in self.host.slide_tabs():
            live, whole = self.live_review(tab) if self.live_review is not None else (None, False)
            out[Path(tab.path)] = (tab.annotations, live, whole)
        return out

    def refresh_review(self) -> None:
        """A decision was taken or undone: the open case view's review column follows."""
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.refresh_review()

    def shutdown(self) -> None:
        """The window closes: stop a running case analysis (the region in hand finishes)."""
        if self.dialog is not None:
            self.dialog.shutdown()
