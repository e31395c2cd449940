"""The outline simplification of lesions is scikit-image's Douglas-Peucker to the bit, without
importing ``scipy.signal`` (issue 15: 0.45-0.95 s of every ``analyze`` run)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure

from histoviewer.core.analysis.simplify import approximate_polygon


def _contours(seed: int) -> list[np.ndarray]:
    """Contours of a random blobby mask at 0.5, as ``lesions`` simplifies them."""
    rng = np.random.default_rng(seed)
    field = rng.random((24, 24))
    mask = ndimage.gaussian_filter(field, 2.0) > 0.5
    return measure.find_contours(np.pad(mask, 1).astype(np.float32), 0.5)


@pytest.mark.parametrize("tolerance", [0.0, 0.5, 1.0, 3.0])
def test_the_same_vertices_as_scikit_image(tolerance):
    checked = 0
    for seed in range(40):
        for contour in _contours(seed):
            ours = approximate_polygon(contour, tolerance)
            theirs = measure.approximate_polygon(contour, tolerance)
            assert ours.dtype == theirs.dtype
            assert np.array_equal(ours, theirs)
            checked += 1
    assert checked > 40
    # random points too (not just pixel-edge contours)
    pts = np.random.default_rng(1).normal(size=(500, 2)) * 10
    assert np.array_equal(
        approximate_polygon(pts, tolerance), measure.approximate_polygon(pts, tolerance)
    )


def test_a_straight_run_keeps_its_ends_only():
    line = np.column_stack([np.arange(10.0), np.zeros(10)])
    assert np.array_equal(approximate_polygon(line, 0.5), [[0, 0], [9, 0]])


def test_finding_lesions_does_not_import_scipy_signal():
    code = (
        "import sys, numpy as np\n"
        "from histoviewer.core.analysis.lesions import LesionParams, MapFrame, find_lesions\n"
        "m = np.zeros((20, 20), np.float32); m[5:12, 6:14] = 0.9\n"
        "found = find_lesions(m, MapFrame(l0_cell=400.0, mpp=0.25), LesionParams())\n"
        "assert found, 'no lesion found'\n"
        "print(sorted(n for n in sys.modules if n.startswith('scipy.signal')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
