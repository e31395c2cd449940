"""Help > About HistoViewer: the version, the model cards of the shipped models, and the
third-party licences (as distribution requires: the texts travel with the application)."""

from __future__ import annotations

import html
import platform
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QPlainTextEdit,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from histoviewer import __version__
from histoviewer.core.analysis.learned_label import (
    default_node_classifier_path,
    resolve_node_classifier,
)
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.licenses import THIRD_PARTY, licence_summary, licence_text
from histoviewer.core.models.model_engine import engine_description
from histoviewer.core.models.model_file import read_model_info
from histoviewer.core.models.registry import (
    DEFAULT_MODEL_NAMES,
    AvailableModel,
    available_models,
)
from histoviewer.core.models.screen_model import (
    DEFAULT_SCREEN_FILE,
    DEFAULT_SCREEN_NAME,
    resolve_screen_model_path,
    screen_settings,
)
from histoviewer.core.paths import bundled_resources_dir

__all__ = [
    "AboutDialog",
    "application_icon",
    "model_card_html",
    "node_classifier_card_html",
    "screening_card_html",
    "shipped_models",
]

RESEARCH_NOTE = (
    "Research software: the AI overlay is a research model, not validated for clinical use. "
    "Every finding must be checked on the slide by a pathologist."
)


def application_icon() -> QIcon:
    """The HistoViewer icon at every size resources/icons holds (window title bars, task bars)."""
    icon = QIcon()
    for png in sorted((bundled_resources_dir() / "icons").glob("histoviewer-*.png")):
        icon.addFile(str(png))
    return icon


def shipped_models() -> list[AvailableModel]:
    """The default models the application ships (not those in the user's models folder)."""
    return [m for m in available_models() if m.key in DEFAULT_MODEL_NAMES]


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f} %"


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def model_card_html(model: AvailableModel) -> str:
    """One model's card: name, caveat (what it was trained on), operating point, held-out results."""
    esc = html.escape
    info = model.info
    if info is None:
        return f"<h3>{esc(model.key)}</h3><p style='color:#b00020'>Cannot be used: {esc(model.problem)}</p>"
    parts = [
        f"<h3>{esc(model.key)}: {esc(info.display_name())}</h3>",
        f"<p><b>{esc(info.caution)}</b></p>",
        f"<p>Trained on: {esc(info.training_data or 'not recorded')}</p>",
        f"<p>Input: {info.input.patch_px} px patches at {info.input.mpp:g} \u00b5m/px</p>",
        f"<p>Runs on: {esc(engine_description(info))}</p>",
    ]
    point = info.operating_point
    if point is not None:
        parts.append(
            f"<p>Operating point ({esc(point.target)}): {esc(point.describe())}, "
            f"{point.n_valid} patches</p>"
        )
    evaluations = info.extra.get("evaluations") or {}
    if evaluations:
        rows = [
            (
                "<tr><th align='left'>Held-out data</th><th>n</th><th>AUC</th><th>Sensitivity</th>"
                "<th>Specificity</th><th>Seen in training</th></tr>"
            )
        ]
        for name, ev in evaluations.items():
            rows.append(
                f"<tr><td>{esc(name)}<br><small>{esc(str(ev.get('data', '')))}</small></td>"
                f"<td align='right'>{ev.get('n', 'n/a')}</td><td align='right'>{_num(ev.get('auc'))}</td>"
                f"<td align='right'>{_pct(ev.get('sensitivity'))}</td>"
                f"<td align='right'>{_pct(ev.get('specificity'))}</td>"
                f"<td align='right'>{ev.get('seen_by_training', 'n/a')}</td></tr>"
            )
        parts.append(
            "<table cellspacing='0' cellpadding='3' border='1' style='border-collapse:collapse'>"
            + "".join(rows)
            + "</table>"
        )
    else:
        parts.append("<p>No held-out evaluations recorded in the model file.</p>")
    parts.append(
        f"<p><small>File: {esc(model.path.name)}; created {esc(info.created or 'n/a')}; "
        f"SHA-256 {esc(info.content_hash[:16])}\u2026</small></p>"
    )
    return "".join(parts)


def screening_card_html() -> str:
    """The shipped screening model's card (the screened strategy and the viewer's idle pass):
    the patch models' card plus its screening threshold and margin."""
    esc = html.escape
    path = bundled_resources_dir() / "models" / DEFAULT_SCREEN_FILE
    try:
        path = resolve_screen_model_path(DEFAULT_SCREEN_NAME)
        info = read_model_info(path)
        settings = screen_settings(info, path)
    except ModelLoadError as exc:
        return model_card_html(AvailableModel(f"{DEFAULT_SCREEN_NAME} (screening model)", path, None, str(exc)))
    card = model_card_html(AvailableModel(f"{DEFAULT_SCREEN_NAME} (screening model)", path, info))
    return card + (
        f"<p>Screens every tissue patch at 2.5x before the full model (analyze's screened strategy, "
        f"AI &gt; Go on with the whole slide when idle): {esc(settings.describe())}. What it passes is "
        f"'screened negative', not classified.</p>"
    )


def node_classifier_card_html() -> str:
    """The shipped learned node classifier's card: what it is, what it was trained on, its
    out-of-bag accuracy, file and digests (``NodeClassifier.card``)."""
    esc = html.escape
    try:
        clf = resolve_node_classifier("default")
    except ModelLoadError as exc:
        path = default_node_classifier_path()
        return (f"<h3>node classifier: {esc(path.name)}</h3>"
                f"<p style='color:#b00020'>Cannot be used: {esc(str(exc))}</p>")
    c = clf.card()
    oob = "n/a" if c["oob_accuracy"] is None else _pct(c["oob_accuracy"])
    return "".join([
        f"<h3>node classifier: {esc(c['name'])}</h3>",
        f"<p><b>{esc(c['caution'])}</b></p>",
        (f"<p>The learned node label shown beside the rule-based one (a second opinion; the rule-based "
        f"label decides pN): {esc(c['kind'])}, {c['trees']} trees over {c['features']} features of the "
        f"probability map; classes {esc(', '.join(c['classes']))}.</p>"),
        f"<p>Trained on: {esc(c['trained_on'])}; out-of-bag accuracy {oob}.</p>",
        (f"<p><small>File: {esc(Path(c['path']).name)}; created {esc(c['created'] or 'n/a')}; "
        f"SHA-256 {esc(c['content_hash'][:16])}\u2026 (trees {esc(c['arrays_digest'][:16])}\u2026)</small></p>"),
    ])


class AboutDialog(QDialog):
    """Version and research note on top; tabs: Models (cards), Licences (list and full text)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About HistoViewer")
        self.resize(900, 680)
        layout = QVBoxLayout(self)

        header = QHBoxLayout()
        icon = QLabel(self)
        pixmap = QPixmap(str(bundled_resources_dir() / "icons" / "histoviewer-64.png"))
        if not pixmap.isNull():
            icon.setPixmap(pixmap)
        header.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        self.version_label = QLabel(
            f"<h2>HistoViewer {__version__}</h2>"
            f"<p>Whole-slide image viewer with an AI tumour overlay for sentinel lymph nodes.</p>"
            f"<p><b>{html.escape(RESEARCH_NOTE)}</b></p>"
            f"<p><small>Qt {qVersion()}, PySide6 {pyside_version}, Python {platform.python_version()}, "
            f"{html.escape(platform.system())} {html.escape(platform.machine())}</small></p>",
            self,
        )
        self.version_label.setWordWrap(True)
        header.addWidget(self.version_label, 1)
        layout.addLayout(header)

        self.tabs = QTabWidget(self)
        self.models_view = QTextBrowser(self)
        models = shipped_models()
        cards = [model_card_html(m) for m in models]
        self.models_view.setHtml(
            "<hr>".join([*cards, screening_card_html(), node_classifier_card_html()])
            if cards else "<p>No shipped models found.</p>"
        )
        self.tabs.addTab(self.models_view, "Models")

        licences = QSplitter(Qt.Orientation.Horizontal, self)
        self.licence_list = QListWidget(licences)
        # each component's whole licence expression, wrapped under its name: a shortened one
        # ("LGPL-3.0-only OR \u2026") hid licences, a long one ran off the list
        self.licence_list.setWordWrap(True)
        self.licence_list.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.licence_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.licence_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.licence_list.setSpacing(2)
        for component in THIRD_PARTY:
            summary = licence_summary(component)
            self.licence_list.addItem(f"{component.title}\n    {summary}")
            self.licence_list.item(self.licence_list.count() - 1).setToolTip(summary)
        self.licence_text = QPlainTextEdit(licences)
        self.licence_text.setReadOnly(True)
        self.licence_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        licences.setStretchFactor(1, 1)
        licences.setSizes([360, 540])
        self.licence_list.currentRowChanged.connect(self._show_licence)
        self.tabs.addTab(licences, "Licences")
        layout.addWidget(self.tabs, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.licence_list.setCurrentRow(0)

    def _show_licence(self, row: int) -> None:
        if 0 <= row < len(THIRD_PARTY):
            self.licence_text.setPlainText(licence_text(THIRD_PARTY[row]))
