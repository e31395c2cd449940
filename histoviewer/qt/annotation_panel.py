"""The annotation panel: the list (click to fly there), counts and areas per class, the class
editor, the selected annotation's name, class, note and live measurements, the slide label.

It shows the document of the current tab (``set_target``) and refreshes from the
document's change callbacks; every edit it makes is a document command (undoable).
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QColorDialog, QComboBox, QDockWidget, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView,
    QInputDialog, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QTableView, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from histoviewer.core.annotations import Annotation, AnnotationClass, AnnotationDocument, DocumentChange, measure
from histoviewer.core.annotations.labels import SlideLabel
from histoviewer.core.units import format_length_um
from histoviewer.qt.annotation_layer import UNCLASSIFIED_RGB

ALL_CLASSES = "All classes"
UNCLASSIFIED = "(unclassified)"
LABEL_TEXT = {"negative": "negative (no tumour annotations)", "itc": "isolated tumour cells (ITC)",
              "micro": "micrometastasis", "macro": "macrometastasis",
              "unknown": "unknown (slide has no \u00b5m/px: size classes cannot be given)"}


def swatch(rgb: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


class AnnotationListModel(QAbstractTableModel):
    """Rows: the document's annotations of the filtered class, in drawing order. Columns:
    name, class, measurement. Summaries are cached per annotation object (an edit makes a
    new object), so a list of thousands repaints without measuring again."""

    HEADERS = ("Name", "Class", "Measurement")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc: AnnotationDocument | None = None
        self.class_filter: str | None = ALL_CLASSES
        self._rows: list[Annotation] = []
        self._summaries: dict[str, tuple[Annotation, bool, str]] = {}

    def set_document(self, doc: AnnotationDocument | None) -> None:
        self.doc = doc
        self._summaries.clear()
        self.refresh()

    def set_filter(self, class_filter: str | None) -> None:
        self.class_filter = class_filter
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        anns = self.doc.annotations() if self.doc is not None else []
        if self.class_filter != ALL_CLASSES:
            anns = [a for a in anns if a.class_name == self.class_filter]
        self._rows = anns
        self.endResetModel()

    def row_of(self, uid: str | None) -> int | None:
        return next((i for i, a in enumerate(self._rows) if a.uid == uid), None)

    def uid_at(self, row: int) -> str | None:
        return self._rows[row].uid if 0 <= row < len(self._rows) else None

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def summary(self, ann: Annotation) -> str:
        tumour = self.doc.is_tumour(ann)
        hit = self._summaries.get(ann.uid)
        if hit is None or hit[0] is not ann or hit[1] != tumour:
            hit = self._summaries[ann.uid] = (ann, tumour, measure(ann, self.doc.mpp, is_tumour=tumour).summary())
        return hit[2]

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.doc is None:
            return None
        ann = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return ann.name or f"{ann.kind.value} {index.row() + 1}"
            if col == 1:
                name = ann.class_name or UNCLASSIFIED
                return name if ann.is_region else f"{name} ({ann.object_kind.value})"
            return self.summary(ann)
        if role == Qt.ItemDataRole.DecorationRole and col == 1:
            cls = self.doc.class_named(ann.class_name)
            return QColor(*(cls.rgb if cls is not None else UNCLASSIFIED_RGB))
        if role == Qt.ItemDataRole.ToolTipRole:
            return ann.note or None
        return None


class _FocusOut(QObject):
    """Calls ``fn`` when the watched widget loses focus (the note is committed then)."""

    def __init__(self, fn, parent: QObject) -> None:
        super().__init__(parent)
        self.fn = fn

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.FocusOut:
            self.fn()
        return False


class AnnotationPanel(QDockWidget):
    """Dock panel bound to one tab's document and tools at a time."""

    flyRequested = Signal(str)  # uid: centre the view on it
    convertLesionsRequested = Signal()
    labelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Annotations", parent)
        self.setObjectName("annotation_panel")
        self.doc: AnnotationDocument | None = None
        self.tools = None
        self._unsubscribe = None
        self._updating = False
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 6, 6, 6)

        # The list and its filter.
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        self.filter_combo = QComboBox()
        self.filter_combo.currentIndexChanged.connect(self._on_filter)
        row.addWidget(self.filter_combo, 1)
        layout.addLayout(row)
        self.model = AnnotationListModel(self)
        self.list_view = QTableView()
        self.list_view.setModel(self.model)
        self.list_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.verticalHeader().hide()
        self.list_view.verticalHeader().setDefaultSectionSize(20)
        header = self.list_view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.list_view.setColumnWidth(0, 100)
        self.list_view.setColumnWidth(1, 90)
        self.list_view.clicked.connect(self._on_list_clicked)
        self.list_view.activated.connect(self._on_list_clicked)
        layout.addWidget(self.list_view, 3)

        # Per class: colour, count, area; the class editor.
        classes_box = QGroupBox("Classes")
        cl = QVBoxLayout(classes_box)
        self.class_table = QTableWidget(0, 4)
        self.class_table.setHorizontalHeaderLabels(["Class", "Tumour", "Count", "Area mm\u00b2"])
        self.class_table.verticalHeader().hide()
        self.class_table.verticalHeader().setDefaultSectionSize(20)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        class_header = self.class_table.horizontalHeader()
        class_header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        class_header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.class_table.itemChanged.connect(self._on_class_item_changed)
        self.class_table.cellDoubleClicked.connect(self._on_class_double_clicked)
        cl.addWidget(self.class_table)
        self.detections_label = QLabel("")
        self.detections_label.setWordWrap(True)
        self.detections_label.setToolTip("Objects another tool detected (QuPath cells, detections, tiles): "
                                         "drawn thin, never sized, never counted in the slide label")
        self.detections_label.hide()
        cl.addWidget(self.detections_label)
        buttons = QHBoxLayout()
        self.add_class_button = QPushButton("Add\u2026")
        self.rename_class_button = QPushButton("Rename\u2026")
        self.colour_button = QPushButton("Colour\u2026")
        self.remove_class_button = QPushButton("Remove")
        for b, slot in ((self.add_class_button, self.add_class_dialog),
                        (self.rename_class_button, self.rename_class_dialog),
                        (self.colour_button, self.recolour_class_dialog),
                        (self.remove_class_button, self.remove_selected_class)):
            b.clicked.connect(slot)
            buttons.addWidget(b)
        cl.addLayout(buttons)
        layout.addWidget(classes_box, 2)

        # The selected annotation.
        sel_box = QGroupBox("Selected annotation")
        form = QFormLayout(sel_box)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name")
        self.name_edit.editingFinished.connect(self._commit_name)
        form.addRow("Name", self.name_edit)
        self.class_combo = QComboBox()
        self.class_combo.activated.connect(self._on_class_combo)
        form.addRow("Class", self.class_combo)
        self.note_edit = QPlainTextEdit()
        self.note_edit.setPlaceholderText("note")
        self.note_edit.setFixedHeight(54)
        self.note_edit.installEventFilter(_FocusOut(self._commit_note, self.note_edit))
        form.addRow("Note", self.note_edit)
        self.measure_label = QLabel("")
        self.measure_label.setWordWrap(True)
        self.measure_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Size", self.measure_label)
        layout.addWidget(sel_box, 0)

        # AI lesions and the slide label.
        ai_box = QGroupBox("Slide label")
        al = QVBoxLayout(ai_box)
        self.label_text = QLabel("not computed (press Recompute)")
        self.label_text.setWordWrap(True)
        al.addWidget(self.label_text)
        ab = QHBoxLayout()
        self.convert_button = QPushButton("Convert AI lesions")
        self.convert_button.setToolTip("Turn the lesions the AI found into editable Tumor annotations (one undo step)")
        self.convert_button.clicked.connect(self.convertLesionsRequested)
        self.label_button = QPushButton("Recompute label")
        self.label_button.setToolTip("Slide label from the tumour annotations as they are now")
        self.label_button.clicked.connect(self.labelRequested)
        ab.addWidget(self.convert_button)
        ab.addWidget(self.label_button)
        al.addLayout(ab)
        layout.addWidget(ai_box, 0)
        self.setWidget(body)
        self.set_target(None, None)

    # -- binding ------------------------------------------------------------------------------
    def set_target(self, doc: AnnotationDocument | None, tools) -> None:
        """Show ``doc`` (the current tab's) and follow ``tools``' selection; None: no slide."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.tools is not None:
            try:
                self.tools.selectionChanged.disconnect(self._on_selection)
                self.tools.previewChanged.disconnect(self._on_preview)
            except (RuntimeError, TypeError):
                pass  # the tab (and its tools) is already gone
        self.doc, self.tools = doc, tools
        if doc is not None:
            self._unsubscribe = doc.subscribe(self._on_change)
        if tools is not None:
            tools.selectionChanged.connect(self._on_selection)
            tools.previewChanged.connect(self._on_preview)
        self.model.set_document(doc)
        self.setEnabled(doc is not None)
        self.show_label(None)
        self._refresh_classes()
        self._on_selection(tools.selected if tools is not None else None)

    def _on_change(self, change: DocumentChange) -> None:
        if change.classes_changed:
            self._refresh_classes()
        else:
            self._refresh_class_table()
        self.model.refresh()
        self._on_selection(self.tools.selected if self.tools is not None else None)

    # -- the list ---------------------------------------------------------------------------------
    def _on_filter(self, _index: int) -> None:
        if self._updating:
            return
        data = self.filter_combo.currentData()
        self.model.set_filter(ALL_CLASSES if data == ALL_CLASSES else data)
        self._select_row(self.tools.selected if self.tools is not None else None)

    def _on_list_clicked(self, index: QModelIndex) -> None:
        uid = self.model.uid_at(index.row())
        if uid is None or self.tools is None:
            return
        self.tools.select(uid)
        self.flyRequested.emit(uid)

    def _select_row(self, uid: str | None) -> None:
        row = self.model.row_of(uid)
        sel = self.list_view.selectionModel()
        if row is None:
            sel.clearSelection()
            return
        index = self.model.index(row, 0)
        if not sel.isRowSelected(row, QModelIndex()):
            sel.select(index, sel.SelectionFlag.ClearAndSelect | sel.SelectionFlag.Rows)
        self.list_view.scrollTo(index)

    # -- classes ----------------------------------------------------------------------------------
    def _refresh_classes(self) -> None:
        self._updating = True
        try:
            current = self.filter_combo.currentData()
            self.filter_combo.clear()
            self.filter_combo.addItem(ALL_CLASSES, ALL_CLASSES)
            self.class_combo.clear()
            if self.doc is not None:
                for cls in self.doc.classes:
                    self.filter_combo.addItem(swatch(cls.rgb), cls.name, cls.name)
                    self.class_combo.addItem(swatch(cls.rgb), cls.name, cls.name)
                self.filter_combo.addItem(UNCLASSIFIED, None)
                self.class_combo.addItem(UNCLASSIFIED, None)
            i = self.filter_combo.findData(current) if current != ALL_CLASSES else 0
            self.filter_combo.setCurrentIndex(max(i, 0))
            self.model.class_filter = self.filter_combo.currentData()
        finally:
            self._updating = False
        self._refresh_class_table()

    def _refresh_class_table(self) -> None:
        self._updating = True
        try:
            table = self.class_table
            summaries = self.doc.class_summaries() if self.doc is not None else []
            table.setRowCount(len(summaries))
            for r, s in enumerate(summaries):
                cls = self.doc.class_named(s.class_name)
                name = QTableWidgetItem(swatch(cls.rgb if cls else UNCLASSIFIED_RGB), s.class_name or UNCLASSIFIED)
                name.setData(Qt.ItemDataRole.UserRole, s.class_name)
                tumour = QTableWidgetItem("")
                if cls is not None:
                    tumour.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
                    tumour.setCheckState(Qt.CheckState.Checked if cls.is_tumour else Qt.CheckState.Unchecked)
                    tumour.setToolTip("Tumour classes get a largest diameter and a size class (ITC/micro/macro)")
                area = "?" if s.area_mm2 is None else f"{s.area_mm2:.4g}"
                count = QTableWidgetItem(str(s.count))
                area_item = QTableWidgetItem(area)
                for item in (count, area_item):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                for c, item in enumerate((name, tumour, count, area_item)):
                    table.setItem(r, c, item)
            self._show_detections(summaries)
        finally:
            self._updating = False

    def _show_detections(self, summaries) -> None:
        total = sum(s.detections for s in summaries)
        if not total:
            self.detections_label.hide()
            return
        per_class = " \u00b7 ".join(f"{s.class_name or UNCLASSIFIED} {s.detections:,}" for s in summaries if s.detections)
        self.detections_label.setText(f"{total:,} detection{'s' if total != 1 else ''} ({per_class}): "
                                      "shown, not sized or staged")
        self.detections_label.show()

    def selected_class(self) -> str | None:
        rows = self.class_table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.class_table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def _on_class_item_changed(self, item: QTableWidgetItem) -> None:
        if self._updating or self.doc is None or item.column() != 1:
            return
        name = self.class_table.item(item.row(), 0).data(Qt.ItemDataRole.UserRole)
        if name is not None:
            self.doc.update_class(name, is_tumour=item.checkState() == Qt.CheckState.Checked)

    def _on_class_double_clicked(self, row: int, column: int) -> None:
        if column == 0:
            self.recolour_class_dialog()

    def add_class(self, name: str, rgb: tuple[int, int, int], is_tumour: bool = False) -> None:
        self.doc.add_class(AnnotationClass(name, rgb, is_tumour))

    def add_class_dialog(self) -> None:
        if self.doc is None:
            return
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if not ok or not name.strip():
            return
        colour = QColorDialog.getColor(QColor(155, 89, 182), self, f"Colour of {name.strip()}")
        if not colour.isValid():
            return
        try:
            self.add_class(name.strip(), (colour.red(), colour.green(), colour.blue()))
        except ValueError as exc:
            self.label_text.setText(str(exc))

    def rename_class_dialog(self) -> None:
        old = self.selected_class()
        if self.doc is None or old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename class", f"New name for {old}:", text=old)
        if ok and new.strip() and new.strip() != old:
            try:
                self.doc.rename_class(old, new.strip())
            except ValueError as exc:
                self.label_text.setText(str(exc))

    def recolour_class_dialog(self) -> None:
        name = self.selected_class()
        if self.doc is None or name is None:
            return
        colour = QColorDialog.getColor(QColor(*self.doc.class_named(name).rgb), self, f"Colour of {name}")
        if colour.isValid():
            self.doc.update_class(name, rgb=(colour.red(), colour.green(), colour.blue()))

    def remove_selected_class(self) -> None:
        name = self.selected_class()
        if self.doc is not None and name is not None:
            self.doc.remove_class(name)

    # -- the selected annotation --------------------------------------------------------------------
    def _on_selection(self, uid: str | None) -> None:
        self._select_row(uid)
        ann = self.doc.get(uid) if self.doc is not None and uid is not None and uid in self.doc else None
        for w in (self.name_edit, self.class_combo, self.note_edit):
            w.setEnabled(ann is not None)
        if ann is None:
            self.name_edit.clear()
            self.note_edit.clear()
            self.measure_label.setText("")
            return
        if not self.name_edit.hasFocus():
            self.name_edit.setText(ann.name)
        if not self.note_edit.hasFocus():
            self.note_edit.setPlainText(ann.note)
        self.class_combo.setCurrentIndex(max(self.class_combo.findData(ann.class_name), 0))
        self.measure_label.setText(self.measurement_text(ann))

    def _on_preview(self) -> None:
        """Live size while a vertex or the whole shape is dragged (before it is committed)."""
        tools = self.tools
        if tools is not None and tools.preview is not None and tools.preview_replaces == tools.selected:
            self.measure_label.setText(self.measurement_text(tools.preview))

    def measurement_text(self, ann: Annotation) -> str:
        m = measure(ann, self.doc.mpp, is_tumour=self.doc.is_tumour(ann))
        lines = [t for t in (m.length_text(), m.area_text()) if t is not None]
        if m.perimeter_um is not None:
            lines.append("perimeter " + format_length_um(m.perimeter_um))
        if m.max_diameter_px is not None and ann.kind.is_area:
            diam = (f"{m.max_diameter_mm:.3f} mm" if m.max_diameter_mm is not None
                    else f"{m.max_diameter_px:.1f} px")
            lines.append(f"largest diameter {diam}")
        if m.size_class is not None:
            lines.append(f"size class: {m.size_class.value}")
        elif not ann.is_region:
            lines.append(f"({ann.object_kind.value} from another tool: never sized or staged)")
        elif ann.kind.is_area and not self.doc.is_tumour(ann):
            lines.append("(not a tumour class: no size class)")
        if m.kind == "points":
            lines.append(m.summary())
        return "\n".join(lines)

    def _commit_name(self) -> None:
        uid = self.tools.selected if self.tools is not None else None
        if uid is not None and uid in self.doc and self.doc.get(uid).name != self.name_edit.text():
            self.doc.rename(uid, self.name_edit.text())

    def _commit_note(self) -> None:
        uid = self.tools.selected if self.tools is not None else None
        if uid is not None and self.doc is not None and uid in self.doc \
                and self.doc.get(uid).note != self.note_edit.toPlainText():
            self.doc.set_note(uid, self.note_edit.toPlainText())

    def _on_class_combo(self, _index: int) -> None:
        uid = self.tools.selected if self.tools is not None else None
        if uid is not None and uid in self.doc:
            name = self.class_combo.currentData()
            if self.doc.get(uid).class_name != name:
                self.doc.set_class([uid], name)

    # -- slide label ----------------------------------------------------------------------------------
    def show_label(self, label: SlideLabel | None, note: str = "") -> None:
        if label is None:
            self.label_text.setText("not computed (press Recompute label)" + (f"\n{note}" if note else ""))
            return
        text = LABEL_TEXT.get(label.label, label.label)
        if label.largest_diameter_mm is not None:
            text += f"; largest tumour diameter {label.largest_diameter_mm:.3f} mm"
        text += f"; {len(label.lesions)} tumour annotation{'s' if len(label.lesions) != 1 else ''}"
        self.label_text.setText(f"<b>{text}</b>" + (f"<br>{note}" if note else ""))
