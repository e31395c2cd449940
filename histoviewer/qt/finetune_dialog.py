""""Improve the model from my corrections": fine-tune the current model on the open slides'
review decisions and tumour/normal annotations (``core.training.finetune``).

The dialog lists the slides and what each teaches (accepted/rejected hotspots, tumour/normal
regions; a slide without labels is named and left out), runs the fine-tune on a Python thread
with progress, live curves (training and validation loss, validation AUC per epoch) and a
Cancel that really stops it (the model file is written only at the very end, atomically: a
cancelled run leaves nothing). At the end it shows the validation numbers and offers to switch
to the new model at once (``switchRequested(path)``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pyqtgraph as pg
import torch  # noqa: F401 - the fine-tune runs a CNN; the window imports this module lazily (start-up)
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from histoviewer.core.errors import Cancelled, HistoViewerError
from histoviewer.core.models.model_file import read_model_info
from histoviewer.core.models.registry import resolve_model_path
from histoviewer.core.patches.region_patches import SlideLabels, slide_labels
from histoviewer.core.patches.slide_patches import list_slides
from histoviewer.core.progress import JobControl
from histoviewer.core.training.common import EpochRecord
from histoviewer.core.training.finetune import (
    FinetuneOutcome,
    FinetuneSettings,
    finetune_model,
)
from histoviewer.core.training.finetune_overlap import (
    RelearnedOverlap,
    relearned_overlap,
)
from histoviewer.qt.threads import ThreadJob

log = logging.getLogger(__name__)

__all__ = ["FinetuneDialog", "FinetuneJob"]


class FinetuneJob(ThreadJob):
    """One fine-tune on a Python thread; signals arrive on the GUI thread.
    ``progress(stage, done, total)``, ``epoch(EpochRecord)``, ``finished(FinetuneOutcome | None,
    message)``: None with "cancelled" or the error."""

    progress = Signal(str, int, int)
    epoch = Signal(object)
    finished = Signal(object, str)

    job_name = "finetune"

    def __init__(self, parent_model: str, labelled: Sequence[SlideLabels], settings: FinetuneSettings,
                 out: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.parent_model, self.labelled, self.settings, self.out = parent_model, list(labelled), settings, out

    def _run(self) -> None:
        control = JobControl(progress=lambda stage, done, total, _d: self._emit(self.progress, stage, done, total),
                             cancel=self._cancel)
        try:
            outcome = finetune_model(self.parent_model, self.labelled, self.settings, out=self.out, control=control,
                                     on_epoch=lambda rec: self._emit(self.epoch, rec))
        except Cancelled:
            self._emit(self.finished, None, "cancelled")
        except HistoViewerError as exc:
            self._emit(self.finished, None, str(exc))
        except Exception as exc:
            log.exception("fine-tune failed")
            self._emit(self.finished, None, f"fine-tune failed: {type(exc).__name__}: {exc}")
        else:
            self._emit(self.finished, outcome, "")


def _labels_text(sl: SlideLabels) -> str:
    kinds: dict[str, int] = {}
    for r in sl.regions:
        kinds[r.origin] = kinds.get(r.origin, 0) + 1
    order = ("accepted hotspot", "rejected hotspot", "tumour annotation", "normal annotation")
    return ", ".join(f"{kinds[k]} {k}{'s' if kinds[k] != 1 else ''}" for k in order if k in kinds)


class FinetuneDialog(QDialog):
    """Non-modal. ``switchRequested(model path)``: the user chose to use the new model now."""

    switchRequested = Signal(str)

    def __init__(self, slides: Sequence[str | os.PathLike[str]], parent_model: str, device: str = "auto",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Improve the model from my corrections")
        self.resize(900, 640)
        self.parent_model, self.device = parent_model, device
        self.job: FinetuneJob | None = None
        self.outcome: FinetuneOutcome | None = None
        self.labelled: list[SlideLabels] = []
        self.history: list[EpochRecord] = []
        self.model_name = parent_model  # its header's name once read
        self.model_extra: dict = {}  # the current model's header extras (its fine-tune record)
        self.overlap: RelearnedOverlap | None = None
        layout = QVBoxLayout(self)

        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.model_label)

        self.slide_list = QTreeWidget()
        self.slide_list.setHeaderLabels(["Slide", "What it teaches"])
        self.slide_list.setRootIsDecorated(False)
        self.slide_list.setColumnWidth(0, 260)
        self.slide_list.setMaximumHeight(110)
        layout.addWidget(self.slide_list)

        # a second round on what the model already learned: warned, never refused
        self.relearn_warning = QLabel()
        self.relearn_warning.setWordWrap(True)
        self.relearn_warning.setTextFormat(Qt.TextFormat.PlainText)
        self.relearn_warning.setStyleSheet(
            "QLabel { color: #7a4a00; background: #fff4d6; border: 1px solid #e0b050; padding: 6px; }")
        self.relearn_warning.hide()
        layout.addWidget(self.relearn_warning)

        row = QHBoxLayout()
        self.folder_button = QPushButton("Use a case folder\u2026")
        self.folder_button.clicked.connect(self._choose_folder)
        row.addWidget(self.folder_button)
        row.addStretch(1)
        row.addWidget(QLabel("Epochs"))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 50)
        self.epochs.setValue(FinetuneSettings().epochs)
        row.addWidget(self.epochs)
        layout.addLayout(row)

        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("not started")
        layout.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        plots = QHBoxLayout()
        self.loss_plot = pg.PlotWidget(title="Loss")
        self.loss_plot.setBackground("w")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_plot.setLabel("bottom", "epoch")
        self.train_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=6,
                                               symbolBrush="#1f77b4", name="training")
        self.valid_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#d62728", width=2), symbol="s", symbolSize=6,
                                               symbolBrush="#d62728", name="validation")
        self.auc_plot = pg.PlotWidget(title="Validation AUC")
        self.auc_plot.setBackground("w")
        self.auc_plot.setLabel("bottom", "epoch")
        self.auc_plot.setYRange(0.5, 1.0)
        self.auc_curve = self.auc_plot.plot([], [], pen=pg.mkPen("#2ca02c", width=2), symbol="o", symbolSize=6,
                                            symbolBrush="#2ca02c")
        for w in (self.loss_plot, self.auc_plot):
            w.showGrid(x=True, y=True, alpha=0.3)
            w.getAxis("bottom").setTickSpacing(major=1, minor=1)  # whole epochs
            plots.addWidget(w)
        layout.addLayout(plots, 1)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self._show_model()
        self.set_slides(slides)

    # -- set-up ---------------------------------------------------------------------------------
    def _show_model(self) -> None:
        try:
            info = read_model_info(resolve_model_path(self.parent_model))
        except HistoViewerError as exc:
            self.model_label.setText(f"Current model {self.parent_model!r}: {exc}")
            return
        self.model_name, self.model_extra = info.name, dict(info.extra)
        self.model_label.setText(
            f"Fine-tunes the current model, {info.display_name()}, on patches from the regions you "
            f"accepted, rejected or annotated as tumour / normal. Its architecture is kept; calibration and "
            f"operating point are fitted anew on a part of your corrections held out by region. The new "
            f"model is saved in your models folder beside the others; the current one is not changed.\n"
            f"{info.caution}")

    def set_slides(self, slides: Sequence[str | os.PathLike[str]]) -> None:
        """Read what each slide teaches; slides without labels are listed with why and skipped."""
        self.slide_list.clear()
        self.labelled = []
        for path in map(Path, slides):
            try:
                sl = slide_labels(path)
            except HistoViewerError as exc:
                item = QTreeWidgetItem([path.name, f"not used: {exc}"])
                item.setForeground(1, Qt.GlobalColor.darkRed)
                item.setToolTip(1, str(exc))
            else:
                self.labelled.append(sl)
                item = QTreeWidgetItem([path.name, _labels_text(sl)])
                item.setToolTip(1, f"labels from {sl.source}")
            item.setToolTip(0, str(path))
            self.slide_list.addTopLevelItem(item)
        ready = bool(self.labelled)
        self.start_button.setEnabled(ready and not self._running)
        if not ready:
            self.status.setText("No open slide has corrections yet: review its hotspots (accept / reject) or "
                                "draw Tumor and Normal regions, or choose a case folder whose slides have them.")
        else:
            self.status.setText(f"{len(self.labelled)} slide(s) with corrections.")
        self._warn_relearning()

    def _warn_relearning(self) -> None:
        """Warn (Start stays enabled) when the current model is a fine-tuned one and some
        selected slides are ones it learned from: measured, that second round made held-out
        results worse (docs/benchmarks.md, fine-tune)."""
        self.overlap = relearned_overlap(self.model_extra, self.labelled)
        if self.overlap is None:
            self.relearn_warning.hide()
            return
        o, name = self.overlap, self.model_name
        parent = f", {o.parent_name}," if o.parent_name else ""
        self.relearn_warning.setText(
            f"\u26a0 The current model, {name}, is itself fine-tuned, and it already learned from "
            f"{len(o.slides)} of these slides ({', '.join(o.slides)}): {o.regions_again} of the "
            f"{o.regions_selected} corrections selected there are ones it was trained on. Measured, a second "
            "round on the same slides made held-out results worse (more false lesions on negative nodes it "
            f"never saw). Better: switch to its parent model{parent} and fine-tune that on all your "
            "corrections, or add slides it has not seen. You can still start this one.")
        self.relearn_warning.show()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Case folder with reviewed slides")
        if folder:
            try:
                self.set_slides(list_slides(Path(folder)))
            except OSError as exc:
                self.status.setText(f"{folder}: {exc.strerror or exc}")

    # -- run ------------------------------------------------------------------------------------
    @property
    def _running(self) -> bool:
        return self.job is not None and self.job.running

    def start(self, out: Path | None = None) -> None:
        if self._running or not self.labelled:
            return
        self.history = []
        self._update_curves()
        settings = FinetuneSettings(epochs=self.epochs.value(), device=self.device)
        self.job = FinetuneJob(self.parent_model, self.labelled, settings, out=out, parent=self)
        self.job.progress.connect(self._on_progress)
        self.job.epoch.connect(self._on_epoch)
        self.job.finished.connect(self._on_finished)
        for w in (self.start_button, self.folder_button, self.epochs):
            w.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)
        self.bar.setFormat("starting")
        self.status.setText("Fine-tuning on a background thread; the viewer stays usable.")
        self.job.start()

    def cancel(self) -> None:
        if self._running:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping\u2026 (nothing is saved)")

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, total))
        self.bar.setFormat(f"{stage}: %v / %m")

    def _on_epoch(self, rec: EpochRecord) -> None:
        self.history.append(rec)
        self._update_curves()
        auc = "n/a" if rec.valid_auc is None else f"{rec.valid_auc:.3f}"
        self.status.setText(f"Epoch {rec.epoch}: training loss {rec.train_loss:.3f}, validation loss "
                            f"{rec.valid_loss:.3f}, validation AUC {auc} ({rec.seconds:.0f} s)")

    def _update_curves(self) -> None:
        def finite(pairs):
            kept = [(x, y) for x, y in pairs if y is not None and math.isfinite(y)]
            return [x for x, _ in kept], [y for _, y in kept]

        epochs = [h.epoch for h in self.history]
        self.train_curve.setData(*finite(zip(epochs, [h.train_loss for h in self.history])))
        self.valid_curve.setData(*finite(zip(epochs, [h.valid_loss for h in self.history])))
        self.auc_curve.setData(*finite(zip(epochs, [h.valid_auc for h in self.history])))

    def _on_finished(self, outcome: FinetuneOutcome | None, message: str) -> None:
        self.cancel_button.setEnabled(False)
        for w in (self.start_button, self.folder_button, self.epochs):
            w.setEnabled(True)
        self.bar.setRange(0, 1)
        if outcome is None:
            self.bar.setValue(0)
            self.bar.setFormat("cancelled" if message == "cancelled" else "failed")
            self.status.setText("Cancelled: no model was saved." if message == "cancelled"
                                else f"The fine-tune failed: {message}")
            return
        self.outcome = outcome
        self.bar.setValue(1)
        self.bar.setFormat("done")
        v = outcome.record["validation"]
        auc = "n/a" if v["auc"] is None else f"{v['auc']:.3f}"
        self.status.setText(
            f"Saved {outcome.path.name} in your models folder ({outcome.train.seconds:.0f} s). Validation on "
            f"{v['n']} held-out patches of your corrections ({v['tumour']} tumour, {v['normal']} normal): AUC {auc}, "
            f"sensitivity {100 * (v['sensitivity'] or 0):.0f} %, specificity {100 * (v['specificity'] or 0):.0f} %. "
            "These are your own corrections, not an independent test.")
        self.ask_switch()

    def ask_switch(self) -> None:
        """Offer the new model now (non-modal message box: the viewer stays usable)."""
        if self.outcome is None:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Use the new model?",
                          f"Switch the AI overlay to {self.outcome.classifier.info.name} now?\n"
                          f"({self.outcome.path})", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                          self)
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        path = str(self.outcome.path)
        box.buttonClicked.connect(lambda b: self.switchRequested.emit(path)
                                  if box.standardButton(b) == QMessageBox.StandardButton.Yes else None)
        box.setModal(False)
        self.switch_box = box
        box.show()

    def closeEvent(self, event) -> None:
        if self._running:
            self.job.cancel()
            self.job.wait(30.0)
        super().closeEvent(event)
