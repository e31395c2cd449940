"""Autosave beside the slide (or in the user data folder), debounce, recovery after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind, load_autosave, open_document
from histoviewer.core.annotations.store import Autosaver, autosave_candidates, save_document
from histoviewer.core.errors import AnnotationFormatError, AnnotationStoreError

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def square(x: float) -> Annotation:
    return Annotation(ShapeKind.POLYGON, ((x, 0), (x + 10, 0), (x + 10, 10)), class_name="Tumor", name=f"s{x:g}")


def test_autosave_is_debounced_and_written_beside_the_slide(tmp_path):
    slide = tmp_path / "node.svs"
    doc = AnnotationDocument(mpp=0.25)
    clock = FakeClock()
    saver = Autosaver(doc, slide, delay_s=3.0, max_delay_s=10.0, clock=clock)
    assert saver.tick() is None and not saver.pending
    doc.add(square(0))
    clock.t += 2.0
    doc.add(square(20))  # a second edit restarts the delay
    clock.t += 2.0
    assert saver.tick() is None and saver.pending
    clock.t += 1.0
    path = saver.tick()
    assert path == tmp_path / "node.svs.annotations.geojson" and not saver.pending
    assert saver.tick() is None  # nothing new
    data = json.loads(path.read_text())
    assert len(data["features"]) == 2 and data["histoviewer"]["autosave"]["annotations"] == 2
    # continuous edits cannot postpone saving past max_delay_s
    for _ in range(12):
        clock.t += 1.0
        doc.move([doc.annotations()[0].uid], 1, 0)
        if saver.tick():
            break
    assert not saver.pending and clock.t - 105.0 <= 11.0
    # undo is an edit like any other; close flushes
    doc.undo()
    assert saver.pending and saver.close() == path and not saver.pending
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_recovery_restores_everything_and_says_so(tmp_path):
    slide = tmp_path / "node.svs"
    fresh, nothing = open_document(slide, 0.25)
    assert nothing is None and len(fresh) == 0 and fresh.mpp == 0.25
    doc = AnnotationDocument(mpp=0.25)
    uid = doc.add(Annotation(ShapeKind.ELLIPSE, ((0, 0), (400.5, 200)), class_name="Suspect", name="e", note="n"))
    doc.update_class("Suspect", rgb=(1, 2, 3), is_tumour=True)
    save_document(doc, slide)
    restored, recovery = open_document(slide, 0.25)
    assert recovery is not None
    assert recovery.message.startswith("Restored 1 annotation from the autosave of 20")
    assert str(recovery.path) in recovery.message
    assert restored.to_set() == doc.to_set() and restored.get(uid).note == "n"
    assert restored.class_named("Suspect").rgb == (1, 2, 3) and restored.class_named("Suspect").is_tumour
    assert not restored.can_undo  # reopening is not an edit


def test_read_only_folder_falls_back_to_user_data(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the slide's folder should be: nothing can be written there")
    slide = blocker / "node.svs"
    beside, fallback = autosave_candidates(slide)
    doc = AnnotationDocument()
    doc.add(square(0))
    assert save_document(doc, slide) == fallback
    assert fallback.is_relative_to(Path(os.environ["HISTOVIEWER_DATA_DIR"]))
    assert load_autosave(slide).annotation_set == doc.to_set()
    other = tmp_path / "elsewhere" / "node.svs"  # same name, other slide: another file
    assert autosave_candidates(other)[1] != fallback


def test_store_errors_name_the_places(tmp_path, monkeypatch):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    monkeypatch.setenv("HISTOVIEWER_DATA_DIR", str(blocker / "data"))
    doc = AnnotationDocument()
    saver = Autosaver(doc, blocker / "s.svs", delay_s=0)  # the state it starts from counts as saved
    assert saver.flush() is None
    doc.add(square(0))
    with pytest.raises(AnnotationStoreError, match=r"cannot save annotations: .*s\.svs\.annotations\.geojson.*f/data"):
        saver.flush()
    assert saver.pending and saver.last_error
    damaged = tmp_path / "d.svs.annotations.geojson"
    damaged.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(AnnotationFormatError, match=r"d\.svs\.annotations\.geojson: not valid JSON"):
        load_autosave(tmp_path / "d.svs")
    assert damaged.exists()  # left for the user to inspect


CHILD = textwrap.dedent("""
    import sys, time
    from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind
    from histoviewer.core.annotations.store import Autosaver
    slide = sys.argv[1]
    doc = AnnotationDocument(mpp=0.25)
    saver = Autosaver(doc, slide, delay_s=0.2)
    for i in range(50):
        doc.add(Annotation(ShapeKind.POLYGON, ((i, 0), (i + 1.5, 0), (i + 1, 2.25)), class_name="Tumor", name=f"a{i}"))
    doc.rename(doc.annotations()[7].uid, "renamed")
    doc.remove([doc.annotations()[3].uid])
    doc.undo(); doc.redo()
    while saver.tick() is None:   # the GUI's timer, in a loop
        time.sleep(0.05)
    doc.add(Annotation(ShapeKind.POINTS, ((1, 1),), name="never saved"))  # within the delay
    print("ready", flush=True)
    time.sleep(60)
""")


def test_recovery_after_sigkill(tmp_path):
    slide = tmp_path / "killed.svs"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(slide)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    doc, recovery = open_document(slide, 0.25)
    assert recovery is not None and "Restored 49 annotations" in recovery.message
    names = [a.name for a in doc]
    assert len(names) == 49 and "a3" not in names and "renamed" in names and "never saved" not in names
    assert doc.annotations()[0].l0_points == ((0, 0), (1.5, 0), (1, 2.25))
