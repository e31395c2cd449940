"""One CSV writer (``core.csv_table``): no cell HistoViewer writes is run as a spreadsheet
formula, in the stage and analyze CSVs as in the report tables; numbers stay numbers."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from histoviewer.cli import main
from histoviewer.core.csv_table import csv_cell, csv_text

ROOT = Path(__file__).resolve().parents[2] / "histoviewer"


def test_formula_cells_are_escaped_and_numbers_are_not():
    assert csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    for text in (
        "+1+1",
        "-2+3",
        "@SUM(A1)",
        "\t=1",
        "\r=1",
        "=",
        "-",
        "-cmd|' /C calc'!A0",
        "+inf",
    ):
        assert csv_cell(text) == "'" + text, text
    for text in (
        "-0.5",
        "+3e-4",
        "12",
        ".5",
        "-1.",
        "pN1",
        "patient_004_node_1.tif",
        "",
        "a=b",
    ):
        assert csv_cell(text) == text, text
    assert csv_cell(None) == "" and csv_cell(-2) == "-2" and csv_cell(0.25) == "0.25"
    rows = list(csv.reader(io.StringIO(csv_text(["a", "b"], [("=1+1", -1.5)]))))
    assert rows == [["a", "b"], ["'=1+1", "-1.5"]]


def test_every_csv_is_written_by_the_one_writer():
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if p.name != "csv_table.py"
        and re.search(r"csv\.(writer|DictWriter)\(", p.read_text())
    ]
    assert offenders == []


def test_stage_escapes_formulas_in_its_csv(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text(
        'patient,stage\npatient_004.zip,pN1\n"=HYPERLINK(""http://x"",""y"")",macro\n-2+3,itc\n'
    )
    assert main(["stage", str(labels), "--out", str(tmp_path / "out.csv")]) == 0
    rows = list(csv.reader((tmp_path / "out.csv").read_text().splitlines()))
    assert ['\'=HYPERLINK("http://x","y")', "macro"] in rows and [
        "'-2+3",
        "itc",
    ] in rows
    capsys.readouterr()


def test_stage_never_writes_over_its_labels_and_replaces_only_with_overwrite(
    tmp_path, capsys
):
    labels = tmp_path / "labels.csv"
    labels.write_text("patient,stage\npatient_004_node_1.tif,macro\n")
    before = labels.read_text()
    assert main(["stage", str(labels), "--out", str(labels), "--overwrite"]) == 2
    assert (
        "a file the job reads" in capsys.readouterr().err
        and labels.read_text() == before
    )
    out = tmp_path / "out.csv"
    out.write_text("mine")
    assert main(["stage", str(labels), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["stage", str(labels), "--out", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("patient,stage")
    capsys.readouterr()


def test_leading_spaces_do_not_hide_a_formula():
    assert csv_cell(" =1+1") == "' =1+1"
    assert csv_cell("  @SUM(A1)") == "'  @SUM(A1)"
    assert csv_cell(" -0.5") == " -0.5"  # a number, spaced
