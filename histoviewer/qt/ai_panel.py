"""The AI overlay panel: model, device, grid stride, heatmap look, progress and coverage.

Pure wiring: it edits an ``AiSettings`` value and says so (``settingsChanged``); the main
window applies it to every open slide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from histoviewer.core.analysis.lesions import DEFAULT_THRESHOLD
from histoviewer.core.analysis.threshold import describe_threshold
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.colormaps import COLORMAPS, colormap_lut
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.inference.live import LiveOptions
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.registry import available_models
from histoviewer.core.recent import config_dir
from histoviewer.core.safe_input import read_json
from histoviewer.core.strict_json import strict_dumps
from histoviewer.qt.node_classifier_choice import (
    NODE_CLASSIFIER_CHOICES,
    check_node_classifier,
    node_classifier_text,
)

DEVICES = (("auto", "Automatic (GPU if there is one)"), ("cpu", "CPU"), ("cuda", "NVIDIA GPU (CUDA)"),
           ("mps", "Apple GPU (MPS)"))
STRIDES = ((1, "One patch (no overlap)"), (2, "Half a patch (smoother, 4x the work)"),
           (4, "Quarter patch (smoothest, 16x the work)"))
OTHER_MODEL = "__other__"


@dataclass(frozen=True)
class AiSettings:
    """Everything the overlay needs: whether it runs, what runs, and how it looks.
    ``stride_divisor``: the grid steps by patch / divisor (1 = no overlap)."""

    enabled: bool = True
    model: str = "cnn"
    device: str = "auto"
    stride_divisor: int = 1
    background: bool = True
    show: bool = True
    colormap: str = "viridis"
    opacity: float = 0.5
    threshold: float = DEFAULT_THRESHOLD
    threshold_from_model: bool = True  # colour from the model's operating point, not ``threshold``
    # the learned node classifier beside the rule-based label: "default" (shipped, trained on
    # phantoms only), "none" or a file (``node_classifier_choice``; analyze's --node-classifier)
    node_classifier: str = "default"

    def live_options(self) -> LiveOptions:
        return LiveOptions(model=self.model, device=self.device, stride_divisor=self.stride_divisor,
                           background=self.background)

    def display_threshold(self, model_threshold: float | None = None) -> float:
        """The heatmap's colour threshold: the model's operating point (``model_threshold``,
        None for a model that states none or is not loaded yet) unless the user set one."""
        if self.threshold_from_model and model_threshold is not None:
            return model_threshold
        return self.threshold

    def style(self, model_threshold: float | None = None) -> HeatmapStyle:
        return HeatmapStyle(colormap_lut(self.colormap), opacity=self.opacity,
                            threshold=self.display_threshold(model_threshold))

    def restart_needed(self, other: AiSettings) -> bool:
        """Whether going from ``other`` to these settings needs a new model or grid."""
        return (self.enabled, self.model, self.device, self.stride_divisor) != (
            other.enabled, other.model, other.device, other.stride_divisor)


def settings_path() -> Path:
    return config_dir() / "ai-settings.json"


def load_ai_settings(path: Path | None = None) -> AiSettings:
    """The settings saved last time; defaults for anything missing, unreadable or invalid."""
    path = path or settings_path()
    try:  # a FIFO, a huge, deep or hostile file gives the defaults too (safe_input)
        data = read_json(path, "AI settings", HistoViewerError)
    except HistoViewerError:
        return AiSettings()
    if not isinstance(data, dict):
        return AiSettings()
    defaults = AiSettings()
    known = {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(AiSettings)}
    values = {}
    for name, kind in known.items():
        value = data.get(name)
        if isinstance(value, kind) or (kind is float and isinstance(value, int) and not isinstance(value, bool)):
            values[name] = kind(value)
    if "threshold_from_model" not in data and values.get("threshold", defaults.threshold) != defaults.threshold:
        # saved before models stated operating points: a threshold other than the old default
        # was the user's own choice, and it still beats the model's
        values["threshold_from_model"] = False
    try:
        settings = replace(defaults, **values)
        settings.style()  # opacity/threshold in range, colour map known
    except ValueError:
        return defaults
    if settings.stride_divisor not in {d for d, _ in STRIDES}:
        settings = replace(settings, stride_divisor=1)
    return settings


def save_ai_settings(settings: AiSettings, path: Path | None = None) -> None:
    try:
        atomic_write_text(path or settings_path(), strict_dumps(dataclasses.asdict(settings), indent=1))
    except OSError:
        pass  # a read-only configuration folder must not stop the viewer


class AiPanel(QDockWidget):
    settingsChanged = Signal(object, object)  # new AiSettings, old AiSettings

    def __init__(self, settings: AiSettings, parent: QWidget | None = None) -> None:
        super().__init__("AI overlay", parent)
        self.setObjectName("ai-panel")
        self.settings = settings
        body = QWidget(self)
        layout = QVBoxLayout(body)
        form = QFormLayout()
        layout.addLayout(form)

        self.enabled_box = QCheckBox("Classify the tissue in view")
        self.enabled_box.setChecked(settings.enabled)
        self.enabled_box.toggled.connect(lambda on: self._change(enabled=on))
        form.addRow(self.enabled_box)

        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(18)
        self._fill_models()
        self.model_combo.activated.connect(self._on_model_chosen)
        form.addRow("Model", self.model_combo)

        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.model_label.setTextFormat(Qt.TextFormat.PlainText)
        form.addRow(self.model_label)

        self.node_classifier_combo = QComboBox()
        self.node_classifier_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.node_classifier_combo.setMinimumContentsLength(18)
        self.node_classifier_combo.setToolTip(
            "The learned node classifier whose label is shown beside the rule-based one in the summary "
            "panel and the case view (a second opinion: the rule-based label decides pN)")
        self._fill_node_classifiers()
        self.node_classifier_combo.activated.connect(self._on_node_classifier_chosen)
        form.addRow("Node classifier", self.node_classifier_combo)

        self.device_combo = QComboBox()
        for key, text in DEVICES:
            self.device_combo.addItem(text, key)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(settings.device)))
        self.device_combo.activated.connect(lambda _i: self._change(device=self.device_combo.currentData()))
        form.addRow("Device", self.device_combo)
        self.device_label = QLabel("")
        self.device_label.setWordWrap(True)
        self.device_label.setStyleSheet("color: #555;")
        form.addRow(self.device_label)

        self.stride_combo = QComboBox()
        for divisor, text in STRIDES:
            self.stride_combo.addItem(text, divisor)
        self.stride_combo.setCurrentIndex(max(0, self.stride_combo.findData(settings.stride_divisor)))
        self.stride_combo.activated.connect(lambda _i: self._change(stride_divisor=self.stride_combo.currentData()))
        form.addRow("Grid step", self.stride_combo)

        self.background_box = QCheckBox("Go on with the whole slide when idle")
        self.background_box.setChecked(settings.background)
        self.background_box.toggled.connect(lambda on: self._change(background=on))
        self.background_box.setToolTip(
            "The rest of the tissue is screened at 2.5x first and classified where tumour is possible "
            "(README: Screen first); what the screen passes is 'screened negative', not classified. "
            "A view at 2.5x or finer is classified in full; a coarser one (a fitted slide) is "
            "screened like the rest until you zoom in.")
        form.addRow(self.background_box)

        self.show_box = QCheckBox("Show heatmap (H)")
        self.show_box.setChecked(settings.show)
        self.show_box.toggled.connect(lambda on: self._change(show=on))
        form.addRow(self.show_box)

        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(list(COLORMAPS))  # the default, viridis, first
        self.colormap_combo.setCurrentText(settings.colormap)
        self.colormap_combo.activated.connect(lambda _i: self._change(colormap=self.colormap_combo.currentText()))
        form.addRow("Colour map", self.colormap_combo)

        self.opacity_slider, self.opacity_value = self._slider(settings.opacity, "opacity")
        form.addRow("Opacity", self._pair(self.opacity_slider, self.opacity_value))
        self.threshold_slider, self.threshold_value = self._slider(settings.threshold, "threshold")
        form.addRow("Threshold", self._pair(self.threshold_slider, self.threshold_value))
        self.model_threshold_box = QCheckBox("Colour from the model's operating point")
        self.model_threshold_box.setToolTip("The threshold the model's lesions are read at, chosen on its "
                                            "validation data; untick to colour from your own threshold")
        self.model_threshold_box.setChecked(settings.threshold_from_model)
        self.model_threshold_box.toggled.connect(self._on_model_threshold_toggled)
        form.addRow(self.model_threshold_box)
        self.threshold_label = QLabel("")
        self.threshold_label.setWordWrap(True)
        self.threshold_label.setTextFormat(Qt.TextFormat.PlainText)
        self.threshold_label.setStyleSheet("color: #555;")
        form.addRow(self.threshold_label)
        self._model_info: ModelInfo | None = None
        self._show_threshold()

        self.progress_label = QLabel("")
        self.progress_label.setWordWrap(True)
        layout.addWidget(self.progress_label)
        layout.addStretch(1)
        self.setWidget(body)
        self.setMinimumWidth(300)

    # -- construction helpers ---------------------------------------------------------------------
    def _slider(self, value: float, name: str) -> tuple[QSlider, QLabel]:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, 100)
        slider.setValue(round(value * 100))
        label = QLabel(f"{value:.2f}")
        label.setMinimumWidth(34)
        slider.valueChanged.connect(lambda v: self._on_slider(name, label, v / 100))
        return slider, label

    def _on_slider(self, name: str, label: QLabel, value: float) -> None:
        label.setText(f"{value:.2f}")
        if name == "threshold" and self._showing_model_threshold:
            return  # the slider shows the model's operating point: not a choice of the user's
        if name == "threshold" and self.settings.threshold_from_model:
            # the user moved the slider: their threshold now beats the model's operating point
            self.model_threshold_box.blockSignals(True)
            self.model_threshold_box.setChecked(False)
            self.model_threshold_box.blockSignals(False)
            self._change(threshold=value, threshold_from_model=False)
        else:
            self._change(**{name: value})
        if name == "threshold":
            self._show_threshold()

    @staticmethod
    def _pair(a: QWidget, b: QWidget) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(a, 1)
        row.addWidget(b)
        return box

    def _fill_models(self) -> None:
        self.model_combo.clear()
        for model in available_models():
            if model.info is None:
                self.model_combo.addItem(f"{model.path.name} (unusable)", model.key)
                index = self.model_combo.count() - 1
                self.model_combo.model().item(index).setEnabled(False)
                self.model_combo.setItemData(index, model.problem, Qt.ItemDataRole.ToolTipRole)
                continue
            label = model.info.name + (" (demonstration)" if model.info.demonstration else "")
            self.model_combo.addItem(label, model.key)
            self.model_combo.setItemData(self.model_combo.count() - 1,
                                         f"{model.info.display_name()}\n{model.info.caution}",
                                         Qt.ItemDataRole.ToolTipRole)
        index = self.model_combo.findData(self.settings.model)
        if index < 0:  # a file chosen with "Other model file..."
            self.model_combo.addItem(self.settings.model, self.settings.model)
            index = self.model_combo.count() - 1
        self.model_combo.addItem("Other model file\u2026", OTHER_MODEL)
        self.model_combo.setCurrentIndex(index)

    def _fill_node_classifiers(self) -> None:
        combo = self.node_classifier_combo
        combo.clear()
        for key, text in NODE_CLASSIFIER_CHOICES:
            combo.addItem(text, key)
        spec = self.settings.node_classifier
        if combo.findData(spec) < 0:  # a file chosen with "Other file..."
            combo.addItem(node_classifier_text(spec), spec)
            combo.setItemData(combo.count() - 1, spec, Qt.ItemDataRole.ToolTipRole)
        combo.addItem("Other node classifier file\u2026", OTHER_MODEL)
        combo.setCurrentIndex(max(0, combo.findData(spec)))

    def _on_node_classifier_chosen(self, _index: int) -> None:
        key = self.node_classifier_combo.currentData()
        if key == OTHER_MODEL:
            path, _ = QFileDialog.getOpenFileName(self, "Open node classifier file", "",
                                                  "Node classifiers (*.safetensors)")
            if not path:
                self._fill_node_classifiers()
                return
            key = path
        self.choose_node_classifier(key)

    def choose_node_classifier(self, spec: str) -> bool:
        """Use node classifier ``spec`` (``default``, ``none`` or a file). A file that cannot be
        used is refused with a message naming it, and the choice stays as it was."""
        problem = check_node_classifier(spec)
        if problem is not None:
            QMessageBox.warning(self, "Node classifier refused",
                                f"This node classifier cannot be used, so the choice is unchanged:\n\n{problem}")
            self._fill_node_classifiers()
            return False
        self._change(node_classifier=spec)
        self._fill_node_classifiers()
        return True

    # -- changes ----------------------------------------------------------------------------------
    def use_model(self, key: str) -> None:
        """Switch to the model ``key`` (a name or a model file: a fine-tuned model just written)."""
        self._change(model=key)
        self._fill_models()

    def _on_model_chosen(self, _index: int) -> None:
        key = self.model_combo.currentData()
        if key == OTHER_MODEL:
            path, _ = QFileDialog.getOpenFileName(self, "Open model file", "", "HistoViewer models (*.safetensors)")
            if not path:
                self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(self.settings.model)))
                return
            key = path
        self._change(model=key)
        self._fill_models()

    def _on_model_threshold_toggled(self, on: bool) -> None:
        self._change(threshold_from_model=on)
        self._show_threshold()

    def _change(self, **changes) -> None:
        old = self.settings
        new = replace(old, **changes)
        if new != old:
            self.settings = new
            self.settingsChanged.emit(new, old)

    def set_settings(self, settings: AiSettings) -> None:
        """Show ``settings`` (for example after the H key toggled the heatmap) and apply them."""
        old = self.settings
        for box, on in ((self.enabled_box, settings.enabled), (self.show_box, settings.show),
                        (self.background_box, settings.background)):
            box.blockSignals(True)
            box.setChecked(on)
            box.blockSignals(False)
        self.settings = settings
        if settings.node_classifier != old.node_classifier:
            self._fill_node_classifiers()
        if settings != old:
            self.settingsChanged.emit(settings, old)

    # -- status -----------------------------------------------------------------------------------
    _showing_model_threshold = False

    def show_model(self, info: ModelInfo, device_reason: str) -> None:
        """The running model: its name, what it was trained on (its caution: the
        demonstration warning for a demonstration model) and the threshold in use."""
        self.model_label.setText(f"{info.display_name()}\n{info.caution}")
        self.model_label.setStyleSheet("color: #a05a00; font-weight: bold;" if info.demonstration
                                       else "color: #6a4a00;")
        self.device_label.setText(device_reason)
        if info != self._model_info:
            self._model_info = info
            self._show_threshold()

    def _show_threshold(self) -> None:
        """The slider and the line below it: the model's operating point while the box is
        ticked (and the model states one), else the user's threshold."""
        info = self._model_info
        point = None if info is None else info.operating_point
        settings = self.settings
        value = settings.display_threshold(None if point is None else point.threshold)
        if settings.threshold_from_model:
            source = "" if info is None else ("model operating point" if point is not None
                                              else "default, model states none")
        else:
            source = "set by user"
        self._showing_model_threshold = True
        try:
            self.threshold_slider.setValue(round(value * 100))
        finally:
            self._showing_model_threshold = False
        self.threshold_value.setText(f"{value:.2f}")
        text = describe_threshold(value, source, point) if source else f"threshold {value:.2f}"
        self.threshold_label.setText(f"Colour and lesions: {text}" if source != "set by user"
                                     else f"Colour: {text}")

    def show_progress(self, text: str) -> None:
        self.progress_label.setText(text)
