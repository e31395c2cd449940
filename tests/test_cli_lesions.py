"""``histoviewer lesions``, ``stage``, ``evaluate froc|kappa`` and the lesion/case outputs of
``analyze``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from histoviewer.cli import main
from histoviewer.core.annotations.asap_xml import write_asap_xml
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, read_geojson
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.outputs import write_probability_map


def disc_map(n: int, cx: float, cy: float, r: float, ss: int = 8) -> np.ndarray:
    sub = (np.arange(ss) + 0.5) / ss
    c = (np.arange(n)[:, None] + sub[None, :]).ravel()
    inside = (c[None, :] - cx) ** 2 + (c[:, None] - cy) ** 2 <= r * r
    return inside.reshape(n, ss, n, ss).mean(axis=(1, 3))


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_lesions_on_an_array_file(tmp_path, capsys):
    m = np.maximum(disc_map(80, 20, 20, 12), disc_map(80, 60, 60, 1.5))  # 24 and 3 cells
    np.save(tmp_path / "map.npy", m)
    rc, out, _ = run(["lesions", tmp_path / "map.npy", "--mpp", 50, "--json", "--geojson", tmp_path / "l.geojson"],
                     capsys)
    assert rc == 0
    doc = json.loads(out)
    assert doc["node_label"] == "micro" and doc["provisional"] is False
    assert [les["size_class"] for les in doc["lesions"]] == ["micro", "itc"]
    assert doc["lesions"][0]["diameter_mm"] == pytest.approx(24 * 50 / 1000, abs=0.02)
    assert doc["lesions"][1]["diameter_mm"] == pytest.approx(3 * 50 / 1000, abs=0.02)
    anns = read_geojson(tmp_path / "l.geojson")
    assert [a.name for a in anns] == ["lesion-1", "lesion-2"] and anns[0].properties["size_class"] == "micro"
    rc, out, _ = run(["lesions", tmp_path / "map.npy", "--mpp", 50, "--threshold", 0.99], capsys)
    assert rc == 0 and "node label micro" in out


def test_lesions_on_a_grey_image_and_errors(tmp_path, capsys):
    m = disc_map(60, 30, 30, 25)  # 50 cells of 50 um: 2.5 mm
    Image.fromarray((m * 255).round().astype(np.uint8)).save(tmp_path / "map.png")
    rc, out, _ = run(["lesions", tmp_path / "map.png", "--mpp", 50], capsys)
    assert rc == 0 and "node label macro" in out and "lesion-1   macro" in out
    rc, _, err = run(["lesions", tmp_path / "map.png"], capsys)
    assert rc == 2 and "map.png: the map carries no geometry; give the width of one cell" in err
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    rc, _, err = run(["lesions", tmp_path / "rgb.png", "--mpp", 50], capsys)
    assert rc == 2 and "rgb.png: a probability map must be a single-channel image" in err
    np.save(tmp_path / "big.npy", m * 100)
    rc, _, err = run(["lesions", tmp_path / "big.npy", "--mpp", 50], capsys)
    assert rc == 2 and "big.npy: values up to 100" in err
    rc, _, err = run(["lesions", tmp_path / "map.png", "--mpp", 50, "--threshold", 1.5], capsys)
    assert rc == 2 and "threshold" in err


def test_lesions_on_an_analyze_map_uses_its_geometry(tmp_path, capsys):
    geo = GridGeometry.for_slide((9600, 9600), 0.5, 0.972, 96)  # cells of 186.6 l0 px = 93.3 um
    m = disc_map(geo.rows, 25, 25, 10).astype(np.float32)  # a 20-cell disc, ~1.87 mm
    m[:3, :] = -1.0
    m[3, :4] = np.nan
    write_probability_map(tmp_path, m, geo)
    rc, out, _ = run(["lesions", tmp_path / "probability.tiff", "--json"], capsys)
    doc = json.loads(out)
    # 4 cells not computed: no final label, micro so far (a lower bound)
    assert doc["provisional"] is True and doc["node_label"] == "unknown" and doc["label_so_far"] == "micro"
    assert doc["unresolved_reason"].startswith("4 of ")
    les = doc["lesions"][0]
    # the default window correction (a third of the patch) is applied to model maps
    assert les["diameter_mm"] == pytest.approx(20 * 0.0933 - 0.0311, abs=0.02)
    assert les["centroid_l0"] == pytest.approx([25 * geo.l0_stride, 25 * geo.l0_stride], abs=20)
    rc, _, err = run(["lesions", tmp_path / "probability.tiff", "--mpp", 50], capsys)
    assert rc == 2 and "disagrees with the map's own geometry" in err


LABELS = "patient,stage\npatient_001_node_0.tif,micro\npatient_001_node_1.tif,itc\npatient_002_node_0.tif,macro\n"


def test_stage_cli(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text(LABELS)
    rc, out, _ = run(["stage", tmp_path / "labels.csv"], capsys)
    assert rc == 0
    assert out == ("patient,stage\npatient_001.zip,pN1mi\npatient_001_node_0.tif,micro\n"
                   "patient_001_node_1.tif,itc\npatient_002.zip,pN1\npatient_002_node_0.tif,macro\n")
    rc, out, _ = run(["stage", tmp_path / "labels.csv", "--out", tmp_path / "sub.csv"], capsys)
    assert rc == 0 and "patient_001: pN1mi" in out
    assert (tmp_path / "sub.csv").read_text().startswith("patient,stage\npatient_001.zip,pN1mi\n")
    (tmp_path / "bad.csv").write_text("patient,stage\npatient_001_node_0.tif,tiny\n")
    rc, _, err = run(["stage", tmp_path / "bad.csv"], capsys)
    assert rc == 2 and "bad.csv:2: unknown node label 'tiny'" in err


def test_evaluate_kappa_cli(tmp_path, capsys):
    (tmp_path / "ref.csv").write_text("patient,stage\npatient_000.zip,pN0\npatient_001.zip,pN1\n"
                                      "patient_002.zip,pN2\npatient_003.zip,pN1mi\npatient_003_node_0.tif,micro\n")
    (tmp_path / "sub.csv").write_text("patient,stage\npatient_000.zip,pN0\npatient_001.zip,pN2\n"
                                      "patient_002.zip,pN2\npatient_003.zip,pN1mi\n")
    rc, out, _ = run(["evaluate", "kappa", tmp_path / "ref.csv", tmp_path / "sub.csv", "--json"], capsys)
    assert rc == 0 and json.loads(out)["kappa"] == pytest.approx(0.95)  # the hand example of test_froc
    rc, out, _ = run(["evaluate", "kappa", tmp_path / "ref.csv", tmp_path / "sub.csv"], capsys)
    assert "kappa 0.9500 over 4 patients" in out and "patient_001: reference pN1, submitted pN2" in out


def test_evaluate_froc_cli_with_csv_detections(tmp_path, capsys):
    truth, dets = tmp_path / "truth", tmp_path / "dets"
    truth.mkdir()
    dets.mkdir()
    sq = ((0, 0), (1000, 0), (1000, 1000), (0, 1000))
    write_asap_xml(truth / "tumor_1.xml", [PolygonAnnotation("a", sq)])
    (dets / "tumor_1.csv").write_text("probability,x,y\n0.9,500,500\n0.4,5000,5000\n")
    (dets / "normal_1.csv").write_text("0.6,100,100\n")
    exact = ["--froc-variant", "exact-geometry"]
    rc, out, _ = run(["evaluate", "froc", "--truth", truth, "--detections", dets, "--mpp", 0.5, *exact, "--json"],
                     capsys)
    assert rc == 0
    doc = json.loads(out)
    # 1 lesion hit at 0.9; FPs 0.6, 0.4 over 2 slides: sensitivity 1 already at 0 FPs
    assert doc["froc"] == 1.0 and doc["lesions"] == 1 and doc["slides"] == 2 and doc["slide_auc"] == 1.0
    assert doc["variant"] == "exact-geometry"
    rc, _, err = run(["evaluate", "froc", "--truth", truth, "--detections", dets, *exact], capsys)
    assert rc == 2 and "tumor_1: the slide's microns per pixel are needed" in err
    # the official rule (the default) takes every slide at 0.243 um/px: no --mpp needed
    rc, out, _ = run(["evaluate", "froc", "--truth", truth, "--detections", dets], capsys)
    assert rc == 0 and out.startswith("CAMELYON16 FROC 1.0000") and "official CAMELYON16 rule" in out
    rc, _, err = run(["evaluate", "froc", "--truth", truth, "--detections", dets, "--itc-um", 200], capsys)
    assert rc == 2 and "exact-geometry only" in err
    (dets / "tumor_1.csv").write_text("0.9,500\n")
    rc, _, err = run(["evaluate", "froc", "--truth", truth, "--detections", dets, "--mpp", 0.5], capsys)
    assert rc == 2 and "tumor_1.csv:1" in err


@pytest.fixture(scope="module")
def case_slides(tmp_path_factory):
    from histoviewer.core.phantom import write_phantom

    folder = tmp_path_factory.mktemp("case")
    write_phantom(folder / "patient_007_node_0.tiff", width=6000, height=6000, mpp=0.5, lesions="micro:0.9", seed=11)
    write_phantom(folder / "patient_007_node_1.tiff", width=4000, height=4000, mpp=0.5, lesions="", seed=12)
    return folder


@pytest.mark.slow  # two phantoms and the default CNN: ~20-40 s on a shared 2-core machine
def test_analyze_writes_lesions_labels_and_the_case_stage(case_slides, tmp_path, capsys):
    slides = sorted(case_slides.glob("*.tiff"))
    out = tmp_path / "out"
    rc, text, _ = run(["analyze", *slides, "--out", out, "--device", "cpu"], capsys)
    assert rc == 0
    assert "node label: micro" in text and "patient_007: pN1mi" in text
    summary = json.loads((out / "patient_007_node_0" / "summary.json").read_text())
    assert summary["node_label"] == "micro" and summary["provisional"] is False
    (les,) = summary["lesions"]
    assert les["diameter_mm"] == pytest.approx(0.9, abs=0.1)  # within about one map cell
    truth = json.loads((case_slides / "patient_007_node_0.lesions.json").read_text())["lesions"][0]
    assert les["centroid_l0"] == pytest.approx(truth["centroid_l0"], abs=100)
    assert "outline_l0" not in les  # outlines live in the GeoJSON
    (ann,) = read_geojson(out / "patient_007_node_0" / "lesions.geojson")
    assert ann.name == "lesion-1" and ann.properties["size_class"] == "micro"
    assert json.loads((out / "patient_007_node_1" / "summary.json").read_text())["node_label"] == "negative"
    assert (out / "stages.csv").read_text() == ("patient,stage\npatient_007.zip,pN1mi\n"
                                                "patient_007_node_0.tiff,micro\npatient_007_node_1.tiff,negative\n")
    cases = json.loads((out / "cases.json").read_text())["cases"]
    assert cases[0]["deciding_lesions"][0]["node"] == "patient_007_node_0.tiff"
    # the same files feed the FROC evaluation
    rc, text, _ = run(["evaluate", "froc", "--truth", case_slides, "--detections", out,
                       "--froc-variant", "exact-geometry", "--json"], capsys)
    assert rc == 0 and json.loads(text)["froc"] == 1.0
    # the official rule drops the lowest probability of the set: with one hit and no FP or
    # missed lesion, that is the hit, and the challenge's script gives 0
    rc, text, _ = run(["evaluate", "froc", "--truth", case_slides, "--detections", out, "--json"], capsys)
    assert rc == 0 and json.loads(text)["froc"] == 0.0 and json.loads(text)["variant"] == "official"
