"""The slide layer on real files: metadata, pixels, and every kind of bad input.

Most tests read the tiny slides checked in under tests/data (so they run on any clone); a
few read the real slides in ../shared/data (skipped where that is absent) for what a tiny
file cannot show: a real scanner's metadata, DICOM, a real slide's size.
"""

from __future__ import annotations

import os

import numpy as np
import openslide
import pytest
import tifffile

from histoviewer.core.errors import SlideOpenError, SlideReadError
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.reader import composite_on_white, rgb_of_rgba
from tests.data.make_fixtures import BROKEN_TILE, QUADRANT_RGB, TILE, tiny_pixels
from tests.data.make_fixtures import HERE as TINY_SLIDES


def test_real_svs_metadata(cmu_small):
    with open_slide(cmu_small) as reader:
        info = reader.info
        assert info.backend == "openslide"
        assert info.vendor == "aperio"
        assert info.dimensions == (2220, 2967)
        assert info.level_count == 1
        assert info.mpp == pytest.approx(0.499)
        assert info.objective_power == 20
        assert set(info.associated_images) == {"label", "macro", "thumbnail"}
        assert info.to_dict()["mpp_known"] is True


def test_tiny_svs_metadata(tiny_svs):
    with open_slide(tiny_svs) as reader:
        info = reader.info
        assert info.backend == "openslide" and info.vendor == "aperio"
        assert info.dimensions == (64, 48) and info.level_count == 2
        assert info.level_dimensions[1] == (32, 24) and info.level_downsamples[1] == pytest.approx(2.0)
        assert info.mpp == pytest.approx(0.5) and info.objective_power == 20
        assert set(info.associated_images) == {"label", "thumbnail"}
        assert info.to_dict()["mpp_known"] is True


def test_region_equals_openslide_composited_on_white(tiny_svs):
    raw = openslide.OpenSlide(str(tiny_svs))
    expected = np.asarray(raw.read_region((10, 6), 0, (40, 30)))
    with open_slide(tiny_svs) as reader:
        got = reader.read_region(10, 6, 0, 40, 30)
        level1 = reader.read_region(0, 0, 1, 32, 24)
    raw.close()
    assert got.shape == (30, 40, 3) and got.dtype == np.uint8
    assert np.array_equal(got, composite_on_white(expected))
    assert np.array_equal(got, tiny_pixels()[6:36, 10:50])  # the pixels the fixture was written with
    assert np.array_equal(level1, tiny_pixels()[::2, ::2])


def test_region_outside_the_slide_is_white(tiny_svs):
    with open_slide(tiny_svs) as reader:
        got = reader.read_region(-500, -500, 0, 100, 100)
        edge = reader.read_region(56, 40, 0, 16, 16)  # the bottom-right corner and beyond
    assert (got == 255).all()
    assert (edge[:8, :8] == QUADRANT_RGB[3]).all() and (edge[8:] == 255).all() and (edge[:, 8:] == 255).all()


def test_composite_on_white_blends_by_alpha():
    rgba = np.array([[[0, 0, 0, 0], [100, 50, 0, 255], [0, 0, 0, 128]]], np.uint8)
    out = composite_on_white(rgba)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [100, 50, 0]
    assert out[0, 2].tolist() == [127, 127, 127]


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_composite_on_white_of_opaque_pixels_keeps_them(layout):
    """The fast path (opacity from a uint32 view, repack by PIL) gives the same pixels."""
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    src = rgba if layout == "contiguous" else rgba[:, ::2]
    out = composite_on_white(src)
    assert out.shape == src.shape[:2] + (3,) and out.flags.c_contiguous
    assert np.array_equal(out, src[..., :3])
    rgba[5, 7, 3] = 254  # one pixel not quite opaque: the blend path
    assert composite_on_white(rgba)[5, 7].tolist() == [
        (int(v) * 254 + 255 + 127) // 255 for v in rgba[5, 7, :3]]


def test_opaque_tiles_are_read_without_a_copy(tiny_svs):
    """An opaque region is the RGB view of OpenSlide's RGBA pixels (the loader's hot path)."""
    with open_slide(tiny_svs) as reader:
        tile = reader.read_region(TILE, TILE, 0, TILE, TILE)
    assert tile.shape == (TILE, TILE, 3) and tile.base is not None and tile.base.shape == (TILE, TILE, 4)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert rgb_of_rgba(rgba).base is rgba
    rgba[0, 0, 3] = 0
    assert rgb_of_rgba(rgba)[0, 0].tolist() == [255, 255, 255]


def test_overview_of_a_real_slide_is_its_only_level_shrunk(cmu_small):
    with open_slide(cmu_small) as reader:  # one level, 2220 x 2967: shrunk 3x
        assert reader.overview(1024).shape == (989, 740, 3)


def test_overview_reads_only_the_coarsest_level(tiny_slides):
    with open_slide(tiny_slides / "tiny-pyramid.tiff") as reader:
        reads = []
        original = reader.read_region
        reader.read_region = lambda *a: reads.append(a) or original(*a)
        whole = reader.overview(1024)  # the coarsest level (16 x 12) fits: as it is
        assert reads == [(0, 0, 2, 16, 12)]
        assert np.array_equal(whole, tiny_pixels()[::4, ::4])
        assert reader.overview(8).shape == (6, 8, 3)  # halved by a box average: 8 x 6


def test_slide_without_mpp_reports_unknown(tiny_slides):
    with open_slide(tiny_slides / "tiny-no-mpp.svs") as reader:
        info = reader.info
        assert info.mpp is None and info.mpp_x is None
        assert info.level_count == 2
        assert info.base_magnification is None
        assert info.to_dict()["mpp_known"] is False


def test_multi_level_generic_tiff_geometry(tiny_slides):
    with open_slide(tiny_slides / "tiny-pyramid.tiff") as reader:
        info = reader.info
        assert info.vendor == "generic-tiff" and info.level_count == 3
        assert info.level_dimensions == ((64, 48), (32, 24), (16, 12))
        assert info.level_downsamples[1] == pytest.approx(2.0)
        assert reader.best_level_for_downsample(1.0) == 0
        assert reader.best_level_for_downsample(3.9) == 1
        assert reader.best_level_for_downsample(100) == 2
        assert reader.read_region(0, 0, 2, 11, 7).shape == (7, 11, 3)


def test_dicom_opens(slides_dir):
    with open_slide(slides_dir / "openslide-fixtures" / "boxes_0.dcm") as reader:
        assert reader.info.vendor == "dicom"
        assert reader.read_region(0, 0, 0, 8, 8).shape == (8, 8, 3)


def test_flat_tiff_falls_back_to_image_reader(tmp_path):
    path = tmp_path / "flat.tif"  # stripped, not tiled: not a slide to OpenSlide
    tifffile.imwrite(path, tiny_pixels(300, 180), photometric="rgb")
    with open_slide(path) as reader:
        info = reader.info
        assert info.backend == "image"
        assert info.dimensions == (300, 180)
        region = reader.read_region(250, 150, 0, 100, 100)
        assert region.shape == (100, 100, 3)
        assert (region[:30, :50] == QUADRANT_RGB[3]).all()
        assert (region[30:, :, :] == 255).all() and (region[:, 50:] == 255).all()  # beyond the edges: white
        assert reader.thumbnail(64).shape[1] == 64


def test_flat_png_round_trip(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "field.png")
    with open_slide(tmp_path / "field.png") as reader:
        assert reader.info.mpp is None
        assert np.array_equal(reader.read_region(10, 20, 0, 50, 40), rgb[20:60, 10:60])


def test_associated_images_are_listed_and_read_only_on_request(tiny_svs):
    with open_slide(tiny_svs) as reader:
        assert "label" in reader.info.associated_images
        label = reader.associated_image("label")
        assert label.shape == (16, 16, 3) and (label == 90).all()
        with pytest.raises(KeyError, match="no associated image named 'nope'"):
            reader.associated_image("nope")


def _copy_fixture(name: str, folder):
    (folder / name).write_bytes((TINY_SLIDES / name).read_bytes())
    return folder / name


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.svs", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "empty.svs").touch() or d / "empty.svs", "empty (0 bytes)"),
        (lambda d: (d / "notes.svs").write_text("hello") and d / "notes.svs", "not a slide format"),
        (lambda d: (d / "fake.png").write_bytes(b"\x89PNG garbage") and d / "fake.png", "not a slide or image"),
        (lambda d: _copy_fixture("truncated.svs", d), "not a slide format"),
    ],
    ids=["missing", "directory", "zero-bytes", "not-a-slide", "corrupt-png", "truncated-svs"],
)
def test_bad_input_names_file_and_cause(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(SlideOpenError) as err:
        open_slide(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_no_permission(tmp_path, monkeypatch):
    path = tmp_path / "locked.svs"
    path.write_bytes(b"x" * 10)
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads anything: simulate the denied access check instead
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode))
    with pytest.raises(SlideOpenError, match="permission denied"):
        open_slide(path)


def test_unsupported_compression_is_a_clear_error(tiny_slides):
    path = tiny_slides / "unsupported-compression.tiff"
    with pytest.raises(SlideOpenError) as err:
        open_slide(path)
    assert str(path) in str(err.value)
    assert "Unsupported TIFF compression" in str(err.value)


def test_broken_tile_data_fails_the_read_and_the_handle_recovers(tiny_slides):
    path = tiny_slides / "broken-tiles.svs"
    col, row = BROKEN_TILE
    reader = open_slide(path)
    try:
        for _ in range(2):  # each read fails on its own, with the file and the region named
            with pytest.raises(SlideReadError, match="broken-tiles.svs: cannot read level 0"):
                reader.read_region(col * TILE, row * TILE, 0, TILE, TILE)
        # Outside the broken data the reader keeps answering: the next tile, and white beyond the slide.
        assert (reader.read_region(0, 0, 0, TILE, TILE) == QUADRANT_RGB[0]).all()
        assert (reader.read_region(100, 100, 0, 8, 8) == 255).all()
    finally:
        reader.close()


def test_composite_on_white_handles_batches_of_rgba():
    from histoviewer.core.slide.reader import composite_on_white

    batch = np.full((3, 5, 7, 4), 255, np.uint8)
    batch[..., :3] = np.arange(3 * 5 * 7 * 3, dtype=np.uint64).reshape(3, 5, 7, 3) % 251
    assert np.array_equal(composite_on_white(batch), batch[..., :3])
    batch[1, 2, 3] = (10, 20, 30, 0)
    out = composite_on_white(batch)
    assert out.shape == (3, 5, 7, 3) and tuple(out[1, 2, 3]) == (255, 255, 255)
