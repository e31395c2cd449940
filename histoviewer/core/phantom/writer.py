"""``write_phantom``: a synthetic lymph-node slide with known metastases, and its truth.

Rendering is split by rows of level-0 tiles. Small slides are drawn in this process;
large ones by a pool of worker processes (spawned, so it is safe to call from a program
with threads), with at most a few rows in flight so memory stays bounded whatever the
slide's area.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np

from histoviewer.core.atomic import clean_stale_partials, partial_path, write_error
from histoviewer.core.cpu_cores import usable_cores
from histoviewer.core.errors import PhantomSpecError
from histoviewer.core.geometry import max_feret_diameter, polygon_area, polygon_centroid
from histoviewer.core.phantom.ground_truth import write_ground_truth
from histoviewer.core.phantom.layout import TUMOUR_MORPHOLOGIES, PhantomLayout, build_layout
from histoviewer.core.phantom.render import TileRenderer
from histoviewer.core.phantom.result import PhantomLesion, PhantomResult
from histoviewer.core.phantom.spec import DEFAULT_LESIONS, LesionSpec, parse_lesion_specs
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.slide.pyramid_writer import EncodedRow, downsample2, encode_jpeg, write_pyramidal_tiff
from histoviewer.core.staging_terms import classify_diameter_mm
from histoviewer.core.units import l0_area_to_mm2, l0_px_to_mm

__all__ = ["PhantomLesion", "PhantomResult", "phantom_description", "render_row", "write_phantom"]

MIN_SIDE_PX = 256
# Finer than 0.1 um/px the nucleus sprites grow past 200 px; coarser than 4 um/px a
# lymphocyte is under 2 px and the phantom stops looking like tissue.
MIN_MPP, MAX_MPP = 0.1, 4.0
MAX_SIDE_PX = 1_000_000
# Below this many level-0 tiles, starting worker processes costs more than it saves.
PARALLEL_MIN_TILES = 400

class _RowRenderer:
    """Renders and encodes whole rows of level-0 tiles; caches the glass-only tiles."""

    def __init__(self, layout: PhantomLayout, tile_size: int, quality: int) -> None:
        self.renderer = TileRenderer(layout, tile_size)
        self.ts = tile_size
        self.quality = quality
        self.n_cols = math.ceil(layout.width / tile_size)
        self._glass: dict[tuple[int, int], tuple[bytes, np.ndarray]] = {}

    def row(self, index: int) -> EncodedRow:
        ts, r = self.ts, self.renderer
        half = np.empty((ts // 2, self.n_cols * ts // 2, 3), np.uint8)
        tiles: list[bytes] = []
        for c in range(self.n_cols):
            l0_x0, l0_y0 = c * ts, index * ts
            if r.is_glass(l0_x0, l0_y0):
                key = (l0_x0 % r.period, l0_y0 % r.period)
                cached = self._glass.get(key)
                if cached is None:
                    rgb = r.glass_tile(l0_x0, l0_y0)
                    cached = (encode_jpeg(rgb, self.quality), downsample2(rgb))
                    self._glass[key] = cached
                data, small = cached
            else:
                rgb = r.render(l0_x0, l0_y0)
                data, small = encode_jpeg(rgb, self.quality), downsample2(rgb)
            tiles.append(data)
            half[:, c * ts // 2 : (c + 1) * ts // 2] = small
        return EncodedRow(tuple(tiles), half)


def render_row(layout: PhantomLayout, tile_size: int, quality: int, index: int) -> EncodedRow:
    """Render one row of level-0 tiles (convenience for tests; builds a renderer)."""
    return _RowRenderer(layout, tile_size, quality).row(index)


_WORKER: _RowRenderer | None = None


def _init_worker(layout: PhantomLayout, tile_size: int, quality: int) -> None:
    global _WORKER
    _WORKER = _RowRenderer(layout, tile_size, quality)


def _worker_row(index: int) -> EncodedRow:
    if _WORKER is None:
        raise RuntimeError("phantom worker used before its initialiser ran")
    return _WORKER.row(index)


def _rows_in_process(layout: PhantomLayout, tile_size: int, quality: int, n_rows: int) -> Iterator[EncodedRow]:
    rr = _RowRenderer(layout, tile_size, quality)
    for i in range(n_rows):
        yield rr.row(i)


def _rows_parallel(
    layout: PhantomLayout, tile_size: int, quality: int, n_rows: int, workers: int
) -> Iterator[EncodedRow]:
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker,
        initargs=(layout, tile_size, quality),
    )
    pending: deque[Future[EncodedRow]] = deque()
    window = workers + 2  # rows in flight: bounds memory, still keeps every worker busy
    try:
        submitted = 0
        while submitted < n_rows and len(pending) < window:
            pending.append(pool.submit(_worker_row, submitted))
            submitted += 1
        while pending:
            row = pending.popleft().result()
            if submitted < n_rows:
                pending.append(pool.submit(_worker_row, submitted))
                submitted += 1
            yield row
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _default_workers(n_tiles: int) -> int:
    if n_tiles < PARALLEL_MIN_TILES:
        return 1
    return max(1, min(usable_cores(), 8))


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PhantomSpecError(f"{name} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise PhantomSpecError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def _measure(layout: PhantomLayout) -> tuple[PhantomLesion, ...]:
    mpp = layout.mpp
    out = []
    for les in layout.lesions:
        poly = les.l0_vertices
        d_mm = l0_px_to_mm(max_feret_diameter(poly), mpp)
        out.append(
            PhantomLesion(
                name=les.name,
                size_class=classify_diameter_mm(d_mm),
                diameter_mm=d_mm,
                l0_polygon=tuple((float(x), float(y)) for x, y in poly),
                l0_centroid=polygon_centroid(poly),
                area_mm2=l0_area_to_mm2(polygon_area(poly), mpp),
                requested_diameter_mm=les.spec.diameter_mm,
            )
        )
    return tuple(out)


def phantom_description(width: int, height: int, mpp: float, seed: int) -> str:
    """The phantom's ImageDescription: what it is, plainly (no scanner is imitated; the
    scale is in the resolution tags, repeated here for people)."""
    return (
        "HistoViewer phantom: synthetic lymph-node slide, not patient tissue\n"
        f"width = {width}\nheight = {height}\nmpp = {mpp:.6g}\nseed = {seed}"
    )


def write_phantom(
    out_path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    mpp: float = 0.25,
    lesions: str | Sequence[LesionSpec | str] | None = DEFAULT_LESIONS,
    seed: int = 0,
    tile_size: int = 512,
    jpeg_quality: int = 85,
    control: JobControl = NO_CONTROL,
    workers: int | None = None,
    tumour_morphology: str = "ductal",
) -> PhantomResult:
    """Write a phantom lymph-node slide and its ground truth; return what was written.

    ``width`` x ``height`` level-0 pixels at ``mpp`` micrometres per pixel; ``lesions`` as
    ``"macro:3.0,micro:0.8,itc:0.15"`` (diameters in mm) or ``LesionSpec`` values, empty for
    a negative node. ``control`` gets one stage, "Writing phantom tiles", counted in level-0 tiles, and
    is checked for cancellation after each row of tiles (``Cancelled``; no file is left). ``workers`` (default:
    one per CPU for large slides, none for small ones) render tile rows in parallel.
    ``tumour_morphology``: "ductal" (default) or "lobular" (small crowded cells with scant
    cytoplasm; see ``PhantomLayout``), for a set of slides unlike the default phantoms.
    Same arguments give byte-identical files. Raises ``PhantomSpecError`` for a bad
    request (including lesions that do not fit) and ``HistoViewerError`` when the files
    cannot be written.
    """
    start = time.perf_counter()
    width = _check_int("width", width, MIN_SIDE_PX, MAX_SIDE_PX)
    height = _check_int("height", height, MIN_SIDE_PX, MAX_SIDE_PX)
    tile_size = _check_int("tile size", tile_size, 128, 4096)
    if tile_size % 16:
        raise PhantomSpecError(f"tile size must be a multiple of 16, got {tile_size}")
    jpeg_quality = _check_int("JPEG quality", jpeg_quality, 1, 100)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or not MIN_MPP <= mpp <= MAX_MPP:
        raise PhantomSpecError(
            f"mpp must be between {MIN_MPP} and {MAX_MPP} um/px (100x to 2.5x), got {mpp!r}"
        )
    mpp = float(mpp)
    specs = parse_lesion_specs(lesions)
    out = Path(out_path)
    if not out.parent.is_dir():
        raise PhantomSpecError(f"{out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise PhantomSpecError(f"{out} is a folder; give a file name such as phantom.tiff")

    if tumour_morphology not in TUMOUR_MORPHOLOGIES:
        raise PhantomSpecError(f"tumour morphology must be one of {', '.join(TUMOUR_MORPHOLOGIES)}, "
                               f"got {tumour_morphology!r}", setting="tumour_morphology")
    layout = build_layout(width, height, mpp, specs, seed, tumour_morphology)
    measured = _measure(layout)

    n_cols = math.ceil(width / tile_size)
    n_rows = math.ceil(height / tile_size)
    total = n_cols * n_rows
    n_workers = _default_workers(total) if workers is None else max(1, int(workers))
    if n_workers == 1:
        rows = _rows_in_process(layout, tile_size, jpeg_quality, n_rows)
    else:
        rows = _rows_parallel(layout, tile_size, jpeg_quality, n_rows, n_workers)

    stage = control.stage("Writing phantom tiles", total)

    def on_row(_i: int) -> None:
        stage.update(n_cols)
        control.check("phantom")

    clean_stale_partials(out.parent)
    partial = partial_path(out)  # PID-named (core.atomic): cleaned by a later write if this process dies
    glass = TileRenderer.glass_rgb()
    try:
        dims = write_pyramidal_tiff(
            partial, rows, width=width, height=height, tile_size=tile_size,
            jpeg_quality=jpeg_quality, mpp=mpp, pad_rgb=glass,
            description=phantom_description(width, height, mpp, seed),
            software="HistoViewer phantom", on_row=on_row,
        )
        os.replace(partial, out)
    except OSError as exc:
        raise write_error(out, exc, "could not write the phantom slide") from exc
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        if partial.exists():
            partial.unlink()

    try:
        paths = write_ground_truth(out, measured, width=width, height=height, mpp=mpp, seed=seed)
    except OSError as exc:
        raise write_error(out, exc, "could not write the ground-truth files") from exc
    return PhantomResult(
        slide_path=out,
        geojson_path=paths.geojson,
        xml_path=paths.xml,
        lesions_json_path=paths.lesions_json,
        width=width,
        height=height,
        mpp=mpp,
        lesions=measured,
        seconds=time.perf_counter() - start,
        seed=seed,
        tile_size=tile_size,
        level_dimensions=dims,
        file_bytes=out.stat().st_size,
    )
