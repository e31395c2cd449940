"""How many tiles the screened full pass decodes, simulated exactly, for audit-lattice and
tile-cache variants (issue 15: the pass is bound by level-2 JPEG decodes).

    python benchmarks/sim_screened_decodes.py [SLIDE ...]   # default: the CAMELYON-size phantom

For each slide: the tissue, the shipped screen's scores and the full model's probability of
every tissue patch (an exhaustive pass), then the screened pass's rounds (the selection and
the audit lattice; the margin grown to its closure, as ``screening.grow_cells`` grows it) are
replayed through the cutter's own reads (``RegionCutter.read_timed`` on a recording source, so
every region is the one analyze reads) and the tiles each read decodes
(``TiffRegionSource.tiles_in``) through a least-recently-used cache of analyze's size, with or
without the margin hold (``margin_hold.margin_hold_tiles``). One reader in job order: the real
pass's two readers interleave a little, so real counts run ~2-4 % above these.

Variants:
- ``lattice``: today's audit lattice (``screening.audit_lattice``);
- ``snapped``: a tile-aware lattice, kept here as the measured alternative: its rows and
  columns moved to cells whose read lies inside one tile, with no two lines more than the
  step apart (so every step x step window of cells still holds an audit cell) and the step
  shrunk until it has at least today's count.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

DEFAULT = Path("/tmp/histoviewer-bench/phantom-100k-200k.tiff")


class Recording:
    """A region source that records each read's level rectangle and returns white pixels."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int, int, int, int]] = []

    def read_region(self, l0_x, l0_y, level, lv_width, lv_height):
        self.reads.append((l0_x, l0_y, level, lv_width, lv_height))
        return np.full((lv_height, lv_width, 3), 255, np.uint8)


def lattice_lines(n: int, step: int, fits: np.ndarray) -> np.ndarray:
    """Indices 0..n-1 with no window of ``step`` consecutive ones empty, each the last index
    whose read fits one tile within reach of the previous line (else the farthest one)."""
    out, last = [], -1
    while last < n - step or not out:
        hi = min(last + step, n - 1)
        fitting = np.flatnonzero(fits[last + 1 : hi + 1])
        last = last + 1 + int(fitting[-1]) if fitting.size else hi
        out.append(last)
    return np.asarray(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slides", nargs="*", type=Path, default=[DEFAULT])
    args = ap.parse_args()

    from histoviewer.core.analysis.threshold import choose_lesion_params
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.inference.grid import DOMAIN_SAMPLE_TARGET, PredictionGrid
    from histoviewer.core.inference.margin_hold import (
        MARGIN_HOLD_BYTES,
        margin_hold_tiles,
    )
    from histoviewer.core.inference.pipeline import classify_cells
    from histoviewer.core.inference.regions import RegionCutter, RegionJob, plan_regions
    from histoviewer.core.inference.screening import (
        AUDIT_MIN,
        AUDIT_SHARE,
        FULL_PASS_BLOCK,
        GROW_SHARE,
        audit_lattice,
        dilate_8,
        run_screen,
        select_for_full_model,
    )
    from histoviewer.core.inference.tiff_regions import (
        TILE_CACHE_BYTES,
        TiffRegionSource,
    )
    from histoviewer.core.inference.tissue import grid_tissue
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.models.screen_model import open_screen_model
    from histoviewer.core.slide import open_slide

    model = open_model("cnn", device="cpu")
    screen, settings = open_screen_model("screen", device="cpu")
    threshold = choose_lesion_params(None, model.info.operating_point).threshold
    totals: dict[str, collections.Counter] = collections.defaultdict(
        collections.Counter
    )

    def one_slide(path: Path) -> None:
        """Prints the variants' decodes on ``path`` and adds them to ``totals``."""
        with open_slide(path) as reader:
            info = reader.info
            geometry = GridGeometry.for_slide(
                info.dimensions, info.mpp, model.input.mpp, model.input.patch_px
            )
            fast = TiffRegionSource.open(path, reader, TILE_CACHE_BYTES)
            tissue = grid_tissue(reader, geometry)
            screened = run_screen(reader, geometry, tissue, screen, source=fast)
            selected = select_for_full_model(screened, tissue, settings)
            full = PredictionGrid(geometry, tissue)
            full.domain_sample[...] = False
            classify_cells(
                full,
                RegionCutter(reader, geometry, source=fast),
                model,
                full.pending(),
                read_threads=2,
                model_threads=None,
            )
            probability = np.where(tissue, np.nan_to_num(full.values, nan=0.0), 0.0)
            recording = Recording()
            cutter = RegionCutter(reader, geometry, source=recording)
            tile_w, tile_h, _, _ = fast.tile_grid(cutter.level)
            per_cache = TILE_CACHE_BYTES // (tile_w * tile_h * 3)

            def tiles_of(cells: np.ndarray) -> list[list[int]]:
                out = []
                for job in plan_regions(geometry, cells, FULL_PASS_BLOCK):
                    recording.reads.clear()
                    cutter.read_timed(job)
                    ((x, y, level, w, h),) = recording.reads
                    ds = info.level_downsamples[level]
                    lv_x, lv_y = int(np.floor(x / ds)), int(np.floor(y / ds))
                    out.append(fast.tiles_in(level, lv_x, lv_y, lv_x + w, lv_y + h))
                return out

            def rounds(lattice: np.ndarray) -> list[np.ndarray]:
                done = (selected | lattice) & tissue
                out = [np.flatnonzero(done.reshape(-1))]
                while True:  # the margin's closure (grow_cells, round after round)
                    more = (
                        dilate_8(
                            done & (probability >= GROW_SHARE * threshold),
                            settings.margin_patches,
                        )
                        & tissue
                        & ~done
                    )
                    if not more.any():
                        return out
                    out.append(np.flatnonzero(more.reshape(-1)))
                    done |= more

            def decodes(
                lattice: np.ndarray, hold: list[int]
            ) -> tuple[int, int, list[int]]:
                lru: collections.OrderedDict[int, None] = collections.OrderedDict()
                held, distinct, per_round, total = set(hold), set(), [], 0
                kept: set[int] = set()
                for cells in rounds(lattice):
                    start = total
                    for tiles in tiles_of(cells):
                        for t in tiles:
                            distinct.add(t)
                            if t in kept:
                                continue
                            if t in lru:
                                lru.move_to_end(t)
                                continue
                            total += 1
                            if t in held:
                                kept.add(t)
                                continue
                            lru[t] = None
                            while len(lru) > per_cache:
                                lru.popitem(last=False)
                    per_round.append(total - start)
                return total, len(distinct), per_round

            def fits(axis: int, count: int, size: int, tile: int) -> np.ndarray:
                """Per row (axis 0) or column (axis 1) of cells: its one-cell read lies
                inside one tile along that axis."""
                out = np.zeros(count, bool)
                for i in range(count):
                    r, c = (i, 0) if axis == 0 else (0, i)
                    recording.reads.clear()
                    cutter.read_timed(
                        RegionJob(np.array([r * geometry.cols + c]), r, c, r, c)
                    )
                    ((x, y, level, w, h),) = recording.reads
                    ds = info.level_downsamples[level]
                    lo, n = (
                        (int(np.floor(y / ds)), h)
                        if axis == 0
                        else (int(np.floor(x / ds)), w)
                    )
                    out[i] = max(lo, 0) // tile == (min(lo + n, size) - 1) // tile
                return out

            _, _, image_w, image_h = fast.tile_grid(cutter.level)
            fit_rows = fits(0, geometry.rows, image_h, tile_h)
            fit_cols = fits(1, geometry.cols, image_w, tile_w)
            today = audit_lattice(tissue)
            n = int(
                tissue.sum()
            )  # today's step (audit_lattice -> domain_sample_lattice)
            target = min(DOMAIN_SAMPLE_TARGET, max(AUDIT_MIN, round(AUDIT_SHARE * n)))
            step = max(1, int(np.ceil(np.sqrt(n / target))))
            while True:
                snapped = np.zeros(tissue.shape, bool)
                snapped[
                    np.ix_(
                        lattice_lines(geometry.rows, step, fit_rows),
                        lattice_lines(geometry.cols, step, fit_cols),
                    )
                ] = True
                snapped &= tissue
                if snapped.sum() >= today.sum() or step == 1:
                    break
                step -= 1
            hold = margin_hold_tiles(
                fast,
                RegionCutter(reader, geometry, source=fast),
                screened.probability,
                tissue,
                settings.threshold,
                settings.margin_patches,
                MARGIN_HOLD_BYTES,
            )
            print(
                f"{path.name}: {int(tissue.sum())} tissue patches, {int(selected.sum())} flagged, "
                f"{per_cache}-tile cache, hold {len(hold)} tiles"
            )
            for name, lattice in (("lattice", today), ("snapped", snapped)):
                for policy, held in (("cache", []), ("cache+hold", hold)):
                    total, distinct, per_round = decodes(lattice, held)
                    row = totals[f"{name:<8} {policy}"]
                    row.update(
                        audit=int(lattice.sum()),
                        decodes=total,
                        distinct=distinct,
                        round1=per_round[0],
                        margin=sum(per_round[1:]),
                    )
                    print(
                        f"  {name:<8} ({int(lattice.sum())} audit cells) {policy:<10}: {total} decodes, "
                        f"{distinct} distinct tiles; per round {per_round}"
                    )
            fast.close()

    for path in args.slides:
        one_slide(path)
    if len(args.slides) > 1:
        print("all slides:")
        for key, row in totals.items():
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    model.close()
    screen.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
