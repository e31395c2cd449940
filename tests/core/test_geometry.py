"""Plane geometry: maximum Feret diameter, hull, area and centroid."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from histoviewer.core.geometry import (
    convex_hull,
    max_feret_diameter,
    max_feret_diameter_brute_force,
    polygon_area,
    polygon_centroid,
    polygon_signed_area,
)


def _pairwise_max(points: np.ndarray) -> float:
    d = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


@pytest.mark.parametrize("n", [2, 3, 5, 17, 100, 1000])
@pytest.mark.parametrize("seed", range(5))
def test_feret_matches_brute_force_on_random_points(n, seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 2)) * rng.uniform(1, 1000, size=2) + rng.uniform(-1e5, 1e5, 2)
    assert max_feret_diameter(pts) == pytest.approx(_pairwise_max(pts), rel=1e-12)
    assert max_feret_diameter_brute_force(pts) == pytest.approx(_pairwise_max(pts), rel=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_feret_matches_brute_force_on_random_star_polygons(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 300))
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.2, 1.0, n) * 500
    pts = np.column_stack([r * np.cos(theta), r * np.sin(theta)]) + (40000.5, 91234.25)
    assert max_feret_diameter(pts) == pytest.approx(_pairwise_max(pts), rel=1e-12)


@pytest.mark.parametrize("n", [4, 64, 1000, 20_000])
def test_circle_diameter(n):
    theta = np.arange(n) * 2 * np.pi / n
    pts = np.column_stack([np.cos(theta), np.sin(theta)]) * 250.0 + (1e5, 2e5)
    assert max_feret_diameter(pts) == pytest.approx(500.0, rel=1e-9)


def test_square_diagonal_and_degenerate_inputs():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert max_feret_diameter(square) == pytest.approx(10 * math.sqrt(2))
    assert max_feret_diameter(np.vstack([square, square[:1]])) == pytest.approx(10 * math.sqrt(2))
    line = np.column_stack([np.arange(10.0), 2 * np.arange(10.0)])
    assert max_feret_diameter(line) == pytest.approx(math.hypot(9, 18))
    assert max_feret_diameter(np.zeros((5, 2))) == 0.0
    assert max_feret_diameter(np.array([[3.0, 4.0]])) == 0.0
    assert max_feret_diameter(np.zeros((0, 2))) == 0.0
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        max_feret_diameter(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        max_feret_diameter(np.array([[0, 0], [np.nan, 1]]))


def test_hull_is_counter_clockwise_and_drops_interior_points():
    rng = np.random.default_rng(7)
    interior = rng.uniform(1, 9, (50, 2))
    corners = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hull = convex_hull(np.vstack([interior, corners, [[5, 0], [10, 5]]]))
    assert {tuple(p) for p in hull} == {tuple(p) for p in corners}
    assert polygon_signed_area(hull) > 0


def test_area_and_centroid():
    square = [(0, 0), (4, 0), (4, 4), (0, 4)]
    assert polygon_area(square) == 16
    assert polygon_signed_area(square[::-1]) == -16
    assert polygon_centroid(square) == pytest.approx((2, 2))
    # An L shape: 4x4 square minus its top-right 2x2 quadrant.
    ell = [(0, 0), (4, 0), (4, 2), (2, 2), (2, 4), (0, 4)]
    assert polygon_area(ell) == 12
    cx = (16 * 2 - 4 * 3) / 12
    assert polygon_centroid(ell) == pytest.approx((cx, cx))
    # Closed rings and huge level-0 offsets give the same answers.
    far = np.array(ell + [ell[0]], float) + (123456.0, 654321.0)
    assert polygon_area(far) == pytest.approx(12, abs=1e-6)
    assert polygon_centroid(far) == pytest.approx((cx + 123456.0, cx + 654321.0))
    assert polygon_area([(0, 0), (1, 1)]) == 0.0


def test_feret_on_real_camelyon16_lesions(shared_data):
    """Real CAMELYON16 tumour outlines (level-0 px): calipers agree with brute force."""
    folder = shared_data / "annotations" / "camelyon16-train"
    files = sorted(folder.glob("Tumor_0*.json"))[:12]
    if not files:
        pytest.skip(f"no CAMELYON16 annotations in {folder}")
    checked = 0
    for f in files:
        for poly in json.loads(f.read_text())["positive"]:
            pts = np.asarray(poly["vertices"], float)
            if not 2 <= len(pts) <= 2000:  # keep the O(N^2) reference quick
                continue
            assert max_feret_diameter(pts) == pytest.approx(
                max_feret_diameter_brute_force(pts), rel=1e-12
            )
            checked += 1
    assert checked > 10
