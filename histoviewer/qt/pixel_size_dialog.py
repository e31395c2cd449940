"""Set the pixel size of a slide that states none (File > Set pixel size..., or the
"Set pixel size..." button beside an unknown scale in the slide's properties).

The value passes the one sanity range (``units.MPP_MIN``..``MPP_MAX``) and is saved per
slide (``slide.user_scale.UserScaleStore``); everything computed from it is marked
user-set. A slide that states its own scale is not offered this dialog.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from histoviewer.core.errors import HistoViewerError
from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.slide.user_scale import UserScaleStore
from histoviewer.core.units import MPP_MAX, MPP_MIN, mpp_problem

__all__ = ["PixelSizeDialog"]

_COMMON = (
    (0.25, "40x"),
    (0.5, "20x"),
    (1.0, "10x"),
)  # typical scanner scales (10 um/px / mpp ~ objective)


class PixelSizeDialog(QDialog):
    """Asks for the pixel size (um per level-0 px); ``value`` after ``Accepted``:
    the new size, or None when the user chose to forget the one stated before."""

    def __init__(self, info: SlideInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info = info
        self.value: float | None = None
        self.setWindowTitle(f"Pixel size \u2013 {info.path.name}")
        layout = QVBoxLayout(self)
        why = info.mpp_note or "the slide does not state its pixel size"
        intro = QLabel(
            f"<b>{info.path.name}</b> has no usable scale ({why}), so lesion sizes, the "
            "magnification and the AI overlay are unavailable.<br><br>"
            "If you know the scanner's pixel size, state it here. It is saved for this slide "
            "and every size, magnification, summary and export computed from it is marked "
            "<b>user-set</b>."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.spin = QDoubleSpinBox(self)
        self.spin.setDecimals(4)
        # the one sanity range for microscopy scales (units.MPP_MIN..MPP_MAX): the box cannot leave it
        self.spin.setRange(MPP_MIN, MPP_MAX)
        self.spin.setSingleStep(0.01)
        self.spin.setSuffix(" \u00b5m/px")
        self.spin.setValue(info.mpp if info.mpp_user_set and info.mpp else 0.25)
        form.addRow("Microns per pixel (level 0):", self.spin)
        self.magnification = QLabel(self)
        form.addRow("Equivalent magnification:", self.magnification)
        presets = QWidget(self)
        row = QVBoxLayout(presets)
        row.setContentsMargins(0, 0, 0, 0)
        for mpp, mag in _COMMON:
            button = QPushButton(f"{mpp:g} \u00b5m/px (a {mag} scan)", presets)
            button.clicked.connect(lambda _=False, v=mpp: self.spin.setValue(v))
            row.addWidget(button)
        form.addRow("Common values:", presets)
        layout.addLayout(form)
        self.error = QLabel(self)
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        box.button(QDialogButtonBox.StandardButton.Ok).setText("Set pixel size")
        if info.mpp_user_set:
            forget = box.addButton(
                "Forget the stated size", QDialogButtonBox.ButtonRole.DestructiveRole
            )
            forget.clicked.connect(self._forget)
        box.accepted.connect(self._accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.ok_button = box.button(QDialogButtonBox.StandardButton.Ok)
        self.spin.valueChanged.connect(self._update)
        self._update()

    def _update(self) -> None:
        value = self.spin.value()
        problem = mpp_problem(value)
        self.error.setText(problem or "")
        self.ok_button.setEnabled(problem is None)
        self.magnification.setText(
            "" if problem else f"about {10.0 / value:.3g}x (user-set)"
        )

    def _accept(self) -> None:
        if mpp_problem(self.spin.value()) is None:
            self.value = float(self.spin.value())
            self.accept()

    def _forget(self) -> None:
        self.value = None
        self.accept()

    def save(self, store: UserScaleStore | None = None) -> str | None:
        """Save ``value`` for this slide; the error message when that failed, else None."""
        try:
            (store or UserScaleStore()).set(
                self.info.path, self.info.dimensions, self.value
            )
        except HistoViewerError as exc:
            return str(exc)
        return None
