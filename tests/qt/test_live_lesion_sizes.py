"""The viewer's lesion sizes come from the same computation as ``analyze``'s: for the same
map, geometry, model operating point and threshold, the summary panel's snapshot lists the
lesions ``analyze`` writes (issue 14: 0.59 vs 0.61 mm for one lesion)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.models.classifier import OperatingPoint
from histoviewer.qt.live_lesions import snapshot_of


def test_viewer_lesions_equal_analyze_lesions_for_the_same_map():
    geometry = GridGeometry.for_slide((38400, 38400), 0.25, 1.0, 96)  # 100 x 100 cells of 96 um
    assert geometry.shape == (100, 100)
    grid = PredictionGrid(geometry, np.ones(geometry.shape, bool))
    yy, xx = np.mgrid[0:100, 0:100]
    graded = np.clip(1.2 - np.hypot(yy - 40, xx - 55) / 12.0, 0, 1)  # a graded blob ~1.9 mm
    graded[80:83, 10:12] = 0.6  # and a small one
    grid.set_values(np.arange(geometry.size), graded.ravel().astype(np.float32))
    point = OperatingPoint(0.37, "sensitivity >= 0.95", 0.95, 0.88, 900)
    info = SimpleNamespace(operating_point=point, display_name=lambda: "m", demonstration=False, caution="")
    live = SimpleNamespace(grid=grid, model=SimpleNamespace(info=info, domain=None))
    viewer = snapshot_of(live, None, 1).result
    analyze = analyse_map(grid.encoded_map(), MapFrame.from_geometry(geometry),
                          AnalyzeOptions().lesion_params(point))
    assert viewer.params == analyze.params and viewer.params.threshold == 0.37
    assert [les.to_dict() for les in viewer.lesions] == [les.to_dict() for les in analyze.lesions]
    assert len(viewer.lesions) == 2 and 1.5 < viewer.lesions[0].diameter_mm < 2.3
