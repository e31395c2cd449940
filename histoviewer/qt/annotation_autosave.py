"""What the viewer says about the autosave of a slide's annotations.

An autosave that fails (a read-only folder, a full disk, annotations too large for a file)
keeps the edits in memory and retries; the user must know, without a dialog interrupting
the work: ``AutosaveBanner`` is a bar across the top of the slide view naming the file and
the problem, with "Save as..." (put the annotations somewhere else now) and "Retry". It
also says, once, when a save had to replace values no file can hold (a NaN property, a
broken character in a name), so that nothing changes in silence. Closing a tab whose
annotations cannot be saved asks first (``ask_close_unsaved``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QWidget,
)

__all__ = ["AutosaveBanner", "ask_close_unsaved"]

BANNER_MARGIN_PX = 8
BANNER_MAX_WIDTH_PX = 720
_STYLES = {
    "error": "QFrame#autosave_banner { background: #fff1c2; border: 1px solid #c98a00; border-radius: 4px; }",
    "note": "QFrame#autosave_banner { background: #eef4ff; border: 1px solid #6a8fd0; border-radius: 4px; }",
}


class AutosaveBanner(QFrame):
    """A non-modal bar over the top of the slide view (a child of the view)."""

    saveAsRequested = Signal()
    retryRequested = Signal()

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("autosave_banner")
        self.level: str | None = None  # "error", "note" or None (hidden)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text, 1)
        self.save_as_button = QPushButton("Save as\u2026")
        self.save_as_button.setToolTip("Save the annotations to a file of your choice now")
        self.save_as_button.clicked.connect(self.saveAsRequested)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self.retryRequested)
        self.close_button = QPushButton("\u00d7")
        self.close_button.setFixedWidth(28)
        self.close_button.setToolTip("Hide this message (it comes back if the next save fails too)")
        self.close_button.clicked.connect(self.dismiss)
        for b in (self.save_as_button, self.retry_button, self.close_button):
            layout.addWidget(b, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_failure(self, message: str) -> None:
        """The autosave failed: ``message`` names the file(s) and why."""
        self._show("error", f"<b>Annotations not saved.</b> {_escape(message)}<br>"
                            "Your edits are kept while the slide is open and saving is retried; "
                            "use Save as\u2026 to keep them elsewhere now.")

    def show_replacements(self, path: str, replaced: tuple[str, ...]) -> None:
        """The save worked, but values no file can hold were replaced."""
        self._show("note", f"Annotations saved to {_escape(path)}, with changes a file needs: "
                           f"{_escape('; '.join(replaced))}.")

    def clear_failure(self) -> None:
        if self.level == "error":
            self.dismiss()

    def dismiss(self) -> None:
        self.level = None
        self.hide()

    def _show(self, level: str, html: str) -> None:
        self.level = level
        self.setStyleSheet(_STYLES[level])
        self.text.setText(html)
        self.save_as_button.setVisible(level == "error")
        self.retry_button.setVisible(level == "error")
        self.place()
        self.show()
        self.raise_()

    def place(self, right_reserved_px: int | None = None) -> None:
        """At the top left of the parent (the view), clear of ``right_reserved_px`` on the
        right (the overview); the last reservation is kept for later calls."""
        if right_reserved_px is not None:
            self._right_reserved = right_reserved_px
        parent = self.parentWidget()
        if parent is None:
            return
        room = parent.width() - getattr(self, "_right_reserved", 0) - 2 * BANNER_MARGIN_PX
        width = max(min(room, BANNER_MAX_WIDTH_PX), 240)
        self.setFixedWidth(width)
        # the height the wrapped text needs at this width (adjustSize() took the label's
        # height at its narrower hint width: lines broke early, leaving an empty band)
        layout = self.layout()
        layout.activate()
        height = layout.totalHeightForWidth(width)  # -1 while the label is empty (no wrapping)
        self.setFixedHeight(height if height > 0 else layout.totalSizeHint().height())
        self.move(BANNER_MARGIN_PX, BANNER_MARGIN_PX)


def ask_close_unsaved(parent: QWidget, message: str) -> bool:
    """Ask whether to close a slide whose annotations could not be saved; True: close."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Annotations not saved",
                      f"The annotations of this slide could not be saved:\n\n{message}\n\n"
                      "Close the slide anyway and lose the unsaved edits?", parent=parent)
    close = box.addButton("Close anyway", QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton("Keep it open", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.exec()
    return box.clickedButton() is close


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
