"""Patches from the labelled regions of slides: what a pathologist's corrections teach.

A slide reviewed in the viewer carries labels of two kinds, both in level-0 px:

- review decisions on the AI's hotspots (``annotations.review``): an accepted lesion is
  tumour (1), a rejected one is not tumour (0), an unsure one gives no label;
- the pathologist's own annotations: a region of a tumour class (``AnnotationClass.is_tumour``:
  "Tumor", CAMELYON ``_0``/``_1``) is tumour, a region of a normal class ("Normal",
  "Not tumor", CAMELYON ``_2``, "Exclusion") is not; other classes ("Suspect", "Other") and
  detections (cells) give no label.

Unlike the ``slides`` layout (every tissue patch of a fully annotated slide, negative unless
inside tumour), only patches inside a labelled region are used: the rest of a reviewed slide
was not looked at, so it is not known to be normal. A patch takes a region's label when at
least half of its central square (a third of the patch, PatchCamelyon's centre) lies in the
region; a patch in regions of both labels (a rejected hotspot over a tumour annotation) is
left out as contradictory. Patches are cut on a grid of half a patch so that small regions
(a rejected hotspot of a few patches) still give some.

Groups (for the train / valid / test cut, ``split.three_way_split``) are regions, large
regions cut into blocks of ``BLOCK_PATCHES`` x ``BLOCK_PATCHES`` patches, so that overlapping
neighbours never sit on both sides of the cut and one big normal region is not one lump.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon

from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.annotations.model import AnnotationSet
from histoviewer.core.annotations.review import review_labels
from histoviewer.core.annotations.store import load_autosave
from histoviewer.core.errors import AnnotationFormatError, PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.base import PatchSet
from histoviewer.core.patches.resample import to_model_scale
from histoviewer.core.patches.slide_patches import (
    _open_slide_entry,
    _Slide,
    find_annotations,
)
from histoviewer.core.patches.tissue import slide_tissue_map

__all__ = [
    "BLOCK_PATCHES",
    "NORMAL_CLASS_NAMES",
    "LabelledRegion",
    "RegionPatchSet",
    "SlideLabels",
    "open_region_patches",
    "slide_labels",
]

# Class names (lower case) whose regions are normal tissue: ours, QuPath's, CAMELYON's.
NORMAL_CLASS_NAMES = frozenset({"normal", "not tumor", "not tumour", "non-tumor", "non-tumour", "_2",
                                "exclusion", "negative", "benign"})
BLOCK_PATCHES = 4  # a region's patches are grouped in blocks of this many patches a side
_CENTRE_SHARE = 0.5  # of the central square inside a region for the patch to take its label
_RASTER_PX_PER_CENTRE = 4  # raster pixels across a patch's central square


@dataclass(frozen=True)
class LabelledRegion:
    """One labelled outline (level-0 px, open ring) and where its label comes from.

    ``origin``: "accepted hotspot", "rejected hotspot", "tumour annotation" or "normal
    annotation"; ``ref``: the hotspot id or the annotation's uid.
    """

    l0_polygon: tuple[tuple[float, float], ...]
    label: int
    origin: str
    ref: str


@dataclass(frozen=True)
class SlideLabels:
    """A slide and its labelled regions; ``source``: the file the labels were read from."""

    slide: Path
    source: Path
    regions: tuple[LabelledRegion, ...] = field(default=())

    @property
    def n_tumour(self) -> int:
        return sum(r.label == 1 for r in self.regions)

    @property
    def n_normal(self) -> int:
        return sum(r.label == 0 for r in self.regions)

    def to_dict(self) -> dict[str, object]:
        """What the fine-tuned model's header records of this slide."""
        return {
            "slide": str(self.slide), "labels_from": str(self.source),
            "regions": [{"origin": r.origin, "ref": r.ref, "label": r.label} for r in self.regions],
        }


def _regions_of(aset: AnnotationSet) -> list[LabelledRegion]:
    doc = AnnotationDocument.from_set(aset)
    out = [LabelledRegion(tuple(poly), lab, "accepted hotspot" if lab == 1 else "rejected hotspot",
                          d.hotspot_id)
           for (poly, lab), d in zip(review_labels(doc), [d for d in doc.decisions()
                                                          if d.training_label is not None], strict=True)]
    for ann in doc.annotations():
        if not (ann.is_region and ann.kind.is_area):
            continue
        cls = doc.class_named(ann.class_name)
        if cls is not None and cls.is_tumour:
            out.append(LabelledRegion(tuple(ann.outline()), 1, "tumour annotation", ann.uid))
        elif (ann.class_name or "").strip().lower() in NORMAL_CLASS_NAMES:
            out.append(LabelledRegion(tuple(ann.outline()), 0, "normal annotation", ann.uid))
    return out


def slide_labels(slide: str | os.PathLike[str], annotations: str | os.PathLike[str] | None = None) -> SlideLabels:
    """The labelled regions of ``slide``: from ``annotations`` when given, else the viewer's
    autosave of the slide (``annotations.store``), else a ``stem.geojson``/``stem.xml`` beside
    it. ``PatchDataError`` names the slide when none of them holds a label."""
    slide = Path(slide)
    source: Path | None
    if annotations is not None:
        source = Path(annotations)
        try:
            aset = load_annotations(source).annotation_set
        except AnnotationFormatError as exc:
            raise PatchDataError(f"{exc} (labels for {slide.name})") from exc
    else:
        try:
            recovery = load_autosave(slide)
        except AnnotationFormatError as exc:
            raise PatchDataError(f"{exc} (labels for {slide.name})") from exc
        if recovery is not None:
            source, aset = recovery.path, recovery.annotation_set
        else:
            source = find_annotations(slide)
            if source is None:
                raise PatchDataError(
                    f"{slide}: no labels: the slide has no saved annotations or review decisions "
                    f"(nothing beside it or in the annotations store); review its hotspots or draw "
                    "tumour/normal regions first", setting="annotations")
            try:
                aset = load_annotations(source).annotation_set
            except AnnotationFormatError as exc:
                raise PatchDataError(f"{exc} (labels for {slide.name})") from exc
    regions = tuple(_regions_of(aset))
    if not regions:
        raise PatchDataError(
            f"{slide}: no labels in {source}: no accepted or rejected hotspot and no tumour or normal "
            "region (unsure decisions and other classes give no label)", setting="annotations")
    return SlideLabels(slide, source, regions)


class RegionPatchSet(PatchSet):
    """Patches inside labelled regions of several slides (module doc). Ids ``stem:x_y``
    (level-0 top-left); ``slide_index`` says which slide each patch is read from; ``groups``
    are region blocks (for the split), ``region_refs`` what each group came from."""

    layout = "slides"

    def __init__(self, slides: list[_Slide], spec: InputSpec, slide_index: np.ndarray, l0_xy: np.ndarray,
                 labels: np.ndarray, groups: np.ndarray, description: str) -> None:
        super().__init__(spec)
        self.slides = slides
        self.slide_index = slide_index.astype(np.int32)
        self.l0_xy = l0_xy.astype(np.int64)
        self.labels = labels.astype(np.int8)
        self.groups = groups.astype(np.int32)
        self.source_mpp = slides[0].mpp
        self.slide_mpps = tuple(s.mpp for s in slides)
        self.description = description
        self.ids = [f"{slides[g].path.stem}:{x}_{y}"
                    for g, (x, y) in zip(self.slide_index.tolist(), self.l0_xy.tolist())]

    def __len__(self) -> int:
        return len(self.labels)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        p = self.spec.patch_px
        out = np.empty((indices.size, p, p, 3), np.uint8)
        for g in np.unique(self.slide_index[indices]):
            ks = np.flatnonzero(self.slide_index[indices] == g)
            s = self.slides[int(g)]
            regions = [s.reader.read_region(int(x), int(y), s.level, s.lv_size, s.lv_size)
                       for x, y in self.l0_xy[indices[ks]]]
            out[ks] = to_model_scale(np.stack(regions), p * self.spec.mpp / s.lv_size, self.spec)
        return out

    def close(self) -> None:
        for s in self.slides:
            s.reader.close()


def _region_share(poly: np.ndarray, xy: np.ndarray, l0_offset: float, l0_centre: float) -> np.ndarray:
    """Share (0..1) of each patch's central square (top-left ``xy + l0_offset``, side
    ``l0_centre``) inside the polygon, on a raster of ``_RASTER_PX_PER_CENTRE`` px per side."""
    px = l0_centre / _RASTER_PX_PER_CENTRE
    x0, y0 = poly.min(0) - l0_centre
    x1, y1 = poly.max(0) + l0_centre
    shape = (int(np.ceil((y1 - y0) / px)) + 2, int(np.ceil((x1 - x0) / px)) + 2)
    mask = np.zeros(shape, bool)
    mask[fill_polygon((poly[:, 1] - y0) / px - 0.5, (poly[:, 0] - x0) / px - 0.5, shape)] = True
    ii = np.zeros((shape[0] + 1, shape[1] + 1), np.int64)
    ii[1:, 1:] = mask.cumsum(0).cumsum(1)
    c0 = np.clip(np.round((xy[:, 0] + l0_offset - x0) / px), 0, shape[1]).astype(np.int64)
    r0 = np.clip(np.round((xy[:, 1] + l0_offset - y0) / px), 0, shape[0]).astype(np.int64)
    c1 = np.clip(c0 + _RASTER_PX_PER_CENTRE, 0, shape[1])
    r1 = np.clip(r0 + _RASTER_PX_PER_CENTRE, 0, shape[0])
    inside = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    return inside / float(_RASTER_PX_PER_CENTRE**2)


def _slide_patches(s: _Slide, labels: SlideLabels, spec: InputSpec, min_tissue: float,
                   group_base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(xy, labels, groups, group refs)`` of the labelled patches of one slide."""
    step = s.l0_size / 2  # half-patch grid: small regions still give a few patches
    centre = max(1, round(spec.patch_px / 3)) * s.l0_size / spec.patch_px
    offset = (s.l0_size - centre) / 2
    l0_w, l0_h = s.reader.info.dimensions
    tissue = slide_tissue_map(s.reader, l0_px_per_mask_px=s.l0_size / 8)
    per_label: dict[int, dict[tuple[int, int], tuple[int, int]]] = {0: {}, 1: {}}  # (i, j) -> (region, block)
    refs: list[str] = []
    for k, region in enumerate(labels.regions):
        poly = np.asarray(region.l0_polygon, float)
        x0, y0 = np.maximum(poly.min(0) - s.l0_size, 0)
        x1, y1 = poly.max(0)
        i = np.arange(int(x0 // step), int(min(x1, l0_w - s.l0_size) // step) + 1)
        j = np.arange(int(y0 // step), int(min(y1, l0_h - s.l0_size) // step) + 1)
        if i.size == 0 or j.size == 0:
            continue
        ii, jj = np.meshgrid(i, j)
        ii, jj = ii.ravel(), jj.ravel()
        xy = np.stack([ii * step, jj * step], axis=1)
        keep = _region_share(poly, xy, offset, centre) >= _CENTRE_SHARE
        refs.append(f"{labels.slide.name}: {region.origin} {region.ref}")
        for a, b in zip(ii[keep].tolist(), jj[keep].tolist()):
            block = (a // (2 * BLOCK_PATCHES)) * 100003 + b // (2 * BLOCK_PATCHES)
            per_label[region.label].setdefault((a, b), (len(refs) - 1, block))
    both = per_label[0].keys() & per_label[1].keys()  # contradictory: in regions of both labels
    keys = [(lab, key, reg) for lab in (0, 1) for key, reg in per_label[lab].items() if key not in both]
    if not keys:
        return np.zeros((0, 2)), np.zeros(0, np.int8), np.zeros(0, np.int64), refs
    xy = np.array([[a * step, b * step] for _lab, (a, b), _reg in keys])
    lab = np.array([k[0] for k in keys], np.int8)
    block_ids: dict[tuple[int, int], int] = {}
    grp = np.array([group_base + block_ids.setdefault(reg, len(block_ids)) for _l, _k, reg in keys], np.int64)
    ok = tissue.fractions(xy[:, 0], xy[:, 1], s.l0_size) >= min_tissue
    return np.round(xy[ok]), lab[ok], grp[ok], refs


def open_region_patches(labelled: Sequence[SlideLabels], spec: InputSpec, *, min_tissue: float = 0.5,
                        max_patches_per_class: int | None = None, seed: int = 0) -> RegionPatchSet:
    """Patches at ``spec``'s scale from the labelled regions of ``labelled`` slides.

    ``max_patches_per_class`` (per slide) keeps a seeded random sample of each label. Raises
    ``PatchDataError`` naming the slide when a slide's regions hold no tissue patch, or when
    all the slides together give only one label.
    """
    if not labelled:
        raise PatchDataError("no slides to take labelled patches from")
    rng = np.random.default_rng(seed)
    slides: list[_Slide] = []
    xys, labs, grps, sids = [], [], [], []
    try:
        for g, sl in enumerate(labelled):
            s = _open_slide_entry(sl.slide, spec, None)
            slides.append(s)
            base = int(max((int(x.max()) + 1 for x in grps if x.size), default=0))
            xy, lab, grp, _refs = _slide_patches(s, sl, spec, min_tissue, base)
            if xy.size == 0:
                raise PatchDataError(
                    f"{sl.slide}: its {len(sl.regions)} labelled region(s) hold no tissue patch of "
                    f"{spec.patch_px} px at {spec.mpp} um/px (regions too small, or off the tissue)")
            if max_patches_per_class is not None:
                keep = np.concatenate([rng.permutation(np.flatnonzero(lab == c))[:max_patches_per_class]
                                       for c in (0, 1)])
                keep.sort()
                xy, lab, grp = xy[keep], lab[keep], grp[keep]
            xys.append(xy)
            labs.append(lab)
            grps.append(grp)
            sids.append(np.full(len(xy), g, np.int32))
    except BaseException:
        for s in slides:
            s.reader.close()
        raise
    lab = np.concatenate(labs)
    if lab.min() == lab.max():
        for s in slides:
            s.reader.close()
        which = "tumour" if lab[0] == 1 else "normal"
        raise PatchDataError(
            f"the labelled regions of {', '.join(sl.slide.name for sl in labelled)} are all {which}: "
            "learning needs both tumour (accepted hotspots, tumour regions) and normal (rejected "
            "hotspots, normal regions)", setting="annotations")
    names = ", ".join(sl.slide.name for sl in labelled[:3]) + (", ..." if len(labelled) > 3 else "")
    n_dec = sum(r.origin.endswith("hotspot") for sl in labelled for r in sl.regions)
    n_ann = sum(r.origin.endswith("annotation") for sl in labelled for r in sl.regions)
    description = (f"{len(lab)} patches from the labelled regions of {len(labelled)} slide(s) ({names}): "
                   f"{int((lab == 1).sum())} tumour / {int((lab == 0).sum())} normal, from {n_dec} review "
                   f"decision(s) and {n_ann} annotation(s), {spec.patch_px} px at {spec.mpp} um/px")
    return RegionPatchSet(slides, spec, np.concatenate(sids), np.concatenate(xys), lab,
                          np.concatenate(grps), description)
