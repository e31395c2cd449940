"""Headless whole-slide analysis: classify all tissue of a slide and write the results.

``analyze_slide`` is the one pipeline (tissue grid -> batched region reads on a reader
thread -> model batches) and writes, into ``out_dir``: ``probability.tiff`` +
``probability.json`` (see ``outputs.py`` for the encoding), ``heatmap.png``,
``lesions.geojson`` (the lesions of the map, ``core/analysis/lesions.py``) and ``summary.json``
(``analysis/summary.py``: the lesions, the node label, the model, timings). For process
pools and Dask workers, ``jobs.slide_folders.analyze_slide_folder_job`` runs it into a
temporary folder that becomes the slide's folder only when complete (the older
``analyze_slide_job`` here wrote straight into the folder: removed).
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoviewer.core.analysis.learned_label import with_learned_label
from histoviewer.core.analysis.lesion_io import write_lesions_geojson
from histoviewer.core.analysis.lesion_uncertainty import lesion_uncertainties, with_uncertainty
from histoviewer.core.analysis.lesions import LesionParams, MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.summary import SlideFiles, SlideSummary, SlideTiming
from histoviewer.core.analysis.threshold import choose_lesion_params
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.inference.model_loading import PendingModel, loaded_model
from histoviewer.core.inference.outputs import (heatmap_base, in_background, write_domain_map, write_heatmap_png,
                                                write_probability_map)
from histoviewer.core.inference.pipeline import PipelineTimes, classify_cells
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.screening import STRATEGIES, ScreeningRecord, run_screen, screened_classify
from histoviewer.core.inference.tiff_regions import TILE_CACHE_BYTES, TiffRegionSource
from histoviewer.core.inference.tissue import TISSUE_THRESHOLD, grid_tissue
from histoviewer.core.inference.uncertainty_map import (compute_uncertainty, new_uncertainty_grid,
                                                       write_uncertainty_map)
from histoviewer.core.models.classifier import OperatingPoint, PatchClassifier
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON, judge_slide
from histoviewer.core.models.model_engine import engine_of
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.models.screen_model import ScreenSettings, open_screen_model
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.reader import SlideReader
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.strict_json import strict_dumps

__all__ = ["AnalyzeOptions", "analyze_slide", "remove_if_empty", "slide_out_dir"]

HEATMAP_MAX_PX = 2048


@dataclass(frozen=True)
class AnalyzeOptions:
    """Everything but the slide: picklable, so it travels to process and Dask workers.

    ``model``/``device``: what a job loads (``analyze_slide`` is given the loaded model).
    ``stride_px``: grid step in model pixels (None: the patch size, no overlap);
    ``batch_size``: patches per model call; ``block``: cells per region read (a side);
    ``read_threads``: region readers per slide; ``tissue_threshold``: the tissue fraction
    that makes a cell tissue; ``torch_threads``: intra-op threads for the model in this
    process (None: torch's default), parallel slide workers should split the cores between
    them; ``lesion_threshold``: the lesion threshold on the probability map the user set,
    None for the model's operating point (0.5 when the model states none);
    ``fast_tiff``: decode tiled TIFF/SVS tiles directly (``tiff_regions``), else every read
    goes through the slide reader (OpenSlide).
    """

    model: str = "cnn"
    device: str = "auto"
    stride_px: int | None = None
    batch_size: int = 512
    block: int = 16
    read_threads: int = 1
    tissue_threshold: float = TISSUE_THRESHOLD
    torch_threads: int | None = None
    lesion_threshold: float | None = None
    fast_tiff: bool = True
    # the pixel size (um/px) the user states for slides that have none (marked "user" in
    # every output); ``force_mpp`` lets it replace a slide's own scale
    user_mpp: float | None = None
    force_mpp: bool = False
    # threads calling the model at once (``pipeline.model_parallelism``): None chooses (a CPU
    # torch model: one per core, up to 4, unless ``torch_threads`` is set), 1 runs it alone
    model_threads: int | None = None
    # the learned node classifier shown beside the rule-based label: "default" (the shipped
    # one, trained on phantoms only), "none", or a node classifier file (``learned_label``)
    node_classifier: str | None = "default"
    # also write the TTA uncertainty map (``uncertainty_map``; 8x the model work) and the
    # per-lesion uncertainty
    uncertainty: bool = False
    # "exhaustive": the full model on every tissue patch; "screened": only where the
    # screening model (``screen_model``: "screen" or a file) says tumour is possible
    # (``inference.screening``)
    strategy: str = "exhaustive"
    screen_model: str = "screen"

    def __post_init__(self) -> None:
        if self.stride_px is not None and self.stride_px < 1:
            raise InferenceError(f"the grid step must be at least one model pixel, got {self.stride_px}",
                                 setting="stride_px")
        for name in ("batch_size", "block", "read_threads", "torch_threads", "model_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InferenceError(f"{name.replace('_', ' ')} must be at least 1, got {value}", setting=name)
        self.lesion_params(None)  # ValueError for a threshold outside (0, 1)
        if self.strategy not in STRATEGIES:
            raise InferenceError(f"unknown analysis strategy {self.strategy!r} (known: {', '.join(STRATEGIES)})",
                                 setting="strategy")

    @property
    def pipeline_model_threads(self) -> int | None:
        """``model_threads`` as the classify passes take it: torch threads set by hand run
        the model on this thread alone (1)."""
        return 1 if self.torch_threads else self.model_threads

    def lesion_params(self, operating_point: OperatingPoint | None) -> LesionParams:
        """The lesion parameters for a model with ``operating_point``: the user's threshold,
        else the model's, else the default (``analysis/threshold.py``), its source recorded."""
        return choose_lesion_params(self.lesion_threshold, operating_point)


def slide_out_dir(out_root: str | os.PathLike[str], slide_path: str | os.PathLike[str]) -> Path:
    """``<out_root>/<slide stem>``."""
    return Path(out_root) / Path(slide_path).stem


def analyze_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    model: PatchClassifier | PendingModel,
    options: AnalyzeOptions = AnalyzeOptions(),
    *,
    control: JobControl = NO_CONTROL,
    screen: tuple[PatchClassifier, ScreenSettings] | None = None,
) -> SlideSummary:
    """Classify every tissue patch of a slide with ``model`` and write the results into
    ``out_dir`` (``options``: grid, batching, lesion operating point; its model and device
    are not used here). ``model`` may still be loading (``PendingModel``): the slide is read
    meanwhile. With ``options.strategy == "screened"`` the full model classifies
    only where ``screen`` (a loaded screening model and its settings, from
    ``models.screen_model.open_screen_model``) says tumour is possible; the rest of the
    tissue is SCREENED_NEGATIVE (``inference.screening``).

    Raises ``SlideOpenError`` for an unreadable slide and ``InferenceError`` when the slide
    has no scale or ``out_dir`` cannot be written. Failed regions are counted, not raised.
    Progress: one stage, in patches; ``Cancelled`` (``control.cancel``) stops between
    regions, before any file is written. A failed or cancelled analysis leaves no empty
    ``out_dir`` behind.
    """
    t_start = time.perf_counter()
    slide_path, out = Path(slide_path), Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InferenceError(f"{out}: cannot create the output folder: {exc}") from exc
    try:
        if options.strategy != "screened":
            return _analyze_into(slide_path, out, model, options, control, t_start)
        if screen is not None:
            return _analyze_into(slide_path, out, model, options, control, t_start, screen)
        # no screen given: this slide loads its own (a small file, a fraction of a second)
        loaded = open_screen_model(options.screen_model, device=options.device)
        try:
            return _analyze_into(slide_path, out, model, options, control, t_start, loaded)
        finally:
            loaded[0].close()
    except BaseException:
        remove_if_empty(out)  # a failed or cancelled analysis leaves no empty folder behind
        raise


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` when it holds nothing (one holding an earlier run's files stays)."""
    try:
        folder.rmdir()
    except OSError:
        pass  # absent, or not empty


def _analyze_into(slide_path: Path, out: Path, model: PatchClassifier | PendingModel, options: AnalyzeOptions,
                  control: JobControl, t_start: float,
                  screen: tuple[PatchClassifier, ScreenSettings] | None = None) -> SlideSummary:
    """``analyze_slide``'s work once ``out`` exists."""
    with open_slide(slide_path, user_mpp=options.user_mpp, force_mpp=options.force_mpp) as reader:
        info = reader.info
        if info.mpp is None:
            raise InferenceError(
                f"{slide_path}: the slide's scale (microns per pixel) is unknown ({info.mpp_note}), so "
                "patches cannot be read at the model's scale; state the pixel size if you know it",
                setting="mpp",
            )
        spec = model.input
        geometry = GridGeometry.for_slide(info.dimensions, info.mpp, spec.mpp, spec.patch_px,
                                          options.stride_px, mpp_source=info.mpp_source)
        fast = TiffRegionSource.open(slide_path, reader, TILE_CACHE_BYTES) if options.fast_tiff else None
        failures: list[str] = []

        def on_failure(failed: np.ndarray, message: str) -> None:
            if len(failures) < 20:  # enough to diagnose, bounded for huge broken slides
                failures.append(f"{len(failed)} patches: {message}")

        # the heatmap's greyed thumbnail, made on a thread of its own from the start, while
        # the tissue is found and the slide classified (start-up: the model may still be
        # loading, a core idles meanwhile; a screened small slide is classified in less time
        # than the thumbnail takes, so it must not start late)
        backdrop = ThreadPoolExecutor(1, thread_name_prefix="histoviewer-analyze-thumbnail")
        thumbnail = backdrop.submit(_heatmap_backdrop, reader, fast)
        screening: ScreeningRecord | None = None
        try:
            t0 = time.perf_counter()
            tissue = grid_tissue(reader, geometry, options.tissue_threshold)
            grid = PredictionGrid(geometry, tissue)
            tissue_s = time.perf_counter() - t0
            cutter = RegionCutter(reader, geometry, source=fast)
            cells = grid.pending()
            if screen is None:
                times = classify_cells(grid, cutter, model, cells, batch_size=options.batch_size,
                                       block=options.block, read_threads=options.read_threads,
                                       model_threads=options.pipeline_model_threads,
                                       max_ahead=_regions_ahead(options, spec.patch_px),
                                       on_failure=on_failure, control=control,
                                       stage=f"Classifying {slide_path.name}")
            else:  # the screen pass needs the full model's threshold and then the model itself
                times, screening = _screened(reader, fast, grid, tissue, cutter, loaded_model(model), screen,
                                             options, on_failure, control, slide_path.name)
            uncertainty = None
            if options.uncertainty:  # the model is loaded by now (it classified)
                uncertainty = _uncertainty_grid(grid, cutter, loaded_model(model), options, control,
                                                slide_path.name)
        except BaseException:
            thumbnail.cancel()  # unless it runs already
            raise
        finally:
            backdrop.shutdown(wait=True)  # it reads the slide: done before the source and the reader close
            if fast is not None:
                fast.close()
        model = loaded_model(model)  # loaded by now unless the slide had no tissue
        # the loaded (verified) model's, not the header's; with the engine that ran it
        record = ModelRecord.from_info(model.info, engine=engine_of(model))
        t0 = time.perf_counter()
        encoded = grid.encoded_map()
        tiff_path, json_path = write_probability_map(out, encoded, geometry, slide=str(slide_path), model=record)
        thumb, base = thumbnail.result()
        # on a thread while the other maps are written and the lesions found (most of a small
        # screened slide's writing is this picture); awaited before the summary
        heatmap_png = in_background(write_heatmap_png, out / "heatmap.png", thumb, encoded, geometry, base=base)
        domain_path = None
        if model.domain is not None:
            domain_path = write_domain_map(out, grid.encoded_domain_map(), geometry,
                                           patch_threshold=model.domain.patch_threshold, slide=str(slide_path))
        uncertainty_path = None
        if uncertainty is not None:
            uncertainty_path, _ = write_uncertainty_map(out, uncertainty[0].encoded_map(), geometry,
                                                        slide=str(slide_path), model=record)
        write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = analyse_map(encoded, MapFrame.from_geometry(geometry), options.lesion_params(model.info.operating_point))
    if uncertainty is not None:  # each lesion's uncertainty, over its cells
        per_lesion = lesion_uncertainties(encoded, uncertainty[0].encoded_map(), found.frame,
                                          found.params.threshold, found.lesions)
        found = dataclasses.replace(found, lesions=with_uncertainty(found.lesions, per_lesion))
    # Out of domain, the AI's size class is not a label anyone should read: unknown, with why.
    verdict = judge_slide(grid.domain_distances(), model.domain, complete=grid.coverage() >= 1.0)
    geojson_path = write_lesions_geojson(out / "lesions.geojson", found.lesions,
                                         unreliable=OUT_OF_DOMAIN_REASON if verdict.out_of_domain else None)
    lesions_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    png_path = heatmap_png.result()  # raises what writing it raised
    write_s += time.perf_counter() - t0
    counts = grid.counts()
    label = NodeLabel.UNKNOWN if verdict.out_of_domain else found.label
    timing = SlideTiming(tissue_s=tissue_s, read_decode_s=times.read_s, resize_cut_s=times.resize_s,
                         model_s=times.model_s, wait_for_reads_s=times.wait_s, classify_wall_s=times.total_s,
                         write_s=write_s, lesions_s=lesions_s, total_s=time.perf_counter() - t_start,
                         uncertainty_s=0.0 if uncertainty is None else uncertainty[1].total_s)
    summary = SlideSummary(
        slide=str(slide_path), out_dir=str(out), model=record, mpp=float(info.mpp),
        level_read=cutter.level, region_source="tifffile" if fast is not None else info.backend,
        geometry=geometry, tissue_patches=int(cells.size), classified_patches=counts["computed"],
        failed_patches=counts["failed"], coverage=round(grid.coverage(), 6), timing=timing.rounded(),
        files=SlideFiles(probability_tiff=str(tiff_path), probability_json=str(json_path),
                         heatmap_png=str(png_path), lesions_geojson=str(geojson_path),
                         summary_json=str(out / "summary.json"),
                         domain_tiff=None if domain_path is None else str(domain_path),
                         uncertainty_tiff=None if uncertainty_path is None else str(uncertainty_path)),
        failures=tuple(failures), node_label=label, provisional=found.provisional,
        lesion_params=found.params, lesions=SlideSummary.written_lesions(found), domain=verdict,
        strategy=options.strategy, screened_patches=counts["screened_negative"],
        screening=None if screening is None else screening.to_dict(),
    )
    summary = with_learned_label(summary, options.node_classifier, encoded, found)
    atomic_write_text(out / "summary.json", strict_dumps(summary.to_dict(), indent=2))
    return summary


# Patches the reader may hold ahead of the model: ~190 MB (27 regions of 256 patches of 96 px),
# enough to read a CAMELYON-size slide's first regions while the model loads.
READ_AHEAD_BYTES = 192 * 1024 * 1024


def _regions_ahead(options: AnalyzeOptions, patch_px: int) -> int:
    """Regions the reader may finish ahead of the model (``READ_AHEAD_BYTES`` of patches)."""
    region_bytes = options.block * options.block * patch_px * patch_px * 3
    return max(2 + options.read_threads, READ_AHEAD_BYTES // max(region_bytes, 1))


# A pyramid level whose long side lies within this share of HEATMAP_MAX_PX is the heatmap's
# backdrop as it is. Resampling the level twice that size down to exactly HEATMAP_MAX_PX
# instead (Lanczos over 16 Mpx for a 4 mm node: 0.26 s of a 0.34 s backdrop, on the screened
# run's critical path) buys at most a third more pixels a side, in a picture that shows a map.
HEATMAP_LEVEL_SHARE = 0.75


def backdrop_level(dimensions: tuple[tuple[int, int], ...]) -> int | None:
    """The largest level (``dimensions``: each level's (width, height)) whose long side lies in
    [HEATMAP_LEVEL_SHARE, 1] x HEATMAP_MAX_PX, or None (the thumbnail is resampled then)."""
    for level, (width, height) in enumerate(dimensions):
        if HEATMAP_LEVEL_SHARE * HEATMAP_MAX_PX <= max(width, height) <= HEATMAP_MAX_PX:
            return level
    return None


def _heatmap_backdrop(reader: SlideReader, fast: TiffRegionSource | None) -> tuple[np.ndarray, np.ndarray]:
    """(slide picture, its greyed copy the heatmap is painted on): a pyramid level of about
    the heatmap's size read whole (``backdrop_level``), else the reader's thumbnail, from the
    directly decoded tiles when they give the reader's pixels exactly (``TiffRegionSource.thumbnail``)."""
    level = backdrop_level(reader.info.level_dimensions)
    if level is not None:
        width, height = reader.info.level_dimensions[level]
        thumb = (reader if fast is None else fast).read_region(0, 0, level, width, height)
        return thumb, heatmap_base(thumb)
    thumb = fast.thumbnail(HEATMAP_MAX_PX) if fast is not None else None
    if thumb is None:
        thumb = reader.thumbnail(HEATMAP_MAX_PX)
    return thumb, heatmap_base(thumb)


def _uncertainty_grid(grid: PredictionGrid, cutter: RegionCutter, model: PatchClassifier,
                      options: AnalyzeOptions, control: JobControl, name: str) -> tuple[PredictionGrid, PipelineTimes]:
    """The TTA uncertainty of every patch the plain map classified, on its grid; the patches
    that failed there are failed here too (not background, not computed later)."""
    out = new_uncertainty_grid(grid.geometry, grid.tissue)
    _, state = grid.snapshot()
    out.set_failed(np.flatnonzero(state.reshape(-1) == CellState.FAILED))
    times = compute_uncertainty(out, cutter, model, np.flatnonzero(state.reshape(-1) == CellState.COMPUTED),
                                threshold=options.lesion_params(model.info.operating_point).threshold,
                                block=options.block, read_threads=options.read_threads, control=control,
                                stage=f"Uncertainty map of {name} (8 views a patch)")
    return out, times


def _screened(reader, fast, grid: PredictionGrid, tissue: np.ndarray, cutter: RegionCutter,
              model: PatchClassifier, screen: tuple[PatchClassifier, ScreenSettings], options: AnalyzeOptions,
              on_failure, control: JobControl, name: str):
    """The screened strategy's classification (``inference.screening``): screen, then the
    full model on the selection and the audit lattice."""
    screen_model, settings = screen
    t0 = time.perf_counter()
    model_threads = options.pipeline_model_threads
    screened = run_screen(reader, grid.geometry, tissue, screen_model, source=fast,
                          batch_size=max(options.batch_size, 1024), model_threads=model_threads, control=control,
                          stage=f"Screening {name} at 2.5x")
    screen_s = time.perf_counter() - t0
    lesion_threshold = options.lesion_params(model.info.operating_point).threshold
    info = {"name": screen_model.info.name, "content_hash": screen_model.info.content_hash}
    return screened_classify(grid, cutter, model, screened, settings, lesion_threshold,
                             batch_size=options.batch_size, block=options.block,
                             read_threads=options.read_threads,
                             model_threads=model_threads, max_ahead=_regions_ahead(options, model.input.patch_px),
                             on_failure=on_failure, control=control,
                             stage=f"Classifying {name} where the screen found possible tumour",
                             screen_info=info, screen_s=screen_s)


