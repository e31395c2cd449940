"""The model's operating point flows to the results: lesions, node labels and summary.json
read the map at the user's threshold, else the model's operating point, else 0.5, and say
which (``core/analysis/threshold.py``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from histoviewer.core.analysis.lesions import (
    DEFAULT_THRESHOLD, THRESHOLD_FROM_DEFAULT, THRESHOLD_FROM_MODEL, THRESHOLD_SET_BY_USER, LesionParams,
)
from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.analysis.map_io import read_probability_map
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.summary import SlideSummary, read_summary
from histoviewer.core.analysis.threshold import choose_lesion_params, choose_threshold, describe_threshold
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.models.classifier import OperatingPoint
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff

POINT = OperatingPoint(threshold=0.37, target="sensitivity >= 0.95", sensitivity=0.95, specificity=0.88,
                       n_valid=1000)


def test_the_users_threshold_beats_the_models_which_beats_the_default():
    assert choose_threshold(0.6, POINT) == (0.6, THRESHOLD_SET_BY_USER)
    assert choose_threshold(None, POINT) == (0.37, THRESHOLD_FROM_MODEL)
    assert choose_threshold(None, None) == (DEFAULT_THRESHOLD, THRESHOLD_FROM_DEFAULT)
    params = choose_lesion_params(None, POINT, min_cells=2)
    assert (params.threshold, params.threshold_source, params.min_cells) == (0.37, THRESHOLD_FROM_MODEL, 2)
    with pytest.raises(ValueError):
        choose_lesion_params(1.5, POINT)


def test_the_threshold_is_described_with_its_source():
    assert describe_threshold(0.37, THRESHOLD_FROM_MODEL, POINT) == (
        "threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating point)")
    assert describe_threshold(0.6, THRESHOLD_SET_BY_USER, POINT) == (
        "threshold 0.60 (set by user; the model's operating point is 0.37)")
    assert describe_threshold(0.5, THRESHOLD_SET_BY_USER, None) == "threshold 0.50 (set by user)"
    assert describe_threshold(0.5, THRESHOLD_FROM_DEFAULT, None) == "threshold 0.50 (default, model states none)"
    assert describe_threshold(0.5, "", None) == "threshold 0.50"  # an old summary: source not recorded


def test_lesion_params_from_an_old_summary_read_without_a_source():
    old = {"threshold": 0.5, "min_cells": 1, "fill_holes": True, "upsample": 12}
    params = LesionParams.from_dict(old)
    assert params.threshold == 0.5 and params.threshold_source == ""
    assert LesionParams.from_dict(params.to_dict()) == params


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_tiff(tmp_path_factory.mktemp("synthetic") / "synthetic.tiff")


def _model(threshold: float | None) -> LesionFractionModel:
    """The position-dependent model (graded probabilities at the lesion's border: the
    fraction of each patch in lesion) stating ``threshold`` as its operating point."""
    model = LesionFractionModel()
    point = None if threshold is None else replace(POINT, threshold=threshold)
    model.info = replace(model.info, operating_point=point)
    return model


@pytest.fixture(scope="module")
def low(synthetic, tmp_path_factory):
    """The synthetic slide analysed by a model whose operating point is 0.1."""
    return analyze_slide(synthetic, tmp_path_factory.mktemp("low"), _model(0.1), AnalyzeOptions(batch_size=256))


def test_analyze_reads_the_map_at_the_models_operating_point(synthetic, low, tmp_path):
    options = AnalyzeOptions(batch_size=256)
    folder = Path(low.out_dir)
    assert (low.lesion_params.threshold, low.lesion_params.threshold_source) == (0.1, THRESHOLD_FROM_MODEL)
    # summary.json records the threshold, its source and the model's operating point
    data = json.loads((folder / "summary.json").read_text())
    assert data["lesion_params"]["threshold"] == 0.1
    assert data["lesion_params"]["threshold_source"] == THRESHOLD_FROM_MODEL
    assert data["model"]["operating_point"]["threshold"] == 0.1
    assert read_summary(folder) == low

    # the user's threshold overrides the model's operating point, and changes the lesion: the
    # lesion is one rectangle, and read at 0.1 it takes in border cells that 0.9 drops
    user = analyze_slide(synthetic, tmp_path / "user", _model(0.1), replace(options, lesion_threshold=0.9))
    assert (user.lesion_params.threshold, user.lesion_params.threshold_source) == (0.9, THRESHOLD_SET_BY_USER)
    assert len(low.lesions) == len(user.lesions) == 1
    assert low.lesions[0].cells > user.lesions[0].cells
    assert low.lesions[0].diameter_mm > user.lesions[0].diameter_mm
    # the same map read at a model operating point of 0.9 gives the user's lesion
    at_high = analyse_map(read_probability_map(folder / "probability.tiff")[0],
                          MapFrame.from_geometry(low.geometry), options.lesion_params(replace(POINT, threshold=0.9)))
    assert at_high.params.threshold_source == THRESHOLD_FROM_MODEL
    assert at_high.lesions[0].cells == user.lesions[0].cells
    # a model file without an operating point: the default, and the summary says so
    none = options.lesion_params(None)
    assert (none.threshold, none.threshold_source) == (0.5, THRESHOLD_FROM_DEFAULT)


def test_an_old_summary_without_threshold_source_or_operating_point_reads(low):
    data = low.to_dict()
    del data["lesion_params"]["threshold_source"]
    del data["model"]["operating_point"], data["model"]["caveat"]
    old = SlideSummary.from_dict(data)
    assert old.lesion_params.threshold == 0.1 and old.lesion_params.threshold_source == ""
    assert old.model.operating_point is None and old.lesions == low.lesions
    assert describe_threshold(0.1, old.lesion_params.threshold_source, old.model.operating_point) == "threshold 0.10"


def test_the_legend_names_the_caveat_and_the_operating_point():
    import numpy as np

    from histoviewer.core.export.legend import legend_panel, legend_text
    from histoviewer.core.models.record import ModelRecord

    caveat = "research model trained on 6,657 real PatchCamelyon patches; not validated for clinical use"
    model = ModelRecord(name="trained", display_name="trained (cnn)", caveat=caveat, operating_point=POINT)
    at_point = legend_text(model, "viridis", 0.37, THRESHOLD_FROM_MODEL, 0.5).lines()
    assert caveat in at_point and not any("WARNING" in t for t in at_point)
    assert any("threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating point)" in t
               for t in at_point)
    # the heatmap alone colours every probability: the legend still states the operating point
    everything = legend_text(model, "viridis", 0.0).lines()
    assert "Every probability coloured" in everything
    assert ("Model operating point: threshold 0.37: sensitivity 95 %, specificity 88 % on validation"
            in everything)
    demo = replace(model, demonstration=True, operating_point=None)
    demo_lines = legend_text(demo, "viridis", 0.5, THRESHOLD_FROM_DEFAULT).lines()
    assert any(t.startswith("WARNING: demonstration model") for t in demo_lines)
    assert any("threshold 0.50 (default, model states none)" in t for t in demo_lines)
    assert not any(t.startswith("Model operating point") for t in demo_lines)
    panel = legend_panel(480, model, "viridis", 0.37, 0.5, threshold_source=THRESHOLD_FROM_MODEL)
    assert panel.dtype == np.uint8 and panel.shape[1] == 480


def test_the_lesions_command_reads_analyzes_map_at_its_models_operating_point(low, capsys):
    from histoviewer.cli import main

    tiff = str(Path(low.out_dir) / "probability.tiff")
    assert main(["lesions", tiff, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["lesion_params"]["threshold"] == 0.1
    assert found["lesion_params"]["threshold_source"] == THRESHOLD_FROM_MODEL
    assert len(found["lesions"]) == len(low.lesions) and found["lesions"][0]["cells"] == low.lesions[0].cells
    assert main(["lesions", tiff, "--threshold", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "threshold 0.90 (set by user; the model's operating point is 0.10)" in out
