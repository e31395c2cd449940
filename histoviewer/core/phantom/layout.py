"""Where things are on a phantom slide: the nodes (see ``nodes``), follicles and lesions.

All positions are level-0 pixels (``l0_``), distances inside the tissue are micrometres
(``_um``) so that a phantom at 0.5 um/px has the same anatomy as one at 0.25 um/px. The
layout is small (a few hundred numbers) and picklable: worker processes get a copy and
render any tile from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from histoviewer.core.errors import PhantomSpecError
from histoviewer.core.geometry import max_feret_diameter, polygon_area, polygon_centroid
from histoviewer.core.phantom.nodes import CAPSULE_MAX_UM, NodeSet, make_follicles, make_nodes
from histoviewer.core.phantom.spec import LesionSpec
from histoviewer.core.units import l0_px_to_mm, mm_to_um

__all__ = [
    "LESION_CLEARANCE_UM",
    "TUMOUR_MORPHOLOGIES",
    "LesionShape",
    "PhantomLayout",
    "build_layout",
]

# Tumour cell patterns a phantom can draw (``PhantomLayout.tumour_morphology``).
TUMOUR_MORPHOLOGIES = ("ductal", "lobular")
LESION_CLEARANCE_UM = CAPSULE_MAX_UM + 12.0  # lesions sit in node parenchyma, not capsule
LESION_GAP_UM = 40.0


@dataclass(frozen=True, eq=False)
class LesionShape:
    """A metastasis outline: a polygon star-shaped around ``l0_star`` (level-0 px).

    Star-shaped means every ray from the star centre crosses the outline once, which makes
    the inside test exact and vectorised: the point is inside when it is closer to the
    centre than the outline is along the same ray.
    """

    name: str
    spec: LesionSpec
    l0_star_x: float
    l0_star_y: float
    l0_vertices: np.ndarray = field(repr=False)  # (n, 2) float64, open ring, by angle
    _angles: np.ndarray = field(repr=False)  # vertex angles around the star centre, sorted
    l0_r_in: float = 0.0  # the disc of this radius around the star centre is inside
    l0_r_out: float = 0.0  # everything beyond this radius is outside

    @property
    def l0_bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` bounding box in level-0 px."""
        v = self.l0_vertices
        return float(v[:, 0].min()), float(v[:, 1].min()), float(v[:, 0].max()), float(
            v[:, 1].max()
        )

    def contains(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Boolean mask: which points lie inside the outline (boundary points may go
        either way). Pixel ``(row, col)`` is inside when ``(col + 0.5, row + 0.5)`` is."""
        px = np.asarray(l0_x, dtype=np.float64) - self.l0_star_x
        py = np.asarray(l0_y, dtype=np.float64) - self.l0_star_y
        d2 = px * px + py * py
        out = d2 < self.l0_r_in**2
        ambiguous = ~out & (d2 <= self.l0_r_out**2)
        if ambiguous.all():
            return self._contains_exact(px, py)
        if ambiguous.any():
            out[ambiguous] = self._contains_exact(px[ambiguous], py[ambiguous])
        return out

    def _contains_exact(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        ang = np.arctan2(py, px)
        rel = self.l0_vertices - (self.l0_star_x, self.l0_star_y)
        n = len(rel)
        i = (np.searchsorted(self._angles, ang, side="right") - 1) % n
        j = (i + 1) % n
        ax, ay = rel[i, 0], rel[i, 1]
        ex, ey = rel[j, 0] - ax, rel[j, 1] - ay
        # Ray p = t * (px, py) / |p| meets the edge a + s e where t = cross(a, e) / cross(u, e);
        # compare without normalising: inside iff cross(p, e) * 1 < cross(a, e).
        cross_ae = ax * ey - ay * ex
        cross_pe = px * ey - py * ex
        return cross_pe < cross_ae

    def diameter_um(self, mpp: float) -> float:
        return max_feret_diameter(self.l0_vertices) * mpp

    def area_um2(self, mpp: float) -> float:
        return polygon_area(self.l0_vertices) * mpp * mpp

    def centroid(self) -> tuple[float, float]:
        return polygon_centroid(self.l0_vertices)


@dataclass(frozen=True, eq=False)
class PhantomLayout:
    """Everything that decides what a phantom shows, in level-0 px and micrometres."""

    width: int
    height: int
    mpp: float
    seed: int
    tissue: NodeSet
    follicles: np.ndarray = field(repr=False)  # (F, 3): l0_x, l0_y, l0_radius
    lesions: tuple[LesionShape, ...] = ()
    # How the metastases look (``TUMOUR_MORPHOLOGIES``): "ductal" (default; cohesive sheets of
    # large pleomorphic cells with abundant pink cytoplasm) or "lobular" (small uniform cells with
    # scant cytoplasm, crowded like the lymphocytes around them: the pattern that is easy to miss).
    tumour_morphology: str = "ductal"


def _lesion_outline(spec: LesionSpec, mpp: float, rng: np.random.Generator) -> np.ndarray:
    """A compact, irregular, star-shaped outline around (0, 0), scaled so that its maximum
    Feret diameter is the requested one. Returns ``(n, 2)`` level-0 px offsets."""
    d_um = mm_to_um(spec.diameter_mm)
    # A vertex every ~6 um: smooth at 40x, where straight segments would look drawn.
    n = int(np.clip(round(math.pi * d_um / 6.0), 32, 2400))
    theta = np.linspace(0.0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 2 * math.pi)
    r = np.ones(n)
    for k in range(2, 8):
        r += rng.uniform(0.0, 0.11) / (k - 1) ** 0.7 * np.cos(k * theta + rng.uniform(0, 6.3))
    # Cell-scale bumps (~25 um): a cohesive tumour edge is knobbly, not a smooth curve.
    n_bumps = max(6, int(math.pi * d_um / 25.0))
    knots = rng.uniform(-1.0, 1.0, n_bumps)
    pos = theta / (2 * math.pi) * n_bumps
    i0 = np.floor(pos).astype(int) % n_bumps
    t = pos - np.floor(pos)
    t = t * t * (3 - 2 * t)
    bumps = knots[i0] * (1 - t) + knots[(i0 + 1) % n_bumps] * t
    r += bumps * min(0.06, 5.0 / (0.5 * d_um))
    r = np.maximum(r, 0.55)
    squash = rng.uniform(0.7, 1.0)
    rot = rng.uniform(0, math.pi)
    x, y = r * np.cos(theta), squash * r * np.sin(theta)
    c, s = math.cos(rot), math.sin(rot)
    pts = np.column_stack([x * c - y * s, x * s + y * c])
    pts *= (d_um / mpp) / max_feret_diameter(pts)
    return pts


def _place_lesions(
    tissue: NodeSet, specs: tuple[LesionSpec, ...], width: int, height: int,
    rng: np.random.Generator,
) -> tuple[LesionShape, ...]:
    mpp = tissue.mpp
    counts: dict[str, int] = {}
    names: list[str] = []
    for spec in specs:
        counts[spec.kind.value] = counts.get(spec.kind.value, 0) + 1
        names.append(f"{spec.kind.value}-{counts[spec.kind.value]}")
    outlines = [_lesion_outline(s, mpp, rng) for s in specs]
    order = sorted(range(len(specs)), key=lambda i: -specs[i].diameter_mm)
    # A node is at most ~min(a, b) deep: a lesion wider than twice the usable depth can
    # never fit, so say so at once instead of after thousands of tries.
    depth_um = max(
        float(n.signed_distance_um(n.l0_cx, n.l0_cy)) for n in tissue.nodes
    ) - LESION_CLEARANCE_UM
    too_big = [i for i in order if 0.5 * mm_to_um(specs[i].diameter_mm) * 0.55 > depth_um]
    attempts = 0 if too_big else 25
    # Random placement can paint itself into a corner (a big lesion in the middle of a
    # small node); start over a few times before calling the request impossible.
    failed = too_big[0] if too_big else 0
    for _attempt in range(attempts):
        placed, failed = _try_place(tissue, specs, names, outlines, order, rng)
        if placed is not None:
            return placed
    spec = specs[failed]
    sizes = ", ".join(
        f"{l0_px_to_mm(2 * n.l0_a, mpp):.2f} x {l0_px_to_mm(2 * n.l0_b, mpp):.2f} mm" for n in tissue.nodes
    )
    others = len(specs) - 1
    raise PhantomSpecError(
        f"lesion {spec} ({spec.diameter_mm:g} mm across) does not fit in the node tissue of "
        f"a {width} x {height} px slide at {mpp:g} um/px (node size: {sizes}"
        + (f"; it must also hold {others} other lesion(s)" if others else "")
        + "): make the slide larger or the lesions fewer or smaller",
        setting="size",
    )


def _candidates(tissue: NodeSet, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random points in the nodes' boxes, each node chosen in proportion to its area."""
    areas = np.array([nd.l0_a * nd.l0_b for nd in tissue.nodes])
    which = rng.choice(len(areas), size=n, p=areas / areas.sum())
    out = np.empty((n, 2))
    for i, nd in enumerate(tissue.nodes):
        sel = which == i
        k = int(sel.sum())
        r = 1.2 * max(nd.l0_a, nd.l0_b)
        out[sel, 0] = rng.uniform(nd.l0_cx - r, nd.l0_cx + r, k)
        out[sel, 1] = rng.uniform(nd.l0_cy - r, nd.l0_cy + r, k)
    return out


def _try_place(
    tissue: NodeSet, specs: tuple[LesionSpec, ...], names: list[str],
    outlines: list[np.ndarray], order: list[int], rng: np.random.Generator,
) -> tuple[tuple[LesionShape, ...] | None, int]:
    """One placement attempt: ``(lesions, -1)`` or ``(None, index of the one that failed)``."""
    mpp = tissue.mpp
    placed: dict[int, LesionShape] = {}
    gap_px = LESION_GAP_UM / mpp
    for i in order:
        pts = outlines[i]
        # Midpoints too, so that no edge can cut through the capsule between two vertices.
        dense = np.vstack([pts, 0.5 * (pts + np.roll(pts, -1, axis=0))])
        r_i = float(np.hypot(pts[:, 0], pts[:, 1]).max())
        found = None
        for _batch in range(4):
            cand = _candidates(tissue, rng, 128)
            ok = np.ones(len(cand), bool)
            for p in placed.values():
                dist = np.hypot(cand[:, 0] - p.l0_star_x, cand[:, 1] - p.l0_star_y)
                ok &= dist >= r_i + p.l0_r_out + gap_px
            # Cheap first cut: the star centre itself must lie deep enough in a node.
            ok[ok] = tissue.signed_distance_um(cand[ok, 0], cand[ok, 1]) >= LESION_CLEARANCE_UM
            idx = np.flatnonzero(ok)
            if len(idx) == 0:
                continue
            xs = dense[None, :, 0] + cand[idx, 0:1]
            ys = dense[None, :, 1] + cand[idx, 1:2]
            good = tissue.signed_distance_um(xs, ys).min(axis=1) >= LESION_CLEARANCE_UM
            if good.any():
                j = idx[int(good.argmax())]
                found = (float(cand[j, 0]), float(cand[j, 1]))
                break
        if found is None:
            return None, i
        placed[i] = _shape(names[i], specs[i], pts, found)
    return tuple(placed[i] for i in range(len(specs))), -1


def _shape(name: str, spec: LesionSpec, pts: np.ndarray, centre: tuple[float, float]) -> LesionShape:
    cx, cy = centre
    # Level-0 coordinates rounded to 0.01 px: what the truth files store is what is drawn.
    verts = np.round(pts + (cx, cy), 2)
    ang = np.arctan2(verts[:, 1] - cy, verts[:, 0] - cx)
    sort = np.argsort(ang)
    verts, ang = verts[sort], ang[sort]
    rel = verts - (cx, cy)
    edge = np.roll(rel, -1, axis=0) - rel
    # Distance from the star centre to each edge segment: the smallest is the radius of a
    # disc that lies inside the outline.
    t = np.clip(-(rel * edge).sum(1) / np.maximum((edge * edge).sum(1), 1e-12), 0, 1)
    r_in = float(np.hypot(*(rel + t[:, None] * edge).T).min())
    r_out = float(np.hypot(rel[:, 0], rel[:, 1]).max())
    return LesionShape(name, spec, cx, cy, verts, ang, 0.999 * r_in, 1.001 * r_out)


def build_layout(
    width: int, height: int, mpp: float, specs: tuple[LesionSpec, ...], seed: int,
    tumour_morphology: str = "ductal",
) -> PhantomLayout:
    """Deterministic layout for a slide of ``width`` x ``height`` level-0 px at ``mpp``.

    Raises ``PhantomSpecError`` when a lesion does not fit inside the node tissue.
    """
    seed_ = int(seed)  # SeedSequence takes any non-negative int: no bits dropped
    tissue = make_nodes(width, height, mpp, seed, np.random.default_rng([seed_, 0x5EED]))
    follicles = make_follicles(tissue, np.random.default_rng([seed_, 0xF011]))
    lesions = _place_lesions(tissue, specs, width, height, np.random.default_rng([seed_, 0x1E5]))
    return PhantomLayout(width, height, mpp, seed, tissue, follicles, lesions, tumour_morphology)
