"""``histoviewer export-heatmap``: outputs by flag and extension, JSON, reuse of analyses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from histoviewer.cli import main
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_geojson
from histoviewer.core.export import read_raw_probabilities
from histoviewer.core.inference.outputs import write_probability_map
from tests.core.export_helpers import GEOMETRY, MODEL, lesion_heatmap, slide
from tests.core.inference_helpers import LESION_RECT, H, W


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    """A slide and an ``analyze``-style result for it (probability.tiff + .json)."""
    tmp_path = tmp_path_factory.mktemp("analysis")
    path = slide(tmp_path)
    folder = tmp_path / "analysis"
    folder.mkdir()
    write_probability_map(folder, lesion_heatmap().encoded, GEOMETRY, slide=str(path), model=MODEL)
    return path, folder


def _run(capsys, *argv):
    rc = main(["export-heatmap", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_overlay_png_from_an_analysis_with_annotations(analysis, tmp_path, capsys):
    path, folder = analysis
    x, y, w, h = LESION_RECT
    ann = tmp_path / "truth.geojson"
    write_geojson(ann, [PolygonAnnotation("lesion-1", ((x, y), (x + w, y), (x + w, y + h), (x, y + h)))])
    out = tmp_path / "ov.png"
    rc, stdout, _ = _run(capsys, path, "--probability", folder, "--out", out, "--overlay",
                         "--um-per-px", "2", "--annotations", ann, "--colormap", "magma", "--json")
    assert rc == 0
    result = json.loads(stdout)
    assert result["kind"] == "overlay" and result["size"] == [W // 8, H // 8]
    prov = result["provenance"]
    assert prov["colormap"] == "magma" and prov["threshold"] == 0.5 and prov["extra"]["outlines"] == 1
    assert prov["model"]["demonstration"] and "warning" in prov["model"]
    with Image.open(out) as img:
        assert img.size[0] == W // 8 and img.size[1] > H // 8  # legend band below


def test_raw_region_and_heatmap_tiff(analysis, tmp_path, capsys):
    path, folder = analysis
    rc, stdout, stderr = _run(capsys, path, "--probability", folder, "--out", tmp_path / "raw.tiff",
                              "--raw", "--region", "0,0,1000,1000")
    assert rc == 0 and "raw-probabilities" in stdout and "not for diagnosis" in stderr
    back = read_raw_probabilities(tmp_path / "raw.tiff")
    np.testing.assert_array_equal(back.encoded, lesion_heatmap().encoded[:5, :5])
    rc, stdout, _ = _run(capsys, path, "--probability", folder, "--out", tmp_path / "hm.tif", "--json")
    assert rc == 0 and json.loads(stdout)["kind"] == "heatmap-pyramid"
    assert (tmp_path / "hm.tif.legend.png").is_file() and (tmp_path / "hm.tif.provenance.json").is_file()


def test_conflicting_or_bad_options_exit_2(analysis, tmp_path, capsys):
    path, folder = analysis
    rc, _, err = _run(capsys, path, "--probability", folder, "--out", tmp_path / "x.tiff", "--raw", "--overlay")
    assert rc == 2 and "--raw" in err
    rc, _, err = _run(capsys, path, "--probability", tmp_path / "nothing", "--out", tmp_path / "x.png")
    assert rc == 2 and "analysis result" in err
    with pytest.raises(SystemExit):
        _run(capsys, path, "--out", tmp_path / "x.png", "--region", "1,2,3")
    assert "x, y, width, height" in capsys.readouterr().err
    # the region takes the dialog's separators too; a bad resolution is named, with its flag
    rc, _, err = _run(capsys, path, "--probability", folder, "--out", tmp_path / "x.png", "--region",
                      "0 0 1000;1000", "--um-per-px", "-2")
    assert rc == 2 and "resolution -2.0 um/px must be positive (use --um-per-px)" in err
    assert not (tmp_path / "x.png").exists()


def test_uses_the_viewers_complete_cached_heatmap(tmp_path, capsys, monkeypatch):
    from histoviewer.core.inference.disk_cache import HeatmapCache
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.inference.grid import PredictionGrid
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.registry import resolve_model_path
    import histoviewer.core.export.source as source_mod  # where heatmap_for_slide finds analyze_slide

    path = slide(tmp_path)
    info = read_model_info(resolve_model_path("handcrafted"))
    g = GridGeometry.for_slide((W, H), 0.25, info.input.mpp, info.input.patch_px)
    grid = PredictionGrid(g)
    values = np.linspace(0, 1, g.size, dtype=np.float32)
    grid.set_values(np.arange(g.size), values)
    assert HeatmapCache.for_slide(path, info.content_hash, g).save(grid) is not None
    monkeypatch.setattr(source_mod, "analyze_slide", lambda *a, **k: pytest.fail("analysed"))
    rc, stdout, _ = _run(capsys, path, "--model", "handcrafted", "--raw", "--out", tmp_path / "r.tiff", "--json")
    assert rc == 0 and json.loads(stdout)["provenance"]["extra"]["heatmap_source"] == "cache"
    np.testing.assert_array_equal(read_raw_probabilities(tmp_path / "r.tiff").encoded, values.reshape(g.shape))


@pytest.mark.slow
def test_runs_the_model_once_then_reuses_its_analysis(tmp_path, capsys, monkeypatch):
    path = slide(tmp_path)
    store = tmp_path / "analyses"
    rc, stdout, _ = _run(capsys, path, "--model", "handcrafted", "--device", "cpu", "--analysis-dir", store,
                         "--out", tmp_path / "a.png", "--json")
    assert rc == 0
    first = json.loads(stdout)
    assert first["provenance"]["extra"]["heatmap_source"].startswith("analysis:")
    assert first["provenance"]["model"]["name"].startswith("handcrafted-pcam")

    import histoviewer.core.export.source as source_mod  # where heatmap_for_slide finds analyze_slide

    def no_second_run(*_a, **_k):
        raise AssertionError("the slide was analysed again")

    monkeypatch.setattr(source_mod, "analyze_slide", no_second_run)
    rc, stdout, _ = _run(capsys, path, "--model", "handcrafted", "--analysis-dir", store,
                         "--out", tmp_path / "b.png", "--json")
    assert rc == 0
    assert json.loads(stdout)["provenance"]["model"] == first["provenance"]["model"]
