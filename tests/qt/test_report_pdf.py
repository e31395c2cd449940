"""The PDF report renders: page count, the demonstration warning and the stage as text,
pages that rasterise to pictures of the slide, no label image, cancel leaves no file."""

from __future__ import annotations

import shutil
import subprocess
import threading

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.errors import ExportCancelled
from histoviewer.core.progress import JobControl
from histoviewer.core.report import load_report
from histoviewer.qt.report_pdf import page_plan, write_report_pdf
from tests.core.report_helpers import patched_associated_images, shared_case

POPPLER = all(shutil.which(t) for t in ("pdftoppm", "pdftotext", "pdfinfo", "pdfimages"))
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils (pdftoppm, pdftotext) not installed: "
                                                       "apt-get install -y poppler-utils")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return shared_case(tmp_path_factory)


def _run(*argv) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@needs_poppler
def test_pdf_pages_text_and_pictures(case, tmp_path, qapp, monkeypatch):
    calls: list = []
    patched_associated_images(monkeypatch, calls)
    report = load_report([case])
    assert [k for k, _ in page_plan(report)] == ["case", "slide", "slide"]
    pdf = write_report_pdf(report, tmp_path / "report.pdf")
    info = _run("pdfinfo", str(pdf))
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert int(fields["Pages"]) == 3 and "(A4)" in fields["Page size"]
    text = _run("pdftotext", "-layout", str(pdf), "-")
    pages = text.split("\f")
    assert "Case patient_007" in pages[0] and "pN1mi" in pages[0]
    assert "patient_007_node_0.tiff" in pages[1] and "Micrometastasis" in pages[1]
    assert "lesion-1" in pages[1] and "Negative" in pages[2]
    for page in pages[:3]:
        assert "DEMONSTRATION MODEL" in page and "NOT FOR DIAGNOSIS" in page
        assert "label image not included" in page and "ITC" in page
    # pictures: per slide page one thumbnail + one colour bar, + one snapshot per lesion (1 + 0)
    images = _run("pdfimages", "-list", str(pdf)).splitlines()[2:]
    assert sorted(int(r.split()[0]) for r in images) == [2, 2, 2, 3, 3]
    # the slide page rasterises with the thumbnail's tissue and heatmap on it
    _run("pdftoppm", "-r", "50", "-f", "2", "-l", "2", "-png", str(pdf), str(tmp_path / "page"))
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")).astype(int)
    assert page.shape[0] > page.shape[1]  # portrait
    magenta = (np.abs(page - [200, 60, 180]).sum(axis=-1) < 60).mean()  # the synthetic tissue
    assert magenta > 0.01
    assert calls == []  # no label or macro image was read


def test_no_demonstration_box_for_a_real_model(case, tmp_path, qapp):
    import json

    from histoviewer.core.analysis.lesions import THRESHOLD_FROM_MODEL
    from histoviewer.core.models.classifier import OperatingPoint
    from histoviewer.core.models.record import ModelRecord
    from histoviewer.core.report.model import SlideReport, build_report

    report = load_report([case / "patient_007_node_1"])
    (s,) = report.slides
    caveat = "research model trained on 6,657 real PatchCamelyon patches; not validated for clinical use"
    point = OperatingPoint(0.37, "sensitivity >= 0.95", 0.95, 0.88, 900)
    model = ModelRecord(name="trained", display_name="trained", content_hash="a" * 64, caveat=caveat,
                        operating_point=point)
    real = SlideReport(**{**s.__dict__, "model": model, "threshold": 0.37, "threshold_source": THRESHOLD_FROM_MODEL})
    built = build_report([real])
    pdf = write_report_pdf(built, tmp_path / "real.pdf")
    # report.json names what the model was trained on and the threshold it was read at
    data = json.loads(built.to_json())
    assert data["model_cautions"] == [caveat] and data["slides"][0]["model"]["caveat"] == caveat
    assert data["slides"][0]["threshold_text"] == (
        "threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating point)")
    if POPPLER:
        text = " ".join(_run("pdftotext", str(pdf), "-").split())
        assert "DEMONSTRATION" not in text and "trained" in text
        assert caveat in text
        assert "threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating point)" in text
    assert pdf.stat().st_size > 10_000


def test_cancel_leaves_no_file(case, tmp_path, qapp):
    report = load_report([case])
    cancel = threading.Event()
    seen = []

    def progress(stage, done, total, _detail):
        if stage != "Writing the report":
            return  # the pictures' tiles
        seen.append(done)
        if done >= 1:
            cancel.set()  # after the first page

    with pytest.raises(ExportCancelled):
        write_report_pdf(report, tmp_path / "r.pdf", control=JobControl(progress, cancel))
    assert seen[:2] == [0, 1]
    assert list(tmp_path.iterdir()) == []


@needs_poppler
def test_real_svs_with_a_label_image_never_embeds_it(cmu_small, tmp_path, qapp, monkeypatch):
    """CMU-1-Small-Region.svs has label and macro images: the PDF holds only the pictures
    the report draws (thumbnail, colour bar, snapshots), and none is read."""
    import openslide

    from histoviewer.core.export import HeatmapData
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.models.record import ModelRecord
    from histoviewer.core.report import build_report, slide_report_from_map
    from histoviewer.core.slide import open_slide

    calls: list = []
    with openslide.OpenSlide(str(cmu_small)) as osr:
        label_size = osr.associated_images["label"].size
    patched_associated_images(monkeypatch, calls)
    with open_slide(cmu_small) as reader:
        info = reader.info
        g = GridGeometry.for_slide(info.dimensions, info.mpp, 0.972, 96)
        enc = np.zeros(g.shape, np.float32)
        enc[g.rows // 2 - 2 : g.rows // 2 + 2, g.cols // 2 - 2 : g.cols // 2 + 2] = 0.95  # one lesion
        heatmap = HeatmapData(enc, g, ModelRecord(name="demo", display_name="demo", content_hash="c" * 64,
                                                  demonstration=True))
        slide = slide_report_from_map(cmu_small, heatmap)
        assert slide.node_label == "micro" and len(slide.lesions) == 1
        pdf = write_report_pdf(build_report([slide]), tmp_path / "cmu.pdf",
                               live={str(cmu_small): (reader, heatmap)})
    rows = [r.split() for r in _run("pdfimages", "-list", str(pdf)).splitlines()[2:]]
    sizes = sorted((int(r[3]), int(r[4])) for r in rows)
    assert len(sizes) == 3  # thumbnail, colour bar, one snapshot
    assert tuple(label_size) not in sizes
    assert calls == []
    text = _run("pdftotext", str(pdf), "-")
    assert "CMU-1-Small-Region.svs" in text and "label image not included" in text


@needs_poppler
def test_slide_without_scale_says_unknown(slides_dir, tmp_path, qapp):
    from histoviewer.core.models.record import ModelRecord
    from histoviewer.core.report import LesionEntry, SlideReport, build_report

    path = slides_dir / "tcga-cr-7395-01a-01-ts1-no-mpp.svs"
    les = LesionEntry("lesion-1", "unknown", None, None, 0.9, 0.8, 4, (2000.0, 1700.0), (1800.0, 1500.0, 400.0, 400.0))
    slide = SlideReport(str(path), "case", None, "unknown", False, 1.0, None, (4443, 3567), (les,),
                        ModelRecord(name="demo", display_name="demo", demonstration=True), 0.5)
    pdf = write_report_pdf(build_report([slide]), tmp_path / "nompp.pdf")
    text = " ".join(_run("pdftotext", str(pdf), "-").split())
    assert "Unknown: no final label" in text and "slide scale unknown" in text
    assert "Why: the slide states no scale" in text
    assert "size unknown (the slide states no scale)" in text
    assert "Case pN stage, from the 1 node in this report unknown" in text and "Tumour probability" not in text  # no map, no colour bar
    assert len(_run("pdfimages", "-list", str(pdf)).splitlines()[2:]) == 2  # thumbnail and snapshot


def test_border_lesion_and_border_stage_reach_json_csv_and_pdf(case, tmp_path, qapp):
    """The micrometastasis of node 0 measured 0.21 mm with an interval of 0.19-0.23 mm: its
    row says 'ITC/micro border' with the interval in report.json, lesions.csv and the PDF,
    and as the case's only metastasis it decides pN1mi, which would be pN0(i+) were it an
    ITC: report.json, cases.csv and the PDF say so in words, with the stage unchanged."""
    import csv
    import io
    import json
    from dataclasses import replace

    from histoviewer.core.report.model import build_report
    from histoviewer.core.report.tables import cases_csv, lesions_csv
    from histoviewer.core.staging_terms import SizeClass

    node0, node1 = load_report([case]).slides
    les = replace(node0.lesions[0], diameter_mm=0.21, size_class=SizeClass.MICRO,
                  diameter_low_mm=0.19, diameter_high_mm=0.23)
    report = build_report([replace(node0, lesions=(les,)), node1])
    (c,) = report.cases
    assert c.stage.value == "pN1mi" and "were it ITC, the stage would be pN0(i+)" in c.border_warning
    data = json.loads(report.to_json())
    row = data["slides"][0]["lesions"][0]
    assert row["size_class_border"] and row["diameter_range_mm"] == [0.19, 0.23]
    assert row["size_text"] == "0.210 mm (0.190\u20130.230 mm: ITC/micro border)"
    assert data["cases"][0]["stage"] == "pN1mi" and "pN0(i+)" in data["cases"][0]["border_warning"]
    lesion_row = next(csv.DictReader(io.StringIO(lesions_csv(report))))
    assert (lesion_row["diameter_low_mm"], lesion_row["diameter_high_mm"]) == ("0.19", "0.23")
    assert lesion_row["size_class_border"] == "ITC/micro border"
    case_row = next(csv.DictReader(io.StringIO(cases_csv(report))))
    assert case_row["pn_stage"] == "pN1mi" and "pN0(i+)" in case_row["border_warning"]
    # far from a border: nothing added
    plain = next(csv.DictReader(io.StringIO(lesions_csv(load_report([case])))))
    assert plain["size_class_border"] == ""
    if POPPLER:
        pdf = write_report_pdf(report, tmp_path / "border.pdf")
        text = " ".join(_run("pdftotext", str(pdf), "-").split())
        assert "ITC/micro border" in text and "0.190" in text
        assert "Caution: pN1mi rests on a lesion at a size-class border" in text
