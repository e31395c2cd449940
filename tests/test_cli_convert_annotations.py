"""``histoviewer convert-annotations IN OUT``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from histoviewer.cli import main
from histoviewer.core.annotations import Annotation, AnnotationSet, ShapeKind, load_annotations, save_annotations


def _sample(tmp_path):
    aset = AnnotationSet((
        Annotation(ShapeKind.POLYGON, ((1.5, 2), (10, 2), (10, 20.25)), class_name="Tumor", name="t"),
        Annotation(ShapeKind.ELLIPSE, ((0, 0), (8, 4)), class_name="Other", name="e"),
    ))
    path = tmp_path / "in.geojson"
    save_annotations(path, aset)
    return path, aset


def test_geojson_to_xml_and_back(tmp_path, capsys):
    src, aset = _sample(tmp_path)
    assert main(["convert-annotations", str(src), str(tmp_path / "out.xml")]) == 0
    out = capsys.readouterr().out
    assert "(geojson) ->" in out and "2 annotations" in out and "warning: 1 ellipse shapes written as polygons" in out
    assert main(["convert-annotations", str(tmp_path / "out.xml"), str(tmp_path / "back.geojson"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_format"] == "asap-xml" and summary["annotations"] == 2 and summary["warnings"] == []
    back = load_annotations(tmp_path / "back.geojson").annotation_set.annotations
    assert [(a.name, a.class_name) for a in back] == [("t", "Tumor"), ("e", "Other")]
    assert back[0].l0_points == aset.annotations[0].l0_points
    assert back[1].l0_points == aset.annotations[1].outline()


def test_errors_exit_2_naming_the_file(tmp_path, capsys):
    src, _ = _sample(tmp_path)
    bad = tmp_path / "bad.xml"
    bad.write_text("<ASAP_Annotations><Annotations>")
    assert main(["convert-annotations", str(bad), str(tmp_path / "o.geojson")]) == 2
    assert "bad.xml: not well-formed XML at line 1" in capsys.readouterr().err
    assert main(["convert-annotations", str(src), str(tmp_path / "o.txt")]) == 2
    assert "o.txt: unknown annotation format" in capsys.readouterr().err
    (tmp_path / "exists.xml").write_text("keep me")
    assert main(["convert-annotations", str(src), str(tmp_path / "exists.xml")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and (tmp_path / "exists.xml").read_text() == "keep me"
    assert main(["convert-annotations", str(src), str(tmp_path / "exists.xml"), "--overwrite"]) == 0
    # the input itself, also through a hard link, is never replaced, --overwrite or not
    os.link(src, tmp_path / ("alias" + src.suffix))
    before = src.read_bytes()
    for out in (src, tmp_path / ("alias" + src.suffix)):
        assert main(["convert-annotations", str(src), str(out), "--overwrite"]) == 2
        assert "a file the job reads" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_console_entry_point_runs(tmp_path):
    src, _ = _sample(tmp_path)
    result = subprocess.run([sys.executable, "-m", "histoviewer", "convert-annotations", str(src),
                             str(tmp_path / "o.xml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.xml").read_text().startswith("<?xml")
