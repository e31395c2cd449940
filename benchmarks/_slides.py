"""The slides the benchmarks read: the real CMU-1 region and a 40k x 40k phantom.

The phantom is written once into a cache folder by ``histoviewer.core.phantom.write_phantom``
and reused. ``write_standin`` makes a pyramidal JPEG TIFF of the same geometry with
tifffile, for when the phantom generator is unavailable; results on it are labelled.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

# ../shared/data beside the repository, as in tests/conftest.py
DEFAULT_SLIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
DEFAULT_PHANTOM = Path("/tmp/histoviewer-bench/phantom-40k.tiff")
PHANTOM_SIDE = 40_000
PHANTOM_MPP = 0.25


@dataclasses.dataclass(frozen=True)
class BenchSlide:
    """A slide to benchmark. ``kind``: "real", "phantom" or "stand-in"."""

    label: str
    path: Path
    kind: str

    def to_dict(self) -> dict:
        from histoviewer.core.slide import open_slide

        with open_slide(self.path) as reader:
            info = reader.info
        return {"label": self.label, "path": str(self.path), "kind": self.kind, "vendor": info.vendor,
                "file_mib": round(self.path.stat().st_size / 2**20, 1), "mpp": info.mpp,
                "level_dimensions": [list(d) for d in info.level_dimensions]}


def ensure_phantom(path: Path, side: int = PHANTOM_SIDE, allow_standin: bool = False) -> BenchSlide:
    """The cached phantom at ``path``, written with ``write_phantom`` when missing.

    With ``allow_standin`` and no usable generator, a tifffile stand-in is written next to
    it instead (``<stem>-standin.tiff``) and labelled as such.
    """
    label = f"phantom {side // 1000}k"
    if path.exists():
        return BenchSlide(label, path, "phantom")
    try:
        from histoviewer.core.phantom import write_phantom
        from histoviewer.core.progress import JobControl
    except ImportError as exc:
        if not allow_standin:
            raise SystemExit(
                f"{path}: missing, and histoviewer.core.phantom.write_phantom is unavailable ({exc}); "
                "pass --standin to benchmark a tifffile stand-in, or --phantom PATH to an existing file"
            ) from exc
        standin = path.with_name(f"{path.stem}-standin.tiff")
        if not standin.exists():
            write_standin(standin, side, side)
        return BenchSlide(f"stand-in {side // 1000}k", standin, "stand-in")
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing phantom {side}x{side} to {path} (once; reused afterwards) ...", flush=True)
    shown = [0]

    def progress(_stage: str, done: int, total: int, _detail: str) -> None:
        if done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            print(f"  {10 * shown[0]}%", flush=True)

    # write_phantom writes to a partial file and renames it, so a killed run leaves no
    # half-written slide behind to be benchmarked next time.
    result = write_phantom(path, width=side, height=side, mpp=PHANTOM_MPP,
                           control=JobControl(progress=progress))
    print(f"  done in {result.seconds:.0f} s", flush=True)
    return BenchSlide(label, path, "phantom")


def _standin_tiles(lv_w: int, lv_h: int, ds: int, tile: int, rng: np.random.Generator):
    """Textured tissue-coloured tiles (so JPEG sizes are realistic), row by row."""
    grain = rng.integers(0, 24, (tile, tile, 3), dtype=np.uint8)
    for lv_y in range(0, lv_h, tile):
        for lv_x in range(0, lv_w, tile):
            yy, xx = np.mgrid[lv_y : lv_y + tile, lv_x : lv_x + tile].astype(np.float32) * ds
            v = (np.sin(xx / 310.0) * np.cos(yy / 170.0) + np.sin((xx + yy) / 53.0) * 0.3) * 45 + 175
            out = np.empty((tile, tile, 3), np.uint8)
            out[..., 0] = np.clip(v + 20, 0, 255)
            out[..., 1] = np.clip(v - 60, 0, 255)
            out[..., 2] = np.clip(v + 5, 0, 255)
            yield out ^ np.roll(grain, (lv_y // tile) % tile, axis=0)


def write_standin(path: Path, width: int, height: int, mpp: float = PHANTOM_MPP, tile: int = 512) -> None:
    """A generic pyramidal TIFF: tiled ``tile`` px, JPEG q90, levels /2 down to <= 1024 px."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.tiff")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    print(f"writing stand-in {width}x{height} to {path} ...", flush=True)
    px_per_cm = 1e4 / mpp
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        lv_w, lv_h, ds = width, height, 1
        while True:
            tw.write(
                _standin_tiles(lv_w, lv_h, ds, tile, rng), shape=(lv_h, lv_w, 3), dtype=np.uint8,
                tile=(tile, tile), compression="jpeg", compressionargs={"level": 90}, photometric="rgb",
                resolution=(px_per_cm / ds, px_per_cm / ds), resolutionunit="CENTIMETER",
                subfiletype=0 if ds == 1 else 1,
            )
            if max(lv_w, lv_h) <= 1024:
                break
            lv_w, lv_h, ds = (lv_w + 1) // 2, (lv_h + 1) // 2, ds * 2
    tmp.replace(path)
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
