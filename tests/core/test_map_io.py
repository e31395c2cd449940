"""The one reader of a probability map's metadata (``probability.json`` and the TIFF's
description), shared by the lesion finder's map reader and the exports' ``read_analysis``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from histoviewer.core.analysis.map_io import read_map_meta, read_probability_map
from histoviewer.core.errors import ExportError, InferenceError
from histoviewer.core.export.source import read_analysis
from histoviewer.core.inference.outputs import write_probability_map
from tests.core.export_helpers import GEOMETRY, MODEL


def _analysis(folder):
    encoded = np.full(GEOMETRY.shape, 0.25, np.float32)
    write_probability_map(folder, encoded, GEOMETRY, slide="/s/x.tif", model=MODEL)
    return encoded


def test_both_readers_read_the_same_metadata(tmp_path):
    encoded = _analysis(tmp_path)
    meta = read_map_meta(tmp_path / "probability.json")
    assert meta.geometry == GEOMETRY and meta.model == MODEL and meta.slide == "/s/x.tif"
    values, geometry = read_probability_map(tmp_path / "probability.tiff")
    heatmap = read_analysis(tmp_path)
    assert geometry == heatmap.geometry == GEOMETRY and heatmap.model == MODEL
    np.testing.assert_array_equal(values, encoded)
    np.testing.assert_array_equal(heatmap.encoded, encoded)


def test_an_invalid_geometry_is_an_error_naming_the_file(tmp_path):
    # GridGeometry refuses an unknown scale; the readers say which file held it.
    _analysis(tmp_path)
    doc = json.loads((tmp_path / "probability.json").read_text())
    doc["geometry"]["slide_mpp"] = None
    (tmp_path / "probability.json").write_text(json.dumps(doc))
    with pytest.raises(InferenceError, match=r"probability\.json: the map's geometry is invalid: .*scale"):
        read_map_meta(tmp_path / "probability.json")
    with pytest.raises(ExportError, match=r"probability\.json: the map's geometry is invalid"):
        read_analysis(tmp_path)
    bare = tmp_path / "bare.tiff"
    tifffile.imwrite(bare, np.zeros(GEOMETRY.shape, np.float32), description=json.dumps(doc), metadata=None)
    with pytest.raises(InferenceError, match=r"bare\.tiff: the map's geometry is invalid: .*scale"):
        read_probability_map(bare)
    del doc["geometry"]["patch_px"]
    tifffile.imwrite(bare, np.zeros(GEOMETRY.shape, np.float32), description=json.dumps(doc), metadata=None)
    with pytest.raises(InferenceError, match=r"bare\.tiff: the map's geometry is incomplete: missing 'patch_px'"):
        read_probability_map(bare)


def test_missing_or_mismatched_files_name_the_file(tmp_path):
    with pytest.raises(ExportError, match=r"probability\.json: cannot read the map's metadata"):
        read_analysis(tmp_path)
    (tmp_path / "probability.json").write_text(json.dumps({"encoding": {}}))
    with pytest.raises(ExportError, match=r"probability\.json: not a probability map's metadata"):
        read_analysis(tmp_path)
    _analysis(tmp_path)
    tifffile.imwrite(tmp_path / "probability.tiff", np.zeros((2, 2), np.float32))
    with pytest.raises(ExportError, match=r"probability\.tiff: probability map \(2, 2\) does not match"):
        read_analysis(tmp_path)
    # a bare map (no metadata anywhere) has no geometry, and that is no error
    tifffile.imwrite(tmp_path / "plain.tiff", np.zeros((3, 3), np.float32))
    assert read_probability_map(tmp_path / "plain.tiff")[1] is None


def test_analyze_maps_are_tiled_and_carry_their_physical_scale(tmp_path):
    """probability.tiff / domain.tiff were one strip with resolution 1/1 and no unit: other
    tools could not size them (issue 14, 'the raw float TIFF has no physical scale')."""
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.inference.outputs import write_domain_map

    g = GridGeometry.for_slide((40000, 30000), 0.25, 1.0, 96)
    encoded = np.full((g.rows, g.cols), -1.0, np.float32)
    encoded[3, 4] = 0.9
    tiff, _ = write_probability_map(tmp_path, encoded, g)
    domain = write_domain_map(tmp_path, np.zeros_like(encoded), g, patch_threshold=3.0)
    cell_um = g.l0_stride * 0.25
    for path in (tiff, domain):
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            assert page.is_tiled
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
            num, den = page.tags["XResolution"].value
            assert abs(1e4 / (num / den) - cell_um) < 1e-3 * cell_um
    back, geometry = read_probability_map(tiff)
    assert np.array_equal(back, encoded) and geometry == g
