"""The lymph nodes of a phantom: irregular ovals with capsule, hilum, fat and follicles.

Small slides hold one node; a CAMELYON-sized slide (25 x 50 mm) holds two or three, each
of a realistic 8-15 mm, as a sentinel-node slide often does. Positions are level-0 pixels
(``l0_``), depths and thicknesses micrometres (``_um``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from histoviewer.core.phantom.procedural import value_noise
from histoviewer.core.units import l0_px_to_mm

__all__ = [
    "CAPSULE_MAX_UM",
    "NodeSet",
    "NodeShape",
    "SINUS_UM",
    "make_follicles",
    "make_nodes",
]

NODE_AREA_FRACTION = 0.27  # of the slide; the perinodal fat brings tissue to ~30 %
CAPSULE_MEAN_UM = 38.0
CAPSULE_VAR_UM = 14.0
CAPSULE_MAX_UM = CAPSULE_MEAN_UM + CAPSULE_VAR_UM
SINUS_UM = 22.0  # subcapsular sinus just inside the capsule
WOBBLE_UM = 35.0  # small-scale irregularity of the outline
WOBBLE_CELL_UM = 260.0
FAR_UM = 1.0e5  # "no node anywhere near": deeper into the glass than any fat reaches
NEAR_MARGIN_UM = 4000.0  # beyond this from a node's box, that node cannot matter


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
    hilum_angle: float  # direction of the hilum (medulla) from the centre, ellipse frame
    mpp: float
    seed: int

    @property
    def l0_bbox(self) -> tuple[float, float, float, float]:
        r = 1.3 * max(self.l0_a, self.l0_b)
        return self.l0_cx - r, self.l0_cy - r, self.l0_cx + r, self.l0_cy + r

    def _frame(self, l0_x: np.ndarray, l0_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx = np.asarray(l0_x, dtype=np.float64) - self.l0_cx
        dy = np.asarray(l0_y, dtype=np.float64) - self.l0_cy
        return (dx * c + dy * s) / self.l0_a, (-dx * s + dy * c) / self.l0_b

    def signed_distance_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the outline in micrometres, positive inside.

        First-order (value divided by gradient norm): exact on the outline, a smooth
        monotone depth measure further in.
        """
        ux, uy = self._frame(l0_x, l0_y)
        rho = np.hypot(ux, uy)
        theta = np.arctan2(uy, ux)
        f = np.ones_like(rho)
        df = np.zeros_like(rho)
        for k, (amp, phase) in enumerate(self.harmonics, start=2):
            f += amp * np.cos(k * theta + phase)
            df -= amp * k * np.sin(k * theta + phase)
        g = f - rho
        # Gradient of g with respect to level-0 (x, y), taken where the ray through the
        # point meets the outline (rho = f): exact there and, unlike the gradient at the
        # point itself, finite at the centre. rho and theta live in the scaled, rotated
        # frame u = diag(1/a, 1/b) R^T (p - c).
        c, s = math.cos(self.angle), math.sin(self.angle)
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        gx_frame = (df * (-sin_t / f) - cos_t) / self.l0_a
        gy_frame = (df * (cos_t / f) - sin_t) / self.l0_b
        grad = np.maximum(np.hypot(gx_frame * c - gy_frame * s, gx_frame * s + gy_frame * c), 1e-12)
        wobble = value_noise(l0_x, l0_y, WOBBLE_CELL_UM / self.mpp, self.seed, salt=101)
        return g / grad * self.mpp + WOBBLE_UM * wobble

    def fat_depth_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """How far the perinodal fat reaches out from the outline at this angle (um, >= 0)."""
        ux, uy = self._frame(l0_x, l0_y)
        theta = np.arctan2(uy, ux)
        h = np.full_like(theta, self.fat_offset)
        for k, (amp, phase) in enumerate(self.fat_harmonics, start=1):
            h += amp * np.cos(k * theta + phase)
        return self.fat_max_um * np.clip(h, 0.0, 1.0)

    def medulla_weight(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """0..1: how much a point belongs to the medulla, the region around the hilum."""
        ux, uy = self._frame(l0_x, l0_y)
        hx, hy = 0.55 * math.cos(self.hilum_angle), 0.55 * math.sin(self.hilum_angle)
        d = np.hypot(ux - hx, uy - hy)
        t = np.clip((0.8 - d) / 0.35, 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True, eq=False)
class NodeSet:
    """All nodes of a slide, seen as one tissue: fields at a point come from the node that
    point lies deepest in (or closest to)."""

    nodes: tuple[NodeShape, ...]
    mpp: float
    seed: int

    def _near(self, l0_x: np.ndarray, l0_y: np.ndarray) -> list[NodeShape]:
        """Nodes whose box, grown by ``NEAR_MARGIN_UM``, overlaps the points' box."""
        x = np.asarray(l0_x)
        y = np.asarray(l0_y)
        if x.size == 0:
            return []
        m = NEAR_MARGIN_UM / self.mpp
        x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
        return [
            n for n in self.nodes
            if n.l0_bbox[0] - m < x1 and n.l0_bbox[2] + m > x0
            and n.l0_bbox[1] - m < y1 and n.l0_bbox[3] + m > y0
        ]

    def _pick(self, l0_x, l0_y) -> tuple[np.ndarray, np.ndarray, list[NodeShape]]:
        """Signed distance to the union of nodes, and which near node gives it."""
        near = self._near(l0_x, l0_y)
        shape = np.shape(l0_x)
        if not near:
            return np.full(shape, -FAR_UM), np.zeros(shape, np.int64), near
        sds = np.stack([n.signed_distance_um(l0_x, l0_y) for n in near])
        which = np.argmax(sds, axis=0)
        return np.take_along_axis(sds, which[None], axis=0)[0], which, near

    def signed_distance_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Signed distance (um) to the nearest node outline, positive inside a node."""
        return self._pick(l0_x, l0_y)[0]

    def _per_node(self, method: str, l0_x, l0_y) -> np.ndarray:
        _, which, near = self._pick(l0_x, l0_y)
        out = np.zeros(np.shape(l0_x))
        for i, n in enumerate(near):
            sel = which == i
            if np.any(sel):
                out[sel] = getattr(n, method)(np.asarray(l0_x)[sel], np.asarray(l0_y)[sel])
        return out

    def fat_depth_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """How far (um) the fat of the nearest node reaches out from its outline."""
        return self._per_node("fat_depth_um", l0_x, l0_y)

    def medulla_weight(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        return self._per_node("medulla_weight", l0_x, l0_y)

    def capsule_um(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Local capsule thickness in micrometres."""
        n = value_noise(l0_x, l0_y, 400.0 / self.mpp, self.seed, salt=102)
        return CAPSULE_MEAN_UM + CAPSULE_VAR_UM * n


def _node_count(width_mm: float, height_mm: float) -> int:
    long_mm, short_mm = max(width_mm, height_mm), min(width_mm, height_mm)
    if long_mm < 30.0:
        return 1
    return int(min(3, max(2, round(long_mm / short_mm) + 1)))


def make_nodes(width: int, height: int, mpp: float, seed: int, rng: np.random.Generator) -> NodeSet:
    """One node per cell along the slide's long side, each ~27 % of its cell, major axis
    roughly along the cell's long side, with room for perinodal fat around it."""
    n = _node_count(l0_px_to_mm(width, mpp), l0_px_to_mm(height, mpp))
    horizontal = width >= height
    cell_w = width / n if horizontal else width
    cell_h = height if horizontal else height / n
    sizes = rng.uniform(0.8, 1.2, n)
    sizes *= n / sizes.sum()
    nodes = []
    for i in range(n):
        ox = i * cell_w if horizontal else 0.0
        oy = 0.0 if horizontal else i * cell_h
        long_px, short_px = max(cell_w, cell_h), min(cell_w, cell_h)
        area = NODE_AREA_FRACTION * sizes[i] * cell_w * cell_h
        q = float(np.clip(long_px / short_px, 1.1, 1.6) * rng.uniform(0.9, 1.1))
        a = math.sqrt(area * q / math.pi)
        b = a / q
        # Keep the outline (up to ~1.25 semi-axes out) inside its cell.
        shrink = min(1.0, 0.45 * long_px / (1.25 * a), 0.45 * short_px / (1.25 * b))
        a, b = a * shrink, b * shrink
        along_x = cell_w >= cell_h
        angle = (0.0 if along_x else 0.5 * math.pi) + float(rng.uniform(-0.3, 0.3))
        room_um = max(0.0, min(0.5 * long_px - 1.2 * a, 0.5 * short_px - 1.2 * b)) * mpp
        nodes.append(
            NodeShape(
                l0_cx=ox + 0.5 * cell_w * (1 + rng.uniform(-0.04, 0.04)),
                l0_cy=oy + 0.5 * cell_h * (1 + rng.uniform(-0.04, 0.04)),
                l0_a=a,
                l0_b=b,
                angle=angle,
                harmonics=tuple(
                    (float(rng.uniform(0.02, 0.07) / (k - 1) ** 0.6), float(rng.uniform(0, 2 * math.pi)))
                    for k in range(2, 7)
                ),
                fat_harmonics=tuple(
                    (float(rng.uniform(0.25, 0.5) / k), float(rng.uniform(0, 2 * math.pi)))
                    for k in range(1, 4)
                ),
                fat_offset=float(rng.uniform(0.05, 0.25)),
                fat_max_um=float(min(1500.0, 0.8 * room_um, 0.5 * b * mpp)),
                hilum_angle=float(rng.uniform(0, 2 * math.pi)),
                mpp=mpp,
                seed=seed + 7919 * i,
            )
        )
    return NodeSet(tuple(nodes), mpp, seed)


def make_follicles(tissue: NodeSet, rng: np.random.Generator) -> np.ndarray:
    """Lymphoid follicles ``(F, 3)``: level-0 x, y, radius. Round, in the outer cortex of
    each node (not at the hilum), not overlapping each other."""
    mpp = tissue.mpp
    out: list[tuple[float, float, float]] = []
    for node in tissue.nodes:
        minor_um = min(node.l0_a, node.l0_b) * mpp
        if minor_um < 600.0:
            continue
        r_max_um = min(320.0, 0.18 * minor_um)
        n_cand = 60000
        cx = rng.uniform(node.l0_cx - 1.3 * node.l0_a, node.l0_cx + 1.3 * node.l0_a, n_cand)
        cy = rng.uniform(node.l0_cy - 1.3 * node.l0_b, node.l0_cy + 1.3 * node.l0_b, n_cand)
        r_um = rng.uniform(0.55 * r_max_um, r_max_um, n_cand)
        sd = node.signed_distance_um(cx, cy)
        top = CAPSULE_MAX_UM + SINUS_UM + 25.0
        ok = (sd > top + r_um) & (sd < top + r_um + 0.7 * r_max_um)
        ok &= node.medulla_weight(cx, cy) < 0.05
        cx, cy, r_px = cx[ok], cy[ok], r_um[ok] / mpp
        target = int(min(600, math.pi * (node.l0_a + node.l0_b) * mpp / (3.2 * r_max_um)))
        gap_px = 40.0 / mpp
        chosen: list[tuple[float, float, float]] = []
        acc = np.zeros((0, 3))
        for x, y, r in zip(cx, cy, r_px):
            if len(chosen) >= target:
                break
            if len(acc) and np.any(np.hypot(acc[:, 0] - x, acc[:, 1] - y) < acc[:, 2] + r + gap_px):
                continue
            chosen.append((float(x), float(y), float(r)))
            acc = np.array(chosen)
        out.extend(chosen)
    return np.array(out) if out else np.zeros((0, 3))
