"""Slide properties: metadata table, and associated images shown only on explicit request."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from histoviewer.core.errors import SlideReadError
from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.slide.reader import SlideReader
from histoviewer.qt.images import rgb_to_qimage

# Associated images that may show a patient's name or accession number.
IDENTIFYING_IMAGES = frozenset({"label", "macro"})


def summary_rows(info: SlideInfo) -> list[tuple[str, str]]:
    """Human-readable metadata rows; an unknown scale says so."""
    if info.mpp is None:
        mpp = f"unknown ({info.mpp_note})"
    else:
        mpp = f"{info.mpp_x:.4f} x {info.mpp_y:.4f} \u00b5m/px" + (" (user-set)" if info.mpp_user_set else "")
    return [
        ("File", str(info.path)),
        ("Reader", info.backend),
        ("Vendor", info.vendor or "unknown"),
        ("Dimensions", f"{info.dimensions[0]:,} x {info.dimensions[1]:,} px"),
        ("Levels", ", ".join(f"{w}x{h} (/{ds:g})" for (w, h), ds in zip(info.level_dimensions, info.level_downsamples))),
        ("Microns per pixel", mpp),
        ("Objective power", f"{info.objective_power:g}x" if info.objective_power else "unknown"),
        ("Associated images", ", ".join(info.associated_images) or "none"),
    ]


class PropertiesDialog(QDialog):
    pixelSizeRequested = Signal()  # "Set pixel size..." beside an unknown (or user-set) scale

    def __init__(self, reader: SlideReader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader = reader
        info = reader.info
        self.setWindowTitle(f"Properties \u2013 {info.path.name}")
        self.resize(720, 560)
        rows = summary_rows(info) + sorted(info.properties.items())
        self.table = QTableWidget(len(rows), 2, self)
        self.table.setHorizontalHeaderLabels(["Property", "Value"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (name, value) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            self.table.setItem(row, 1, QTableWidgetItem(value))
        layout = QVBoxLayout(self)
        if info.mpp is None or info.mpp_user_set:
            scale = QHBoxLayout()
            text = "The pixel size is user-set." if info.mpp_user_set else "The physical scale is unknown."
            scale.addWidget(QLabel(text + " Sizes, magnification and the AI overlay depend on it."))
            self.pixel_size_button = QPushButton("Set pixel size\u2026")
            self.pixel_size_button.clicked.connect(self.pixelSizeRequested)
            scale.addWidget(self.pixel_size_button)
            scale.addStretch(1)
            layout.addLayout(scale)
        layout.addWidget(self.table)
        if info.associated_images:
            buttons = QHBoxLayout()
            buttons.addWidget(QLabel("Associated images (may show patient identifiers):"))
            for name in info.associated_images:
                button = QPushButton(f"Show {name}\u2026")
                button.clicked.connect(lambda _=False, n=name: self.show_associated(n))
                buttons.addWidget(button)
            buttons.addStretch(1)
            layout.addLayout(buttons)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        box.rejected.connect(self.reject)
        layout.addWidget(box)

    def show_associated(self, name: str) -> QDialog | None:
        """Show one associated image; label and macro need a confirmation first."""
        if name in IDENTIFYING_IMAGES:
            answer = QMessageBox.question(
                self, "Show associated image",
                f"The {name} image can show patient identifiers. Show it?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return None
        try:
            image, _ = rgb_to_qimage(self.reader.associated_image(name))
        except (KeyError, SlideReadError) as exc:
            QMessageBox.warning(self, "Associated image", str(exc))
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle(name)
        label = QLabel(dialog)
        label.setPixmap(QPixmap.fromImage(image).scaled(800, 800, Qt.AspectRatioMode.KeepAspectRatio))
        QVBoxLayout(dialog).addWidget(label)
        dialog.show()
        return dialog
