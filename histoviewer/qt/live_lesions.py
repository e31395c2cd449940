"""Lesions of one open slide, recomputed from its live AI map while the map fills in.

``LiveLesions`` follows a ``SlideTab``'s heatmap (whatever layer it runs now) and, when new
results arrive, re-runs the core ``analyse_map`` (the same code as ``histoviewer analyze``)
on a snapshot of the grid. It is throttled (at most once per ``THROTTLE_MS`` while the
worker is busy, at once when it goes idle) and runs on one background thread: on a
whole-slide grid (268 x 536 cells) ``analyse_map`` takes ~3 ms without lesions but ~6 ms
per lesion (23 ms with 3, 0.64 s with 100), so a noisy map would stall the GUI; on this
thread the longest event-loop gap stays at 6-20 ms (``benchmarks/bench_summary_panel.py``).
No analysis starts while the view moves. Results are stamped with the generation they were
computed for; a result for a layer that has since been replaced is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from histoviewer.core.analysis.learned_label import LearnedLabel, learned_label
from histoviewer.core.analysis.lesion_uncertainty import (
    lesion_uncertainties,
    with_uncertainty,
)
from histoviewer.core.analysis.lesions import LesionParams, MapFrame
from histoviewer.core.analysis.node_label import SlideLesions, analyse_map
from histoviewer.core.analysis.threshold import choose_lesion_params, describe_threshold
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import OperatingPoint
from histoviewer.core.models.domain import (
    OUT_OF_DOMAIN_REASON,
    DomainVerdict,
    judge_slide,
)
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.qt.node_classifier_choice import node_classifier_for
from histoviewer.qt.threads import gui_thread

log = logging.getLogger(__name__)

# A provisional label may lag the map by a few seconds; each analysis shares the interpreter
# with the GUI thread, so while the whole slide is classified in the background fewer runs
# mean fewer hitches (and none at all while the view moves: see ``_start``).
THROTTLE_MS = 3000
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class LesionSnapshot:
    """What the summary panel shows for one slide at one moment.

    ``probability_counts``: histogram of the classified tissue cells' P(tumour) over
    ``HISTOGRAM_BINS`` equal bins of 0..1. ``model_name``/``demonstration``: the model
    that made the map; ``model_caution``: what it says of itself (``ModelInfo.caution``);
    ``operating_point``: its operating point (None: it states none). ``compute_s``: wall
    time of the analysis (map snapshot included).
    """

    result: SlideLesions
    probability_counts: tuple[int, ...]
    model_name: str
    demonstration: bool
    compute_s: float
    generation: int
    model_caution: str = ""
    operating_point: OperatingPoint | None = None

    @property
    def threshold_text(self) -> str:
        """The lesions' threshold with its source ("threshold 0.37: sensitivity 95 %, ...")."""
        params = self.result.params
        return describe_threshold(params.threshold, params.threshold_source, self.operating_point)
    # Whether the classified tissue lies inside what the model learned (not assessed until
    # enough of it is classified, or when the model has no domain profile).
    domain: DomainVerdict = field(default_factory=DomainVerdict.not_assessed)
    scale_user_set: bool = False  # sizes rest on a pixel size the user stated (slide.user_scale)
    model_hash: str = ""  # ModelInfo.content_hash of the model that made the map ("" unsaved)
    # the learned node classifier's second opinion (None: no classifier); no label while the
    # rule-based one is not final (learned_label)
    learned: LearnedLabel | None = None


def snapshot_of(live, params: LesionParams | None, generation: int, uncertainty=None,
                node_classifier: str | None = "default") -> LesionSnapshot | None:
    """Any thread: analyse the current map of a ``LiveHeatmap`` (None before it started);
    ``params`` None: at the model's operating point (0.5 when it states none); ``uncertainty``:
    the slide's uncertainty map grid (``PredictionGrid``), when one was computed: each lesion
    then carries its mean/max uncertainty (``analysis.lesion_uncertainty``);
    ``node_classifier``: the learned node classifier shown beside the rules (``default``,
    ``none`` or a file: ``node_classifier_choice``)."""
    grid, model = live.grid, live.model
    if grid is None or model is None:
        return None
    if params is None:
        params = choose_lesion_params(None, model.info.operating_point)
    t0 = time.perf_counter()
    encoded = grid.encoded_map()  # a copy, taken under the grid's lock
    result = analyse_map(encoded, MapFrame.from_geometry(grid.geometry), params)
    if uncertainty is not None and uncertainty.geometry == grid.geometry:
        per_lesion = lesion_uncertainties(encoded, uncertainty.encoded_map(), result.frame, result.params.threshold,
                                          result.lesions)
        result = dataclasses.replace(result, lesions=with_uncertainty(result.lesions, per_lesion))
    values = encoded[np.isfinite(encoded) & (encoded >= 0)]
    counts, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    info = model.info
    domain = judge_slide(grid.domain_distances(), getattr(model, "domain", None), complete=grid.coverage() >= 1.0)
    return LesionSnapshot(result, tuple(int(c) for c in counts), info.display_name(), bool(info.demonstration),
                          time.perf_counter() - t0, generation, info.caution, info.operating_point, domain,
                          grid.geometry.slide_mpp_source == "user", getattr(info, "content_hash", ""),
                          learned=_learned(encoded, result, domain, node_classifier))


def _learned(encoded: np.ndarray, result: SlideLesions, domain: DomainVerdict,
             spec: str | None = "default") -> LearnedLabel | None:
    """The chosen node classifier's label beside the rules', under the same resolution (None:
    none chosen). A chosen file that cannot be used gives no label, with the reason."""
    resolution = result.resolved(OUT_OF_DOMAIN_REASON if domain.out_of_domain else None)
    try:
        classifier = node_classifier_for(spec)
    except ModelLoadError as exc:
        return LearnedLabel(label=NodeLabel.UNKNOWN, rule_label=resolution.label, classifier=Path(str(spec)).name,
                            reason=f"the chosen node classifier cannot be used: {exc}")
    if classifier is None:
        return None
    return learned_label(classifier, encoded, result, resolution)


class LiveLesions(QObject):
    """Keeps ``snapshot`` up to date for ``tab`` (a SlideTab); ``changed`` says when it moved
    (None: the overlay stopped). ``close()`` before the slide closes."""

    changed = Signal(object)  # LesionSnapshot | None

    def __init__(self, tab, params: LesionParams | None = None, parent: QObject | None = None,
                 throttle_ms: int = THROTTLE_MS) -> None:
        super().__init__(parent)
        self.tab = tab
        self.throttle_ms = throttle_ms  # tests shorten it instead of waiting THROTTLE_MS out
        self.params = params
        # the learned node classifier beside the rules (AiSettings.node_classifier; set_node_classifier)
        self.node_classifier: str = "default"
        self.snapshot: LesionSnapshot | None = None
        self.error: str | None = None  # the last analysis failed (shown instead of a label)
        self._layer = None  # the HeatmapLayer the snapshot belongs to
        self._generation = 0  # bumped on every change of the map
        self._done_generation = -1
        self._running: Future | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="histoviewer-lesions")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(throttle_ms)
        self._timer.timeout.connect(self._start)
        self._deferred = False  # an analysis waits for the view to stop moving
        self._seen_version: int | None = None  # results_version of the map last scheduled
        self._seen_layer = None
        tab.heatmapChanged.connect(self._on_heatmap_changed)
        tab.view.interactingChanged.connect(self._on_interacting)

    def _on_heatmap_changed(self) -> None:
        if self._closed:
            return
        layer = self.tab.heatmap
        if layer is not self._layer:
            self._layer = layer
            self._generation += 1
            if self.snapshot is not None:
                self.snapshot = None
                self.changed.emit(None)
        if layer is None or layer.live.grid is None:
            return
        version = getattr(layer.live, "results_version", None)
        if version is not None and version == self._seen_version and layer is self._seen_layer:
            # nothing new in the map (an idle signal after a view with no work left); but when
            # the worker just went idle after its last results, the map is final: analyse now,
            # not when the throttle timer those results started runs out (up to THROTTLE_MS late)
            if layer.live.is_idle and self._timer.isActive():
                self._timer.stop()
                self._start()
            return
        self._seen_version, self._seen_layer = version, layer
        self._generation += 1
        if layer.live.is_idle:
            self._timer.stop()
            self._start()  # the map will not change for a while: show its final state now
        elif not self._timer.isActive():
            self._schedule(self.throttle_ms)

    def _schedule(self, delay_ms: int) -> None:
        self._timer.setInterval(delay_ms)
        self._timer.start()

    def set_node_classifier(self, spec: str) -> None:
        """Show ``spec``'s learned label from now on (``default``, ``none`` or a file)."""
        if spec != self.node_classifier:
            self.node_classifier = spec
            self.refresh()

    def refresh(self) -> None:
        """Analyse now (for example after the operating point changed)."""
        self._generation += 1
        self._start()

    def _on_interacting(self, moving: bool) -> None:
        if not moving and self._deferred:
            self._deferred = False
            self._start()

    def _start(self) -> None:
        layer = self._layer
        if self._closed or layer is None or layer.live.grid is None:
            return
        if self.tab.view.interacting:
            # The analysis shares the interpreter with the GUI thread: run it once the
            # view stops, not during a pan (it cost pan frames up to 53 ms).
            self._deferred = True
            return
        if self._running is not None:
            return  # _finished starts the next one if the map moved meanwhile
        if self._done_generation == self._generation:
            return
        generation = self._generation
        future = self._executor.submit(snapshot_of, layer.live, self.params, generation,
                                       getattr(self.tab, "uncertainty_grid", None), self.node_classifier)
        self._running = future
        future.add_done_callback(lambda f, lay=layer, g=generation: self._finished(f, lay, g))

    @gui_thread
    def _finished(self, future: Future, layer, generation: int) -> None:
        """The analysis thread is done (or the future was cancelled): on the GUI thread."""
        self._running = None
        if self._closed:
            return
        if layer is self._layer and not future.cancelled():
            exc = future.exception()
            if exc is not None:
                # not retried until the map changes again: a bug must not spin
                log.error("lesion analysis failed", exc_info=exc)
                self._done_generation = generation
                self.error = f"lesion analysis failed: {type(exc).__name__}: {exc}"
                self.changed.emit(self.snapshot)
            elif (snap := future.result()) is not None:
                self._done_generation = generation
                self.snapshot, self.error = snap, None
                self.changed.emit(snap)
        if self._layer is not None and self._done_generation != self._generation and not self._timer.isActive():
            # new results came in while this one ran: pick them up, still throttled
            self._schedule(0 if self._layer.live.is_idle else self.throttle_ms)

    @property
    def busy(self) -> bool:
        return self._running is not None or self._timer.isActive()

    def close(self) -> None:
        self._closed = True
        self._timer.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
