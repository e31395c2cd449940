"""The case view: one patient's node slides analysed together, each node's label and the pN stage.

"Analyse all" runs, on one background thread, exactly what ``histoviewer analyze`` runs on
the same slides: ``core.jobs.analyze_case`` (per node its ``summary.json``,
``lesions.geojson``, probability map and heatmap under ``<output>/<slide folder>/``, then
``stages.csv`` in the CAMELYON17 format and ``cases.json`` with what decided each stage).
The slide folders are ``core.jobs.slide_folders``' names, as analyze chooses them: the
slide's name without its extension, renamed (``node-2``...) when another slide or file has
that name; each renamed folder is stated under the output line, and each node's folder is
in its row's tooltip. A stage resting on a lesion at a size-class border is said under the
stage (``StageResult.border_warning``).
The model is loaded once for all nodes. Cancel is cooperative: Cancel sets the job's cancel
event, the analysis stops after the region in hand, the slide's threads are closed, and no
case files are written for a cancelled run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QProgressBar,
    QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from histoviewer.core.analysis.camelyon17 import check_unique_nodes, group_cases
from histoviewer.core.analysis.case import CaseOutputs, node_result, node_result_from_annotations
from histoviewer.core.analysis.lesions import describe_size
from histoviewer.core.analysis.staging import StageResult, stage_patient
from histoviewer.core.analysis.summary import SlideFailure, SlideOutcome
from histoviewer.core.errors import Cancelled, HistoViewerError, ModelLoadError, StagingError
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.jobs import analyze_case
from histoviewer.core.jobs.slide_folders import SlideFolder, slide_folders
from histoviewer.core.models.model_file import read_model_info
from histoviewer.core.models.registry import resolve_model_path
from histoviewer.core.paths import user_data_dir
from histoviewer.core.progress import JobControl
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.qt.case_review import REVIEW_COLUMN_TITLE, OpenNodes, compute_case_review, show_case_review
from histoviewer.qt.learned_text import learned_cell, learned_column_title
from histoviewer.qt.node_classifier_choice import check_node_classifier
from histoviewer.qt.summary_panel import LABEL_TEXT
from histoviewer.qt.threads import ThreadJob

log = logging.getLogger(__name__)

# Whole-slide formats only: a case folder also holds heatmap PNGs, GeoJSON and XML.
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm")
STAGE_COLOURS = {"pN0": "#1a6e1a", "pN0(i+)": "#00789a", "pN1mi": "#b86e00", "pN1": "#b0105a", "pN2": "#8a0040",
                 "unknown": "#555555"}
COLUMNS = ("Node", "Label", "Largest lesion", "Coverage", "Progress", REVIEW_COLUMN_TITLE, "Learned label")
LEARNED_COLUMN = COLUMNS.index("Learned label")  # the learned node classifier's second opinion (learned_text)
CAUTION_COLOUR = "#a05a00"  # the dialog's warnings: the model's caveat, failed patches, border stages, renames


def case_slides_in(folder: str | os.PathLike[str]) -> list[Path]:
    """The slide files of a case folder, in natural node order (``patient_<p>_node_<n>``)."""
    folder = Path(folder)
    slides = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES]
    return [Path(s) for group in group_cases(slides).values() for s in group]


def default_output_dir(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """``<user data>/analyses/<patient>`` (or the folder's name for a non-CAMELYON case)."""
    names = list(group_cases(paths))
    return user_data_dir() / "analyses" / (names[0] if len(names) == 1 else Path(paths[0]).resolve().parent.name)


class CaseAnalysis(ThreadJob):
    """Analyses ``paths`` with ``model_spec`` on a Python thread; signals arrive on the GUI
    thread. ``foldersChosen(list[SlideFolder])``: where each node writes (input order), before
    the first node starts; ``nodeFinished(row, SlideSummary | SlideFailure)``;
    ``finished(CaseOutputs | None, error text)``: None when cancelled or failed."""

    foldersChosen = Signal(object)
    nodeStarted = Signal(int)
    nodeProgress = Signal(int, int, int)  # row, patches done, patches in all
    nodeFinished = Signal(int, object)
    finished = Signal(object, str)

    job_name = "case-analysis"

    def __init__(self, paths: Sequence[str | os.PathLike[str]], out_root: str | os.PathLike[str], model_spec: str,
                 device: str = "auto", parent: QObject | None = None, node_classifier: str = "default") -> None:
        super().__init__(parent)
        self.paths = [Path(p) for p in paths]
        self.out_root = Path(out_root)
        self.model_spec, self.device = model_spec, device
        self.node_classifier = node_classifier  # the learned label beside the rules (node_classifier_choice)
        self._row = 0  # the node being analysed (analysis thread)

    # -- analysis thread ----------------------------------------------------------------------
    def _run(self) -> None:
        control = JobControl(progress=self._progress, cancel=self._cancel)
        options = AnalyzeOptions(model=self.model_spec, device=self.device, node_classifier=self.node_classifier)
        problem = check_node_classifier(self.node_classifier)
        if problem is not None:  # before any work, not after the first node
            self._emit(self.finished, None, f"cannot use the chosen node classifier: {problem}")
            return
        try:
            # the folders analyze chooses (one function): computed once, stated, then used
            folders = slide_folders(self.out_root, self.paths)
            self._emit(self.foldersChosen, folders)
            run = analyze_case(self.paths, self.out_root, options, control=control,
                               on_started=self._started, on_done=self._done, folders=folders)
        except Cancelled:
            self._emit(self.finished, None, "cancelled")
        except ModelLoadError as exc:
            self._emit(self.finished, None, f"cannot load the model: {exc}")
        except HistoViewerError as exc:
            self._emit(self.finished, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - the dialog must hear the end, whatever happened
            log.exception("case analysis failed")
            self._emit(self.finished, None, f"case analysis failed: {type(exc).__name__}: {exc}")
        else:
            self._emit(self.finished, run.outputs, "")

    def _started(self, row: int, _path: Path) -> None:
        self._row = row
        self._emit(self.nodeStarted, row)

    def _done(self, row: int, summary: SlideOutcome) -> None:
        self._emit(self.nodeFinished, row, summary)

    def _progress(self, _stage: str, done: int, total: int, _detail: str) -> None:
        # one stage per node, in patches: the row is the node started last
        self._emit(self.nodeProgress, self._row, done, total)


def _model_warning(model_spec: str) -> str:
    """What the model that will stage the case says of itself: the demonstration warning, or
    what it was trained on (not validated for clinical use) and its operating point."""
    try:
        info = read_model_info(resolve_model_path(model_spec))
    except HistoViewerError as exc:
        return f"Model {model_spec!r}: {exc}"
    if info.demonstration:
        return f"{info.display_name()}: these labels and this stage are a demonstration."
    point = "" if info.operating_point is None else f"; lesions at {info.operating_point.describe()}"
    return f"{info.display_name()}: {info.caution}{point}."


class CaseDialog(QDialog):
    """Non-modal: the slides stay open in their tabs while the case is analysed.
    ``nodeActivated(path)``: a node's row was double-clicked (show its tab)."""

    nodeActivated = Signal(str)

    def __init__(self, paths: Sequence[str | os.PathLike[str]], model_spec: str = "cnn", device: str = "auto",
                 parent: QWidget | None = None, node_classifier: str = "default") -> None:
        super().__init__(parent)
        self.paths = [Path(p) for p in paths]
        self.model_spec, self.device = model_spec, device
        self.node_classifier = node_classifier  # AiSettings.node_classifier
        self.out_root = default_output_dir(self.paths)
        self.analysis: CaseAnalysis | None = None
        self.outputs: CaseOutputs | None = None
        self.summaries: dict[int, SlideOutcome] = {}
        self.folders: list[SlideFolder] = []  # where the last run wrote each node (input order)
        # path -> the node's label from the pathologist's tumour annotations, or None when
        # the slide has none (the window sets it: it knows the open documents)
        self.annotation_labels: Callable[[Path], object | None] | None = None
        self.open_nodes: Callable[[], OpenNodes] | None = None  # open slides' documents (the window sets it)
        cases = group_cases(self.paths)
        title = ", ".join(cases) if len(cases) <= 3 else f"{len(cases)} patients"
        self.setWindowTitle(f"Case {title} \u2013 {len(self.paths)} node(s)")
        self.resize(1250, 520)  # room for the review and learned-label columns
        layout = QVBoxLayout(self)

        self.table = QTableWidget(len(self.paths), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeaderItem(LEARNED_COLUMN).setText(learned_column_title(node_classifier))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        # room for the longest label, progress text, review and learned label
        for col, width in ((1, 230), (3, 80), (4, 200), (5, 150), (LEARNED_COLUMN, 230)):
            self.table.setColumnWidth(col, width)
        self.bars: list[QProgressBar] = []
        for row, path in enumerate(self.paths):
            self._set(row, 0, path.name)
            self._set(row, 1, "not analysed")
            bar = QProgressBar()
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat("waiting")
            self.table.setCellWidget(row, 4, bar)
            self.bars.append(bar)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.nodeActivated.emit(str(self.paths[row])))
        self.table.setToolTip("Double-click a node to show its slide")
        layout.addWidget(self.table, 1)

        self.stage_label = QLabel("pN stage: analyse all nodes to stage the patient.")
        self.stage_label.setStyleSheet("font-size: 18px; font-weight: bold; color: #555;")
        self.stage_label.setWordWrap(True)
        layout.addWidget(self.stage_label)
        # the stage would change if a border lesion had the class across its border (staging)
        self.border_label = QLabel("")
        self.border_label.setWordWrap(True)
        self.border_label.setStyleSheet(f"color: {CAUTION_COLOUR}; font-weight: bold;")
        self.border_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.border_label.hide()
        layout.addWidget(self.border_label)
        self.model_warning = QLabel(_model_warning(model_spec))
        self.model_warning.setWordWrap(True)
        self.model_warning.setStyleSheet("color: #a05a00; font-weight: bold;")
        self.model_warning.setVisible(bool(self.model_warning.text()))
        layout.addWidget(self.model_warning)
        self.reason_label = QLabel("")
        self.reason_label.setWordWrap(True)
        self.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.reason_label)
        self.review_label = QLabel("")  # review progress and pN as reviewed (case_review.py)
        self.review_label.setWordWrap(True)
        layout.addWidget(self.review_label)

        out_row = QHBoxLayout()
        self.out_label = QLabel("")
        self.out_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.out_button = QPushButton("Change\u2026")
        self.out_button.clicked.connect(self._choose_output)
        out_row.addWidget(self.out_label, 1)
        out_row.addWidget(self.out_button)
        layout.addLayout(out_row)
        self.folder_notes = QLabel("")  # slide folders analyze renamed (node -> node-2), as the CLI notes them
        self.folder_notes.setWordWrap(True)
        self.folder_notes.setStyleSheet(f"color: {CAUTION_COLOUR};")
        self.folder_notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_notes.hide()
        layout.addWidget(self.folder_notes)
        self._show_output()

        buttons = QHBoxLayout()
        self.status_label = QLabel(f"Model: {model_spec} on {device}. Same analysis as `histoviewer analyze`.")
        self.status_label.setStyleSheet("color: #555;")
        self.analyse_button = QPushButton("Analyse all")
        self.analyse_button.setDefault(True)
        self.analyse_button.clicked.connect(self.analyse_all)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        close_button = QPushButton("Close")
        close_button.clicked.connect(self.close)
        self.restage_button = QPushButton("Restage from annotations")
        self.restage_button.setToolTip(
            "Recompute every node's label and the pN stage from the annotations as they are now: an "
            "annotated node is labelled by its tumour annotations (none: negative); a node without any "
            "annotation keeps the AI's label")
        self.restage_button.clicked.connect(self.restage_from_annotations)
        buttons.addWidget(self.status_label, 1)
        buttons.addWidget(self.restage_button)
        buttons.addWidget(self.analyse_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(close_button)
        layout.addLayout(buttons)

    # -- helpers ------------------------------------------------------------------------------
    def _set(self, row: int, col: int, text: str, colour: str | None = None, bold: bool = False) -> None:
        item = QTableWidgetItem(text)
        if colour is not None:
            item.setForeground(QColor(colour))
        if bold:
            font = item.font()
            font.setBold(True)
            item.setFont(font)
        self.table.setItem(row, col, item)

    def _show_output(self) -> None:
        self.out_label.setText(f"Output: {self.out_root}")

    def set_output_dir(self, folder: str | os.PathLike[str]) -> None:
        """Where the next analysis writes (one sub-folder per node, stages.csv, cases.json)."""
        self.out_root = Path(folder)
        self._show_output()

    def _choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the case's analysis", str(self.out_root.parent))
        if folder:
            self.set_output_dir(folder)

    def refresh_review(self) -> None:
        """The review column and line, from the analyses and the decisions as they are now."""
        review = compute_case_review(self.paths, self.summaries, self.out_root, self.open_nodes)
        show_case_review(self.table, COLUMNS.index(REVIEW_COLUMN_TITLE), self.review_label, review)

    # -- running ------------------------------------------------------------------------------
    def analyse_all(self) -> None:
        if self.analysis is not None and self.analysis.running:
            return
        self.summaries.clear()
        self.outputs = None
        self._show_folders([])
        for row, bar in enumerate(self.bars):
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat("waiting")
            for col in (1, 2, 3, LEARNED_COLUMN):
                self._set(row, col, "")
        self.stage_label.setText("pN stage: analysing\u2026")
        self.stage_label.setStyleSheet("font-size: 18px; font-weight: bold; color: #555;")
        self.reason_label.setText("")
        self._show_border_warning("")
        self.analysis = CaseAnalysis(self.paths, self.out_root, self.model_spec, self.device, self,
                                     node_classifier=self.node_classifier)
        self.analysis.foldersChosen.connect(self._show_folders)
        self.analysis.nodeStarted.connect(self._on_started)
        self.analysis.nodeProgress.connect(self._on_progress)
        self.analysis.nodeFinished.connect(self._on_node)
        self.analysis.finished.connect(self._on_finished)
        self.analyse_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.out_button.setEnabled(False)
        self.status_label.setText("Loading the model\u2026")
        self.analysis.start()

    def cancel(self) -> None:
        if self.analysis is not None and self.analysis.running:
            self.analysis.cancel()
            self.status_label.setText("Cancelling after the region in hand\u2026")
            self.cancel_button.setEnabled(False)

    def _show_folders(self, folders: Sequence[SlideFolder]) -> None:
        """Each node's results folder in its row's tooltip; a note for each renamed one."""
        self.folders = list(folders)
        for row, folder in enumerate(self.folders):  # input order, as the rows
            self.table.item(row, 0).setToolTip(f"Results in {folder.path}\nDouble-click to show the slide")
        notes = [f"Note: {f.note}" for f in self.folders if f.note]
        self.folder_notes.setText("\n".join(notes))
        self.folder_notes.setVisible(bool(notes))

    def _show_border_warning(self, text: str) -> None:
        self.border_label.setText(text)
        self.border_label.setVisible(bool(text))

    def _on_started(self, row: int) -> None:
        self.bars[row].setFormat("reading tissue\u2026")
        self.bars[row].setRange(0, 0)  # busy until the patch count is known
        self.status_label.setText(f"Analysing {self.paths[row].name} ({row + 1} of {len(self.paths)})\u2026")

    def _on_progress(self, row: int, done: int, total: int) -> None:
        bar = self.bars[row]
        bar.setRange(0, max(total, 1))
        bar.setValue(min(done, total))
        # after the last patch the maps, heatmap and lesions are written: say so
        bar.setFormat("writing results\u2026" if done >= total else f"%p% of {total} patches")

    def _on_node(self, row: int, summary: SlideOutcome) -> None:
        self.summaries[row] = summary
        bar = self.bars[row]
        bar.setRange(0, 1)
        bar.setValue(1)
        if isinstance(summary, SlideFailure):
            bar.setFormat("failed")
            self._set(row, 1, "UNKNOWN: analysis failed", LABEL_TEXT[NodeLabel.UNKNOWN][1], bold=True)
            self._set(row, 2, summary.error, "#a01010")
            self.table.item(row, 2).setToolTip(summary.error)
            return
        bar.setFormat("done")
        text, colour, bold, tip = learned_cell(summary.learned)
        self._set(row, LEARNED_COLUMN, text, colour, bold=bold)
        self.table.item(row, LEARNED_COLUMN).setToolTip(tip)
        node = node_result(summary)
        text, colour = LABEL_TEXT[node.label]
        self._set(row, 1, text, colour, bold=True)
        if not node.resolved:  # no final label: say why where the label would be, and what so far
            so_far = f" ({node.at_least.value} so far)" if node.at_least is not NodeLabel.NEGATIVE else ""
            self._set(row, 1, f"UNKNOWN{so_far}: {node.why_unresolved}", colour, bold=True)
            self.table.item(row, 1).setToolTip(f"{node.why_unresolved}\n{summary.domain.describe()}")
        if node.largest_lesion is None:
            self._set(row, 2, "none")
        else:
            lesions = summary.lesions  # largest first
            # as the lesions panel and the report say it: a size within measurement error of a
            # class border is given with its range ('2.090 mm (1.997-2.230 mm: micro/macro border)')
            if lesions:
                size = describe_size(lesions[0])
            else:
                size = "unknown" if node.largest_diameter_mm is None else f"{node.largest_diameter_mm:.2f} mm"
            count = f"{len(lesions)} lesion{'s' if len(lesions) != 1 else ''}"
            self._set(row, 2, f"{node.largest_lesion}: {size}; {count}")
            self.table.resizeRowToContents(row)
        failed = f", {summary.failed_patches} failed" if summary.failed_patches else ""
        self._set(row, 3, f"{summary.coverage:.0%}{failed}", "#a05a00" if failed else None)
        self.refresh_review()

    def _on_finished(self, outputs: CaseOutputs | None, error: str) -> None:
        self.analyse_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.out_button.setEnabled(True)
        for row, bar in enumerate(self.bars):
            if row not in self.summaries:
                bar.setRange(0, 1)
                bar.setValue(0)
                bar.setFormat("cancelled" if error == "cancelled" else "not analysed")
        if outputs is None:
            self.status_label.setText("Cancelled: no case files written." if error == "cancelled" else error)
            self.stage_label.setText("pN stage: not staged")
            self._show_border_warning("")
            if error != "cancelled":  # a failed run (a case file not written...) must not pass unseen
                box = QMessageBox(QMessageBox.Icon.Warning, "Case analysis failed", error,
                                  QMessageBox.StandardButton.Ok, self)
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()  # window-modal, without blocking the event loop
            return
        self.outputs = outputs
        self.status_label.setText(f"Done. Wrote {outputs.stages_csv.name} and {outputs.cases_json.name}.")
        self._show_stages(outputs.results, outputs.errors)

    def _show_stages(self, results: Sequence[StageResult], errors) -> None:
        lines, reasons = [], []
        for r in results:
            stage = r.stage_text  # "unknown (at least pN1)" when an unresolved node could change it
            lines.append(f"{r.patient}: {stage}" if len(results) > 1 else f"pN stage: {stage}")
            deciding = [f"{n.node} \u2192 {n.largest_lesion} ({n.largest_diameter_mm:.2f} mm)"
                        for n in r.deciding if n.largest_lesion is not None and n.largest_diameter_mm is not None]
            reasons.append(f"{r.patient}: {r.reason}" + (f".\nDeciding lesions: {'; '.join(deciding)}" if deciding else ""))
        for patient, message in errors.items():
            lines.append(f"{patient}: not staged")
            reasons.append(message)
        colour = STAGE_COLOURS.get(results[0].stage.value, "#555") if len(results) == 1 else "#333"
        self.stage_label.setText("\n".join(lines))
        self.stage_label.setStyleSheet(f"font-size: 18px; font-weight: bold; color: {colour};")
        self.reason_label.setText("\n".join(reasons))
        # a stage resting on a border lesion: as the reports say it, under the stage
        warnings = [f"Caution{f' ({r.patient})' if len(results) > 1 else ''}: {r.border_warning}."
                    for r in results if r.border_warning]
        self._show_border_warning("\n".join(warnings))

    def restage_from_annotations(self) -> list[StageResult]:
        """Each annotated node's label from its tumour annotations (the pathologist's
        corrections; no tumour annotation: negative), each other node's from its analysis;
        then the pN stage again. Nothing is written: the analysis files stay what the AI
        found."""
        nodes, sources = {}, {}
        for row, path in enumerate(self.paths):
            label = self.annotation_labels(path) if self.annotation_labels is not None else None
            if label is not None:
                node = node_result_from_annotations(
                    path.name, label.label, [(les.name, les.max_diameter_mm) for les in label.lesions])
                sources[row] = "annotations"
            elif row in self.summaries:  # a failed analysis is an unresolved node, with why
                node = node_result(self.summaries[row])
                sources[row] = "AI"
            else:
                node = None
            nodes[path] = node
            if node is not None:
                text, colour = LABEL_TEXT[node.label]
                self._set(row, 1, f"{text} ({sources[row]})", colour, bold=True)
                if sources[row] == "annotations":
                    size = "" if node.largest_diameter_mm is None else f": {node.largest_diameter_mm:.2f} mm"
                    self._set(row, 2, f"{node.largest_lesion}{size}" if node.largest_lesion else "none")
        results, errors = [], {}
        for patient, slides in group_cases(self.paths).items():
            missing = [Path(s).name for s in slides if nodes[Path(s)] is None]
            if missing:
                errors[patient] = f"not staged: {', '.join(missing)} neither analysed nor annotated"
                continue
            try:  # as analyze stages: one node given twice is refused, never counted twice
                check_unique_nodes(patient, slides)
                results.append(stage_patient(patient, [nodes[Path(s)] for s in slides]))
            except StagingError as exc:
                errors[patient] = str(exc)
        if results:
            self._show_stages(results, errors)
        else:
            self.stage_label.setText("pN stage: not staged")
            self._show_border_warning("")
            self.reason_label.setText("\n".join(errors.values()))
        used = sum(1 for s in sources.values() if s == "annotations")
        self.status_label.setText(f"Restaged from the annotations of {used} node(s); nodes without annotations "
                                  "keep the AI's label.")
        return results

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Cancel a running analysis and wait for its thread (the region in hand finishes)."""
        if self.analysis is not None and self.analysis.running:
            self.analysis.cancel()
            self.analysis.wait(timeout)
