"""Probability maps of phantom lymph nodes, synthesised without rendering or a CNN.

Training and evaluating a node classifier needs hundreds of nodes with known labels;
rendering each phantom slide and running the CNN over it costs seconds to minutes per node.
Here the phantom's *layout* (``layout.build_layout``: the same nodes and lesion outlines a
rendered phantom has, seconds faster) is turned straight into the map a patch classifier of
the default CNN's geometry (96 px patches at 0.972 um/px, no overlap) would plausibly give:

- tissue cells: cell centres inside a node or its perinodal fat; the rest is background (-1);
- for each tissue cell, ``window`` = the fraction of the patch's central third (the
  PatchCamelyon label window) that is tumour, and ``patch`` = the fraction of the whole
  patch, both from 6 x 6 sample points on the lesion outlines;
- the probability is ``sigmoid(bias + gain * min(1, 1.5 * window + 0.5 * patch) + noise)``
  with ``bias``, ``gain`` and the per-cell noise's spread drawn per slide (``MapNoise``), so
  slides differ in how confident and how noisy the model is; a cell without tumour gets
  ``sigmoid(bias + noise)``: the occasional lone false-positive speck comes from the noise;
- ``MapNoise.specks``: extra false-positive specks (1-3 cells, probability 0.5-0.95), half of
  them in lymphoid follicles (what a CNN most often mistakes for tumour): a *noisy* map.

This is a model of a CNN's map, not a CNN's map: ``docs/benchmarks.md`` says so wherever
its numbers appear. The truth is the phantom's: the node label is the size class of its
largest lesion (maximum Feret diameter of the outline, as the phantom's truth files state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.phantom.layout import PhantomLayout, build_layout
from histoviewer.core.phantom.spec import parse_lesion_specs
from histoviewer.core.staging_terms import NodeLabel, classify_diameter_mm

__all__ = [
    "DEFAULT_MODEL_MPP",
    "DEFAULT_PATCH_PX",
    "MapNoise",
    "PhantomNodeMap",
    "synthesise_node_map",
]

DEFAULT_MODEL_MPP = 0.972  # the default CNN's input (PatchCamelyon, 10x)
DEFAULT_PATCH_PX = 96
_SAMPLES = 6  # sample points per side of a window / patch


@dataclass(frozen=True)
class MapNoise:
    """How the synthetic model behaves on one slide: logit ``bias`` of a tumour-free cell,
    ``gain`` from no tumour to a full window, the per-cell logit noise's standard deviation,
    and ``specks`` extra false-positive regions."""

    bias: float = -4.5
    gain: float = 10.0
    cell_sd: float = 0.8
    specks: int = 0

    @classmethod
    def draw(cls, rng: np.random.Generator, *, noisy: bool) -> MapNoise:
        return cls(
            bias=float(rng.uniform(-5.5, -3.5)),
            gain=float(rng.uniform(7.0, 12.0)),
            cell_sd=float(rng.uniform(0.5, 1.2)),
            specks=int(rng.integers(2, 20)) if noisy else 0,
        )


@dataclass(frozen=True, eq=False)
class PhantomNodeMap:
    """One synthesised map: ``encoded`` as ``analyze`` writes it (probabilities, -1
    background), its ``geometry``, the true node label and largest true diameter (mm)."""

    encoded: np.ndarray
    geometry: GridGeometry
    truth: NodeLabel
    largest_true_mm: float | None
    noise: MapNoise

    @property
    def frame(self) -> MapFrame:
        return MapFrame.from_geometry(self.geometry)


def _fractions(
    layout: PhantomLayout, geometry: GridGeometry, cells_xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(window, patch) tumour fractions of the patches whose top-left corners are ``cells_xy``."""
    n = len(cells_xy)
    window, patch = np.zeros(n), np.zeros(n)
    if not layout.lesions or n == 0:
        return window, patch
    side = geometry.l0_patch
    offs = (np.arange(_SAMPLES) + 0.5) / _SAMPLES
    grid_x, grid_y = np.meshgrid(offs, offs)
    for shape in layout.lesions:
        x0, y0, x1, y1 = shape.l0_bbox
        near = (
            (cells_xy[:, 0] + side >= x0)
            & (cells_xy[:, 0] <= x1)
            & (cells_xy[:, 1] + side >= y0)
            & (cells_xy[:, 1] <= y1)
        )
        idx = np.flatnonzero(near)
        if len(idx) == 0:
            continue
        for frac, lo, span in ((window, 1.0 / 3.0, 1.0 / 3.0), (patch, 0.0, 1.0)):
            xs = cells_xy[idx, 0:1] + side * (lo + span * grid_x.ravel())[None]
            ys = cells_xy[idx, 1:2] + side * (lo + span * grid_y.ravel())[None]
            inside = (
                shape.contains(xs.ravel(), ys.ravel()).reshape(xs.shape).mean(axis=1)
            )
            frac[idx] = np.minimum(1.0, frac[idx] + inside)  # lesions do not overlap
    return window, patch


def synthesise_node_map(
    width: int,
    height: int,
    mpp: float,
    lesions: str,
    seed: int,
    noise: MapNoise,
    *,
    model_mpp: float = DEFAULT_MODEL_MPP,
    patch_px: int = DEFAULT_PATCH_PX,
) -> PhantomNodeMap:
    """The map of the phantom ``write_phantom(width, height, mpp, lesions, seed)`` would
    show (same layout), as the module docstring models it; ``noise`` decides the model's
    behaviour. Deterministic in ``seed`` and ``noise``."""
    specs = parse_lesion_specs(lesions)
    layout = build_layout(width, height, mpp, specs, seed)
    geometry = GridGeometry.for_slide((width, height), mpp, model_mpp, patch_px)
    rows, cols = geometry.shape
    rr, cc = np.mgrid[0:rows, 0:cols]
    l0_x = geometry.l0_origin_x + cc.ravel() * geometry.l0_stride
    l0_y = geometry.l0_origin_y + rr.ravel() * geometry.l0_stride
    centre_x, centre_y = l0_x + geometry.l0_patch / 2, l0_y + geometry.l0_patch / 2
    sd_um = layout.tissue.signed_distance_um(centre_x, centre_y)
    tissue = sd_um > -layout.tissue.fat_depth_um(centre_x, centre_y)
    rng = np.random.default_rng([int(seed), 0x4D4150])
    window, patch = _fractions(layout, geometry, np.column_stack([l0_x, l0_y]))
    response = np.minimum(1.0, 1.5 * window + 0.5 * patch)
    logit = (
        noise.bias
        + noise.gain * response
        + rng.normal(0.0, noise.cell_sd, response.shape)
    )
    prob = 1.0 / (1.0 + np.exp(-logit))
    if noise.specks:
        tissue_idx = np.flatnonzero(tissue & (response == 0))
        foll = layout.follicles
        for k in range(noise.specks):
            if (
                len(foll) and k % 2 == 0
            ):  # in a follicle: lymphoid tissue a CNN mistakes for tumour
                fx, fy, _r = foll[rng.integers(len(foll))]
                cell = int(
                    (fy - geometry.l0_origin_y) // geometry.l0_stride
                ) * cols + int((fx - geometry.l0_origin_x) // geometry.l0_stride)
                if (
                    not (0 <= cell < rows * cols)
                    or not tissue[cell]
                    or response[cell] > 0
                ):
                    continue
            elif len(tissue_idx):
                cell = int(tissue_idx[rng.integers(len(tissue_idx))])
            else:
                break
            r0, c0 = divmod(cell, cols)
            for _ in range(int(rng.integers(1, 4))):  # 1-3 cells, a random walk
                if (
                    0 <= r0 < rows
                    and 0 <= c0 < cols
                    and tissue[r0 * cols + c0]
                    and response[r0 * cols + c0] == 0
                ):
                    prob[r0 * cols + c0] = max(
                        prob[r0 * cols + c0], rng.uniform(0.5, 0.95)
                    )
                r0 += int(rng.integers(-1, 2))
                c0 += int(rng.integers(-1, 2))
    encoded = np.where(tissue, prob, -1.0).reshape(rows, cols).astype(np.float32)
    diameters = [shape.diameter_um(mpp) / 1000.0 for shape in layout.lesions]
    largest = max(diameters, default=None)
    truth = (
        NodeLabel.NEGATIVE
        if largest is None
        else NodeLabel(classify_diameter_mm(largest).value)
    )
    return PhantomNodeMap(encoded, geometry, truth, largest, noise)
