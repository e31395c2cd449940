"""Phantom slides: lesion requests, the written pyramid (through OpenSlide), lesion sizes,
tumour appearance, ground-truth files and determinism."""

from __future__ import annotations

import argparse
import hashlib
import json
import math

import numpy as np
import openslide
import pytest
from scipy import ndimage as ndi
from skimage.draw import polygon2mask
from skimage.measure import label, regionprops

from histoviewer.cli import phantom as phantom_cli
from histoviewer.core.annotations.asap_xml import read_asap_xml
from histoviewer.core.annotations.geojson_io import read_geojson
from histoviewer.core.errors import Cancelled, PhantomSpecError
from histoviewer.core.geometry import max_feret_diameter
from histoviewer.core.phantom import LesionSpec, parse_lesion_specs, write_phantom
from histoviewer.core.phantom.layout import build_layout
from histoviewer.core.phantom.render import STAIN_E, STAIN_H, TileRenderer
from histoviewer.core.progress import JobControl
from histoviewer.core.slide import open_slide
from histoviewer.core.staging_terms import SizeClass

SMALL = dict(width=4096, height=3072, mpp=0.25, lesions="micro:0.25,itc:0.08", seed=3)


# -- lesion requests --------------------------------------------------------------------


def test_parse_kinds_bare_numbers_and_empty():
    specs = parse_lesion_specs("macro:3.0, micro:0.8 ,itc:0.15")
    assert [(s.kind, s.diameter_mm) for s in specs] == [
        (SizeClass.MACRO, 3.0), (SizeClass.MICRO, 0.8), (SizeClass.ITC, 0.15)
    ]
    assert [s.kind for s in parse_lesion_specs("0.1,1.5,2.5")] == [
        SizeClass.ITC, SizeClass.MICRO, SizeClass.MACRO
    ]
    assert parse_lesion_specs("") == () and parse_lesion_specs("  ") == ()
    assert parse_lesion_specs(None) == ()
    assert parse_lesion_specs("ITC:0.2")[0].kind is SizeClass.ITC  # boundary: <= 0.2 is ITC
    given = [LesionSpec("micro", 1.0), "itc:0.1"]
    assert parse_lesion_specs(given) == (LesionSpec(SizeClass.MICRO, 1.0), LesionSpec(SizeClass.ITC, 0.1))
    assert str(LesionSpec("macro", 2.5)) == "macro:2.5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("micro:3.0", r"micro lesion of 3 mm is inconsistent: micro diameters are more than 0.2 and at most 2.0 mm"),
        ("micro:0.2", r"more than 0.2"),
        ("macro:1.0", r"macro diameters are more than 2.0 mm"),
        ("itc:0.5", r"itc diameters are 0.03 to 0.2 mm"),
        ("tumour:1", r"unknown kind 'tumour'"),
        ("micro:abc", r"'abc' is not a diameter in mm"),
        ("micro:", r"'' is not a diameter"),
        ("itc:-0.1", r"positive number"),
        ("macro:3,,itc:0.1", r"lesion 2 is empty"),
        ("0.01", r"too small"),
        ("itc:nan", r"positive number"),
    ],
)
def test_parse_errors_name_the_token_and_range(text, message):
    with pytest.raises(PhantomSpecError, match=message):
        parse_lesion_specs(text)


def test_lesions_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(PhantomSpecError, match=r"macro:3 .*does not fit in the node tissue of a 4096 x 3072 px slide"):
        write_phantom(tmp_path / "x.tiff", width=4096, height=3072, lesions="macro:3")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(width=100, height=3000), "width must be between"),
        (dict(width=4096.0, height=3000), "width must be an integer"),
        (dict(width=4096, height=3072, tile_size=500), "multiple of 16"),
        (dict(width=4096, height=3072, mpp=0.0), "mpp must be between 0.1 and 4.0"),
        (dict(width=4096, height=3072, jpeg_quality=0), "JPEG quality"),
        (dict(width=4096, height=3072, seed=-1), "seed"),
    ],
)
def test_bad_requests(tmp_path, kwargs, message):
    with pytest.raises(PhantomSpecError, match=message):
        write_phantom(tmp_path / "x.tiff", **kwargs)


def test_missing_output_folder(tmp_path):
    with pytest.raises(PhantomSpecError, match="does not exist"):
        write_phantom(tmp_path / "nope" / "x.tiff", width=1024, height=1024, lesions="")


# -- one small phantom, checked through OpenSlide -----------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "small.tiff"
    calls: list[tuple[int, int]] = []
    stages: set[str] = set()

    def progress(stage: str, done: int, total: int, _detail: str) -> None:
        stages.add(stage)
        calls.append((done, total))

    result = write_phantom(out, control=JobControl(progress=progress), **SMALL)
    assert stages == {"Writing phantom tiles"}  # one stage, counted in level-0 tiles
    return result, calls


def test_a_cancelled_phantom_leaves_no_file(tmp_path):
    rows_done: list[int] = []

    def progress(_stage: str, done: int, _total: int, _detail: str) -> None:
        rows_done.append(done)

    # cancel once the first row of tiles is written: cooperative, checked between rows
    control = JobControl(progress=progress, cancel=lambda: len(rows_done) > 1)
    with pytest.raises(Cancelled, match="phantom cancelled"):
        write_phantom(tmp_path / "c.tiff", control=control, workers=1, **SMALL)
    assert rows_done == [0, 8] and list(tmp_path.iterdir()) == []


def test_openslide_reads_geometry_mpp_and_power(small):
    result, calls = small
    with openslide.OpenSlide(str(result.slide_path)) as s:
        assert s.dimensions == (4096, 3072)
        assert s.level_count == 3
        assert s.level_dimensions == ((4096, 3072), (2048, 1536), (1024, 768))
        assert s.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.25)
        # An honest generic TIFF: no scanner's objective is claimed for a synthetic slide;
        # our reader derives 40x from the scale (10 um/px / mpp).
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert "openslide.objective-power" not in s.properties
        assert s.properties["tiff.ResolutionUnit"] == "centimeter"
        assert s.properties["openslide.level[0].tile-width"] == "512"
    assert result.level_dimensions == ((4096, 3072), (2048, 1536), (1024, 768))
    assert calls[-1] == (48, 48) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_every_level_is_readable_and_consistent(small):
    result, _ = small
    with openslide.OpenSlide(str(result.slide_path)) as s:
        means = []
        for level, (w, h) in enumerate(s.level_dimensions):
            img = np.asarray(s.read_region((0, 0), level, (w, h)))
            assert img.shape == (h, w, 4) and (img[..., 3] == 255).all()
            means.append(img[..., :3].reshape(-1, 3).mean(0))
            # A tile-aligned read in the middle of the level decodes too.
            ds = s.level_downsamples[level]
            tile = np.asarray(s.read_region((int(2048 - 256 * ds), int(1536 - 256 * ds)), level, (512, 512)))
            assert tile[..., :3].std() > 5  # tissue, not an empty tile
        # Lower levels are averages of level 0: the mean colour hardly changes.
        np.testing.assert_allclose(means[1], means[0], atol=1.5)
        np.testing.assert_allclose(means[2], means[0], atol=2.0)
        corner = np.asarray(s.read_region((0, 0), 0, (256, 256)))[..., :3]
        assert corner.mean() > 230  # glass around the node


def test_lesion_diameters_classes_and_placement(small):
    result, _ = small
    assert [(les.name, les.size_class) for les in result.lesions] == [
        ("micro-1", SizeClass.MICRO), ("itc-1", SizeClass.ITC)
    ]
    for les, asked in zip(result.lesions, (0.25, 0.08)):
        measured = max_feret_diameter(np.asarray(les.l0_polygon)) * 0.25 / 1000
        assert measured == pytest.approx(les.diameter_mm, rel=1e-9)
        assert les.diameter_mm == pytest.approx(asked, rel=0.01)
        assert les.requested_diameter_mm == asked
        pts = np.asarray(les.l0_polygon)
        assert (pts >= 0).all() and (pts[:, 0] < 4096).all() and (pts[:, 1] < 3072).all()
        # Compact: area between that of a thin ellipse and of the circle of that diameter.
        circle = math.pi * (les.diameter_mm / 2) ** 2
        assert 0.3 * circle < les.area_mm2 < circle


def _haematoxylin(rgb: np.ndarray) -> np.ndarray:
    od = -np.log((rgb.astype(float) + 1.0) / 256.0)
    conc = od.reshape(-1, 3) @ np.linalg.pinv(np.stack([STAIN_H, STAIN_E]))
    return conc[:, 0].reshape(rgb.shape[:2])


def test_tumour_nuclei_are_larger_than_lymphocytes(small):
    """Nuclei segmented with a plain haematoxylin threshold: inside the lesion polygon
    they are several times larger than in the lymphoid tissue around it."""
    result, _ = small
    poly = np.asarray(result.lesions[0].l0_polygon)
    (x0, y0), (x1, y1) = poly.min(0).astype(int) - 300, poly.max(0).astype(int) + 300
    with openslide.OpenSlide(str(result.slide_path)) as s:
        rgb = np.asarray(s.read_region((int(x0), int(y0)), 0, (int(x1 - x0), int(y1 - y0))))[..., :3]
    inside = polygon2mask(rgb.shape[:2], np.column_stack([poly[:, 1] - y0 - 0.5, poly[:, 0] - x0 - 0.5]))
    lab = label(ndi.binary_fill_holes(_haematoxylin(rgb) > 0.45))
    areas: dict[bool, list[float]] = {True: [], False: []}
    for p in regionprops(lab):
        if p.area >= 20:
            cy, cx = p.centroid
            areas[bool(inside[int(cy), int(cx)])].append(p.area)
    assert len(areas[True]) >= 20 and len(areas[False]) >= 50
    tumour_px, lymph_px = np.median(areas[True]), np.median(areas[False])
    # Lymphocyte nuclei ~6 um (~450 px at 0.25 um/px); tumour nuclei 10-16 um.
    assert 250 < lymph_px < 900
    assert tumour_px > 3 * lymph_px


def test_tumour_fills_exactly_the_truth_polygon():
    """Rendering with and without the lesion: every changed pixel is inside the polygon
    or within a few micrometres of it (lymphocytes step back from the tumour), and the
    tumour texture covers the rasterised polygon."""
    layout = build_layout(4096, 3072, 0.25, parse_lesion_specs("itc:0.12"), 5)
    les = layout.lesions[0]
    plain = type(layout)(layout.width, layout.height, layout.mpp, layout.seed, layout.tissue,
                         layout.follicles, ())
    ts = 512
    bx0, by0, bx1, by1 = les.l0_bbox
    x0 = int(bx0) // ts * ts
    y0 = int(by0) // ts * ts
    w = (int(bx1) // ts + 1) * ts - x0
    h = (int(by1) // ts + 1) * ts - y0
    with_lesion, without = TileRenderer(layout, ts), TileRenderer(plain, ts)

    def region(r: TileRenderer) -> np.ndarray:
        rows = [np.concatenate([r.render(x, y) for x in range(x0, x0 + w, ts)], axis=1)
                for y in range(y0, y0 + h, ts)]
        return np.concatenate(rows, axis=0)

    changed = np.any(region(with_lesion) != region(without), axis=2)
    verts = les.l0_vertices
    truth = polygon2mask((h, w), np.column_stack([verts[:, 1] - y0 - 0.5, verts[:, 0] - x0 - 0.5]))
    assert truth.sum() > 10000
    assert changed[truth].mean() > 0.98
    # Cells centred within 4.5 um of the outline step back; the widest sprite (a
    # histiocyte with its cytoplasm) reaches ~11 um from its centre.
    near = ndi.distance_transform_edt(~truth) <= 16 / 0.25  # 16 um, Euclidean
    assert not changed[~near].any()
    # The renderer's own inside test is the rasterised polygon (pixel centres).
    yy, xx = np.mgrid[0:h, 0:w]
    mine = les.contains(xx + x0 + 0.5, yy + y0 + 0.5)
    assert (mine != truth).sum() <= 0.002 * truth.sum()


def test_ground_truth_files_agree(small):
    result, _ = small
    doc = json.loads(result.lesions_json_path.read_text())
    assert (doc["width"], doc["height"], doc["mpp"], doc["seed"]) == (4096, 3072, 0.25, 3)
    assert doc["node_label"] == "micro"
    assert [d["name"] for d in doc["lesions"]] == ["micro-1", "itc-1"]
    geo = read_geojson(result.geojson_path)
    xml = read_asap_xml(result.xml_path)
    for les, d, g, x in zip(result.lesions, doc["lesions"], geo, xml):
        assert d["size_class"] == les.size_class.value == g.properties["size_class"]
        assert d["diameter_mm"] == pytest.approx(les.diameter_mm, abs=1e-6)
        assert d["area_mm2"] == pytest.approx(les.area_mm2, abs=1e-6)
        assert d["centroid_l0"] == pytest.approx(les.l0_centroid, abs=0.01)
        assert g.name == x.name == les.name and g.classification == "Tumor"
        assert g.l0_points == les.l0_polygon
        np.testing.assert_allclose(x.l0_points, les.l0_polygon, atol=1e-4)
        assert max_feret_diameter(np.asarray(x.l0_points)) * 0.25e-3 == pytest.approx(d["diameter_mm"], abs=2e-6)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_files_other_seed_other_lesions(tmp_path):
    kw = dict(width=3072, height=2048, lesions="itc:0.1", seed=11)
    a = write_phantom(tmp_path / "a.tiff", **kw)
    b = write_phantom(tmp_path / "b.tiff", **kw)
    assert _sha(a.slide_path) == _sha(b.slide_path)
    assert a.lesions == b.lesions
    for pa, pb in ((a.geojson_path, b.geojson_path), (a.xml_path, b.xml_path)):
        assert pa.read_bytes() == pb.read_bytes()
    # Another seed moves the lesion and changes the pixels.
    other = build_layout(3072, 2048, 0.25, parse_lesion_specs("itc:0.1"), 12)
    assert other.lesions[0].centroid() != pytest.approx(a.lesions[0].l0_centroid, abs=1.0)
    same = build_layout(3072, 2048, 0.25, parse_lesion_specs("itc:0.1"), 11)
    r11 = TileRenderer(same, 512).render(1024, 1024)
    assert r11.tobytes() == TileRenderer(same, 512).render(1024, 1024).tobytes()
    assert r11.tobytes() != TileRenderer(other, 512).render(1024, 1024).tobytes()
    # What OpenSlide decodes from the file is the rendered tile, up to JPEG loss.
    with openslide.OpenSlide(str(a.slide_path)) as sa:
        ra = np.asarray(sa.read_region((1024, 1024), 0, (512, 512)))[..., :3]
    assert np.abs(ra.astype(int) - r11.astype(int)).mean() < 6


def test_negative_node_at_half_resolution(tmp_path):
    """--mpp 0.5: OpenSlide reports 0.5 um/px, our reader 20x; no lesions gives empty truth."""
    r = write_phantom(tmp_path / "neg.tiff", width=2048, height=2048, mpp=0.5, lesions="")
    assert r.lesions == ()
    with openslide.OpenSlide(str(r.slide_path)) as s:
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert s.level_count == 2
    with open_slide(r.slide_path) as reader:
        assert reader.info.mpp == pytest.approx(0.5) and reader.info.base_magnification == pytest.approx(20)
    assert json.loads(r.geojson_path.read_text())["features"] == []
    assert read_asap_xml(r.xml_path) == []
    assert json.loads(r.lesions_json_path.read_text())["node_label"] == "negative"


def test_cli_writes_and_reports(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    phantom_cli.register(parser.add_subparsers())
    out = tmp_path / "cli.tiff"
    args = parser.parse_args(["phantom", str(out), "--width", "3072", "--height", "2048",
                              "--lesions", "itc:0.1", "--seed", "2", "--json"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["slide_path"] == str(out) and data["lesions"][0]["size_class"] == "itc"
    assert out.exists() and (tmp_path / "cli.lesions.json").exists()
    args = parser.parse_args(["phantom", str(out), "--width", "2048", "--height", "1536",
                              "--lesions", "micro:5", "--overwrite"])  # an existing OUT needs --overwrite
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("histoviewer: error: lesion 1 ('micro:5')")


@pytest.mark.slow
def test_worker_processes_give_identical_bytes(tmp_path):
    kw = dict(width=3072, height=2048, lesions="itc:0.15", seed=4)
    a = write_phantom(tmp_path / "a.tiff", workers=1, **kw)
    b = write_phantom(tmp_path / "b.tiff", workers=2, **kw)
    assert _sha(a.slide_path) == _sha(b.slide_path)
