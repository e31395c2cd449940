"""Screen first, then look closely: the full model only where a low-magnification screen says
tumour is possible (the ``screened`` analysis strategy; "soft attention").

1. **Screen.** The screening model (``models.screen_model``) scores every tissue cell of the
   full model's grid from a pyramid level 16x cheaper to decode (2.5x instead of 10x).
2. **Select.** A cell scoring at or above the screening threshold (chosen on validation for
   a stated sensitivity, 99 % by default) is *flagged*; the full model classifies every
   flagged cell, every cell the screen could not read, and an *audit lattice*: the regular
   sample of the tissue the domain check uses too (``audit_lattice``: about 4 % of the
   tissue, 64 to 600 patches a slide).
   **Margin.** Then ``margin_patches`` rings of neighbouring cells around every cell where
   the full model finds P(tumour) >= half the lesion threshold, repeated until no new cell
   qualifies (``grow_cells``): every lesion the full model sees is followed to its border,
   so its outline, diameter and class are those an exhaustive run would measure.
3. **Audit.** If the full model finds tumour (at the lesion threshold) on an audit cell the
   screen had passed, the screen has missed something on this slide: the rest of the tissue
   is classified in full (``ScreeningRecord.fallback``), never left screened negative.
4. **Mark.** Every tissue cell left is SCREENED_NEGATIVE: tissue the full model did not
   classify. It is never a negative classification: coverage counts it apart.

What a screen can miss is said in README.md ("How screening fails"): clusters smaller than
the screen resolves at 2.5x, stain or tissue unlike its training data, and anything between
the audit lattice's points that the screen scores below its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import (
    DOMAIN_SAMPLE_TARGET,
    CellState,
    PredictionGrid,
    domain_sample_lattice,
)
from histoviewer.core.inference.margin_hold import margin_hold_tiles
from histoviewer.core.inference.pipeline import (
    FailureFn,
    PipelineTimes,
    classify_cells,
    model_parallelism,
)
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.screen_model import ScreenSettings, check_screen_fits
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.slide.reader import SlideReader

__all__ = [
    "STRATEGIES",
    "ScreenPass",
    "ScreeningRecord",
    "analysis_cells",
    "run_screen",
    "screen_geometry",
    "select_for_full_model",
]

# How ``analyze`` chooses the cells the full model classifies: all tissue (the default), or
# only where the screen says tumour is possible.
STRATEGIES = ("exhaustive", "screened")
# Screening reads larger regions than the full pass (cells a side): 24 px patches make a
# 16-cell block a 384 px region, too small to pay for a read.
SCREEN_BLOCK = 64
# ... and with two reader threads: the screen reads and resamples (decode ~0.15 s, resize
# ~0.45 s on the CAMELYON-size phantom) more than its model computes (~0.55 s, on two model
# threads), so one reader left the model waiting. Results come in job order whatever the
# readers, so the batches, and the scores, are the same.
SCREEN_READ_THREADS = 2
# The full pass reads smaller regions than an exhaustive run: the screen's selection is
# patchy (lesions, the audit lattice's lone cells), and a 16-cell block around four lone
# cells decodes a whole 1,536 px region for them.
FULL_PASS_BLOCK = 8
# ... and with at least two reader threads: a patchy selection costs ~3.5x the decode and
# resize per patch of a dense read (tiles shared by neighbouring small regions are decoded
# again), so the reader, not the model, bounds this pass (CAMELYON-size phantom: the model
# waited 5.7 s of its 8.4 s for one reader).
FULL_PASS_READ_THREADS = 2
# ... and in batches sized to the round: a round of this pass is small (a 4 mm node's first
# round ~80 patches, its margin rounds a handful), and as one batch the model waited for every
# read of the round and then ran on one model thread, the tissue check's descriptor (~1.6 ms a
# patch) included, while the other core idled. ``ROUND_BATCHES_PER_THREAD`` batches per model
# thread start the model while the reader still reads and give every model thread a share;
# ``MIN_ROUND_BATCH`` keeps a call's fixed cost small beside its patches.
ROUND_BATCHES_PER_THREAD = 2
MIN_ROUND_BATCH = 16


class ProbabilityOnly(PatchClassifier):
    """The screen as the pipeline calls it: probabilities only. A screening model's file may
    carry a domain profile (training fits one); its distances are not wanted, and even an
    all-False mask costs ~25 % of the screen's time."""

    def __init__(self, model: PatchClassifier) -> None:
        self.model = model
        self.info = model.info
        # what ``pipeline.model_parallelism`` asks: a CPU torch screen runs on several threads
        # of one torch thread each, like the full model (torch's own threads wait at a
        # barrier for one that lost its core: the screen pass of the CAMELYON-size phantom
        # took 7-17 s at load 5-6 that way, 3.0-3.7 s on two threads, 1.2 s on a quiet machine)
        self.device = getattr(model, "device", None)
        self.parallel_calls = getattr(model, "parallel_calls", False)

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(patches)


# The audit lattice under screening: about 4 % of the tissue, 64 to 600 patches (the tissue
# check judges it, and needs 64 patches); the exhaustive run's lattice would be all of a
# small slide's tissue.
AUDIT_SHARE = 0.04
AUDIT_MIN = 64


def audit_lattice(tissue: np.ndarray) -> np.ndarray:
    """Bool rows x cols: the regular lattice of tissue cells the full model classifies on
    every screened slide, whatever the screen says (``domain_sample_lattice``)."""
    n = int(np.count_nonzero(tissue))
    return domain_sample_lattice(
        tissue, min(DOMAIN_SAMPLE_TARGET, max(AUDIT_MIN, round(AUDIT_SHARE * n)))
    )


@dataclass(frozen=True)
class ScreeningRecord:
    """What the screen did on one slide (``summary.json``'s ``screening``).

    ``screen_model``: the screening model's name and content hash; ``settings``: its
    threshold, margin and validation numbers; ``tissue_patches``: tissue cells;
    ``screened``: cells the screen scored; ``flagged``: at or above its threshold;
    ``screen_failed``: cells it could not read (classified in full instead); ``audit``:
    audit-lattice cells; ``audit_misses``: audit cells the screen passed where the full model
    found tumour; ``full_model_patches``: cells the full model was asked to classify;
    ``screened_negative``: cells left SCREENED_NEGATIVE; ``fallback``: why the whole slide
    was classified after all (None: it was not); ``screen_s``: seconds of the screening pass.
    """

    screen_model: dict[str, str]
    settings: ScreenSettings
    tissue_patches: int
    screened: int
    flagged: int
    screen_failed: int
    audit: int
    audit_misses: int
    full_model_patches: int
    screened_negative: int
    fallback: str | None
    screen_s: float

    @property
    def full_model_fraction(self) -> float:
        return (
            0.0
            if self.tissue_patches == 0
            else self.full_model_patches / self.tissue_patches
        )

    def describe(self) -> str:
        """One line for people: what the full model classified and what was screened negative."""
        if self.fallback:
            return f"screened, then classified in full: {self.fallback}"
        pct = 100.0 * self.screened_negative / max(self.tissue_patches, 1)
        return (
            f"screened at 2.5x: the full model classified {self.full_model_patches:,} of "
            f"{self.tissue_patches:,} tissue patches; {self.screened_negative:,} ({pct:.0f} %) were "
            f"screened negative (not classified by the full model)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "screen_model": dict(self.screen_model),
            "settings": self.settings.to_dict(),
            "tissue_patches": self.tissue_patches,
            "screened": self.screened,
            "flagged": self.flagged,
            "screen_failed": self.screen_failed,
            "audit": self.audit,
            "audit_misses": self.audit_misses,
            "full_model_patches": self.full_model_patches,
            "screened_negative": self.screened_negative,
            "fallback": self.fallback,
            "screen_s": round(self.screen_s, 3),
            "description": self.describe(),
        }


@dataclass(frozen=True)
class ScreenPass:
    """The screen's scores on the full model's grid: ``probability`` float32 rows x cols
    (NaN where it gave none), ``failed`` bool rows x cols (tissue it could not read)."""

    probability: np.ndarray
    failed: np.ndarray
    times: PipelineTimes


def screen_geometry(geometry: GridGeometry, screen: PatchClassifier) -> GridGeometry:
    """The full model's grid as the screen reads it: the same cells (same level-0 origin,
    patch and stride), each ``screen.input.patch_px`` px at the screen's scale."""
    spec = screen.input
    check_screen_fits(
        spec, replace(screen.input, patch_px=geometry.patch_px, mpp=geometry.model_mpp)
    )
    ratio = geometry.model_mpp / spec.mpp
    stride = geometry.stride_px * ratio
    if abs(stride - round(stride)) > 1e-6:
        raise InferenceError(
            f"the grid step ({geometry.stride_px} model px) is not a whole number of the "
            f"screen's pixels ({spec.mpp:g} um/px); screen a grid without overlap",
            setting="stride_px",
        )
    out = replace(
        geometry,
        model_mpp=spec.mpp,
        patch_px=spec.patch_px,
        stride_px=round(stride),
    )
    if out.shape != geometry.shape:
        raise InferenceError(
            f"the screen's grid {out.shape} does not match the full model's {geometry.shape}"
        )
    return out


def run_screen(
    reader: SlideReader,
    geometry: GridGeometry,
    tissue: np.ndarray,
    screen: PatchClassifier,
    *,
    source: Any = None,
    batch_size: int = 1024,
    model_threads: int | None = 1,
    max_ahead: int | None = None,
    control: JobControl = NO_CONTROL,
    stage: str = "Screening at 2.5x",
    read_threads: int | None = None,
) -> ScreenPass:
    """Score every tissue cell of ``geometry`` (the full model's grid) with ``screen``
    (``model_threads``, ``max_ahead``: as ``pipeline.classify_cells``; ``read_threads``:
    default ``SCREEN_READ_THREADS``)."""
    sgeo = screen_geometry(geometry, screen)
    grid = PredictionGrid(sgeo, tissue)
    grid.domain_sample[...] = False  # the screen's own domain distance is not wanted
    cutter = RegionCutter(reader, sgeo, source=source)
    times = classify_cells(
        grid,
        cutter,
        ProbabilityOnly(screen),
        grid.pending(),
        batch_size=batch_size,
        block=SCREEN_BLOCK,
        read_threads=SCREEN_READ_THREADS if read_threads is None else read_threads,
        model_threads=model_threads,
        max_ahead=max_ahead,
        control=control,
        stage=stage,
    )
    values, state = grid.snapshot()
    probability = np.where(state == CellState.COMPUTED, values, np.nan).astype(
        np.float32
    )
    return ScreenPass(probability, state == CellState.FAILED, times)


def select_for_full_model(
    screened: ScreenPass, tissue: np.ndarray, settings: ScreenSettings
) -> np.ndarray:
    """Bool rows x cols: the tissue cells the full model classifies first: flagged cells
    (score >= threshold) and cells the screen could not score (the margin grows from the
    full model's findings, ``grow_cells``)."""
    tissue = np.asarray(tissue, bool)
    with np.errstate(invalid="ignore"):
        flagged = screened.probability >= settings.threshold
    unscored = tissue & ~np.isfinite(screened.probability)
    return (flagged | unscored | screened.failed) & tissue


# The margin grows around every classified cell whose full-model probability is at least this
# share of the lesion threshold: a lesion's faint rim and halo, not only its core.
GROW_SHARE = 0.5


def grow_cells(grid: PredictionGrid, threshold: float, rings: int) -> np.ndarray:
    """Flat indices of NOT_COMPUTED tissue cells within ``rings`` 8-neighbour rings of a
    classified cell with probability >= ``threshold``: the safety margin, grown from what the
    full model found until a lesion's whole border is classified (called until empty)."""
    if rings <= 0:
        return np.zeros(0, np.int64)
    values, state = grid.snapshot()
    seeds = (state == CellState.COMPUTED) & (values >= threshold)
    if not seeds.any():
        return np.zeros(0, np.int64)
    near = dilate_8(seeds, rings) & (state == CellState.NOT_COMPUTED)
    return np.flatnonzero(near.reshape(-1))


def dilate_8(mask: np.ndarray, rings: int) -> np.ndarray:
    """``mask`` grown by ``rings`` rings of 8-neighbours (a (2 rings + 1)-cell square around
    every True cell); numpy only, so the viewer needs no scipy for it."""
    out = np.asarray(mask, bool).copy()
    for _ in range(max(0, int(rings))):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        rows = grown.copy()
        rows[:, 1:] |= grown[:, :-1]
        rows[:, :-1] |= grown[:, 1:]
        out = rows
    return out


def analysis_cells(
    grid: PredictionGrid, selected: np.ndarray, lattice: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(cells for the full model, audit cells) as flat indices: the selection plus the
    audit ``lattice`` (default ``grid.domain_sample``), in row order; audit = lattice cells
    outside the selection."""
    pending = grid.state == CellState.NOT_COMPUTED
    audit = (grid.domain_sample if lattice is None else lattice) & pending & ~selected
    cells = np.flatnonzero(((selected & pending) | audit).reshape(-1))
    return cells, np.flatnonzero(audit.reshape(-1))


def screened_classify(
    grid: PredictionGrid,
    cutter: RegionCutter,
    model: PatchClassifier,
    screened: ScreenPass,
    settings: ScreenSettings,
    lesion_threshold: float,
    *,
    batch_size: int,
    block: int,
    read_threads: int,
    model_threads: int | None = 1,
    max_ahead: int | None = None,
    on_failure: FailureFn | None,
    control: JobControl,
    stage: str,
    screen_info: dict[str, str],
    screen_s: float,
    audit: np.ndarray | None = None,
) -> tuple[PipelineTimes, ScreeningRecord]:
    """The full model on the screen's selection and the audit lattice (``audit``, bool rows x
    cols; default ``audit_lattice``), then on the margin grown around its findings
    (``grow_cells``); the rest of the tissue in full when the audit finds a miss, else
    SCREENED_NEGATIVE."""
    tissue = grid.tissue
    lattice = (
        audit_lattice(tissue) if audit is None else np.asarray(audit, bool) & tissue
    )
    # The tissue check judges every audit patch and, of the other patches the full model
    # classifies, those on the exhaustive run's lattice (all of them on a small slide): the
    # verdict rests on at least the audit's 64+ patches, at a descriptor's cost per patch.
    grid.domain_sample = lattice | domain_sample_lattice(tissue)
    selected = select_for_full_model(screened, tissue, settings)
    cells, audit_cells = analysis_cells(grid, selected, lattice)
    block = min(block, FULL_PASS_BLOCK)
    read_threads = max(read_threads, FULL_PASS_READ_THREADS)
    threads = model_parallelism(model, model_threads)[0]

    def classify(some: np.ndarray) -> PipelineTimes:
        """The full model on ``some`` cells, with this pass's settings (every round alike)."""
        return classify_cells(grid, cutter, model, some, block=block,
                              batch_size=round_batch_size(some.size, batch_size, threads),
                              read_threads=read_threads, model_threads=model_threads,
                              max_ahead=max_ahead, on_failure=on_failure, control=control,
                              stage=stage)

    source = cutter.source if isinstance(cutter.source, TiffRegionSource) else None
    if source is not None:  # the tiles the margin rounds will read again (margin_hold.MARGIN_HOLD_BYTES)
        source.hold(cutter.level, margin_hold_tiles(
            source, cutter, screened.probability, tissue, settings.threshold, settings.margin_patches))
    try:
        times = classify(cells)
        full = int(cells.size)
        while (
            more := grow_cells(grid, GROW_SHARE * lesion_threshold, settings.margin_patches)
        ).size:
            times = _add_times(times, classify(more))
            full += int(more.size)
        values, state = grid.snapshot()
        flat_v, flat_s = values.reshape(-1), state.reshape(-1)
        misses = int(
            np.count_nonzero(
                (flat_s[audit_cells] == CellState.COMPUTED)
                & (flat_v[audit_cells] >= lesion_threshold)
            )
        )
        rest = grid.pending()
        fallback = None
        if misses:
            fallback = (
                f"the full model found tumour on {misses} audit patch{'es' if misses != 1 else ''} the "
                "screen had passed, so the screen was not trusted on this slide"
            )
            times = _add_times(times, classify(rest))
            full += int(rest.size)
        else:
            grid.set_screened_negative(rest)
    finally:
        if source is not None:
            source.release_held()
    flagged = int(
        np.count_nonzero(
            tissue
            & (np.nan_to_num(screened.probability, nan=-1.0) >= settings.threshold)
        )
    )
    record = ScreeningRecord(
        screen_model=screen_info,
        settings=settings,
        tissue_patches=int(np.count_nonzero(tissue)),
        screened=int(np.count_nonzero(np.isfinite(screened.probability) & tissue)),
        flagged=flagged,
        screen_failed=int(np.count_nonzero(screened.failed)),
        audit=int(audit_cells.size),
        audit_misses=misses,
        full_model_patches=full,
        screened_negative=int(
            np.count_nonzero(grid.state == CellState.SCREENED_NEGATIVE)
        ),
        fallback=fallback,
        screen_s=screen_s,
    )
    return times, record


def round_batch_size(cells: int, batch_size: int, model_threads: int) -> int:
    """Patches per model call for a round of ``cells`` patches on ``model_threads`` threads:
    ``ROUND_BATCHES_PER_THREAD`` batches a thread, at least ``MIN_ROUND_BATCH`` patches (or
    the whole round when smaller), at most ``batch_size``."""
    share = -(-int(cells) // max(1, model_threads * ROUND_BATCHES_PER_THREAD))
    return max(1, min(int(batch_size), max(MIN_ROUND_BATCH, share)))


def _add_times(a: PipelineTimes, b: PipelineTimes) -> PipelineTimes:
    out = PipelineTimes()
    for key in out.__dict__:
        setattr(out, key, getattr(a, key) + getattr(b, key))
    return out


class LiveScreen:
    """The screened strategy for the viewer's "go on with the whole slide when idle"
    (``InferenceWorker``): the screen pass first (resumable: a cancelled pass keeps what it
    scored), then the full model on the selection and the audit lattice, then the audit
    verdict: the rest of the tissue screened negative, or classified in full after a miss.

    The audit lattice is ``analyze``'s (``audit_lattice``, or ``audit``: bool rows x cols), not
    the viewer's domain lattice (all the tissue of a small slide), so the idle pass classifies
    what ``analyze --strategy screened`` classifies, plus whatever the user looked at.

    One thread at a time (the worker's). ``cells_for_full_model`` drives it."""

    screen_batch_patches = 1024  # screen patches (24 px) a model call

    def __init__(
        self,
        reader: SlideReader,
        grid: PredictionGrid,
        screen: PatchClassifier,
        settings: ScreenSettings,
        lesion_threshold: float,
        *,
        source: Any = None,
        audit: np.ndarray | None = None,
        read_threads: int = 1,
        model_threads: int | None = 1,
    ) -> None:
        # ``read_threads``/``model_threads``: the screen pass's (``classify_cells``). It runs
        # only while the user neither pans nor looks at unclassified tissue (a pan cancels it),
        # so the viewer gives it the cores: on 2 cores the CAMELYON-size phantom's pass took
        # 1.24 s on one reader and one model thread, 0.81 s on two of each (1.25 CPU-s both).
        self._read_threads, self._model_threads = read_threads, model_threads
        self.screen = screen
        self.settings = settings
        self.lesion_threshold = float(lesion_threshold)
        sgeo = screen_geometry(grid.geometry, screen)
        self._sgrid = PredictionGrid(sgeo, grid.tissue)
        self._sgrid.domain_sample[...] = False
        self._cutter = RegionCutter(reader, sgeo, source=source)
        self._selected: np.ndarray | None = None
        tissue = np.asarray(grid.tissue, bool)
        self._lattice = (
            audit_lattice(tissue) if audit is None else np.asarray(audit, bool) & tissue
        )
        # the tissue check judges every audit patch too, as under analyze (screened_classify)
        grid.domain_sample = grid.domain_sample | self._lattice
        self._audit: np.ndarray | None = None
        self.fallback: str | None = None
        self.finished = False  # the audit verdict is in

    @property
    def screened(self) -> bool:
        """The screen pass is complete (the selection is known)."""
        return self._selected is not None

    def run_screen(self, control: JobControl = NO_CONTROL) -> None:
        """Score the cells the screen has not scored yet; ``Cancelled`` (from ``control``)
        stops between regions, keeping what was scored."""
        pending = self._sgrid.pending()
        if pending.size:
            classify_cells(
                self._sgrid,
                self._cutter,
                ProbabilityOnly(self.screen),
                pending,
                batch_size=self.screen_batch_patches,
                block=SCREEN_BLOCK,
                read_threads=self._read_threads,
                model_threads=self._model_threads,
                control=control,
                stage="Screening at 2.5x",
            )
        values, state = self._sgrid.snapshot()
        passed = ScreenPass(
            np.where(state == CellState.COMPUTED, values, np.nan).astype(np.float32),
            state == CellState.FAILED,
            PipelineTimes(),
        )
        self._selected = select_for_full_model(
            passed, self._sgrid.tissue, self.settings
        )

    def cells_for_full_model(
        self, grid: PredictionGrid
    ) -> tuple[np.ndarray, np.ndarray]:
        """(cells the full model should classify next, cells just marked screened negative):
        the selection and the audit lattice while any is pending; then, once, the audit
        verdict: after a miss every pending cell, else the rest marked SCREENED_NEGATIVE."""
        if self._selected is None:
            raise InferenceError("the screen has not run yet")
        if self.fallback is not None:
            return grid.pending(), np.zeros(0, np.int64)
        if self._audit is None:
            _, self._audit = analysis_cells(grid, self._selected, self._lattice)
        wanted = self._selected.copy().reshape(-1)
        wanted[self._audit] = True
        todo = grid.pending(np.flatnonzero(wanted))
        if not todo.size:
            todo = grow_cells(
                grid, GROW_SHARE * self.lesion_threshold, self.settings.margin_patches
            )
        if todo.size:
            return todo, np.zeros(0, np.int64)
        values, state = grid.snapshot()
        misses = self._misses(values, state)
        rest = grid.pending()
        if misses:
            self.fallback = (
                f"the full model found tumour on {misses} audit patch{'es' if misses != 1 else ''} "
                "the screen had passed: classifying the whole slide"
            )
            return rest, np.zeros(0, np.int64)
        grid.set_screened_negative(rest)
        self.finished = True
        return np.zeros(0, np.int64), rest

    def _misses(self, values: np.ndarray, state: np.ndarray) -> int:
        """Tumour cells (P >= the lesion threshold) that show the screen missed something:
        audit-lattice cells it had passed (``analyze``'s rule), and cells the user looked at
        (classified in full whatever the screen said) in tumour the selection's own findings
        do not reach. The margin grown from the selection follows a lesion the screen found
        to its border, so that lesion's rim is no miss, in the margin or in a view."""
        computed = state == CellState.COMPUTED
        tumour = computed & (values >= self.lesion_threshold)
        lattice = np.zeros(state.size, bool)
        lattice[self._audit] = True
        lattice = lattice.reshape(state.shape)
        # what the selection's findings reach, grown as the margin grows (grow_cells)
        grows = computed & (values >= GROW_SHARE * self.lesion_threshold)
        reached = self._selected & computed
        while True:
            more = dilate_8(reached & grows, self.settings.margin_patches) & computed & ~reached
            if not more.any():
                break
            reached |= more
        seen = tumour & ~self._selected & ~lattice & ~reached
        return int(np.count_nonzero(tumour & lattice)) + int(np.count_nonzero(seen))
