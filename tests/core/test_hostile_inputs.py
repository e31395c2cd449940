"""Small hostile or careless input files: bounded cost and a clear error naming the file
(issue 14: "bounded cost for small hostile inputs", FIFOs, "errors, not tracebacks").

Every file here is a few KB to a MB that declares far more (gigapixels, 5000-digit numbers,
thousands of nesting levels); each test checks the refusal comes before the work or the
memory the declaration asks for."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.analysis.camelyon17 import read_node_labels
from histoviewer.core.analysis.map_io import (
    MAX_MAP_CELLS,
    read_map_meta,
    read_probability_map,
)
from histoviewer.core.analysis.summary import read_summary
from histoviewer.core.analysis.truth import read_truth
from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.errors import (
    AnnotationFormatError,
    EvaluationError,
    HistoViewerError,
    InferenceError,
    PatchDataError,
    SlideOpenError,
    SlideReadError,
    StagingError,
    SummaryFormatError,
)
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.images import load_image
from histoviewer.core.patches.kaggle import read_kaggle_labels
from histoviewer.core.patches.pcam import PCamPatchSet
from histoviewer.core.recent import RecentFiles
from histoviewer.core.safe_input import JsonFields, parse_json, read_json
from histoviewer.core.slide import openslide_backend
from histoviewer.core.slide.open import open_slide

from .hostile_files import jpeg_declaring, png_declaring, tiff_sharing_one_tile


def no_decoding(monkeypatch):
    """From now on, fail the test if PIL decodes any pixel (the refusal must come from the
    header); call it once the test's files are made."""
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"decoded {self.size} px before refusing")

    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(Image.Image, "convert", refuse)


@pytest.mark.parametrize("make, size, message", [
    (jpeg_declaring, (9000, 9000), "holds only"),        # 631 bytes: 46 s and 9.6 GB before
    (jpeg_declaring, (19999, 19999), "decompression bomb"),
    (png_declaring, (9000, 9000), "holds only"),
    (png_declaring, (30000, 30000), "decompression bomb"),
])
def test_images_declaring_more_than_they_hold_are_refused_before_decoding(tmp_path, monkeypatch, make,
                                                                           size, message):
    path = make(tmp_path / f"bomb{'.jpg' if make is jpeg_declaring else '.png'}", *size)
    no_decoding(monkeypatch)
    assert path.stat().st_size < 2_000_000
    t0 = time.perf_counter()
    with pytest.raises(SlideOpenError, match=message) as err:
        open_slide(path)
    assert str(path) in str(err.value)
    assert time.perf_counter() - t0 < 2


def test_an_honest_flat_image_still_opens(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)).save(path)
    with open_slide(path) as reader:
        assert reader.info.level_dimensions[0] == (900, 700)
        assert reader.thumbnail(256).shape[1] == 256


def test_a_huge_single_level_tiff_refuses_a_thumbnail_at_once(tmp_path):
    """10^5 x 10^5 px, one level, 1 MB on disk: OpenSlide's own thumbnail reads all 40 GB."""
    path = tiff_sharing_one_tile(tmp_path / "flat.tif", 100_000, 100_000)
    with open_slide(path) as reader:
        t0 = time.perf_counter()
        for read in (reader.thumbnail, reader.overview):
            with pytest.raises(SlideReadError, match=r"flat.tif: a thumbnail would have to read 100000 x 100000"):
                read(512)
        assert time.perf_counter() - t0 < 2


def test_a_large_single_level_tiff_is_thumbnailed_block_by_block(tmp_path, monkeypatch):
    path = tiff_sharing_one_tile(tmp_path / "flat.tif", 3000, 2000, tile=256)
    monkeypatch.setattr(openslide_backend, "THUMBNAIL_DIRECT_PIXELS", 1_000_000)
    monkeypatch.setattr(openslide_backend, "_THUMBNAIL_BLOCK_PX", 1024)
    with open_slide(path) as reader:
        reads = []
        real = reader.read_region

        def spy(l0_x, l0_y, level, w, h):
            reads.append(w * h)
            return real(l0_x, l0_y, level, w, h)

        monkeypatch.setattr(reader, "read_region", spy)
        thumb = reader.thumbnail(300)
    assert thumb.shape == (200, 300, 3)
    assert np.abs(thumb.astype(int) - 128).max() <= 1  # the grey the tiles hold
    assert reads and max(reads) <= 1024 * 1024  # never more than one block at once


def _refused_within(fn, error, seconds=20.0):
    """``fn`` raised ``error`` within ``seconds`` (run on a daemon thread: a FIFO opened for
    reading would block it for ever, and the test must fail rather than hang)."""
    box: dict = {}
    done = threading.Event()

    def run():
        try:
            box["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["exc"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), "blocked"
    return box


@pytest.mark.parametrize("name, read, error", [
    ("slide.svs", open_slide, SlideOpenError),
    ("notes.geojson", load_annotations, AnnotationFormatError),
    ("notes.xml", load_annotations, AnnotationFormatError),
    ("probability.tiff", read_probability_map, InferenceError),
    ("probability.npy", read_probability_map, InferenceError),
    ("probability.json", read_map_meta, InferenceError),
    ("summary.json", read_summary, SummaryFormatError),
    ("truth.json", read_truth, EvaluationError),
    ("node_labels.csv", read_node_labels, StagingError),
    ("train_labels.csv", read_kaggle_labels, PatchDataError),
    ("patch.png", load_image, PatchDataError),
    ("camelyonpatch_level_2_split_valid_x.h5", lambda p: PCamPatchSet(p, None, InputSpec()), PatchDataError),
])
def test_a_fifo_is_refused_without_blocking(tmp_path, name, read, error):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    box = _refused_within(lambda: read(fifo), error)
    assert isinstance(box.get("exc"), error), box
    assert "named pipe" in str(box["exc"]) and str(fifo) in str(box["exc"])


def test_a_fifo_as_recent_files_reads_as_empty(tmp_path):
    fifo = tmp_path / "recent.json"
    os.mkfifo(fifo)
    assert _refused_within(RecentFiles(fifo).load, HistoViewerError).get("value") == []


def test_maps_larger_than_any_analysis_grid_are_refused_before_decoding(tmp_path, monkeypatch):
    side = 20_000  # 23.7 GB before, then killed
    assert side * side > MAX_MAP_CELLS
    png = png_declaring(tmp_path / "map.png", side, side)
    tif = tiff_sharing_one_tile(tmp_path / "map.tif", side, side)
    npy = tmp_path / "map.npy"
    with open(npy, "wb") as fh:  # a header declaring 20000 x 20000 float32, and no data
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (side, side)})
    no_decoding(monkeypatch)
    for path in (png, tif, npy):
        t0 = time.perf_counter()
        with pytest.raises(InferenceError, match=f"{path.name}: a map of (20000 x 20000|more than)"):
            read_probability_map(path)
        assert time.perf_counter() - t0 < 2


HOSTILE_JSON = {
    "digits": ('{"slide": "s", "n": ' + "9" * 5000 + "}", "integer of 5000 digits"),
    "float": ('{"slide": "s", "x": 1e999}', "too large for a float"),
    "nan": ('{"slide": "s", "x": NaN}', "NaN"),
    "deep": ('{"slide": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    "moderately_deep": ('{"slide": ' + "[" * 200 + "]" * 200 + "}", "nested too deeply"),
    "not_json": ("{slide", "not valid JSON"),
    "latin1": (b'{"slide": "\xe9"}', "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_hostile_json_in_analysis_files_gives_errors_naming_the_file(tmp_path, case):
    text, message = HOSTILE_JSON[case]
    folder = tmp_path / "analysis"
    folder.mkdir()
    for name, read, error in (("summary.json", read_summary, SummaryFormatError),
                              ("probability.json", read_map_meta, InferenceError),
                              ("truth.json", read_truth, EvaluationError)):
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(error, match=message) as err:
            read(path)
        assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("doc", [
    {"slide": "s", "lesions": {"a": 1}},             # a dict where a list belongs
    {"slide": "s", "lesions": ["x", "y"]},           # strings where lesions belong
    {"slide": "s", "geometry": [1, 2, 3]},
    {"slide": "s", "model": "cnn"},
    {"slide": "s", "timing": {"total_s": "slow"}},
    [1, 2, 3],
])
def test_mistyped_summaries_give_errors_naming_the_file(tmp_path, doc):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(doc))
    try:
        read_summary(path)
    except SummaryFormatError as exc:
        assert str(exc).startswith(str(path))


def test_mistyped_probability_json_names_the_file(tmp_path):
    path = tmp_path / "probability.json"
    for doc in ({"geometry": {"rows": "many"}}, {"geometry": {"rows": [1]}}, {"geometry": {}, "model": [1]}):
        path.write_text(json.dumps(doc))
        with pytest.raises(InferenceError) as err:
            read_map_meta(path)
        assert str(err.value).startswith(str(path))


def test_json_fields_name_the_file_and_the_field(tmp_path):
    doc = parse_json('{"a": {"b": [1, "2"]}, "flag": "false", "n": 3.5, "s": 4}', "f.json", "x",
                     SummaryFormatError)
    top = JsonFields(doc, "f.json", SummaryFormatError)
    with pytest.raises(SummaryFormatError, match=r"f.json: 'flag' must be true or false, got a string"):
        top.bool("flag")
    with pytest.raises(SummaryFormatError, match=r"f.json: 'a.b\[1\]' must be a whole number, got a string"):
        top.obj("a").int_list("b")
    with pytest.raises(SummaryFormatError, match=r"f.json: 'n' must be a whole number"):
        top.int("n")
    with pytest.raises(SummaryFormatError, match=r"f.json: 'n' = 3.5 lies outside 0..1"):
        top.float("n", low=0, high=1)
    with pytest.raises(SummaryFormatError, match=r"f.json: 's' must be a string, got a number"):
        top.str("s")
    with pytest.raises(SummaryFormatError, match=r"f.json: 'missing' is missing"):
        top.str("missing")
    assert top.str("missing", "default") == "default" and top.float("n") == 3.5


def test_read_json_refuses_a_file_above_its_limit_without_reading_it_all(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 600_000 + "0]")
    with pytest.raises(SummaryFormatError, match="big.json: cannot read x: larger than"):
        read_json(path, "x", SummaryFormatError, max_bytes=1024 * 1024)


def test_a_slide_declaring_a_level_larger_than_any_glass_slide_is_refused(tmp_path):
    path = tiff_sharing_one_tile(tmp_path / "absurd.tif", 4_000_000, 1024)
    with pytest.raises(SlideOpenError, match=r"absurd.tif: declares a level of 4000000 x 1024 px"):
        open_slide(path)
