"""The main window's annotation wiring: menus, toolbar, panel, import/export, AI lesions.

Kept out of ``main_window.py`` (which creates this object, places its menus, toolbar and
panel, and calls ``attach`` for each new tab). Everything acts on the current tab's
``AnnotationDocument`` and ``AnnotationTools``; the active tool and the class of new shapes
are window-wide.

Shortcuts: M move, R rectangle, E ellipse (QuPath's O is the overview here), P polygon,
B freehand, "." points, L ruler; Ctrl+Z undo, Ctrl+Shift+Z / Ctrl+Y redo, Delete or
Backspace delete the selection (while a polygon is drawn: its last vertex).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QComboBox, QFileDialog, QLabel, QMenu, QToolBar, QWidget

from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.threshold import choose_lesion_params
from histoviewer.core.annotations import add_lesion_annotations, load_annotations, save_annotations, slide_label
from histoviewer.core.annotations.tools import Tool
from histoviewer.core.atomic import check_output
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON, judge_slide
from histoviewer.qt.actions import make_action
from histoviewer.qt.annotation_panel import AnnotationPanel, swatch
from histoviewer.qt.annotation_tools import TOOL_LABELS, VIEWER_SHORTCUTS, fly_to
from histoviewer.qt.window_host import TabHost

IMPORT_FILTER = "Annotations (*.geojson *.json *.geojson.gz *.xml);;QuPath GeoJSON (*.geojson *.json *.geojson.gz);;ASAP XML (*.xml);;All files (*)"
EXPORT_FILTERS = {"QuPath GeoJSON (*.geojson)": ".geojson", "ASAP XML, CAMELYON (*.xml)": ".xml"}
MESSAGE_MS = 10000


class AnnotationActions(QObject):
    """The annotation UI of the main window, kept current with the slide in front.

    Owns its widgets and actions; the window places them: ``file_actions`` (File menu),
    ``edit_menu``, ``annotation_menu``, ``toolbar``, ``panel`` (a dock) and ``label_status``
    (status bar). It sees the window only through ``TabHost`` (``window_host.py``)."""

    def __init__(self, host: TabHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self._dialog_parent = parent
        self.tool = Tool.SELECT
        self.class_name: str | None = "Tumor"
        self._bound = None  # the tab whose document the menus and panel show
        self._unsubscribe = None
        self.panel = AnnotationPanel(parent)
        self.panel.flyRequested.connect(self.fly_to)
        self.panel.convertLesionsRequested.connect(self.convert_ai_lesions)
        self.panel.labelRequested.connect(self.recompute_label)
        self.label_status = QLabel("", parent)
        self._build_file_actions()
        self._build_edit_menu(parent)
        self._build_annotation_menu(parent)
        self._build_toolbar(parent)
        host.currentTabChanged.connect(self._bind)
        self._bind(None)

    # -- construction -------------------------------------------------------------------------
    def _build_file_actions(self) -> None:
        self.import_action = QAction("&Import annotations\u2026", self)
        self.import_action.triggered.connect(self.import_dialog)
        self.export_action = QAction("&Export annotations\u2026", self)
        self.export_action.triggered.connect(self.export_dialog)

    @property
    def file_actions(self) -> tuple[QAction, ...]:
        """In the File menu, in this order."""
        return self.import_action, self.export_action

    def _build_edit_menu(self, parent: QWidget | None) -> None:
        self.edit_menu = QMenu("&Edit", parent)
        self.undo_action = self._add(self.edit_menu, "&Undo", self.undo, [QKeySequence.StandardKey.Undo])
        self.redo_action = self._add(self.edit_menu, "&Redo", self.redo,
                                     [QKeySequence.StandardKey.Redo, QKeySequence("Ctrl+Y")])
        self.edit_menu.addSeparator()
        self.delete_action = self._add(self.edit_menu, "&Delete annotation", self.delete,
                                       [QKeySequence(Qt.Key.Key_Delete), QKeySequence(Qt.Key.Key_Backspace)])

    def _add(self, menu, text: str, slot, shortcuts=()) -> QAction:
        return make_action(self, text, slot, shortcut=list(shortcuts), menu=menu)

    def _build_annotation_menu(self, parent: QWidget | None) -> None:
        menu = QMenu("A&nnotations", parent)
        self.annotation_menu = menu
        self.tool_group = QActionGroup(self)
        self.tool_group.setExclusive(True)
        self.tool_actions: dict[Tool, QAction] = {}
        for tool in Tool:
            action = QAction(TOOL_LABELS[tool], self)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(VIEWER_SHORTCUTS[tool]))
            action.setToolTip(f"{TOOL_LABELS[tool].replace('&', '')} ({VIEWER_SHORTCUTS[tool]})")
            action.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
            self.tool_group.addAction(action)
            menu.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions[Tool.SELECT].setChecked(True)
        menu.addSeparator()
        self.convert_action = self._add(menu, "&Convert AI lesions to annotations", self.convert_ai_lesions)
        self.label_action = self._add(menu, "Recompute slide &label from annotations", self.recompute_label)
        menu.addSeparator()
        self.show_action = self._add(menu, "&Show annotations", self._toggle_visible)
        self.show_action.setCheckable(True)
        self.show_action.setChecked(True)
        panel_action = self.panel.toggleViewAction()
        panel_action.setText("Annotation &panel")
        menu.addAction(panel_action)

    def _build_toolbar(self, parent: QWidget | None) -> None:
        bar = QToolBar("Annotation tools", parent)
        bar.setObjectName("annotation_toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for tool in Tool:
            bar.addAction(self.tool_actions[tool])
        bar.addSeparator()
        bar.addWidget(QLabel(" New shapes: "))
        self.class_combo = QComboBox()
        self.class_combo.setMinimumWidth(110)
        self.class_combo.activated.connect(self._on_class_combo)
        bar.addWidget(self.class_combo)
        self.toolbar = bar

    # -- tabs -----------------------------------------------------------------------------------
    def attach(self, tab) -> None:
        """A slide was opened in ``tab``: apply the window's tool and class, say what the
        autosave restored."""
        tools = tab.annotation_tools
        tools.set_tool(self.tool)
        tools.set_class(self.class_name)
        tools.toolChanged.connect(lambda tool, t=tab: self._on_tool_changed(t, tool))
        tools.message.connect(lambda text: self.host.show_message(text, MESSAGE_MS))
        # Not a dialog: the tab's banner names the file and the problem until a save works.
        tab.autosaveFailed.connect(lambda text: self.host.show_message(f"Annotations not saved: {text}", MESSAGE_MS))
        tab.autosave_banner.saveAsRequested.connect(lambda t=tab: self._save_as(t))
        if tab.annotation_error:
            self.host.report_error("Autosaved annotations unreadable", tab.annotation_error)
        elif tab.annotation_recovery is not None:
            message = tab.annotation_recovery.message
            current = self.host.current_message()
            self.host.show_message(f"{current} \u00b7 {message}" if current else message, 20000)
        if self.host.current_tab() is tab:
            self._bind(tab)

    def _bind(self, tab) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._bound = tab
        if tab is None:
            self.panel.set_target(None, None)
        else:
            self._unsubscribe = tab.annotations.subscribe(self._on_doc_change)
            tab.annotation_tools.set_tool(self.tool)
            tab.annotation_tools.set_class(self.class_name)
            self.panel.set_target(tab.annotations, tab.annotation_tools)
            self.show_action.setChecked(tab.annotation_layer.visible)
            if tab.annotation_label is not None:  # edited while another tab was in front?
                tab.annotation_label = slide_label(tab.annotations)
        self._show_label(tab)
        self._refresh_classes()
        self._update_actions()

    def _on_doc_change(self, change) -> None:
        if change.classes_changed:
            self._refresh_classes()
        self._update_actions()
        self._refresh_label(self._bound)

    def _refresh_label(self, tab) -> None:
        """A label once computed follows every edit, undo and redo (it went stale)."""
        if tab is not None and tab.annotation_label is not None:
            tab.annotation_label = slide_label(tab.annotations)
            self._show_label(tab)

    def _update_actions(self) -> None:
        tab = self._bound
        doc = tab.annotations if tab is not None else None
        for action in (self.import_action, self.export_action, self.delete_action, self.convert_action,
                       self.label_action, self.show_action):
            action.setEnabled(tab is not None)
        self.undo_action.setEnabled(doc is not None and doc.can_undo)
        self.redo_action.setEnabled(doc is not None and doc.can_redo)
        self.undo_action.setText(f"&Undo {doc.undo_text}" if doc is not None and doc.undo_text else "&Undo")
        self.redo_action.setText(f"&Redo {doc.redo_text}" if doc is not None and doc.redo_text else "&Redo")

    def _refresh_classes(self) -> None:
        self.class_combo.clear()
        tab = self._bound
        if tab is None:
            return
        for cls in tab.annotations.classes:
            self.class_combo.addItem(swatch(cls.rgb), cls.name, cls.name)
        self.class_combo.addItem("(unclassified)", None)
        i = self.class_combo.findData(self.class_name)
        self.class_combo.setCurrentIndex(i if i >= 0 else 0)
        self.class_name = self.class_combo.currentData()
        tab.annotation_tools.set_class(self.class_name)

    # -- tools ----------------------------------------------------------------------------------
    def set_tool(self, tool: Tool) -> None:
        self.tool = Tool(tool)
        self.tool_actions[self.tool].setChecked(True)
        if self._bound is not None:
            self._bound.annotation_tools.set_tool(self.tool)
            self._bound.view.setFocus()

    def _on_tool_changed(self, tab, tool: Tool) -> None:
        if tab is self._bound and tool != self.tool:  # Esc went back to Move
            self.tool = tool
            self.tool_actions[tool].setChecked(True)

    def set_class(self, class_name: str | None) -> None:
        """The class new shapes get."""
        self.class_name = class_name
        i = self.class_combo.findData(class_name)
        if i >= 0:
            self.class_combo.setCurrentIndex(i)
        if self._bound is not None:
            self._bound.annotation_tools.set_class(class_name)

    def _on_class_combo(self, _index: int) -> None:
        self.set_class(self.class_combo.currentData())

    def _toggle_visible(self, checked: bool) -> None:
        if self._bound is not None:
            self._bound.annotation_layer.visible = checked
            self._bound.view.update()

    # -- edits ----------------------------------------------------------------------------------
    def undo(self) -> None:
        if self._bound is not None:
            self._bound.annotation_tools.cancel()
            self._bound.annotations.undo()

    def redo(self) -> None:
        if self._bound is not None:
            self._bound.annotation_tools.cancel()
            self._bound.annotations.redo()

    def delete(self) -> None:
        if self._bound is not None:
            self._bound.annotation_tools.delete_key()

    def fly_to(self, uid: str) -> None:
        tab = self._bound
        if tab is not None and uid in tab.annotations:
            fly_to(tab.view, tab.annotations.get(uid).l0_bounds())

    # -- files ----------------------------------------------------------------------------------
    def _start_dir(self) -> str:
        return str(Path(self._bound.path).parent) if self._bound is not None else ""

    def import_dialog(self) -> None:
        if self._bound is None:
            return
        path, _ = QFileDialog.getOpenFileName(self._dialog_parent, "Import annotations", self._start_dir(), IMPORT_FILTER)
        if path:
            self.import_file(path)

    def import_file(self, path) -> bool:
        """Add the annotations of a GeoJSON / ASAP XML / CAMELYON16 JSON file as one undo
        step; a file that cannot be read changes nothing and the error says where it is bad."""
        tab = self._bound
        if tab is None:
            return False
        try:
            result = load_annotations(path)
        except (HistoViewerError, OSError) as exc:
            self.host.report_error("Cannot import annotations", str(exc))
            return False
        tab.annotations.import_set(result.annotation_set, description=f"Import {Path(path).name}")
        regions = sum(1 for a in result.annotation_set.annotations if a.is_region)
        detections = len(result.annotation_set.annotations) - regions
        parts = [f"{regions} annotation{'s' if regions != 1 else ''}"] if regions or not detections else []
        if detections:
            parts.append(f"{detections} detection{'s' if detections != 1 else ''} (shown, never sized or staged)")
        text = f"Imported {' and '.join(parts)} from {Path(path).name}"
        # the reader's note on detections says again what the line above says: not a warning here
        warnings = [w for w in result.warnings if "read as detections" not in w]
        if warnings:
            text += f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''}: {warnings[0]})"
        self.host.show_message(text, MESSAGE_MS)
        return True

    def _save_as(self, tab) -> None:
        """The autosave banner's Save as: export that tab's annotations."""
        if tab is self._bound:
            self.export_dialog()

    def export_dialog(self) -> None:
        if self._bound is None:
            return
        start = str(Path(self._start_dir()) / (Path(self._bound.path).stem + ".geojson"))
        path, chosen = QFileDialog.getSaveFileName(self._dialog_parent, "Export annotations", start,
                                                   ";;".join(EXPORT_FILTERS))
        if path:
            if Path(path).suffix.lower() not in (".geojson", ".json", ".xml"):
                path += EXPORT_FILTERS.get(chosen, ".geojson")
            self.export_file(path)

    def export_file(self, path) -> bool:
        tab = self._bound
        if tab is None:
            return False
        try:
            check_output(path, inputs=[tab.path], overwrite=True)  # never over the slide itself
            losses = save_annotations(path, tab.annotations.to_set())
        except (HistoViewerError, OSError) as exc:
            self.host.report_error("Cannot export annotations", str(exc))
            return False
        text = f"Exported {len(tab.annotations)} annotations to {Path(path).name}"
        if losses:
            text += f" \u2013 {'; '.join(losses[:2])}"
        self.host.show_message(text, MESSAGE_MS)
        return True

    # -- AI and labels -----------------------------------------------------------------------------
    def convert_ai_lesions(self) -> list[str]:
        """The AI's lesions on the current slide as editable Tumor annotations (one undo step)."""
        tab = self._bound
        if tab is None:
            return []
        grid = tab.heatmap.live.grid if tab.heatmap is not None else None
        if grid is None:
            self.host.report_error("No AI results", "Turn the AI overlay on (AI \u203a Classify tissue in view) "
                                     "and let it classify the slide before converting its lesions.")
            return []
        # Annotations stage the node, so lesions from tissue unlike the model's training data
        # must not become tumour annotations (the pathologist can still draw their own).
        model = tab.heatmap.live.model
        domain = judge_slide(grid.domain_distances(), getattr(model, "domain", None),
                             complete=grid.coverage() >= 1.0)
        if domain.out_of_domain:
            self.host.report_error("AI lesions not converted", f"{OUT_OF_DOMAIN_REASON} "
                                   f"({domain.evidence()}). Annotate tumour you see yourself.")
            return []
        lesions = getattr(tab, "lesions", None)
        snapshot = lesions.snapshot if lesions is not None and not lesions.busy else None
        if snapshot is not None and snapshot.result is not None and tab.heatmap.live.is_idle:
            found = snapshot.result  # the summary panel's analysis of this very map
        else:  # not analysed yet (or the map moved on): analyse now
            model = tab.heatmap.live.model  # at its operating point, as the summary panel reads it
            point = None if model is None else model.info.operating_point
            found = analyse_map(grid.encoded_map(), MapFrame.from_geometry(grid.geometry),
                                choose_lesion_params(None, point))
        coverage = f"{found.coverage:.0%} of the tissue classified"
        if not found.lesions:
            self.host.show_message(f"The AI found no lesions ({coverage})", MESSAGE_MS)
            return []
        uids = add_lesion_annotations(tab.annotations, [les.l0_outline for les in found.lesions],
                                      names=[les.name for les in found.lesions])
        # The point of converting is a label from the corrected lesions: show it now (and,
        # from now on, after every edit).
        tab.annotation_label = slide_label(tab.annotations)
        self._show_label(tab)
        text = f"{len(uids)} AI lesion{'s' if len(uids) != 1 else ''} added as Tumor annotations ({coverage})"
        if found.provisional:
            text += "; the slide is not fully classified, more lesions may follow"
        self.host.show_message(text, MESSAGE_MS)
        return uids

    def recompute_label(self):
        """The slide label from the tumour annotations as they are now (panel + status bar)."""
        tab = self._bound
        if tab is None:
            return None
        tab.annotation_label = slide_label(tab.annotations)
        self._show_label(tab)
        self.host.show_message(f"Slide label from annotations: {tab.annotation_label.label}", MESSAGE_MS)
        return tab.annotation_label

    def _show_label(self, tab) -> None:
        label = tab.annotation_label if tab is not None else None
        self.panel.show_label(label)
        self.label_status.setText("" if label is None else f"Label (annotations): {label.label}")
