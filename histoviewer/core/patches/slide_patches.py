"""Patches cut from slides on a grid over the tissue, labelled from polygon annotations.

Frames: ``l0_`` values are level-0 pixels of a slide (x right, y down). A patch of
``P = spec.patch_px`` px at ``spec.mpp`` covers ``l0_size = P * spec.mpp / slide_mpp``
level-0 px; the grid stride equals the patch size and starts at (0, 0).

Label rule (PatchCamelyon): 1 when the central ``P/3`` x ``P/3`` px (32 x 32 at 96 px)
overlaps a tumour polygon, else 0. Polygons are rasterised at one eighth of that central
side, so an overlap is detected to within one raster pixel. CAMELYON/ASAP groups ``_2`` and
"Exclusion"/"Normal" annotations are normal islands cut out of the tumour.

Reads: a region at the finest level whose downsample does not exceed the one needed,
resized to the model's scale (so a 40x slide read for a 10x model reads level 1 or 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon
from skimage.draw import line as draw_line

from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.annotations.shapes import Annotation
from histoviewer.core.errors import AnnotationFormatError, PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.base import PatchSet
from histoviewer.core.patches.resample import to_model_scale
from histoviewer.core.patches.tissue import slide_tissue_map
from histoviewer.core.slide import SlideReader, open_slide

__all__ = [
    "ANNOTATION_SUFFIXES",
    "SLIDE_SUFFIXES",
    "SlidePatchSet",
    "find_annotations",
    "list_slides",
    "open_slide_patches",
    "read_tumour_polygons",
]

SLIDE_SUFFIXES = frozenset(
    {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}
)
ANNOTATION_SUFFIXES = (".geojson", ".xml")  # sidecar search order: stem.geojson, then stem.xml
_EXCLUSION_NAMES = frozenset({"_2", "exclusion", "normal", "non-tumor", "non-tumour"})
_RASTER_PER_CENTRE = 8  # raster pixels across the central region
_MAX_RASTER_SIDE = 8192


def find_annotations(slide_path: Path) -> Path | None:
    """The sidecar annotation file ``stem.geojson`` or ``stem.xml`` beside a slide, if any."""
    for suffix in ANNOTATION_SUFFIXES:
        candidate = slide_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def list_slides(directory: Path) -> list[Path]:
    """Slide files directly in ``directory`` (by suffix), sorted."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES and not p.name.startswith(".")
    )


def _is_exclusion(ann: Annotation) -> bool:
    # GeoJSON classes and ASAP/CAMELYON16 groups both arrive as the class name.
    return (ann.class_name or "").lower() in _EXCLUSION_NAMES


def read_tumour_polygons(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(tumour, exclusion)`` polygons of an annotation file (GeoJSON, CAMELYON16 JSON or ASAP
    XML, read by ``annotations.files.load_annotations``) as ``(k, 2)`` level-0 (x, y) arrays;
    rectangles and ellipses as their outlines, holes as exclusions; detections (QuPath cells)
    are not annotations and are left out."""
    try:
        anns = [a for a in load_annotations(Path(path)).annotation_set.annotations if a.kind.is_area and a.is_region]
    except AnnotationFormatError as exc:
        raise PatchDataError(f"{exc} (annotations for patch labels)") from exc
    pos = [np.asarray(a.outline(), float) for a in anns if not _is_exclusion(a)]
    neg = [np.asarray(a.outline(), float) for a in anns if _is_exclusion(a)]
    neg += [np.asarray(h, float) for a in anns for h in a.l0_holes]  # CAMELYON16 _2 inside a tumour polygon
    return pos, neg


@dataclass(frozen=True)
class _TumourRaster:
    """Tumour mask: pixel ``(r, c)`` covers level-0 ``origin + (c, r) * l0_px`` .. ``+ l0_px``."""

    integral: np.ndarray  # (h + 1, w + 1) summed-area table of the mask
    l0_origin_x: float
    l0_origin_y: float
    l0_px: float

    @classmethod
    def build(cls, pos: list[np.ndarray], neg: list[np.ndarray], l0_px: float) -> _TumourRaster | None:
        if not pos:
            return None
        pts = np.concatenate(pos)
        x0, y0 = np.floor(pts.min(0)) - l0_px
        x1, y1 = np.ceil(pts.max(0)) + l0_px
        l0_px = max(l0_px, (x1 - x0) / _MAX_RASTER_SIDE, (y1 - y0) / _MAX_RASTER_SIDE)
        shape = (int(np.ceil((y1 - y0) / l0_px)) + 1, int(np.ceil((x1 - x0) / l0_px)) + 1)
        mask = np.zeros(shape, bool)

        def to_raster(poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # raster pixel k has its centre at origin + (k + 0.5) * l0_px
            return (poly[:, 1] - y0) / l0_px - 0.5, (poly[:, 0] - x0) / l0_px - 0.5

        for poly in pos:
            r, c = to_raster(poly)
            mask[fill_polygon(r, c, shape)] = True
            # the outline too, so lesions thinner than a raster pixel still count
            ri, ci = np.round(r).astype(int), np.round(c).astype(int)
            for k in range(len(ri)):  # vertices lie inside the raster (it spans the bbox + margin)
                mask[draw_line(ri[k - 1], ci[k - 1], ri[k], ci[k])] = True
        for poly in neg:
            r, c = to_raster(poly)
            mask[fill_polygon(r, c, shape)] = False
        integral = np.zeros((shape[0] + 1, shape[1] + 1), np.int64)
        integral[1:, 1:] = mask.cumsum(0).cumsum(1)
        return cls(integral, float(x0), float(y0), float(l0_px))

    def any_in(self, l0_x: np.ndarray, l0_y: np.ndarray, l0_size: float) -> np.ndarray:
        """Whether squares (top-left ``l0_x, l0_y``, side ``l0_size``) contain tumour pixels."""
        h, w = self.integral.shape[0] - 1, self.integral.shape[1] - 1
        c0 = np.clip(np.floor((l0_x - self.l0_origin_x) / self.l0_px), 0, w).astype(np.int64)
        r0 = np.clip(np.floor((l0_y - self.l0_origin_y) / self.l0_px), 0, h).astype(np.int64)
        c1 = np.clip(np.ceil((l0_x + l0_size - self.l0_origin_x) / self.l0_px), 0, w).astype(np.int64)
        r1 = np.clip(np.ceil((l0_y + l0_size - self.l0_origin_y) / self.l0_px), 0, h).astype(np.int64)
        ii = self.integral
        return (ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]) > 0


@dataclass
class _Slide:
    path: Path
    reader: SlideReader
    mpp: float  # level-0 um/px
    level: int
    lv_size: int  # side of a patch read at ``level``, in that level's px
    l0_size: float  # side of a patch in level-0 px


class SlidePatchSet(PatchSet):
    """Grid patches from several slides. ``groups`` is the slide index; ids ``stem:x_y`` (level-0 px).

    ``l0_xy`` is the ``(n, 2)`` level-0 top-left of each patch, whose side is
    ``slides[g].l0_size`` level-0 px; ``slide_mpps`` gives each slide's level-0 um/px.
    """

    layout = "slides"

    def __init__(
        self,
        slides: list[_Slide],
        spec: InputSpec,
        slide_index: np.ndarray,
        l0_xy: np.ndarray,
        labels: np.ndarray | None,
        description: str,
    ) -> None:
        super().__init__(spec)
        self.slides = slides
        self.groups = slide_index.astype(np.int32)
        self.l0_xy = l0_xy.astype(np.int64)
        self.labels = labels
        self.source_mpp = slides[0].mpp
        self.slide_mpps = tuple(s.mpp for s in slides)
        self.description = description
        self.ids = [
            f"{slides[g].path.stem}:{x}_{y}" for g, (x, y) in zip(self.groups.tolist(), self.l0_xy.tolist())
        ]

    def __len__(self) -> int:
        return len(self.groups)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        p = self.spec.patch_px
        out = np.empty((indices.size, p, p, 3), np.uint8)
        order = np.lexsort((self.l0_xy[indices, 0], self.l0_xy[indices, 1], self.groups[indices]))
        for g in np.unique(self.groups[indices]):
            ks = order[self.groups[indices[order]] == g]
            s = self.slides[int(g)]
            regions = [
                s.reader.read_region(int(x), int(y), s.level, s.lv_size, s.lv_size)
                for x, y in self.l0_xy[indices[ks]]
            ]
            # the read spans exactly P model px, whatever rounding did to lv_size
            out[ks] = to_model_scale(np.stack(regions), p * self.spec.mpp / s.lv_size, self.spec)
        return out

    def close(self) -> None:
        for s in self.slides:
            s.reader.close()


def _open_slide_entry(path: Path, spec: InputSpec, patch_mpp: float | None) -> _Slide:
    reader = open_slide(path)
    mpp = reader.info.mpp if patch_mpp is None else float(patch_mpp)
    if mpp is None:
        reader.close()
        raise PatchDataError(
            f"{path}: the slide does not state its microns per pixel, so the scale is unknown and "
            f"patches at {spec.mpp} um/px cannot be cut; give its level-0 um/px as the patch scale "
            "if you know it",
            setting="patch_mpp",
        )
    l0_size = spec.patch_px * spec.mpp / mpp
    level = reader.best_level_for_downsample(l0_size / spec.patch_px)
    lv_size = max(1, int(round(l0_size / reader.info.level_downsamples[level])))
    return _Slide(path, reader, mpp, level, lv_size, l0_size)


def _grid(
    s: _Slide, spec: InputSpec, min_tissue: float, annotations: Path | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Level-0 top-left ``(n, 2)`` of tissue patches and their labels (None without annotations)."""
    l0_w, l0_h = s.reader.info.dimensions
    cols, rows = int(l0_w // s.l0_size), int(l0_h // s.l0_size)
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    xy = np.stack([np.round(jj.ravel() * s.l0_size), np.round(ii.ravel() * s.l0_size)], axis=1)
    tissue = slide_tissue_map(s.reader, l0_px_per_mask_px=s.l0_size / 8)
    xy = xy[tissue.fractions(xy[:, 0], xy[:, 1], s.l0_size) >= min_tissue]
    if annotations is None:
        return xy, None
    centre_px = max(1, round(spec.patch_px / 3))  # 32 of 96, the PatchCamelyon centre
    l0_centre = centre_px * s.l0_size / spec.patch_px
    offset = (s.l0_size - l0_centre) / 2
    raster = _TumourRaster.build(*read_tumour_polygons(annotations), l0_centre / _RASTER_PER_CENTRE)
    if raster is None:
        return xy, np.zeros(len(xy), np.int8)
    return xy, raster.any_in(xy[:, 0] + offset, xy[:, 1] + offset, l0_centre).astype(np.int8)


def _cap(labels: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Indices kept under a per-slide cap: positives first (random if too many), then negatives."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    keep = rng.permutation(pos)[:cap]
    keep = np.concatenate([keep, rng.permutation(neg)[: cap - keep.size]])
    return np.sort(keep)


def open_slide_patches(
    path: Path,
    spec: InputSpec,
    *,
    annotations: Path | None = None,
    patch_mpp: float | None = None,
    min_tissue: float = 0.5,
    max_patches_per_slide: int | None = None,
    negative_ratio: float | None = None,
    seed: int = 0,
) -> SlidePatchSet:
    """Grid patches from one slide or a folder of slides, labelled from their annotations.

    ``annotations`` (one slide only) overrides the sidecar ``stem.geojson``/``stem.xml``.
    Patches with less than ``min_tissue`` tissue are skipped. ``max_patches_per_slide``
    keeps positives first; ``negative_ratio`` then keeps every positive and at most
    ``ratio x positives`` randomly chosen negatives over all slides (no effect when there
    are no positives). Sampling is deterministic given ``seed``. Without any annotations
    the set is unlabelled; some slides annotated and others not is an error.
    """
    path = Path(path)
    if path.is_dir():
        if annotations is not None:
            raise PatchDataError(
                f"{path}: an annotation file belongs to one slide; for a folder of slides "
                "put stem.geojson or stem.xml beside each slide",
                setting="annotations",
            )
        paths = list_slides(path)
        if not paths:
            raise PatchDataError(
                f"{path}: no slide files ({', '.join(sorted(SLIDE_SUFFIXES))}) in this folder"
            )
    elif path.is_file():
        paths = [path]
    else:
        raise PatchDataError(f"{path}: no such file or directory")
    ann_paths: list[Path | None] = (
        [Path(annotations)] if annotations is not None else [find_annotations(p) for p in paths]
    )
    if annotations is not None and not ann_paths[0].is_file():  # type: ignore[union-attr]
        raise PatchDataError(f"{annotations}: annotation file not found")
    missing = [p.name for p, a in zip(paths, ann_paths) if a is None]
    if missing and len(missing) < len(paths):
        raise PatchDataError(
            f"{path}: {len(missing)} slide(s) have no annotation file beside them ({', '.join(missing[:5])}); "
            "add stem.geojson or stem.xml to each (an empty FeatureCollection for a tumour-free slide)"
        )
    labelled = not missing
    if negative_ratio is not None and (not labelled or negative_ratio < 0):
        raise PatchDataError(
            f"{path}: a negative-patch ratio needs annotated slides and a ratio >= 0, got {negative_ratio}",
            setting="negative_ratio",
        )
    if max_patches_per_slide is not None and max_patches_per_slide < 1:
        raise PatchDataError(
            f"{path}: the patches per slide must be at least 1, got {max_patches_per_slide}",
            setting="max_patches_per_slide",
        )
    rng = np.random.default_rng(seed)
    slides: list[_Slide] = []
    xys, labs, gids = [], [], []
    try:
        for g, (p, ann) in enumerate(zip(paths, ann_paths)):
            s = _open_slide_entry(p, spec, patch_mpp)
            slides.append(s)
            xy, lab = _grid(s, spec, min_tissue, ann)
            lab = np.zeros(len(xy), np.int8) if lab is None else lab
            if max_patches_per_slide is not None and len(xy) > max_patches_per_slide:
                keep = _cap(lab, max_patches_per_slide, rng)
                xy, lab = xy[keep], lab[keep]
            xys.append(xy)
            labs.append(lab)
            gids.append(np.full(len(xy), g, np.int32))
    except BaseException:
        for s in slides:
            s.reader.close()
        raise
    xy, lab, gid = np.concatenate(xys), np.concatenate(labs), np.concatenate(gids)
    if negative_ratio is not None and (lab == 1).any():
        neg = np.flatnonzero(lab == 0)
        n_keep = min(neg.size, int(round(negative_ratio * int((lab == 1).sum()))))
        keep = np.sort(np.concatenate([np.flatnonzero(lab == 1), rng.choice(neg, n_keep, replace=False)]))
        xy, lab, gid = xy[keep], lab[keep], gid[keep]
    if len(xy) == 0:
        for s in slides:
            s.reader.close()
        raise PatchDataError(
            f"{path}: no patch has at least {min_tissue:.0%} tissue; is the slide blank or the scale wrong?"
        )
    names = ", ".join(p.name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
    counts = f"{int((lab == 1).sum())} tumour / {int((lab == 0).sum())} normal" if labelled else "unlabelled"
    description = (
        f"{len(xy)} patches from {len(paths)} slide(s) ({names}), {counts}, "
        f"{spec.patch_px} px at {spec.mpp} um/px"
    )
    return SlidePatchSet(slides, spec, gid, xy, lab if labelled else None, description)
