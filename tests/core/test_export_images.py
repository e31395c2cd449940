"""Exported images: size and scale, alignment with the slide, streaming, cancellation,
pyramidal TIFF in OpenSlide, raw probabilities, provenance, no label image."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.errors import ExportCancelled, ExportError
from histoviewer.core.export import (HeatmapImageRequest, OverlayRequest, export_heatmap_image, export_overlay,
                                     export_raw_probabilities, read_raw_probabilities)
from histoviewer.core.colormaps import blend_heatmap
from histoviewer.core.export.legend import FAILED_RGB, NOT_COMPUTED_RGB
from histoviewer.core.export.outline import Outline
from histoviewer.core.progress import JobControl
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.pyramid_writer import description_text
from tests.core.export_helpers import GEOMETRY, LESION_CENTRE, lesion_heatmap, slide
from tests.core.inference_helpers import LESION, LESION_RECT, MPP, TISSUE, H, W


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """One synthetic slide per module: writing and decoding it is most of a test's time."""
    with open_slide(slide(tmp_path_factory.mktemp("slide"))) as r:
        yield r


def _image(path, size):
    img = np.asarray(Image.open(path).convert("RGB"))
    return img[: size[1], : size[0]]


def _expected(rgb, prob):
    return tuple(blend_heatmap(np.array([[rgb]], np.uint8), np.array([[prob]], np.float32),
                               "viridis", 0.5, 0.5)[0, 0])


def test_overlay_png_has_requested_size_scale_and_lands_on_the_lesion(reader, tmp_path):
    region = (2000, 800, 1600, 1400)
    res = export_overlay(tmp_path / "ov.png", reader, lesion_heatmap(),
                         OverlayRequest(l0_region=region, output_mpp=1.0, scale_bar=False))
    l0_per_px = 1.0 / MPP
    assert res.size == (400, 350)
    assert res.provenance.output_mpp == pytest.approx(1.0) and res.provenance.l0_per_px == l0_per_px
    img = _image(res.path, res.size)
    u = int((LESION_CENTRE[0] - region[0]) / l0_per_px)
    v = int((LESION_CENTRE[1] - region[1]) / l0_per_px)
    assert tuple(img[v, u]) == _expected(LESION, 0.9)  # lesion pixels under a lesion cell
    # the lesion's left edge (level-0 x 2100) is output column 25; the first lesion map
    # cell starts at level-0 x 2200 (column 50): slide and heatmap both where they belong
    assert tuple(img[v, 24]) == TISSUE
    assert tuple(img[v, 26]) == LESION
    assert tuple(img[v, 49]) == LESION and tuple(img[v, 50]) == _expected(LESION, 0.9)
    # below the lesion: tissue with p = 0.1, under the 0.5 threshold, stays uncoloured
    below = int((LESION_RECT[1] + LESION_RECT[3] - region[1]) / l0_per_px) + 40
    assert tuple(img[below, u]) == TISSUE


def test_tiles_join_without_seams(reader, tmp_path):
    outline = Outline(((2100, 900), (3400, 900), (3400, 2000), (2100, 2000)), (255, 0, 0), "lesion",
                      ((2100, 900), (3400, 2000)))
    kw = dict(l0_region=(1000, 500, 3000, 2500), output_mpp=2.0, outlines=[outline])
    a = export_overlay(tmp_path / "a.png", reader, lesion_heatmap(), OverlayRequest(tile_px=512, **kw))
    b = export_overlay(tmp_path / "b.png", reader, lesion_heatmap(), OverlayRequest(tile_px=48, **kw))
    ia, ib = np.asarray(Image.open(a.path)), np.asarray(Image.open(b.path))
    assert ia.shape == ib.shape and np.array_equal(ia, ib)
    # the outline is drawn: red pixels along the lesion's top edge
    v = round((900 - 500) / 8)
    assert (ia[v - 1 : v + 2, 150:300] == (255, 0, 0)).all(axis=-1).any()


def test_progress_reaches_total_and_cancel_removes_the_file(reader, tmp_path):
    seen = []
    request = OverlayRequest(output_mpp=1.0, tile_px=128)
    export_overlay(tmp_path / "p.png", reader, lesion_heatmap(), request,
                   control=JobControl(progress=lambda _s, d, t, _x: seen.append((d, t))))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 1
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    for name in ("c.png", "c.tiff"):
        stop = threading.Event()

        def progress(_stage, done, total, _detail, stop=stop):
            if done >= 3:
                stop.set()

        with pytest.raises(ExportCancelled):
            export_overlay(tmp_path / name, reader, lesion_heatmap(), request,
                           control=JobControl(progress=progress, cancel=stop))
        assert not (tmp_path / name).exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_pyramid_tiff_opens_in_openslide_aligned_with_the_slide(reader, tmp_path):
    openslide = pytest.importorskip("openslide")
    res = export_overlay(tmp_path / "ov.tiff", reader, lesion_heatmap(),
                         OverlayRequest(output_mpp=0.5, tile_px=256))
    assert res.kind == "overlay-pyramid" and res.size == (W // 2, H // 2)
    with openslide.OpenSlide(str(res.path)) as osr:
        assert osr.level_dimensions[0] == res.size
        assert len(osr.level_dimensions) >= 2
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        assert dict(osr.associated_images) == {}  # never a label or macro image
        ds = 0.5 / MPP  # slide level-0 px per overlay px
        cx, cy = int(LESION_CENTRE[0] / ds), int(LESION_CENTRE[1] / ds)
        px = np.asarray(osr.read_region((cx, cy), 0, (1, 1)).convert("RGB"))[0, 0].astype(int)
        assert np.abs(px - _expected(LESION, 0.9)).max() <= 6  # JPEG
        px = np.asarray(osr.read_region((int(1000 / ds), cy), 0, (1, 1)).convert("RGB"))[0, 0]
        assert px.min() >= 248  # glass
        assert osr.properties["openslide.vendor"] == "generic-tiff"  # no vendor disguise
        # the comment is level 0's OME-XML (pyramid_writer); our text is its Description
        text = description_text(osr.properties["openslide.comment"])
        line = [ln for ln in text.splitlines() if ln.startswith("provenance = ")]
        prov = json.loads(line[0].removeprefix("provenance = "))
        assert prov["model"]["content_hash"] == "f" * 64 and prov["um_per_px"] == pytest.approx(0.5)
        assert osr.properties["tiff.Software"].startswith("HistoViewer")
    assert res.sidecars[1].name == "ov.tiff.legend.png" and res.sidecars[1].is_file()


def test_raw_probabilities_read_back_equal_the_grid(tmp_path):
    hm = lesion_heatmap()
    whole = export_raw_probabilities(tmp_path / "raw.tiff", hm, slide_path="s.tiff")
    back = read_raw_probabilities(whole.path)
    assert back.geometry == GEOMETRY and (back.row0, back.col0) == (0, 0)
    np.testing.assert_array_equal(back.encoded, hm.encoded)  # NaN == NaN here
    part = export_raw_probabilities(tmp_path / "part.tif", hm, region=(2150, 950, 1000, 500))
    back = read_raw_probabilities(part.path)
    assert (back.row0, back.col0) == (4, 10) and back.encoded.shape == (4, 6)
    np.testing.assert_array_equal(back.encoded, hm.encoded[4:8, 10:16])
    x, y, w, h = back.l0_rect()
    assert x <= 2150 and y <= 950 and x + w >= 3150 and y + h >= 1450
    with pytest.raises(ExportError, match="TIFF"):
        export_raw_probabilities(tmp_path / "raw.png", hm)


def test_heatmap_alone_shows_states_and_carries_provenance(tmp_path):
    hm = lesion_heatmap()
    res = export_heatmap_image(tmp_path / "hm.png", hm,
                               HeatmapImageRequest(slide_path="/slides/s.tiff", scale_bar=False))
    stride = GEOMETRY.l0_stride
    l0_per_px = res.provenance.l0_per_px
    k = stride / l0_per_px
    assert k == int(k) and max(res.size) <= 2048  # whole pixels per map cell
    img = _image(res.path, res.size)
    cols = GEOMETRY.cols
    assert tuple(img[int(k / 2), int((cols - 0.5) * k)]) == NOT_COMPUTED_RGB
    assert tuple(img[int(k / 2), int((cols - 1.5) * k)]) == FAILED_RGB
    assert tuple(img[int(k / 2), 2]) == (255, 255, 255)  # glass: background
    with Image.open(res.path) as png:
        prov = json.loads(png.text["histoviewer:provenance"])
    side = json.loads(res.sidecars[0].read_text())
    for record in (prov, side):
        assert record["model"]["demonstration"] is True and "not for diagnosis" in record["model"]["warning"]
        assert record["model"]["content_hash"] == "f" * 64
        # the file name only by default: folder names can identify a patient or a hospital
        assert record["slide_path"] == "s.tiff" and record["label_image_included"] is False
        assert record["software_version"] and record["created"]
        assert record["l0_region"] == [0.0, 0.0, float(W), float(H)]
    with Image.open(res.path) as png:
        assert "/slides" not in str(png.text)


def test_the_full_slide_path_is_recorded_only_when_asked(tmp_path):
    hm = lesion_heatmap()
    res = export_heatmap_image(tmp_path / "hm.png", hm, HeatmapImageRequest(
        slide_path="/slides/patient_x/s.tiff", scale_bar=False, record_full_slide_path=True))
    with Image.open(res.path) as png:
        assert json.loads(png.text["histoviewer:provenance"])["slide_path"] == "/slides/patient_x/s.tiff"
        assert png.text["Source"] == "/slides/patient_x/s.tiff"
    assert json.loads(res.sidecars[0].read_text())["slide_path"] == "/slides/patient_x/s.tiff"
    raw = export_raw_probabilities(tmp_path / "r.tiff", hm, slide_path="/slides/patient_x/s.tiff")
    assert json.loads(raw.sidecars[0].read_text())["slide_path"] == "s.tiff"
    assert "patient_x" not in raw.path.read_bytes().decode("latin-1")
    raw = export_raw_probabilities(tmp_path / "r2.tiff", hm, slide_path="/slides/patient_x/s.tiff",
                                   record_full_slide_path=True)
    assert read_raw_probabilities(raw.path).meta["provenance"]["slide_path"] == "/slides/patient_x/s.tiff"


def test_the_slide_label_is_never_read(reader, tmp_path, monkeypatch):
    def forbidden(name):
        raise AssertionError(f"associated image {name!r} read during an export")

    monkeypatch.setattr(reader, "associated_image", forbidden)
    export_overlay(tmp_path / "o.png", reader, lesion_heatmap(), OverlayRequest(output_mpp=4.0))
    export_overlay(tmp_path / "o.tiff", reader, lesion_heatmap(), OverlayRequest(output_mpp=4.0))


def test_bad_requests_name_the_problem(reader, tmp_path):
    hm = lesion_heatmap()
    with pytest.raises(ExportError, match="outside the slide"):
        export_overlay(tmp_path / "x.png", reader, hm, OverlayRequest(l0_region=(W + 10, 0, 100, 100)))
    with pytest.raises(ExportError, match=".png, .tif"):
        export_overlay(tmp_path / "x.jpg", reader, hm)
    with pytest.raises(ExportError, match="limit"):
        export_overlay(tmp_path / "x.png", reader, hm, OverlayRequest(output_mpp=1e-6))
    with pytest.raises(ExportError, match="must be positive"):
        OverlayRequest(output_mpp=-1.0)
    with pytest.raises(ExportError, match="not both"):
        OverlayRequest(output_mpp=1.0, l0_per_output_px=2.0)
    with pytest.raises(ExportError, match="width and height"):
        OverlayRequest(l0_region=(0, 0, 0, 10))
    with pytest.raises(ExportError, match="opacity"):
        OverlayRequest(opacity=1.5)


def _peak_bytes(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_bounded_memory_while_streaming_a_large_overlay(reader, tmp_path):
    """Same width, 5x the height (10000 x 30000 px, 900 MB as RGB; both cross the lesion,
    where blending allocates most): the export's own allocations do not grow with the
    image's height and stay far below its size."""
    hm = lesion_heatmap()
    kw = dict(l0_per_output_px=0.1, legend=False)
    short = _peak_bytes(lambda: export_overlay(tmp_path / "s.tiff", reader, hm,
                                               OverlayRequest(l0_region=(2000, 900, 1000, 600), **kw)))
    res = []
    tall = _peak_bytes(lambda: res.append(export_overlay(tmp_path / "t.tiff", reader, hm,
                                                         OverlayRequest(l0_region=(2000, 0, 1000, H), **kw))))
    w, h = res[0].size
    assert (w, h) == (10000, 30000)
    assert tall < 1.25 * short, f"peak {tall / 1e6:.0f} MB for 30000 rows, {short / 1e6:.0f} MB for 6000"
    assert tall < 0.15 * w * h * 3, f"peak {tall / 1e6:.0f} MB"


def test_direct_tile_reads_match_the_reader(reader, tmp_path):
    """A tiled JPEG pyramid (our own pyramid export of the synthetic slide, heatmap off) read
    by direct tile decoding gives the same overlay as through OpenSlide."""
    pytest.importorskip("openslide")
    pyramid = export_overlay(tmp_path / "slide.tiff", reader, lesion_heatmap(),
                             OverlayRequest(l0_per_output_px=1.0, opacity=0.0, legend=False, tile_px=256)).path
    with open_slide(pyramid) as tiled:
        from histoviewer.core.inference.tiff_regions import TiffRegionSource

        direct = TiffRegionSource.open(pyramid, tiled)
        assert direct is not None  # the fast path is really taken
        direct.close()
        hm = lesion_heatmap()
        kw = dict(l0_region=(500, 300, 3000, 2400), l0_per_output_px=4.0, legend=False, scale_bar=False)
        fast = export_overlay(tmp_path / "fast.png", tiled, hm, OverlayRequest(fast_tiff=True, **kw))
        slow = export_overlay(tmp_path / "slow.png", tiled, hm, OverlayRequest(fast_tiff=False, **kw))
    assert np.array_equal(np.asarray(Image.open(fast.path)), np.asarray(Image.open(slow.path)))
