"""``histoviewer analyze`` and the core ``analyze_slide``: outputs, alignment, lesion
coverage on a phantom, parallel processes and a Dask cluster."""

from __future__ import annotations

import argparse
import csv
import json
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from histoviewer.cli import analyze as cli_analyze
from histoviewer.core.analysis.summary import SlideFailure, SlideSummary, read_summary
from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide, slide_out_dir
from histoviewer.core.jobs.slide_folders import analyze_slide_folder_job
from histoviewer.core.jobs import analyze_slides
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import (
    LesionFractionModel, lesion_fraction, synthetic_rgb, write_fresh_cnn, write_synthetic_tiff,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_tiff(tmp_path_factory.mktemp("synthetic") / "synthetic.tiff")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_fresh_cnn(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from histoviewer.core.phantom import write_phantom

    return write_phantom(tmp_path_factory.mktemp("phantom") / "node.tiff", width=8000, height=8000,
                         mpp=0.25, lesions="micro:0.6", seed=3)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="histoviewer")
    cli_analyze.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr().out


def read_map(folder):
    with tifffile.TiffFile(folder / "probability.tiff") as tf:
        meta = json.loads(tf.pages[0].description)
        return tf.asarray(), GridGeometry.from_dict(meta["geometry"])


SUMMARY_KEYS = ["slide", "out_dir", "model", "mpp", "mpp_source", "level_read", "region_source", "geometry", "tissue_patches",
                "classified_patches", "failed_patches", "coverage", "timing", "files", "failures", "node_label",
                "label_so_far", "unresolved_reason", "provisional", "largest_lesion", "largest_diameter_mm", "lesion_params", "lesions", "domain",
                "learned_label",
                "strategy", "screened_negative_patches", "screening"]
MODEL_KEYS = ["name", "display_name", "kind", "architecture", "content_hash", "demonstration", "mpp_um", "patch_px",
              "caveat", "operating_point"]


def test_analyze_map_is_aligned_with_a_position_dependent_model(synthetic, tmp_path):
    summary = analyze_slide(synthetic, tmp_path / "out", LesionFractionModel(), AnalyzeOptions(batch_size=64))
    values, g = read_map(tmp_path / "out")
    assert values.dtype == np.float32 and values.shape == g.shape
    computed = values >= 0
    assert computed.sum() == summary.classified_patches == summary.tissue_patches > 0
    x, y = g.cell_l0_xy(np.arange(g.size))
    expected = lesion_fraction(x, y, g.l0_patch).reshape(g.shape)
    assert np.max(np.abs(values[computed] - expected[computed])) < 0.035
    assert np.all(values[~computed] == -1.0)  # background, never NaN after a full run
    assert summary.coverage == 1.0
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["model"]["content_hash"] == "f" * 64 and data["geometry"]["rows"] == g.rows
    assert {"read_decode_s", "model_s", "total_s"} <= set(data["timing"])
    # summary.json is a file format: same keys in the same order, and it reads back to the
    # very summary analyze_slide returned (and writes back to the same JSON)
    assert list(data) == SUMMARY_KEYS and list(data["model"]) == MODEL_KEYS
    # a model without a domain profile: the slide is not judged, never called "in domain"
    assert data["domain"]["assessed"] is False and data["domain"]["out_of_domain"] is False
    assert read_summary(tmp_path / "out") == summary
    assert SlideSummary.from_dict(data).to_dict() == data == summary.to_dict()
    heat = np.asarray(Image.open(tmp_path / "out" / "heatmap.png"))
    assert heat.ndim == 3 and heat.shape[2] == 3


def test_analyze_cli_on_a_phantom_covers_the_lesion(phantom, model_file, tmp_path, capsys):
    rc, out = run_cli(["analyze", str(phantom.slide_path), "--model", str(model_file), "--out",
                       str(tmp_path), "--device", "cpu", "--json"], capsys)
    assert rc == 0
    (summary,) = json.loads(out)
    folder = tmp_path / phantom.slide_path.stem
    values, g = read_map(folder)
    assert summary["classified_patches"] == int(np.count_nonzero(values >= 0))
    assert summary["failed_patches"] == 0 and summary["tissue_patches"] == summary["classified_patches"]
    assert summary["model"]["demonstration"] is False and summary["mpp"] == 0.25
    # every map cell whose centre lies inside the lesion polygon was classified (tissue)
    from skimage.measure import points_in_poly

    (lesion,) = phantom.lesions
    x, y = g.cell_l0_xy(np.arange(g.size))
    centres = np.column_stack([x + g.l0_stride / 2, y + g.l0_stride / 2])
    inside = points_in_poly(centres, np.asarray(lesion.l0_polygon)).reshape(g.shape)
    assert inside.sum() > 15
    assert np.all(values[inside] >= 0), "cells over the lesion must be classified"
    corners = [values[0, 0], values[0, -1], values[-1, 0], values[-1, -1]]
    assert all(v == -1.0 for v in corners), "glass corners are background"


@pytest.mark.slow  # two analyses of an 8000 x 8000 phantom with the shipped CNN and screen: ~30 s
def test_screened_strategy_keeps_the_lesion_and_counts_screened_tissue_apart(phantom, tmp_path, capsys):
    runs = {}
    for strategy in ("exhaustive", "screened"):
        rc, out = run_cli(["analyze", str(phantom.slide_path), "--out", str(tmp_path / strategy), "--device", "cpu",
                           "--strategy", strategy, "--json"], capsys)
        assert rc == 0
        (runs[strategy],) = json.loads(out)
    exh, scr = runs["exhaustive"], runs["screened"]
    assert exh["strategy"] == "exhaustive" and exh["screening"] is None and exh["screened_negative_patches"] == 0
    assert scr["strategy"] == "screened" and scr["screening"]["fallback"] is None
    assert scr["screening"]["settings"]["target"] == "sensitivity >= 0.99"
    # screened-negative tissue is counted apart: not classified, not coverage, not failed
    values, g = read_map(tmp_path / "screened" / phantom.slide_path.stem)
    n_screened = int(np.count_nonzero(values == -3.0))
    assert scr["screened_negative_patches"] == n_screened > 0
    assert scr["classified_patches"] == int(np.count_nonzero(values >= 0)) < scr["tissue_patches"]
    assert scr["classified_patches"] + n_screened == scr["tissue_patches"] == exh["tissue_patches"]
    assert scr["coverage"] == pytest.approx(scr["classified_patches"] / scr["tissue_patches"], abs=1e-6)
    # the lesion's cells went to the full model, and it is measured as the exhaustive run measures it
    from skimage.measure import points_in_poly

    (lesion,) = phantom.lesions
    x, y = g.cell_l0_xy(np.arange(g.size))
    inside = points_in_poly(np.column_stack([x + g.l0_stride / 2, y + g.l0_stride / 2]),
                            np.asarray(lesion.l0_polygon)).reshape(g.shape)
    assert inside.sum() > 15 and np.all(values[inside] >= 0)
    assert scr["node_label"] == exh["node_label"] == "micro" and scr["unresolved_reason"] is None
    assert scr["provisional"] is False  # every tissue patch classified or screened negative: a stated label
    # the sub-cell outline interpolates with the cells around it: beyond the margin those are
    # screened negative (no evidence) instead of P ~ 0.01; that moves the diameter by microns
    assert scr["largest_diameter_mm"] == pytest.approx(exh["largest_diameter_mm"], abs=0.005)


def test_analyze_stride_gives_an_overlapping_grid(synthetic, model_file, tmp_path, capsys):
    rc, out = run_cli(["analyze", str(synthetic), "--model", str(model_file), "--out", str(tmp_path),
                       "--stride", "48", "--json", "--device", "cpu"], capsys)
    assert rc == 0
    (summary,) = json.loads(out)
    assert summary["geometry"]["overlap"] == 2 and summary["geometry"]["stride_px"] == 48


def test_analyze_reports_a_bad_slide_and_goes_on(synthetic, model_file, tmp_path, capsys):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide")
    rc, out = run_cli(["analyze", str(bad), str(synthetic), "--model", str(model_file), "--out",
                       str(tmp_path / "o"), "--json", "--device", "cpu"], capsys)
    results = json.loads(out)
    assert rc == 1 and "error" in results[0] and "broken.svs" in results[0]["error"]
    assert results[1]["classified_patches"] > 0


@pytest.mark.slow  # spawns two processes that each import torch: ~13 s
def test_parallel_processes(synthetic, model_file, tmp_path):
    second = tmp_path / "second.tiff"
    shutil.copy(synthetic, second)
    results = analyze_slides([synthetic, second], tmp_path / "out",
                             AnalyzeOptions(model=str(model_file), device="cpu"), workers=2)
    assert [r.slide for r in results] == [str(synthetic), str(second)]
    assert all(isinstance(r, SlideSummary) for r in results), results
    assert all(r.classified_patches == results[0].classified_patches > 0 for r in results)


def test_dask_local_cluster(synthetic, model_file, tmp_path):
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        results = analyze_slides([synthetic], tmp_path, AnalyzeOptions(model=str(model_file), device="cpu"),
                                 scheduler=cluster.scheduler_address)
    (summary,) = results
    assert isinstance(summary, SlideSummary), summary
    assert summary.classified_patches > 0
    assert (tmp_path / synthetic.stem / "summary.json").is_file()


def _compare_with_reader(reader, source, rng, reads_per_level=4):
    for level in range(reader.info.level_count):
        lv_w, lv_h = reader.info.level_dimensions[level]
        ds = int(round(reader.info.level_downsamples[level]))
        for _ in range(reads_per_level):
            w, h = int(rng.integers(1, min(lv_w, 600) + 1)), int(rng.integers(1, min(lv_h, 600) + 1))
            x, y = int(rng.integers(-40, lv_w)), int(rng.integers(-40, lv_h))
            a = reader.read_region(x * ds, y * ds, level, w, h)
            b = source.read_region(x * ds, y * ds, level, w, h)
            assert np.array_equal(a, b), (level, x, y, w, h)


def test_direct_tiff_tiles_are_pixel_identical_to_openslide(phantom):
    from histoviewer.core.inference.tiff_regions import TiffRegionSource
    from histoviewer.core.slide import open_slide

    with open_slide(phantom.slide_path) as reader:
        source = TiffRegionSource.open(phantom.slide_path, reader)
        assert source is not None
        try:
            _compare_with_reader(reader, source, np.random.default_rng(1))
        finally:
            source.close()


def test_direct_tiff_tiles_on_a_real_svs(cmu_small):
    from histoviewer.core.inference.tiff_regions import TiffRegionSource
    from histoviewer.core.slide import open_slide

    with open_slide(cmu_small) as reader:
        source = TiffRegionSource.open(cmu_small, reader)
        assert source is not None
        try:
            _compare_with_reader(reader, source, np.random.default_rng(2))
        finally:
            source.close()


def test_direct_tiff_reads_decline_what_they_cannot_match(synthetic, slides_dir):
    from histoviewer.core.inference.tiff_regions import TiffRegionSource
    from histoviewer.core.slide import open_slide

    with open_slide(synthetic) as reader:  # a flat, untiled TIFF
        assert TiffRegionSource.open(synthetic, reader) is None
    tcga = slides_dir / "tcga-cr-7395-01a-01-ts1-no-mpp.svs"  # level 1 downsample 2.0005
    with open_slide(tcga) as reader:
        source = TiffRegionSource.open(tcga, reader)
        assert source is not None and source.direct_levels() == [0]
        try:
            _compare_with_reader(reader, source, np.random.default_rng(3))  # level 1 via OpenSlide
        finally:
            source.close()


def test_a_bad_stride_is_named_by_its_setting_and_the_cli_flag(synthetic, tmp_path, capsys):
    from histoviewer.core.errors import InferenceError

    with pytest.raises(InferenceError, match="grid step must be at least one model pixel") as raised:
        AnalyzeOptions(stride_px=0)
    assert raised.value.setting == "stride_px"
    from histoviewer.cli import main

    rc = main(["analyze", str(synthetic), "--out", str(tmp_path), "--stride", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "(use --stride)" in err and list(tmp_path.iterdir()) == []


def test_a_slide_without_scale_stays_unknown_end_to_end(synthetic, model_file, tmp_path, capsys):
    """No mpp: no number is ever made up. The analysis fails for that node (a model needs the
    scale), its node label is ``unknown``, and so is its case's stage, in every file."""
    slides = tmp_path / "slides"
    slides.mkdir()
    scaled = shutil.copy(synthetic, slides / "patient_020_node_0.tiff")
    unscaled = slides / "patient_020_node_1.tiff"
    tifffile.imwrite(unscaled, synthetic_rgb(), photometric="rgb")  # no resolution unit: no scale
    with open_slide(unscaled) as reader:
        assert reader.info.mpp is None
    with pytest.raises(InferenceError, match="scale"):
        GridGeometry.for_slide((100, 100), None, 1.0, 50)
    results = analyze_slides([scaled, unscaled], tmp_path / "out",
                             AnalyzeOptions(model=str(model_file), device="cpu"))
    ok, failed = results
    assert isinstance(ok, SlideSummary) and ok.mpp == 0.25
    assert isinstance(failed, SlideFailure) and "scale" in failed.error and failed.node == unscaled.name
    assert not (tmp_path / "out" / unscaled.stem).exists()  # no empty folder left by the failure
    job_dir = slide_out_dir(tmp_path / "job", unscaled)
    assert analyze_slide_folder_job(str(unscaled), str(job_dir), AnalyzeOptions(model=str(model_file),
                                                                               device="cpu")) == failed
    assert not job_dir.exists()
    rc, out = run_cli(["analyze", str(scaled), str(unscaled), "--model", str(model_file), "--out",
                       str(tmp_path / "cli"), "--json", "--device", "cpu"], capsys)
    assert rc == 1 and json.loads(out)[1] == failed.to_dict()
    stages = list(csv.reader((tmp_path / "cli" / "stages.csv").read_text().splitlines()))
    assert ["patient_020.zip", "unknown"] in stages and ["patient_020_node_1.tiff", "unknown"] in stages
    (case,) = json.loads((tmp_path / "cli" / "cases.json").read_text())["cases"]
    assert case["stage"] == "unknown" and "not guessed" in case["reason"]
    node1 = next(n for n in case["nodes"] if n["node"] == unscaled.name)
    assert node1["label"] == "unknown" and node1["largest_diameter_mm"] is None


def test_a_worker_failure_keeps_its_setting_and_the_cli_adds_the_flag(monkeypatch, tmp_path, capsys):
    """``--workers 2 --device cuda`` without CUDA: each slide's failure (built in the worker)
    carries the error's setting, so the CLI prints the same hint as a one-process run."""
    from histoviewer.core.errors import ModelError
    from histoviewer.core.jobs import slide_folders

    def no_cuda(spec, device="auto"):
        raise ModelError("device 'cuda' requested but this torch build sees no CUDA GPU", setting="device")

    monkeypatch.setattr(slide_folders, "open_model", no_cuda)
    failure = analyze_slide_folder_job("x/a.tiff", str(tmp_path / "a"), AnalyzeOptions(device="cuda"))
    assert failure == SlideFailure("x/a.tiff", "device 'cuda' requested but this torch build sees no CUDA GPU",
                                   "device")
    cli_analyze._print_summary(failure)
    assert capsys.readouterr().err.strip() == f"x/a.tiff: FAILED: {failure.error} (use --device cpu)"
    cli_analyze._print_summary(SlideFailure("x/b.tiff", "broken"))
    assert capsys.readouterr().err.strip() == "x/b.tiff: FAILED: broken"


def test_a_failures_setting_is_written_only_when_set():
    from histoviewer.core.analysis.summary import outcome_from_dict

    plain = SlideFailure("a.tiff", "broken")
    assert plain.to_dict() == {"slide": "a.tiff", "error": "broken"}
    assert outcome_from_dict(plain.to_dict()) == plain
    hinted = SlideFailure("a.tiff", "no CUDA", setting="device")
    assert hinted.to_dict() == {"slide": "a.tiff", "error": "no CUDA", "setting": "device"}
    assert outcome_from_dict(hinted.to_dict()) == hinted


CAVEAT = "research model trained on 6,657 real PatchCamelyon patches; not validated for clinical use"


@pytest.fixture(scope="module")
def research_model(tmp_path_factory):
    """A model file (untrained CNN) that names its training data and states an operating
    point far below its outputs, so that read at it all tissue is one lesion."""
    from histoviewer.core.models.classifier import OperatingPoint

    point = OperatingPoint(0.01, "sensitivity >= 0.95", 0.95, 0.88, 900)
    return write_fresh_cnn(tmp_path_factory.mktemp("research"), "research", caveat=CAVEAT, operating_point=point)


def test_analyze_reads_at_the_model_operating_point_and_names_its_training_data(synthetic, research_model,
                                                                                  tmp_path, capsys):
    base = ["analyze", str(synthetic), "--model", str(research_model), "--device", "cpu"]
    rc, out = run_cli([*base, "--out", str(tmp_path / "model")], capsys)
    assert rc == 0
    assert CAVEAT in out and "WARNING" not in out
    assert "threshold 0.01: sensitivity 95 %, specificity 88 % on validation (model operating point)" in out
    at_model = read_summary(tmp_path / "model" / "synthetic")
    assert at_model.lesion_params.threshold == 0.01 and len(at_model.lesions) >= 1
    data = json.loads((tmp_path / "model" / "synthetic" / "summary.json").read_text())
    assert data["model"]["caveat"] == CAVEAT and data["model"]["operating_point"]["threshold"] == 0.01
    assert data["lesion_params"]["threshold_source"] == "model operating point"
    # --threshold overrides the operating point: another threshold, other lesions, and --json says so
    rc, out = run_cli([*base, "--out", str(tmp_path / "user"), "--threshold", "0.999", "--json"], capsys)
    assert rc == 0
    (summary,) = json.loads(out)
    assert summary["model"]["caveat"] == CAVEAT
    assert summary["lesion_params"] == {**data["lesion_params"], "threshold": 0.999,
                                        "threshold_source": "set by user"}
    assert len(summary["lesions"]) < len(at_model.lesions) or (
        summary["lesions"] and summary["lesions"][0]["cells"] < at_model.lesions[0].cells)
