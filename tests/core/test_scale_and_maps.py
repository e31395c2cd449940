"""Scale sanity (one range for every mpp: slide files, map files, user input), probability
maps that must be refused (+/-Inf, empty, all-NaN, absurd geometry) and strict JSON output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile

from histoviewer.core.analysis.map_io import (
    check_map_values,
    parse_map_meta,
    read_probability_map,
)
from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.strict_json import NonFiniteJsonError, strict_dumps
from histoviewer.core.units import MPP_MAX, MPP_MIN, mpp_problem, plausible_mpp

BAD_MPP = [
    float("inf"),
    float("-inf"),
    float("nan"),
    1e-300,
    -0.5,
    0.0,
    1e6,
    0.01,
    150.0,
    "abc",
    True,
    "inf",
]


@pytest.mark.parametrize("value", BAD_MPP, ids=repr)
def test_implausible_pixel_sizes_are_unknown_with_a_reason(value):
    assert mpp_problem(value) is not None and plausible_mpp(value) is None


@pytest.mark.parametrize("value", [MPP_MIN, 0.121, 0.25, "0.499", 0.972, 16.0, MPP_MAX])
def test_microscope_pixel_sizes_pass(value):
    assert mpp_problem(value) is None and plausible_mpp(value) == float(value)


def _info(mpp_x, mpp_y=None) -> SlideInfo:
    return SlideInfo(
        path=__import__("pathlib").Path("x.svs"),
        backend="test",
        vendor=None,
        level_dimensions=((1000, 800),),
        level_downsamples=(1.0,),
        mpp_x=mpp_x,
        mpp_y=mpp_x if mpp_y is None else mpp_y,
        objective_power=1e6,
        associated_images=(),
    )


@pytest.mark.parametrize("value", BAD_MPP, ids=repr)
def test_a_slide_stating_an_implausible_scale_has_none(value):
    info = _info(value)
    assert (
        info.mpp is None and info.mpp_source is None and info.base_magnification is None
    )
    assert "pixel size" in info.mpp_note
    assert info.to_dict()["mpp_known"] is False and json.loads(
        strict_dumps(info.to_dict())
    )


def test_slide_scale_sources_and_the_user_set_scale():
    good = _info(0.25)
    assert good.mpp == 0.25 and good.mpp_source == "slide" and not good.mpp_user_set
    assert good.objective_power is None  # 1e6x is no objective
    assert _info(0.25, 2.5).mpp is None and "disagree" in _info(0.25, 2.5).mpp_note
    user = _info(None).with_user_mpp(0.5)
    assert (
        user.mpp == 0.5 and user.mpp_user_set and user.to_dict()["mpp_source"] == "user"
    )
    assert user.base_magnification == pytest.approx(20.0)
    for bad in (float("inf"), 1e-300, -0.5, 0):
        with pytest.raises(ValueError, match="pixel size"):
            _info(None).with_user_mpp(bad)


def _aperio_tiff(path, mpp_text: str):
    """A tiny tiled TIFF OpenSlide reads as Aperio, its description stating ``MPP = mpp_text``."""
    data = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    tifffile.imwrite(
        path,
        data,
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg",
        metadata=None,
        description=f"Aperio Image Library v10.0.0\n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=70|AppMag = 20|MPP = {mpp_text}",
    )
    return path


@pytest.mark.parametrize("text", ["inf", "nan", "1e-300", "-0.5", "0", "1e6"])
def test_a_slide_file_with_an_absurd_mpp_opens_with_an_unknown_scale(tmp_path, text):
    with open_slide(_aperio_tiff(tmp_path / "s.svs", text)) as reader:
        assert reader.info.mpp is None and reader.info.mpp_source is None
        assert reader.info.mpp_note.startswith(
            "the pixel size"
        )  # says what the file states, not "none stated"
        with pytest.raises(InferenceError, match="scale"):
            GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, 0.972, 96)


def test_a_slide_file_with_a_plausible_mpp_keeps_it(tmp_path):
    with open_slide(_aperio_tiff(tmp_path / "s.svs", "0.2499")) as reader:
        assert (
            reader.info.mpp == pytest.approx(0.2499)
            and reader.info.mpp_source == "slide"
        )


GEOMETRY = {
    "l0_width": 1492,
    "l0_height": 1492,
    "slide_mpp": 0.25,
    "model_mpp": 0.972,
    "patch_px": 96,
    "stride_px": 96,
    "l0_origin_x": 0.0,
    "l0_origin_y": 0.0,
}


@pytest.mark.parametrize(
    "change",
    [
        {"slide_mpp": 1e-300},
        {"slide_mpp": float("inf")},
        {"slide_mpp": -0.5},
        {"slide_mpp": 1e6},
        {"model_mpp": float("nan")},
        {"l0_origin_x": 1e308},
        {"l0_width": 1e308},
        {"l0_height": float("inf")},
        {"patch_px": 10**400},
        {"stride_px": True},
    ],
    ids=lambda c: next(iter(c)) + "=" + repr(next(iter(c.values())))[:8],
)
def test_map_geometry_with_an_absurd_scale_or_size_is_refused_naming_the_file(change):
    with pytest.raises(
        # non-finite numbers are refused already by the JSON reader (core.safe_input)
        InferenceError, match="probability.json: (the map's geometry is invalid|cannot read the map's metadata)"
    ):
        parse_map_meta(
            json.dumps({"geometry": {**GEOMETRY, **change}}), "probability.json"
        )


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array([[0.1, np.inf]]), "infinite"),
        (np.array([[0.1, -np.inf]]), "infinite"),
        (np.zeros((0, 0)), "empty"),
        (np.zeros((3, 0)), "empty"),
        (np.full((2, 2), np.nan), "every map value is NaN"),
        (np.array([[0.1, -0.5]]), "neither a probability"),
        (np.array([[0.1, 1.5]]), "values up to 1.5"),
    ],
)
def test_maps_nothing_can_rest_on_are_refused(values, match):
    with pytest.raises(InferenceError, match=match):
        check_map_values(values, "m.npy")


def test_maps_with_codes_and_probabilities_pass(tmp_path):
    values = np.array([[0.0, 0.9, -1.0], [-2.0, np.nan, 1.0]], np.float32)
    check_map_values(values.astype(np.float64), "m")
    np.save(tmp_path / "m.npy", values)
    read, geometry = read_probability_map(tmp_path / "m.npy")
    assert geometry is None and np.array_equal(
        read, values.astype(np.float64), equal_nan=True
    )
    values[0, 0] = np.inf
    np.save(tmp_path / "inf.npy", values)
    with pytest.raises(InferenceError, match="inf.npy: 1 map value"):
        read_probability_map(tmp_path / "inf.npy")


def test_strict_json_names_the_non_finite_value():
    assert strict_dumps({"a": [1.0, None]}) == '{"a": [1.0, null]}'
    with pytest.raises(
        NonFiniteJsonError, match=r"summary.json: .*\$\.lesions\[1\]\.diameter_mm = inf"
    ):
        strict_dumps(
            {"lesions": [{"diameter_mm": 1.0}, {"diameter_mm": math.inf}]},
            what="summary.json",
        )
    with pytest.raises(NonFiniteJsonError, match="nan"):
        strict_dumps([float("nan")])
