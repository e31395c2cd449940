"""The patch inspector: Ctrl+click a point of a slide, and a dock shows what the AI read there.

``PatchInspector`` owns the dock (``PatchInspectorPanel``) and its action in the AI menu. A
Ctrl+click (``SlideView.inspectRequested``) starts one inspection on a worker thread
(``core.inference.inspect_patch``: the overlay's own grid, pixel source and model file; the
patch after the model's stain normalisation; P; Grad-CAM or the feature terms; the spread over
the 8 flips and rotations; the domain check); the result comes back through ``gui_thread``
and fills the dock (``filled``). A newer click supersedes an older one still running: only the
last one's result is shown. The inspector opens its own copy of the model (a classifier serves
one thread at a time, and the overlay's worker owns its copy), cached per model file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import shiboken6
from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap, QRegion
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from histoviewer.core.errors import HistoViewerError
from histoviewer.core.explain.render import cam_overlay, contribution_bars_image
from histoviewer.core.inference.grid import CellState
from histoviewer.core.inference.inspect_patch import (
    PatchInspection,
    inspect_point,
    inspection_geometry,
)
from histoviewer.core.models.registry import open_model
from histoviewer.core.tiles.viewport import Viewport
from histoviewer.qt.images import rgb_to_qimage
from histoviewer.qt.threads import gui_thread
from histoviewer.qt.window_host import TabHost

__all__ = ["PatchInspector", "PatchInspectorPanel"]

ZOOM = 2  # a 96 px patch is drawn 192 px wide
HINT = "Ctrl+click a point of the slide to see the patch the AI read there, and why it decided."


class InspectedPatchLayer:
    """Outlines the inspected patch on its slide (a dashed square with a white halo), so the
    dock's picture can be matched to the place it came from."""

    def __init__(self, l0_rect: tuple[float, float, float, float]) -> None:
        self.l0_rect = l0_rect
        self.visible = True

    def paint(self, painter: QPainter, viewport: Viewport, region: QRegion) -> None:
        if not self.visible:
            return
        x, y, w, h = self.l0_rect
        x0, y0 = viewport.l0_to_screen(x, y)
        x1, y1 = viewport.l0_to_screen(x + w, y + h)
        rect = QRectF(x0, y0, x1 - x0, y1 - y0)
        painter.save()
        painter.setClipRegion(region)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(255, 255, 255, 220), 4))
        painter.drawRect(rect)
        dashed = QPen(QColor(0, 110, 140), 2)
        dashed.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(dashed)
        painter.drawRect(rect)
        painter.restore()


class PatchInspectorPanel(QDockWidget):
    """The dock: the patch as the model saw it, its explanation, and the numbers."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Patch inspector", parent)
        self.setObjectName("patch-inspector")
        body = QWidget()
        layout = QVBoxLayout(body)
        self.status = QLabel(HINT)
        self.status.setWordWrap(True)
        self.where = QLabel("")
        self.where.setWordWrap(True)
        images = QHBoxLayout()
        self.patch_image, self.explain_image = QLabel(), QLabel()
        for label in (self.patch_image, self.explain_image):
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            images.addWidget(label)
        images.addStretch(1)
        self.image_captions = QLabel("")
        self.image_captions.setWordWrap(True)
        self.image_captions.setStyleSheet("color: #555;")
        self.bars_image = QLabel()
        self.facts = QLabel("")
        self.facts.setWordWrap(True)
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #b00020; font-weight: bold;")
        self.model_line = QLabel("")
        self.model_line.setWordWrap(True)
        self.model_line.setStyleSheet("color: #555;")
        # what makes the answer untrustworthy comes first, above the pictures and numbers
        for w in (self.status, self.where, self.warnings):
            layout.addWidget(w)
        layout.addLayout(images)
        for w in (self.image_captions, self.facts, self.bars_image, self.model_line):
            layout.addWidget(w)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self.inspection: PatchInspection | None = None

    def show_busy(self, l0_point: tuple[float, float]) -> None:
        self.status.setText(
            f"Inspecting the patch at ({l0_point[0]:.0f}, {l0_point[1]:.0f}) level-0 px\u2026"
        )

    def show_error(self, message: str) -> None:
        self.inspection = None
        self.status.setText(f"Cannot inspect this patch: {message}")
        for label in (self.patch_image, self.explain_image, self.bars_image):
            label.clear()
        for label in (
            self.where,
            self.image_captions,
            self.facts,
            self.warnings,
            self.model_line,
        ):
            label.setText("")

    def show_inspection(self, ins: PatchInspection, images: dict[str, Any]) -> None:
        self.inspection = ins
        g = ins.geometry
        x, y, w, _h = ins.l0_rect
        self.status.setText(HINT)
        self.where.setText(
            f"Patch at ({x:.0f}, {y:.0f}) level-0 px, {w * g.slide_mpp:.0f} \u00b5m wide: "
            f"{g.patch_px} px at {g.model_mpp:g} \u00b5m/px, as the model read it"
        )
        self.patch_image.setPixmap(QPixmap.fromImage(images["seen"]))
        explain = images.get("overlay")
        if explain is not None:
            self.explain_image.setPixmap(QPixmap.fromImage(explain))
        else:
            self.explain_image.clear()
        bars = images.get("bars")
        if bars is not None:
            self.bars_image.setPixmap(QPixmap.fromImage(bars))
        else:
            self.bars_image.clear()
        self.image_captions.setText(images["caption"])
        self.facts.setText(_facts_html(ins))
        self.warnings.setText("\n".join(f"\u26a0 {w}" for w in ins.warnings))
        self.model_line.setText(f"{ins.model_name}: {ins.model_caution}")


def _facts_html(ins: PatchInspection) -> str:
    call = "tumour" if ins.probability >= ins.threshold else "normal"
    rows = [
        (
            "P(tumour)",
            f"<b>{ins.probability:.3f}</b> (calibrated; operating threshold {ins.threshold:.2f}: called {call})",
        )
    ]
    if ins.map_probability is not None:
        rows.append(("on the map", f"{ins.map_probability:.3f}"))
    else:
        rows.append(("on the map", "not computed yet (or not tissue)"))
    u = float(ins.tta.uncertainty[0])
    flips = round(float(ins.tta.disagreement[0]) * 8)
    rows.append(
        (
            "uncertainty",
            f"{u:.3f} SD of P over the 8 flips and rotations; {flips} of 8 would change the call",
        )
    )
    if ins.in_domain is None:
        rows.append(
            ("tissue vs training", "not assessed (the model has no domain profile)")
        )
    else:
        verdict = (
            "like the training tissue"
            if ins.in_domain
            else "<b>unlike the training tissue</b>"
        )
        rows.append(
            (
                "tissue vs training",
                f"{verdict} (distance {ins.domain_distance:.1f}, limit {ins.domain_limit:.1f})",
            )
        )
    return (
        "<table>"
        + "".join(f"<tr><td>{k}:&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _zoomed(rgb: np.ndarray):
    big = np.repeat(np.repeat(np.asarray(rgb, np.uint8), ZOOM, axis=0), ZOOM, axis=1)
    return rgb_to_qimage(big)[0]


def _render(ins: PatchInspection) -> dict[str, Any]:
    """The dock's pictures as QImages (safe on a worker thread)."""
    out: dict[str, Any] = {"seen": _zoomed(ins.seen)}
    if ins.cam is not None:
        out["overlay"] = _zoomed(
            cam_overlay(ins.seen, ins.cam.cam[0], float(ins.cam.peak[0]))
        )
        out["caption"] = (
            "Left: the patch as the model saw it. Right: Grad-CAM, the pixels that pushed it towards "
            "tumour (red strongest; no colour: no such evidence)."
            + (
                ""
                if ins.cam.peak[0] > 0
                else " Nothing in this patch pushed it towards tumour."
            )
        )
    elif ins.contributions is not None:
        out["bars"] = rgb_to_qimage(
            np.asarray(contribution_bars_image(ins.contributions, width=400))
        )[0]
        out["caption"] = (
            "The patch as the model saw it; below, what moved its log-odds: feature groups "
            "(red towards tumour, blue towards normal) and the largest single features."
        )
    else:
        out["caption"] = (
            "The patch as the model saw it (no explanation for this kind of model)."
        )
    return out


class PatchInspector(QObject):
    """Runs inspections for every open slide and shows them in its dock (see the module).

    ``filled(PatchInspection)``: the dock shows a new inspection; ``failed(str)``: the last
    one could not be made (the dock says why)."""

    filled = Signal(object)
    failed = Signal(str)

    def __init__(
        self, host: TabHost, settings: Callable[[], Any], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.host = host
        self._settings = settings  # -> AiSettings: which model, device, grid stride
        self.panel = PatchInspectorPanel(parent)
        self.panel.hide()
        self.panel_action = self.panel.toggleViewAction()
        self.panel_action.setText("Patch &inspector (Ctrl+click the slide)")
        self._token = 0
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._models: dict[tuple[str, str], Any] = {}
        self._model_lock = threading.Lock()  # one inspection at a time uses the models
        self.last_response_s: float | None = None
        self._marked: tuple[Any, InspectedPatchLayer] | None = (
            None  # (view, its outline)
        )

    def attach(self, tab) -> None:
        tab.view.inspectRequested.connect(
            lambda l0_point, t=tab: self.inspect(t, l0_point)
        )

    def inspect(self, tab, l0_point: tuple[float, float]) -> None:
        """Inspect the patch at ``l0_point`` of ``tab``'s slide (see the module)."""
        if self._closed:
            return
        self._token += 1
        token = self._token
        self.panel.show()
        self.panel.raise_()
        self.panel.show_busy(l0_point)
        live = tab.heatmap.live if tab.heatmap is not None else None
        settings = self._settings()
        job = {
            "reader": tab.session.reader,
            "point": (float(l0_point[0]), float(l0_point[1])),
            "model": live.options.model if live is not None else settings.model,
            "device": live.options.device if live is not None else settings.device,
            "stride_divisor": live.options.stride_divisor
            if live is not None
            else settings.stride_divisor,
            "live": live,
            "started": time.perf_counter(),
            "view": tab.view,
        }
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(
            target=self._run,
            args=(token, job),
            name="histoviewer-inspector",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _model(self, spec: str, device: str):
        key = (spec, device)
        if key not in self._models:
            self._models[key] = open_model(spec, device)
        return self._models[key]

    def _run(self, token: int, job: dict[str, Any]) -> None:
        try:
            with self._model_lock:
                if token != self._token or self._closed:
                    return  # superseded before it started
                model = self._model(job["model"], job["device"])
                live = job["live"]
                grid = live.grid if live is not None and live.ready else None
                if (
                    grid is not None
                    and live.model is not None
                    and live.model.info.content_hash == model.info.content_hash
                ):
                    geometry, source = grid.geometry, live.region_source
                    tissue = grid.tissue
                    values = np.where(
                        grid.state == CellState.COMPUTED, grid.values, np.nan
                    )
                else:
                    geometry = inspection_geometry(
                        job["reader"], model, job["stride_divisor"]
                    )
                    source, tissue, values = None, None, None
                ins = inspect_point(
                    job["reader"],
                    model,
                    geometry,
                    *job["point"],
                    source=source,
                    tissue=tissue,
                    map_values=values,
                )
                images = _render(ins)
        except HistoViewerError as exc:
            self._fail(token, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure is shown in the dock, never raised on a thread
            self._fail(token, f"{type(exc).__name__}: {exc}")
            return
        self._deliver(token, ins, images, job["started"], job["view"])

    @gui_thread
    def _deliver(
        self,
        token: int,
        ins: PatchInspection,
        images: dict[str, Any],
        started: float,
        view,
    ) -> None:
        if self._closed or token != self._token:
            return
        self.panel.show_inspection(ins, images)
        self._mark(view, ins.l0_rect)
        self.last_response_s = time.perf_counter() - started
        self.filled.emit(ins)

    def _mark(self, view, l0_rect) -> None:
        """Outline ``l0_rect`` on ``view``, and remove the outline shown before."""
        if self._marked is not None:
            old_view, old_layer = self._marked
            self._marked = None
            if shiboken6.isValid(old_view) and old_layer in old_view.layers:
                old_view.layers.remove(old_layer)
                old_view.update()
        if view is None or not shiboken6.isValid(view):
            return
        layer = InspectedPatchLayer(l0_rect)
        view.layers.append(layer)
        view.update()
        self._marked = (view, layer)

    @gui_thread
    def _fail(self, token: int, message: str) -> None:
        if self._closed or token != self._token:
            return
        self.panel.show_error(message)
        self._mark(None, None)
        self.failed.emit(message)

    def close(self, timeout_s: float = 30.0) -> None:
        """Drop results still in flight and wait for the running inspection to end."""
        self._closed = True
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        for model in self._models.values():
            model.close()
        self._models.clear()
