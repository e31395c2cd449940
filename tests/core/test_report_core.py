"""Reports without Qt: per-slide and per-case results from analyze folders, their JSON and
CSV, unknown scales, hostile names, and the pictures of a report page."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from histoviewer.core.errors import ReportError
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.report import (LesionEntry, SlideReport, build_report, cases_csv, lesions_csv,
                                     load_report, load_slide_report, render_slide_images, slides_csv,
                                     write_report_csv, write_report_json)
from histoviewer.core.report.images import snapshot_region
from tests.core.inference_helpers import LESION_RECT
from tests.core.report_helpers import patched_associated_images, shared_case, summaries


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return shared_case(tmp_path_factory)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_report_matches_what_analyze_wrote(case):
    report = load_report([case])
    by_name = summaries(case)
    assert [s.slide_name for s in report.slides] == ["patient_007_node_0.tiff", "patient_007_node_1.tiff"]
    for s in report.slides:
        summary = by_name[s.slide_name.removesuffix(".tiff")]
        assert s.node_label == summary["node_label"] and s.coverage == summary["coverage"]
        assert s.mpp == summary["mpp"] == 0.25 and s.patient == "patient_007"
        assert [les.to_dict()["diameter_mm"] for les in s.lesions] == [d["diameter_mm"] for d in summary["lesions"]]
        assert s.model.content_hash == summary["model"]["content_hash"]
    node0, node1 = report.slides
    assert node0.node_label == "micro" and node1.node_label == "negative"
    # outlines come from lesions.geojson (drawing only) and surround the known lesion's centre
    (les,) = node0.lesions
    assert len(les.outline_l0) >= 4
    cx, cy = LESION_RECT[0] + LESION_RECT[2] / 2, LESION_RECT[1] + LESION_RECT[3] / 2
    x, y, w, h = les.bbox_l0
    assert x < cx < x + w and y < cy < y + h
    # one case, staged by the same rules analyze used (its stages.csv)
    (c,) = report.cases
    stages = (case / "stages.csv").read_text().splitlines()
    assert "patient_007.zip,pN1mi" in stages and c.stage == "pN1mi"
    assert c.deciding_nodes == ("patient_007_node_0.tiff",) and c.deciding_lesions[0][1] == "lesion-1"
    assert report.demonstration and report.to_dict()["warning"].startswith("demonstration model")


def test_json_and_csv_files(case, tmp_path):
    report = load_report([case / "patient_007_node_0", case / "patient_007_node_1"])
    doc = json.loads(write_report_json(report, tmp_path / "report.json").read_text())
    assert doc["label_image_included"] is False and doc["demonstration_model"] is True
    assert [c["stage"] for c in doc["cases"]] == ["pN1mi"]
    assert doc["slides"][0]["lesions"][0]["size_class"] == "micro"
    assert "outline_l0" not in doc["slides"][0]["lesions"][0]
    paths = write_report_csv(report, tmp_path / "tables")
    lesions, slides, cases = (_rows(p.read_text()) for p in paths)
    assert len(lesions) == 1 and lesions[0]["patient"] == "patient_007"
    assert lesions[0]["slide"] == "patient_007_node_0.tiff" and lesions[0]["size_class"] == "micro"
    assert float(lesions[0]["diameter_mm"]) == pytest.approx(report.slides[0].lesions[0].diameter_mm)
    assert lesions[0]["demonstration_model"] == "yes" and lesions[0]["model_hash"] == "d" * 64
    assert [r["node_label"] for r in slides] == ["micro", "negative"]
    assert slides[1]["largest_lesion"] == "" and slides[1]["lesions"] == "0"
    assert cases == [dict(cases[0], patient="patient_007", pn_stage="pN1mi", provisional="no")]
    assert "patient_007_node_0.tiff:lesion-1" in cases[0]["deciding_lesions"]


def _slide(name: str, mpp, label: str, lesions=(), **kw) -> SlideReport:
    return SlideReport(slide_path=f"/data/{name}", patient="p1", node=None, node_label=label,
                       provisional=kw.get("provisional", False), coverage=kw.get("coverage", 1.0), mpp=mpp,
                       l0_size=(1000, 1000), lesions=tuple(lesions), model=ModelRecord(name="m", display_name="m"),
                       threshold=0.5, analysis_dir=kw.get("analysis_dir"))


def _lesion(diameter_mm, size_class) -> LesionEntry:
    return LesionEntry("lesion-1", size_class, diameter_mm, None if diameter_mm is None else 0.01, 0.9, 0.8, 3,
                       (10.0, 20.0), (0.0, 0.0, 40.0, 40.0))


def test_unknown_scale_is_written_unknown_never_guessed():
    report = build_report([_slide("a.svs", None, "unknown", [_lesion(None, "unknown")]),
                           _slide("b.svs", 0.5, "negative")])
    (les,) = _rows(lesions_csv(report))
    assert les["diameter_mm"] == "unknown" and les["area_mm2"] == "unknown" and les["mpp"] == "unknown"
    a, b = _rows(slides_csv(report))
    assert a["mpp"] == "unknown" and a["largest_diameter_mm"] == "unknown" and a["node_label"] == "unknown"
    assert b["mpp"] == "0.5" and b["largest_diameter_mm"] == ""  # no lesion: nothing to give
    (c,) = _rows(cases_csv(report))
    assert c["pn_stage"] == "unknown" and "not guessed" in c["reason"]
    assert json.loads(report.to_json())["slides"][0]["scale_known"] is False


def test_provisional_slide_makes_a_provisional_case():
    report = build_report([_slide("a.svs", 0.25, "micro", [_lesion(1.5, "micro")], provisional=True, coverage=0.4)])
    (c,) = report.cases
    # micro so far: the rest may hold a macro (pN1); the stage is not final
    assert c.stage == "unknown" and c.provisional and c.stage_text == "unknown (at least pN1mi)"
    report = build_report([_slide("a.svs", 0.25, "macro", [_lesion(2.5, "macro")], provisional=True, coverage=0.4)])
    (c,) = report.cases
    # a macro in the classified 40 % is a lower bound that already decides: one node, pN1
    # whatever the rest holds; the node itself has no final label
    assert c.stage == "pN1" and not c.provisional and c.unresolved == (("a.svs", "only 40 % of the tissue classified"),)
    assert report.slides[0].node_label is NodeLabel.UNKNOWN
    assert _rows(slides_csv(report))[0]["provisional"] == "yes"


def test_spreadsheet_formulas_in_names_are_defused():
    report = build_report([_slide("=HYPERLINK(x).svs", 0.25, "negative")])
    (row,) = _rows(slides_csv(report))
    assert row["slide"] == "'=HYPERLINK(x).svs"


def test_ten_positive_nodes_with_a_macro_are_not_staged():
    slides = [_slide(f"patient_9_node_{i}.svs", 0.25, "macro", [_lesion(3.0, "macro")]) for i in range(10)]
    slides = [SlideReport(**{**s.__dict__, "patient": "patient_9", "node": i}) for i, s in enumerate(slides)]
    (c,) = build_report(slides).cases
    assert c.stage == "unknown" and "pN3" in c.error


def test_the_same_slide_twice_is_an_error(case):
    one = load_slide_report(case / "patient_007_node_0")
    (c,) = build_report([one, one]).cases  # counted twice it would change the stage: not staged
    assert c.stage == "unknown" and "same node" in c.error


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(ReportError, match="no such analysis folder"):
        load_report([tmp_path / "missing"])
    with pytest.raises(ReportError, match="no analysis here"):
        load_report([tmp_path])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"bad.summary\.json"):
        load_report([bad])
    (bad / "summary.json").write_text(json.dumps({"slide": "x.svs", "node_label": "huge", "lesions": []}))
    with pytest.raises(ReportError, match="malformed analysis summary"):
        load_report([bad])


def test_pictures_show_the_lesion_where_it_is_and_never_the_label(case, monkeypatch):
    calls: list = []
    patched_associated_images(monkeypatch, calls)
    node0 = load_slide_report(case / "patient_007_node_0")
    images = render_slide_images(node0)
    assert images.thumbnail_source == "slide" and not images.notes and images.heatmap_drawn
    th = images.thumbnail
    assert max(th.shape[:2]) == 1200 and th.shape[1] / th.shape[0] == pytest.approx(4000 / 3000, abs=0.01)
    # the heatmap colours the thumbnail at the lesion (known rectangle), not on the glass
    s = th.shape[1] / 4000
    x, y, w, h = (int(v * s) for v in LESION_RECT)
    inside = th[y + h // 3 : y + 2 * h // 3, x + w // 3 : x + 2 * w // 3].reshape(-1, 3).astype(int)
    lesion_rgb = np.array([200, 10, 180])
    assert np.abs(inside - lesion_rgb).sum(axis=1).mean() > 60  # blended, not the bare slide
    glass = th[10:100, 10:100].reshape(-1, 3)
    assert (glass > 240).all()
    (snap,) = images.snapshots
    sx, sy, sw, sh = snap.l0_region
    bx, by, bw, bh = node0.lesions[0].bbox_l0
    assert sx <= bx and sy <= by and sx + sw >= bx + bw and sy + sh >= by + bh
    assert snap.rgb.shape[:2] == (round(sh / snap.l0_per_px), round(sw / snap.l0_per_px))
    assert snap.output_mpp == pytest.approx(snap.l0_per_px * 0.25)
    assert calls == []


def test_moved_slide_falls_back_to_heatmap_png(case, tmp_path):
    node0 = load_slide_report(case / "patient_007_node_0")
    moved = SlideReport(**{**node0.__dict__, "slide_path": str(tmp_path / "gone.tiff")})
    images = render_slide_images(moved)
    assert images.thumbnail_source == "heatmap.png" and images.snapshots == () and images.heatmap_drawn
    assert any("not readable" in n for n in images.notes)


def test_snapshot_region_keeps_context_around_small_lesions():
    tiny = LesionEntry("lesion-1", "itc", 0.05, 0.001, 0.9, 0.9, 1, (5000.0, 5000.0), (4980.0, 4980.0, 40.0, 40.0))
    x, y, w, h = snapshot_region(tiny, 0.25, (100_000, 100_000))
    assert w == h == pytest.approx(500.0 / 0.25)  # 0.5 mm across at least
    assert x + w / 2 == pytest.approx(5000.0) and y + h / 2 == pytest.approx(5000.0)
    x, y, w, h = snapshot_region(tiny, 0.25, (5500, 5200))  # clipped to the slide
    assert (x, y, w, h) == (4000.0, 4000.0, 1500.0, 1200.0)
