"""Where things are on a phantom slide: the lymph node, its fat, follicles and lesions.

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
from histoviewer.core.phantom.procedural import value_noise
from histoviewer.core.phantom.spec import LesionSpec

__all__ = [
    "CAPSULE_MAX_UM",
    "LesionShape",
    "NodeShape",
    "PhantomLayout",
    "build_layout",
]

NODE_AREA_FRACTION = 0.27  # of the slide; the perinodal fat brings tissue to ~30 %
CAPSULE_MEAN_UM = 38.0
CAPSULE_VAR_UM = 14.0
CAPSULE_MAX_UM = CAPSULE_MEAN_UM + CAPSULE_VAR_UM
SINUS_UM = 22.0  # subcapsular sinus just inside the capsule
LESION_CLEARANCE_UM = CAPSULE_MAX_UM + 12.0  # lesions sit in node parenchyma, not capsule
LESION_GAP_UM = 40.0
WOBBLE_UM = 35.0  # small-scale irregularity of the node outline
WOBBLE_CELL_UM = 260.0


@dataclass(frozen=True, eq=False)
class NodeShape:
    """An irregular oval: ellipse (semi-axes ``l0_a``, ``l0_b``, rotated by ``angle``) whose
    radius is modulated by low harmonics of the polar angle and by value noise."""

    l0_cx: float
    l0_cy: float
    l0_a: float
    l0_b: float
    angle: float
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) for k = 2, 3, ...
    fat_harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) for k = 1, 2, ...
    fat_offset: float
    fat_max_um: float
    mpp: float
    seed: int

    def _frame(self, l0_x: np.ndarray, l0_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx = np.asarray(l0_x, dtype=np.float64) - self.l0_cx
        dy = np.asarray(l0_y, dtype=np.float64) - self.l0_cy
        return (dx * c + dy * s) / self.l0_a, (-dx * s + dy * c) / self.l0_b

    def polar_angle(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Angle (radians) of a point around the node centre, in the ellipse's frame."""
        ux, uy = self._frame(l0_x, l0_y)
        return np.arctan2(uy, ux)

    def signed_distance_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the node outline in micrometres, positive inside.

        First-order (value divided by gradient norm): exact on the outline, a smooth
        monotone depth measure further in.
        """
        ux, uy = self._frame(l0_x, l0_y)
        rho = np.maximum(np.hypot(ux, uy), 1e-9)
        theta = np.arctan2(uy, ux)
        f = np.ones_like(rho)
        df = np.zeros_like(rho)
        for k, (amp, phase) in enumerate(self.harmonics, start=2):
            f += amp * np.cos(k * theta + phase)
            df -= amp * k * np.sin(k * theta + phase)
        g = f - rho
        # Gradient of g with respect to level-0 (x, y), taken where the ray through the point
        # meets the outline (rho = f): exact at the outline and, unlike the gradient at the
        # point itself, finite at the centre. rho and theta live in the scaled, rotated frame
        # u = diag(1/a, 1/b) R^T (p - c).
        c, s = math.cos(self.angle), math.sin(self.angle)
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        gu_x = df * (-sin_t / f) - cos_t
        gu_y = df * (cos_t / f) - sin_t
        gx_frame = gu_x / self.l0_a
        gy_frame = gu_y / self.l0_b
        gx = gx_frame * c - gy_frame * s
        gy = gx_frame * s + gy_frame * c
        grad = np.maximum(np.hypot(gx, gy), 1e-12)
        sd_um = g / grad * self.mpp
        wobble = value_noise(l0_x, l0_y, WOBBLE_CELL_UM / self.mpp, self.seed, salt=101)
        return sd_um + WOBBLE_UM * wobble

    def fat_depth_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """How far the perinodal fat reaches out from the outline at this angle (um, >= 0)."""
        theta = self.polar_angle(l0_x, l0_y)
        h = np.full_like(theta, self.fat_offset)
        for k, (amp, phase) in enumerate(self.fat_harmonics, start=1):
            h += amp * np.cos(k * theta + phase)
        return self.fat_max_um * np.clip(h, 0.0, 1.0)

    def capsule_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Local capsule thickness in micrometres."""
        n = value_noise(l0_x, l0_y, 400.0 / self.mpp, self.seed, salt=102)
        return CAPSULE_MEAN_UM + CAPSULE_VAR_UM * n


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
    node: NodeShape
    follicles: np.ndarray = field(repr=False)  # (F, 3): l0_x, l0_y, l0_radius
    lesions: tuple[LesionShape, ...] = ()


def _make_node(width: int, height: int, mpp: float, seed: int, rng: np.random.Generator) -> NodeShape:
    k = math.sqrt(NODE_AREA_FRACTION / math.pi)
    aspect = rng.uniform(0.9, 1.1)
    l0_a = 0.5 * width * 2 * k * aspect
    l0_b = 0.5 * height * 2 * k / aspect
    harmonics = tuple(
        (float(rng.uniform(0.02, 0.07) / (kk - 1) ** 0.6), float(rng.uniform(0, 2 * math.pi)))
        for kk in range(2, 7)
    )
    fat_harmonics = tuple(
        (float(rng.uniform(0.25, 0.5) / kk), float(rng.uniform(0, 2 * math.pi)))
        for kk in range(1, 4)
    )
    # Fat must stay on the slide: the outline reaches at most ~1.2 semi-axes from the centre.
    room_um = max(0.0, min(0.5 * width - 1.2 * l0_a, 0.5 * height - 1.2 * l0_b)) * mpp
    fat_depth = float(min(1500.0, 0.8 * room_um, 0.5 * min(l0_a, l0_b) * mpp))
    return NodeShape(
        l0_cx=0.5 * width * (1 + rng.uniform(-0.02, 0.02)),
        l0_cy=0.5 * height * (1 + rng.uniform(-0.02, 0.02)),
        l0_a=l0_a,
        l0_b=l0_b,
        angle=float(rng.uniform(-0.15, 0.15)),
        harmonics=harmonics,
        fat_harmonics=fat_harmonics,
        fat_offset=float(rng.uniform(0.05, 0.25)),
        fat_max_um=fat_depth,
        mpp=mpp,
        seed=seed,
    )


def _make_follicles(node: NodeShape, rng: np.random.Generator) -> np.ndarray:
    """Lymphoid follicles: round, in the outer cortex, not overlapping each other."""
    mpp = node.mpp
    minor_um = min(node.l0_a, node.l0_b) * mpp
    if minor_um < 600.0:
        return np.zeros((0, 3))
    r_max_um = min(320.0, 0.18 * minor_um)
    r_min_um = 0.55 * r_max_um
    n_cand = 60000
    cx = rng.uniform(node.l0_cx - 1.3 * node.l0_a, node.l0_cx + 1.3 * node.l0_a, n_cand)
    cy = rng.uniform(node.l0_cy - 1.3 * node.l0_b, node.l0_cy + 1.3 * node.l0_b, n_cand)
    r_um = rng.uniform(r_min_um, r_max_um, n_cand)
    sd = node.signed_distance_um(cx, cy)
    top = CAPSULE_MAX_UM + SINUS_UM + 25.0
    ok = (sd > top + r_um) & (sd < top + r_um + 0.7 * r_max_um)
    cx, cy, r_um = cx[ok], cy[ok], r_um[ok]
    perimeter_um = math.pi * (node.l0_a + node.l0_b) * mpp
    target = int(min(600, perimeter_um / (3.2 * r_max_um)))
    chosen: list[tuple[float, float, float]] = []
    gap_px = 40.0 / mpp
    acc = np.zeros((0, 3))
    for x, y, r in zip(cx, cy, r_um / mpp):
        if len(chosen) >= target:
            break
        if len(acc) and np.any(np.hypot(acc[:, 0] - x, acc[:, 1] - y) < acc[:, 2] + r + gap_px):
            continue
        chosen.append((float(x), float(y), float(r)))
        acc = np.array(chosen)
    return acc


def _lesion_outline(spec: LesionSpec, mpp: float, rng: np.random.Generator) -> np.ndarray:
    """A compact, irregular, star-shaped outline around (0, 0), scaled so that its maximum
    Feret diameter is the requested one. Returns ``(n, 2)`` level-0 px offsets."""
    d_um = spec.diameter_mm * 1000.0
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
    node: NodeShape, specs: tuple[LesionSpec, ...], width: int, height: int, rng: np.random.Generator
) -> tuple[LesionShape, ...]:
    mpp = node.mpp
    counts: dict[str, int] = {}
    names: list[str] = []
    for spec in specs:
        counts[spec.kind.value] = counts.get(spec.kind.value, 0) + 1
        names.append(f"{spec.kind.value}-{counts[spec.kind.value]}")
    outlines = [_lesion_outline(s, mpp, rng) for s in specs]
    order = sorted(range(len(specs)), key=lambda i: -specs[i].diameter_mm)
    # The node is at most ~min(a, b) deep: a lesion wider than twice the usable depth can
    # never fit, so say so at once instead of after thousands of tries.
    depth_um = float(node.signed_distance_um(node.l0_cx, node.l0_cy)) - LESION_CLEARANCE_UM
    too_big = [i for i in order if 0.5 * specs[i].diameter_mm * 1000.0 * 0.55 > depth_um]
    attempts = 0 if too_big else 25
    # Random placement can paint itself into a corner (a big lesion in the middle of a
    # small node); start over a few times before calling the request impossible.
    failed = too_big[0] if too_big else 0
    for _attempt in range(attempts):
        placed, failed = _try_place(node, specs, names, outlines, order, rng)
        if placed is not None:
            return placed
    spec = specs[failed]
    node_mm = (2 * node.l0_a * mpp / 1000.0, 2 * node.l0_b * mpp / 1000.0)
    others = len(specs) - 1
    raise PhantomSpecError(
        f"lesion {spec} ({spec.diameter_mm:g} mm across) does not fit in the node tissue of "
        f"a {width} x {height} px slide at {mpp:g} um/px (the node is about "
        f"{node_mm[0]:.2f} x {node_mm[1]:.2f} mm"
        + (f" and must also hold {others} other lesion(s)" if others else "")
        + "): use a larger --width/--height or fewer/smaller lesions"
    )


def _try_place(
    node: NodeShape, specs: tuple[LesionSpec, ...], names: list[str], outlines: list[np.ndarray],
    order: list[int], rng: np.random.Generator,
) -> tuple[tuple[LesionShape, ...] | None, int]:
    """One placement attempt: ``(lesions, -1)`` or ``(None, index of the one that failed)``."""
    mpp = node.mpp
    placed: dict[int, LesionShape] = {}
    gap_px = LESION_GAP_UM / mpp
    for i in order:
        pts = outlines[i]
        # Midpoints too, so that no edge can cut through the capsule between two vertices.
        dense = np.vstack([pts, 0.5 * (pts + np.roll(pts, -1, axis=0))])
        r_i = float(np.hypot(pts[:, 0], pts[:, 1]).max())
        found = None
        for _batch in range(4):
            cand = np.column_stack([
                rng.uniform(node.l0_cx - 1.2 * node.l0_a, node.l0_cx + 1.2 * node.l0_a, 128),
                rng.uniform(node.l0_cy - 1.2 * node.l0_b, node.l0_cy + 1.2 * node.l0_b, 128),
            ])
            ok = np.ones(len(cand), bool)
            for p in placed.values():
                dist = np.hypot(cand[:, 0] - p.l0_star_x, cand[:, 1] - p.l0_star_y)
                ok &= dist >= r_i + p.l0_r_out + gap_px
            # Cheap first cut: the star centre itself must lie deep enough in the node.
            ok[ok] = node.signed_distance_um(cand[ok, 0], cand[ok, 1]) >= LESION_CLEARANCE_UM
            idx = np.flatnonzero(ok)
            if len(idx) == 0:
                continue
            xs = dense[None, :, 0] + cand[idx, 0:1]
            ys = dense[None, :, 1] + cand[idx, 1:2]
            good = node.signed_distance_um(xs, ys).min(axis=1) >= LESION_CLEARANCE_UM
            if good.any():
                found = (float(cand[idx[good.argmax()], 0]), float(cand[idx[good.argmax()], 1]))
                break
        if found is None:
            return None, i
        cx, cy = found
        verts = np.round(pts + (cx, cy), 2)
        ang = np.arctan2(verts[:, 1] - cy, verts[:, 0] - cx)
        sort = np.argsort(ang)
        verts, ang = verts[sort], ang[sort]
        rel = verts - (cx, cy)
        edge = np.roll(rel, -1, axis=0) - rel
        # Distance from the star centre to each edge segment: the smallest is the radius
        # of a disc that lies inside the outline.
        t = np.clip(-(rel * edge).sum(1) / np.maximum((edge * edge).sum(1), 1e-12), 0, 1)
        r_in = float(np.hypot(*(rel + t[:, None] * edge).T).min())
        r_out = float(np.hypot(rel[:, 0], rel[:, 1]).max())
        placed[i] = LesionShape(names[i], specs[i], cx, cy, verts, ang,
                                0.999 * r_in, 1.001 * r_out)
    return tuple(placed[i] for i in range(len(specs))), -1


def build_layout(
    width: int, height: int, mpp: float, specs: tuple[LesionSpec, ...], seed: int
) -> PhantomLayout:
    """Deterministic layout for a slide of ``width`` x ``height`` level-0 px at ``mpp``.

    Raises ``PhantomSpecError`` when a lesion does not fit inside the node tissue.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED])
    node = _make_node(width, height, mpp, seed, rng)
    follicles = _make_follicles(node, np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xF011]))
    lesions = _place_lesions(
        node, specs, width, height, np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1E5])
    )
    return PhantomLayout(width, height, mpp, seed, node, follicles, lesions)
