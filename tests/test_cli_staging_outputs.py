"""``analyze --report`` and ``report``: the issue's case "Report and submission disagree" end to
end. One node has no scale (its analysis fails): before, stages.csv and cases.json said
``unknown`` while report.json, cases.csv and the PDF staged the other node alone, and
slides.csv had no row for the failed node."""

from __future__ import annotations

import csv
import io
import json
import shutil

import tifffile

from histoviewer.cli import main
from histoviewer.cli.stage import EXIT_UNRESOLVED
from tests.core.inference_helpers import (
    synthetic_rgb,
    write_fresh_cnn,
    write_synthetic_tiff,
)


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_a_node_without_scale_is_in_every_output_with_one_stage(tmp_path, capsys):
    slides = tmp_path / "slides"
    slides.mkdir()
    scaled = shutil.copy(write_synthetic_tiff(tmp_path / "synthetic.tiff"), slides / "patient_020_node_0.tiff")
    unscaled = slides / "patient_020_node_1.tiff"
    tifffile.imwrite(unscaled, synthetic_rgb(), photometric="rgb")  # no resolution unit: no scale
    model = write_fresh_cnn(tmp_path / "model")
    out = tmp_path / "out"
    rc = main(["analyze", str(scaled), str(unscaled), "--model", str(model), "--out", str(out), "--device", "cpu",
               "--report"])
    capsys.readouterr()
    assert rc == 1  # a slide could not be analysed at all
    stages = dict(csv.reader((out / "stages.csv").read_text().splitlines()))
    (case,) = json.loads((out / "cases.json").read_text())["cases"]
    report = json.loads((out / "report.json").read_text())
    (case_row,) = _rows(out / "cases.csv")
    stage = stages["patient_020.zip"]
    assert stage == case["stage"] == report["cases"][0]["stage"] == case_row["pn_stage"]
    assert case["stage_text"] == report["cases"][0]["stage_text"]
    assert stages[unscaled.name] == "unknown"
    slide_rows = {r["slide"]: r for r in _rows(out / "slides.csv")}
    assert set(slide_rows) == {scaled.name, unscaled.name}  # the failed node has its row
    assert slide_rows[unscaled.name]["node_label"] == "unknown"
    assert "analysis failed" in slide_rows[unscaled.name]["unknown_reason"]
    assert "scale" in slide_rows[unscaled.name]["error"]
    # a report made later from the folder finds the failed node in cases.json, and says the
    # batch is not complete (exit status 3)
    again = tmp_path / "again"
    assert main(["report", str(out), "--json", str(again / "report.json"), "--csv", str(again)]) == EXIT_UNRESOLVED
    assert capsys.readouterr().out.splitlines()[1].startswith(f"  {unscaled.name}: no final label: analysis failed")
    assert {r["slide"] for r in _rows(again / "slides.csv")} == {scaled.name, unscaled.name}
    assert _rows(again / "cases.csv")[0]["pn_stage"] == stage


def test_an_analysis_whose_patches_all_failed_is_no_pn0(tmp_path):
    """The issue's case: every patch failed, and the slide read ``negative (provisional)``,
    pN0, coverage 1.0 in summary.json. Then a slide with some failed batches."""
    from histoviewer.core.analysis.case import write_case_outputs
    from histoviewer.core.analysis.summary import read_summary
    from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
    from tests.core.inference_helpers import LesionFractionModel

    slide = shutil.copy(write_synthetic_tiff(tmp_path / "synthetic.tiff"), tmp_path / "patient_030_node_0.tiff")
    every_call = tuple(range(1, 100_000))
    s = analyze_slide(slide, tmp_path / "all", LesionFractionModel(fail_on_calls=every_call), AnalyzeOptions(batch_size=64))
    assert s.failed_patches == s.tissue_patches > 0 and s.classified_patches == 0
    assert (s.coverage, s.node_label.value, s.label_so_far.value) == (0.0, "unknown", "negative")
    on_disk = read_summary(tmp_path / "all")
    assert on_disk == s and json.loads((tmp_path / "all" / "summary.json").read_text())["coverage"] == 0.0
    cases = write_case_outputs(tmp_path / "all", [s])
    assert cases.unresolved and "patient_030.zip,unknown" in cases.stages_csv.read_text().splitlines()
    (case,) = json.loads(cases.cases_json.read_text())["cases"]
    assert f"{s.failed_patches} of {s.tissue_patches} tissue patches failed" in case["unresolved_nodes"][0]["reason"]

    some = analyze_slide(slide, tmp_path / "some", LesionFractionModel(fail_on_calls=(1,)),
                         AnalyzeOptions(batch_size=16, block=4))
    assert 0 < some.failed_patches < some.tissue_patches
    assert some.coverage == round(some.classified_patches / some.tissue_patches, 6) < 1.0
    assert some.node_label.value == "unknown" and some.unknown_reason.startswith(f"{some.failed_patches} of ")
