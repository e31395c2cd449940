"""The summary panel, the lesion layer and fly-to, as a pathologist meets them.

A phantom node with one micrometastasis of known size (the ground truth) is classified by
the default CNN; the panel must call it MICROMETASTASIS with a lesion row of about the
phantom lesion's diameter, say "provisional" while only part of the tissue is classified,
fly the view to the lesion when its row is clicked, and outline it on the slide. The
panel and layer logic that needs no model is checked on hand-made maps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QImage, QPainter, QRegion

from histoviewer.core.analysis.lesions import LesionParams, MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.tiles.viewport import Viewport
from histoviewer.qt import live_lesions
from histoviewer.qt.images import qimage_to_rgb
from histoviewer.qt.lesion_layer import MARKER_RADIUS_PX, LesionLayer, lesion_label
from histoviewer.qt.live_lesions import HISTOGRAM_BINS, LesionSnapshot
from histoviewer.qt.summary_panel import SummaryPanel, count_ticks, log_decade_ticks
from tests.qt.conftest import open_settled

# docs/benchmarks.md ("Lesions, size classes and pN"): max abs diameter error 0.061 mm on
# phantoms with the default CNN, whose map cell is 0.093 mm; allow one cell.
DIAMETER_TOLERANCE_MM = 0.093


# -- panel and layer on hand-made maps (no model) ----------------------------------------------
def _snapshot(encoded: np.ndarray, um_per_cell: float | None = 10.0) -> LesionSnapshot:
    result = analyse_map(encoded, MapFrame.for_cells(um_per_cell), LesionParams())
    values = encoded[np.isfinite(encoded) & (encoded >= 0)]
    counts = np.histogram(values, bins=HISTOGRAM_BINS, range=(0, 1))[0]
    return LesionSnapshot(result, tuple(int(c) for c in counts), "test-model (demonstration)", True, 0.0, 1)


def _three_lesions(unclassified: bool = False) -> np.ndarray:
    """Cells 10 um wide: lesions of ~0.30 mm (micro), ~0.10 mm (ITC), ~2.5 mm (macro)."""
    m = np.zeros((300, 300), np.float32)
    m[10:40, 10:40] = 0.9  # 30 cells = 0.30 mm side
    m[100:110, 100:110] = 0.8  # 0.10 mm
    m[50:290, 120:280] = 0.99  # 2.4 x 1.6 mm: diagonal ~2.9 mm
    m[:, 0:5] = -1.0  # background
    if unclassified:
        m[200:300, 0:100] = np.nan  # not yet classified tissue
    return m


def test_panel_label_table_sorting_and_provisional_text(qtbot):
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show()
    snap = _snapshot(_three_lesions(unclassified=True))
    panel.show_snapshot(snap)
    assert panel.label_title.text() == "MACROMETASTASIS"
    coverage = snap.result.coverage
    assert 0 < coverage < 1
    assert panel.coverage_label.text().startswith(f"provisional: {coverage:.0%} of the tissue classified")
    assert "lesion-1" in panel.largest_label.text() and "macro" in panel.largest_label.text()
    assert "test-model" in panel.model_label.text()
    # rows sorted by diameter, largest first; then by max probability, ascending
    proxy = panel.proxy
    assert proxy.rowCount() == 3
    diameters = [float(proxy.index(r, 1).data()) for r in range(3)]
    assert diameters == sorted(diameters, reverse=True)
    assert [proxy.index(r, 3).data() for r in range(3)] == ["macro", "micro", "ITC"]
    panel.table.sortByColumn(4, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, 4).data() for r in range(3)] == ["0.80", "0.90", "0.99"]

    panel.show_snapshot(_snapshot(_three_lesions(unclassified=False)))
    assert panel.coverage_label.text() == "final: all tissue classified"

    negative = np.zeros((50, 50), np.float32)
    panel.show_snapshot(_snapshot(negative))
    assert panel.label_title.text() == "NEGATIVE" and panel.proxy.rowCount() == 0
    assert not panel.next_button.isEnabled()
    panel.show_snapshot(_snapshot(_three_lesions(), um_per_cell=None))
    assert panel.label_title.text().startswith("UNKNOWN") and panel.proxy.index(0, 1).data() == "unknown"


def test_failed_patches_leave_the_panel_without_a_final_label(qtbot):
    """Issue 14: every patch failed, and the map read as a provisional "negative"."""
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show()
    failed = np.full((50, 50), -2.0, np.float32)  # every tissue cell failed
    panel.show_snapshot(_snapshot(failed))
    assert panel.label_title.text() == "NOT FINAL \u2013 negative so far"
    assert panel.coverage_label.text().startswith("not final: 2500 of 2500 tissue patches failed")
    assert "0% of the tissue classified" in panel.coverage_label.text()
    assert panel.largest_label.text().endswith("in the classified tissue.")
    some = _three_lesions()
    some[0:5, 200:210] = -2.0
    panel.show_snapshot(_snapshot(some))
    assert panel.label_title.text() == "NOT FINAL \u2013 macrometastasis so far"
    assert panel.coverage_label.text().startswith("not final: 50 of ")


def test_a_map_without_tissue_gets_no_negative_label(qtbot):
    """Seen on broken-tiles.svs (a slide smaller than one patch): no tissue cell at all, and
    the panel said a final, green "NEGATIVE" resting on nothing classified."""
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_snapshot(_snapshot(np.full((4, 4), -1.0, np.float32)))  # all background
    assert "NEGATIVE" not in panel.label_title.text()
    assert panel.label_title.text() == "NO LABEL \u2013 no tissue classified"
    assert "nothing was classified" in panel.coverage_label.text()
    assert "final" not in panel.coverage_label.text()
    panel.show_snapshot(_snapshot(np.zeros((4, 4), np.float32)))  # classified tissue, no lesion
    assert panel.label_title.text() == "NEGATIVE"


def test_next_and_previous_walk_the_table_in_its_order_and_wrap(qtbot):
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_snapshot(_snapshot(_three_lesions()))
    seen = []
    panel.lesionActivated.connect(seen.append)
    for _ in range(4):
        panel.step(+1)
    panel.step(-1)
    panel.step(-1)
    assert seen == [1, 2, 3, 1, 3, 2]
    assert panel.selected_lesion() == 2
    # a recomputed snapshot keeps the selection on the same lesion
    panel.show_snapshot(_snapshot(_three_lesions()))
    assert panel.selected_lesion() == 2


def _paint(layer: LesionLayer, viewport: Viewport) -> np.ndarray:
    image = QImage(viewport.screen_w, viewport.screen_h, QImage.Format.Format_RGB888)
    image.fill(0x808080)
    painter = QPainter(image)
    layer.paint(painter, viewport, QRegion(QRect(0, 0, viewport.screen_w, viewport.screen_h)))
    painter.end()
    return qimage_to_rgb(image).astype(np.int16)


def test_lesion_layer_outlines_labels_rings_and_hit_testing(qtbot):
    snap = _snapshot(_three_lesions())
    layer = LesionLayer()
    layer.set_lesions(snap.result.lesions)
    macro, micro, itc = snap.result.lesions
    assert lesion_label(macro).endswith("mm, macro") and lesion_label(itc).endswith("mm, ITC")
    assert lesion_label(macro, classed=False).endswith("mm, unreliable")  # tissue unlike the training data
    # 2 screen px per cell: every lesion is big enough for an outline
    vp = Viewport(150.0, 150.0, 2.0, 600, 600)
    image = _paint(layer, vp)
    drawn = np.abs(image - 128).sum(axis=-1) > 40
    for les in (macro, micro, itc):
        x, y = les.l0_outline[0]
        sx, sy = vp.l0_to_screen(x, y)
        assert drawn[int(sy) - 2:int(sy) + 3, int(sx) - 2:int(sx) + 3].any(), les.name
    # the inside of the big lesion stays clear (outline, not fill) away from line and label
    sx, sy = vp.l0_to_screen(macro.l0_bbox[0] + 20, macro.l0_bbox[1] + macro.l0_bbox[3] - 20)
    assert not drawn[int(sy) - 3:int(sy) + 4, int(sx) - 3:int(sx) + 4].any()
    assert layer.lesion_at(vp, *vp.l0_to_screen(*itc.l0_centroid)) is itc
    assert layer.lesion_at(vp, *vp.l0_to_screen(*macro.l0_centroid)) is macro
    assert layer.lesion_at(vp, 5, 590) is None

    # far out: the ITC is under a pixel, so it is drawn as a ring of fixed size around it
    far = Viewport(150.0, 150.0, 0.05, 400, 400)
    layer.set_lesions((itc,))  # alone: at this zoom the others' rings would overlap it
    image = _paint(layer, far)
    drawn = np.abs(image - 128).sum(axis=-1) > 40
    cx, cy = (int(v) for v in far.l0_to_screen(*itc.l0_centroid))
    r = int(MARKER_RADIUS_PX)
    assert drawn[cy, cx - r - 2:cx - r + 3].any() and not drawn[cy, cx]  # a ring, hollow

    # hidden: nothing; only the dirty region is touched
    layer.set_lesions(snap.result.lesions)
    layer.visible = False
    assert (np.abs(_paint(layer, vp) - 128).sum(axis=-1) == 0).all()
    layer.visible = True
    image = QImage(600, 600, QImage.Format.Format_RGB888)
    image.fill(0x808080)
    painter = QPainter(image)
    layer.paint(painter, vp, QRegion(QRect(0, 0, 10, 10)))
    painter.end()
    changed = np.abs(qimage_to_rgb(image).astype(np.int16) - 128).sum(axis=-1) > 0
    assert not changed[10:, :].any() and not changed[:, 10:].any()


# -- the live viewer with the default CNN --------------------------------------------------------
@pytest.fixture
def phantom(micro_phantom):
    return micro_phantom


@pytest.fixture
def ai_window(ai_window_factory):
    # starts with the overlay off, so a test can choose the view before anything is classified
    return ai_window_factory(enabled=False)


def _start_ai(win):
    win.ai.panel.set_settings(replace(win.ai.panel.settings, enabled=True))


def _wait_lesions(qtbot, tab, final: bool, timeout=90_000):
    def ready():
        snap = tab.lesions.snapshot
        return (snap is not None and tab.heatmap.live.is_idle and not tab.lesions.busy
                and snap.result.provisional != final)
    qtbot.waitUntil(ready, timeout=timeout)
    return tab.lesions.snapshot


def _grab(view) -> np.ndarray:
    view.repaint()
    return qimage_to_rgb(view.grab().toImage()).astype(np.int16)


def test_live_summary_provisional_then_final_fly_to_and_outline(ai_window, qtbot, phantom):
    win = ai_window
    assert not win.lesions.panel.isVisible()  # no overlay, no lesions panel
    tab = open_settled(win, qtbot, phantom.slide_path)
    (truth,) = phantom.lesions
    view = tab.view
    fit_scale = view.viewport.scale
    # look at a lesion-free corner only: the map covers part of the tissue
    view.set_scale(fit_scale * 6)  # no longer "fitted": the panel appearing must not re-fit it
    w, h = phantom.width, phantom.height
    far_x = w * 0.1 if truth.l0_centroid[0] > w / 2 else w * 0.9  # the corner away from the lesion
    far_y = h * 0.1 if truth.l0_centroid[1] > h / 2 else h * 0.9
    view.set_viewport(replace(view.viewport, l0_cx=far_x, l0_cy=far_y))
    _start_ai(win)
    assert win.lesions.panel.isVisible()
    x0, y0, x1, y1 = view.viewport.l0_rect
    poly = np.asarray(truth.l0_polygon)
    patch = 400  # level-0 px of one model patch (96 px at 0.97 um/px)
    assert x1 < poly[:, 0].min() - patch or x0 > poly[:, 0].max() + patch \
        or y1 < poly[:, 1].min() - patch or y0 > poly[:, 1].max() + patch
    snap = _wait_lesions(qtbot, tab, final=False)
    panel = win.lesions.panel
    assert snap.result.coverage < 1
    assert panel.label_title.text() == "NEGATIVE"
    assert panel.coverage_label.text().startswith(f"provisional: {snap.result.coverage:.0%} of the tissue")

    view.fit()  # the whole slide in view: all tissue is classified
    fit_scale = view.viewport.scale  # with the panel docked
    snap = _wait_lesions(qtbot, tab, final=True)
    assert panel.label_title.text() == "MICROMETASTASIS"
    assert panel.coverage_label.text() == "final: all tissue classified"
    model_text = panel.model_label.text()
    assert "cnn-pcam" in model_text and "not validated for clinical use" in model_text
    assert "(model operating point)" in model_text and "Tissue like the model's training data" in model_text
    largest = snap.result.largest
    assert abs(largest.diameter_mm - truth.diameter_mm) <= DIAMETER_TOLERANCE_MM
    assert panel.proxy.index(0, 0).data() == largest.name
    assert panel.proxy.index(0, 1).data() == f"{largest.diameter_mm:.2f}"
    assert panel.proxy.index(0, 3).data() == "micro"

    # the outline is on the slide: compare with the lesion layer hidden (heatmap off, so only
    # the layer differs)
    tab.minimap.hide()
    tab.legend.hide()
    view.show_scale_bar = False
    win.ai.panel.set_settings(replace(win.ai.panel.settings, show=False))
    with_lesions = _grab(view)
    win.lesions.lesions_action.trigger()
    assert not tab.lesion_layer.visible
    without = _grab(view)
    changed = np.abs(with_lesions - without).sum(axis=-1) > 60
    for x, y in largest.l0_outline[:: max(1, len(largest.l0_outline) // 12)]:
        sx, sy = (int(v) for v in view.viewport.l0_to_screen(x, y))
        assert changed[sy - 2:sy + 3, sx - 2:sx + 3].any(), (x, y)
    ys, xs = np.nonzero(changed)
    box = QRect(*(int(v) for v in _screen_box(view.viewport, largest))).adjusted(-160, -60, 160, 60)
    assert all(box.contains(QPoint(int(x), int(y))) for x, y in zip(xs[::5], ys[::5]))
    win.lesions.lesions_action.trigger()

    # click the row: the view flies there, zoomed in, and the lesion is selected
    table = panel.table
    rect = table.visualRect(panel.proxy.index(0, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    vp = view.viewport
    x0, y0, x1, y1 = vp.l0_rect
    cx, cy = largest.l0_centroid
    assert x0 < cx < x1 and y0 < cy < y1
    bx, by, bw, bh = largest.l0_bbox
    assert x0 <= bx and bx + bw <= x1 and y0 <= by and by + bh <= y1  # the whole lesion in view
    # zoomed in on it: the lesion fills most of the view (the slide alone would be smaller)
    assert vp.scale > 1.2 * fit_scale
    assert max(bw * vp.scale / vp.screen_w, bh * vp.scale / vp.screen_h) > 0.55
    assert tab.lesion_layer.selected == largest.index and panel.selected_lesion() == largest.index
    # Ctrl+L from the window goes to the next lesion (the only one: it stays)
    view.fit()
    qtbot.keyClick(win, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert view.viewport == vp

    # clicking the lesion on the slide selects it (in the table too); a drag does not
    tab.select_lesion(None)
    panel.select_lesion(None)
    sx, sy = (int(v) for v in view.viewport.l0_to_screen(*largest.l0_centroid))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(sx, sy))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(sx + 20, sy))
    assert tab.lesion_layer.selected is None and panel.selected_lesion() is None
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(sx, sy))
    assert tab.lesion_layer.selected == largest.index and panel.selected_lesion() == largest.index


def _screen_box(vp: Viewport, lesion) -> tuple[float, float, float, float]:
    x, y, w, h = lesion.l0_bbox
    sx0, sy0 = vp.l0_to_screen(x, y)
    sx1, sy1 = vp.l0_to_screen(x + w, y + h)
    return sx0, sy0, sx1 - sx0, sy1 - sy0


# -- LiveLesions: throttled, off the GUI thread, stale results dropped (fake overlay) ---------
class _FakeInfo:
    demonstration = True
    operating_point = None
    caution = "demonstration model trained on synthetic phantom tissue - not for diagnosis"

    def display_name(self) -> str:
        return "fake (DEMONSTRATION)"


class _FakeLive:
    def __init__(self) -> None:
        from histoviewer.core.grid_geometry import GridGeometry
        from histoviewer.core.inference.grid import PredictionGrid

        geometry = GridGeometry.for_slide((9600, 9600), 0.25, 1.0, 100)  # 24 x 24 cells of 400 px
        self.grid = PredictionGrid(geometry)
        self.model = type("Model", (), {"info": _FakeInfo()})()
        self.is_idle = False

    def fill(self, rows: slice, cols: slice, value: float) -> None:
        cells = np.ravel_multi_index(np.mgrid[rows, cols].reshape(2, -1), self.grid.geometry.shape)
        self.grid.set_values(cells, np.full(len(cells), value, np.float32))


class _FakeTab:
    def __init__(self) -> None:
        from PySide6.QtCore import QObject, Signal

        class Emitter(QObject):
            heatmapChanged = Signal()
            interactingChanged = Signal(bool)

        self._emitter = Emitter()
        self.heatmapChanged = self._emitter.heatmapChanged
        self.heatmap = None
        self.view = type("View", (), {"interacting": False,
                                      "interactingChanged": self._emitter.interactingChanged})()


# Timeouts below are generous ceilings for work that takes milliseconds; what is asserted is
# the order of events (and, for the throttle, a lower bound on elapsed time), never that
# something finished within a deadline close to its own delay.
GENEROUS_MS = 30_000


class _GatedAnalysis:
    """Stands in for ``live_lesions.analyse_map``: records each call (thread, time) and holds
    it until the test opens ``gate`` (the real analysis runs then)."""

    def __init__(self, real) -> None:
        self._real = real
        self.threads: list[str] = []
        self.times: list[float] = []
        self.gate = threading.Event()

    def __call__(self, *args, **kwargs):
        self.times.append(time.perf_counter())
        self.threads.append(threading.current_thread().name)
        assert self.gate.wait(GENEROUS_MS / 1000), "the test never opened the gate"
        return self._real(*args, **kwargs)


@pytest.fixture
def gated(monkeypatch):
    analysis = _GatedAnalysis(live_lesions.analyse_map)
    monkeypatch.setattr(live_lesions, "analyse_map", analysis)
    yield analysis
    analysis.gate.set()  # a failing test never leaves the analysis thread waiting


@pytest.fixture
def tracked(qtbot):
    """``make(throttle_ms)`` -> (fake tab, LiveLesions on it, snapshots it emitted, fake layer);
    every tracker made is closed (its thread joined) at teardown."""
    trackers = []

    def make(throttle_ms: int):
        tab = _FakeTab()
        tracker = live_lesions.LiveLesions(tab, throttle_ms=throttle_ms)
        trackers.append(tracker)
        seen = []
        tracker.changed.connect(seen.append)
        layer = type("Layer", (), {"live": _FakeLive()})()
        tab.heatmap = layer
        layer.live.fill(slice(0, 24), slice(0, 24), 0.1)
        layer.live.fill(slice(5, 9), slice(5, 9), 0.95)  # a 4-cell (0.4 mm) lesion
        return tab, tracker, seen, layer

    yield make
    for tracker in trackers:
        tracker.close()


def test_live_lesions_throttle_a_burst_to_one_analysis_off_the_gui_thread(qtbot, gated, tracked):
    throttle_ms = 300
    tab, tracker, seen, _layer = tracked(throttle_ms)
    # a burst of results while the worker is busy: nothing runs before the throttle interval
    t0 = time.perf_counter()
    for _ in range(50):
        tab.heatmapChanged.emit()
    assert gated.times == [] and tracker.busy  # scheduled, not run
    qtbot.waitUntil(lambda: len(gated.times) == 1, timeout=GENEROUS_MS)
    assert gated.times[0] - t0 >= throttle_ms / 1000 * 0.9  # (Qt's coarse timers may be 5% early)
    assert gated.threads[0].startswith("histoviewer-lesions")  # the background thread, not the GUI's
    # more results while that analysis runs: one more analysis afterwards (never two at once),
    # not fifty, and it too waits for the throttle interval
    t1 = time.perf_counter()
    for _ in range(50):
        tab.heatmapChanged.emit()
    delivered = []
    tracker.changed.connect(lambda _snap: delivered.append(time.perf_counter()))
    with qtbot.waitSignal(tracker.changed, timeout=GENEROUS_MS):
        gated.gate.set()
    assert seen[0].result.label.value == "micro" and len(seen[0].result.lesions) == 1
    qtbot.waitUntil(lambda: len(gated.times) == 2, timeout=GENEROUS_MS)
    assert gated.times[1] >= delivered[0] and gated.times[1] - t1 >= throttle_ms / 1000 * 0.9
    qtbot.waitUntil(lambda: not tracker.busy, timeout=GENEROUS_MS)  # nothing running or scheduled
    assert len(gated.times) == 2 and len(seen) == 2


def test_live_lesions_idle_maps_at_once_never_while_moving_and_stale_results_dropped(qtbot, gated, tracked):
    # A throttle far longer than any timeout here: an analysis that waited for it would never
    # come, so each one seen below ran "at once".
    tab, tracker, seen, layer = tracked(throttle_ms=3_600_000)
    gated.gate.set()
    # the worker goes idle: analysed at once, without waiting for the throttle
    layer.live.is_idle = True
    with qtbot.waitSignal(tracker.changed, timeout=GENEROUS_MS):
        tab.heatmapChanged.emit()
    assert len(seen[-1].result.lesions) == 1
    qtbot.waitUntil(lambda: not tracker.busy, timeout=GENEROUS_MS)
    # ... but never while the view moves (the analysis would cost pan frames): then when it stops
    layer.live.fill(slice(15, 20), slice(15, 20), 0.99)
    start = len(gated.times)
    tab.view.interacting = True
    tab.heatmapChanged.emit()
    qtbot.wait(200)  # time for a wrong implementation to start one
    assert len(gated.times) == start and not tracker.busy
    tab.view.interacting = False
    with qtbot.waitSignal(tracker.changed, timeout=GENEROUS_MS):
        tab.view.interactingChanged.emit(False)
    assert len(gated.times) == start + 1 and len(tracker.snapshot.result.lesions) == 2
    qtbot.waitUntil(lambda: not tracker.busy, timeout=GENEROUS_MS)

    # a result computed for a layer that has since been replaced is dropped
    gated.gate.clear()
    layer.live.fill(slice(0, 3), slice(20, 24), 0.99)
    tab.heatmapChanged.emit()
    qtbot.waitUntil(lambda: len(gated.times) == start + 2, timeout=GENEROUS_MS)  # held at the gate
    tab.heatmap = None
    tab.heatmapChanged.emit()  # overlay stopped: snapshot cleared at once
    assert tracker.snapshot is None and seen[-1] is None
    n_seen = len(seen)
    gated.gate.set()
    qtbot.waitUntil(lambda: not tracker.busy, timeout=GENEROUS_MS)  # its result came back (and went)
    assert tracker.snapshot is None and len(seen) == n_seen


def test_the_final_map_is_analysed_when_the_worker_goes_idle_not_when_the_throttle_ends(qtbot, gated, tracked):
    """The worker's last results arrive while it is busy (a throttled analysis is scheduled),
    then it goes idle with nothing new (the same ``results_version``): the map is final, so it
    is analysed at once. It waited for the throttle (3 s in the viewer): the screened idle
    pass's whole-slide label came up to 3 s after the map was complete."""
    tab, tracker, seen, layer = tracked(throttle_ms=3_600_000)
    gated.gate.set()
    layer.live.results_version = 7
    tab.heatmapChanged.emit()  # the last results, worker still busy: throttled
    assert tracker.busy and not gated.times
    layer.live.is_idle = True
    with qtbot.waitSignal(tracker.changed, timeout=GENEROUS_MS):
        tab.heatmapChanged.emit()  # the idle signal: same version, nothing new in the map
    assert len(gated.times) == 1 and len(seen[-1].result.lesions) == 1
    qtbot.waitUntil(lambda: not tracker.busy, timeout=GENEROUS_MS)


def test_the_panel_states_the_models_caveat_and_operating_point(qtbot):
    from histoviewer.core.analysis.threshold import choose_lesion_params
    from histoviewer.core.models.classifier import OperatingPoint

    caveat = "research model trained on 6,657 real PatchCamelyon patches; not validated for clinical use"
    point = OperatingPoint(0.37, "sensitivity >= 0.95", 0.95, 0.88, 900)
    encoded = _three_lesions()
    result = analyse_map(encoded, MapFrame.for_cells(10.0), choose_lesion_params(None, point))
    snap = LesionSnapshot(result, (0,) * HISTOGRAM_BINS, "trained (cnn, strided-cnn)", False, 0.0, 1,
                          caveat, point)
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_snapshot(snap)
    text = panel.model_label.text()
    assert caveat in text and "DEMONSTRATION" not in text
    assert "threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating point)" in text
    assert "0.37" in panel.largest_label.text()


def test_panel_headline_says_unreliable_for_tissue_unlike_the_training_data(qtbot):
    from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON, DomainVerdict
    from histoviewer.qt.summary_panel import LABEL_TEXT

    panel = SummaryPanel()
    qtbot.addWidget(panel)
    snap = _snapshot(_three_lesions())
    ood = DomainVerdict(assessed=True, out_of_domain=True, score=0.46, patch_threshold=16.7,
                        share_threshold=0.25, patches=81)
    panel.show_snapshot(replace(snap, domain=ood))
    assert panel.label_title.text() == OUT_OF_DOMAIN_REASON
    assert LABEL_TEXT[snap.result.label][0] not in panel.label_title.text()  # no size class headline
    assert "46 % of 81" in panel.model_label.text() and OUT_OF_DOMAIN_REASON not in panel.model_label.text()
    class_col = panel.model.HEADERS.index("Class") if hasattr(panel.model, "HEADERS") else 3
    assert panel.table.isColumnHidden(class_col)  # no size class for regions on such tissue
    assert "not to be read as metastases" in panel.largest_label.text()
    assert "micro" not in panel.largest_label.text() and "macro" not in panel.largest_label.text()
    # in domain, or not yet judged: the node label is the headline as before
    ind = replace(ood, out_of_domain=False, score=0.01)
    panel.show_snapshot(replace(snap, domain=ind))
    assert panel.label_title.text() == LABEL_TEXT[snap.result.label][0]
    assert not panel.table.isColumnHidden(class_col) and "Largest lesion" in panel.largest_label.text()
    assert "like the model's training data" in panel.model_label.text()
    panel.show_snapshot(replace(snap, domain=DomainVerdict(assessed=False, patches=10, reason="too few")))
    assert panel.label_title.text() == LABEL_TEXT[snap.result.label][0]


def test_skin_in_the_viewer_every_place_says_the_result_is_unreliable(ai_window_factory, qtbot, cmu_small):
    """CMU-1 (skin) with the shipped handcrafted model, whole slide: headline, status bar,
    in-view legend and lesion labels all say the AI result is unreliable; no size class."""
    from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON

    win = ai_window_factory(model="handcrafted", background=True)
    tab = open_settled(win, qtbot, cmu_small)
    _start_ai(win)
    snap = _wait_lesions(qtbot, tab, final=True)
    assert snap.domain.assessed and snap.domain.out_of_domain
    assert win.lesions.panel.label_title.text() == OUT_OF_DOMAIN_REASON
    qtbot.waitUntil(lambda: "unreliable" in win.ai.status_label.text(), timeout=5000)
    assert "unreliable" in tab.legend.status and tab.legend.alarm and not tab.lesion_layer.classed
    if snap.result.lesions:
        assert "unreliable" in lesion_label(snap.result.lesions[0], tab.lesion_layer.classed)


def test_count_axes_label_only_whole_counts_and_decades():
    """The histogram's log axis is labelled at decades only (pyqtgraph's own minor-tick labels
    piled on each other under two decades), the sizes plot at whole lesion counts."""
    assert log_decade_ticks(10.0) == [(0.0, "1"), (1.0, "10")]
    assert log_decade_ticks(2500.0) == [(0.0, "1"), (1.0, "10"), (2.0, "100"), (3.0, "1k")]
    assert count_ticks(1) == [(0.0, "0"), (1.0, "1")]
    assert all(label.isdigit() for _, label in count_ticks(13))
    assert len(count_ticks(13)) <= 5


def test_the_status_bar_is_not_green_when_nothing_was_classified(ai_window_factory, qtbot):
    """Seen on a slide without tissue: the status bar said a green 'AI: whole slide classified'
    (failed and absent cells count as done for progress) while nothing had been classified."""
    from pathlib import Path

    win = ai_window_factory(model="handcrafted", background=True)
    tab = open_settled(win, qtbot, Path(__file__).resolve().parents[1] / "data" / "tiny.svs")
    _start_ai(win)
    snap = _wait_lesions(qtbot, tab, final=True)
    assert snap.result.counts.tissue == 0
    qtbot.waitUntil(lambda: "no tissue" in win.ai.status_label.text(), timeout=5000)
    assert "whole slide classified" not in win.ai.status_label.text()
    assert "#1a6e1a" not in win.ai.status_label.styleSheet()
