"""The uncertainty map from the command line: ``analyze --uncertainty`` writes it (and each
lesion's uncertainty), ``lesions`` reads it beside the map, ``export-heatmap --uncertainty``
exports it from the analysis or computes it for a region."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from histoviewer.cli import main
from histoviewer.core.analysis.map_io import read_probability_map
from tests.core.inference_helpers import write_fresh_cnn, write_synthetic_tiff


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    slide = write_synthetic_tiff(root / "synthetic.tiff")
    model = write_fresh_cnn(root)
    out = root / "out"
    assert (
        main(
            [
                "analyze",
                str(slide),
                "--model",
                str(model),
                "--device",
                "cpu",
                "--out",
                str(out),
                "--uncertainty",
                "--json",
            ]
        )
        == 0
    )
    return slide, model, out / "synthetic"


def test_analyze_uncertainty_writes_the_map_on_the_probability_grid(analysed, capsys):
    _slide, _model, folder = analysed
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["files"]["uncertainty_tiff"] == str(folder / "uncertainty.tiff")
    assert summary["timing"]["uncertainty_s"] > 0
    unc, geometry = read_probability_map(folder / "uncertainty.tiff")
    prob, prob_geometry = read_probability_map(folder / "probability.tiff")
    assert geometry == prob_geometry and unc.shape == prob.shape
    computed = prob >= 0
    assert np.all((unc >= 0) == computed) and np.all(unc[computed] <= 0.5)
    assert np.nanmax(unc) > 0  # random weights are not rotation invariant
    meta = json.loads((folder / "uncertainty.json").read_text())
    assert meta["kind"] == "uncertainty" and "8 dihedral views" in meta["method"]


def test_lesions_reads_the_uncertainty_beside_the_map(analysed, capsys):
    _slide, _model, folder = analysed
    capsys.readouterr()
    # a threshold every tissue cell passes: lesions exist whatever the random model says
    assert (
        main(
            [
                "lesions",
                str(folder / "probability.tiff"),
                "--threshold",
                "0.0001",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["lesions"] and all(
        les["tta_uncertainty_computed"] == 1.0 for les in doc["lesions"]
    )
    assert all(
        0 <= les["tta_uncertainty_mean"] <= les["tta_uncertainty_max"] <= 0.5
        for les in doc["lesions"]
    )
    assert (
        main(["lesions", str(folder / "probability.tiff"), "--threshold", "0.0001"])
        == 0
    )
    assert "unc mean/max" in capsys.readouterr().out


def test_export_heatmap_uncertainty_from_the_analysis_and_computed_for_a_region(
    analysed, tmp_path, capsys
):
    slide, model, folder = analysed
    out = tmp_path / "from-analysis.tiff"
    assert (
        main(
            [
                "export-heatmap",
                str(slide),
                "--uncertainty",
                "--probability",
                str(folder),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    full, _ = read_probability_map(folder / "uncertainty.tiff")
    np.testing.assert_array_equal(tifffile.imread(out), full.astype(np.float32))
    assert (tmp_path / "from-analysis.tiff.provenance.json").is_file()
    # computed here for a region only: the same values there, not computed (NaN) elsewhere
    region = "2000,800,800,800"
    png, tif = tmp_path / "region.png", tmp_path / "region.tiff"
    assert (
        main(
            [
                "export-heatmap",
                str(slide),
                "--uncertainty",
                "--model",
                str(model),
                "--device",
                "cpu",
                "--region",
                region,
                "--out",
                str(tif),
                "--json",
            ]
        )
        == 0
    )
    meta = json.loads(tifffile.TiffFile(tif).pages[0].description)
    crop = meta["crop"]
    r0, c0 = crop["row0"], crop["col0"]
    window = full[r0 : r0 + crop["rows"], c0 : c0 + crop["cols"]]
    got = tifffile.imread(tif)
    done = np.isfinite(got) & (got >= 0)
    assert done.any()
    np.testing.assert_allclose(
        got[done], window[done], atol=2e-3
    )  # same patches (float rounding only)
    assert (
        main(
            [
                "export-heatmap",
                str(slide),
                "--uncertainty",
                "--probability",
                str(folder),
                "--out",
                str(png),
            ]
        )
        == 0
    )
    assert png.stat().st_size > 1000
    # an existing file is not replaced unasked
    capsys.readouterr()
    rc = main(
        [
            "export-heatmap",
            str(slide),
            "--uncertainty",
            "--probability",
            str(folder),
            "--out",
            str(png),
        ]
    )
    assert rc != 0 and "already exists" in capsys.readouterr().err
