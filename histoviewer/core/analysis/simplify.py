"""Douglas-Peucker simplification of a lesion outline, as scikit-image computes it.

``approximate_polygon`` is scikit-image's ``skimage.measure.approximate_polygon`` (0.26,
BSD-3-Clause, Copyright the scikit-image team), step for step, so outlines are the same to
the bit. Why not call it: its module imports ``scipy.signal`` (for another function), which
costs 0.45-0.95 s of every ``analyze`` and ``lesions`` run on 2 cores, for work that takes
milliseconds. ``tests/core/test_simplify.py`` checks it against scikit-image's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["approximate_polygon"]


def approximate_polygon(coords: np.ndarray, tolerance: float) -> np.ndarray:
    """``coords`` ((K, 2) array) with the vertices dropped that lie within ``tolerance`` of
    the simplified chain (Douglas-Peucker); the first and last vertex always stay. A
    tolerance of 0 or less returns ``coords`` itself. Units: those of ``coords``."""
    if tolerance <= 0:
        return coords
    chain = np.zeros(coords.shape[0], "bool")
    dists = np.zeros(coords.shape[0])  # distance of each vertex to its current segment
    chain[0] = True
    chain[-1] = True
    pos_stack = [(0, chain.shape[0] - 1)]
    while pos_stack:
        start, end = pos_stack.pop()
        r0, c0 = coords[start, :]
        r1, c1 = coords[end, :]
        dr = r1 - r0
        dc = c1 - c0
        segment_angle = -np.arctan2(dr, dc)
        segment_dist = c0 * np.sin(segment_angle) + r0 * np.cos(segment_angle)
        segment_coords = coords[start + 1 : end, :]
        segment_dists = dists[start + 1 : end]
        # perpendicular distance where the vertex projects inside the segment, else the
        # distance to the nearer end
        dr0 = segment_coords[:, 0] - r0
        dc0 = segment_coords[:, 1] - c0
        dr1 = segment_coords[:, 0] - r1
        dc1 = segment_coords[:, 1] - c1
        projected_lengths0 = dr0 * dr + dc0 * dc
        projected_lengths1 = -dr1 * dr - dc1 * dc
        perp = np.logical_and(projected_lengths0 > 0, projected_lengths1 > 0)
        eucl = np.logical_not(perp)
        segment_dists[perp] = np.abs(
            segment_coords[perp, 0] * np.cos(segment_angle)
            + segment_coords[perp, 1] * np.sin(segment_angle)
            - segment_dist
        )
        segment_dists[eucl] = np.minimum(
            np.sqrt(dc0[eucl] ** 2 + dr0[eucl] ** 2),
            np.sqrt(dc1[eucl] ** 2 + dr1[eucl] ** 2),
        )
        if np.any(segment_dists > tolerance):
            # split at the vertex farthest from the segment
            new_end = start + np.argmax(segment_dists) + 1
            pos_stack.append((new_end, end))
            pos_stack.append((start, new_end))
            chain[new_end] = True
    return coords[chain, :]
