"""``histoviewer report`` and ``histoviewer analyze --report``."""

from __future__ import annotations

import csv
import json

import pytest

from histoviewer.cli import main
from tests.core.report_helpers import shared_case


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return shared_case(tmp_path_factory)


def test_report_writes_pdf_json_and_csv(case, tmp_path, capsys):
    rc = main(["report", str(case), "--out", str(tmp_path / "r.pdf"), "--json", str(tmp_path / "r.json"),
               "--csv", str(tmp_path / "tables")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "patient_007: pN1mi" in out.out and "(3 pages)" in out.out
    assert "WARNING: demonstration model" in out.err
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    assert json.loads((tmp_path / "r.json").read_text())["cases"][0]["stage"] == "pN1mi"
    with open(tmp_path / "tables" / "slides.csv", newline="") as fh:
        assert [r["node_label"] for r in csv.DictReader(fh)] == ["micro", "negative"]


def test_report_json_only_needs_no_qt_pdf(case, tmp_path, capsys):
    rc = main(["report", str(case / "patient_007_node_1"), "--json", str(tmp_path / "r.json"), "--print-json"])
    written = json.loads(capsys.readouterr().out)
    assert rc == 0 and written["slides"] == 1 and "pdf" not in written
    assert written["cases"] == [{"patient": "patient_007", "stage": "pN0", "provisional": False,
                                 "stage_text": "pN0", "unresolved_nodes": []}]


@pytest.mark.parametrize("argv, message", [
    (["--json", "{tmp}/x.json", "{tmp}/missing"], "no such analysis folder"),
    (["{case}"], "nothing to write"),
    (["{case}", "--out", "{tmp}/r.png"], "name it .pdf"),
])
def test_errors_exit_2(case, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, case=case) for a in argv]
    assert main(["report", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_analyze_report_flag(tmp_path, capsys):
    from histoviewer.core.phantom import write_phantom

    ph = write_phantom(tmp_path / "patient_003_node_1.tiff", width=8000, height=8000, mpp=0.25,
                       lesions="micro:0.6", seed=2)
    out = tmp_path / "out"
    rc = main(["analyze", str(ph.slide_path), "--out", str(out), "--device", "cpu", "--report"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "report: " in captured.out
    doc = json.loads((out / "report.json").read_text())
    assert doc["slides"][0]["node_label"] == "micro" and doc["demonstration_model"] is True
    assert doc["cases"][0]["stage"] == "pN1mi"
    assert all((out / n).is_file() for n in ("report.pdf", "lesions.csv", "slides.csv", "cases.csv"))
