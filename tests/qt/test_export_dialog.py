"""File > Export...: the dialog exports the current view at the chosen um/px on a worker
thread, Cancel stops it and leaves no file, the report kind writes PDF + JSON + CSV."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.colormaps import colormap_lut
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.slide import open_slide
from histoviewer.core.tiles.viewport import Viewport
from histoviewer.qt.export_dialog import ExportDialog, open_export_dialog
from tests.core.export_helpers import GEOMETRY, MODEL_INFO, lesion_heatmap, slide
from tests.core.inference_helpers import LESION_RECT
from tests.gates import Gate


class GatedReader:
    """The slide's reader, each read held at ``gate`` until the test lets it through: Cancel
    is pressed while a read of the export is known to be in progress."""

    def __init__(self, reader, gate: Gate) -> None:
        self._reader = reader
        self.gate = gate

    def read_region(self, *args):
        self.gate.passes()
        return self._reader.read_region(*args)

    def __getattr__(self, name):
        return getattr(self._reader, name)


def fake_tab(path, reader, heatmap=True):
    """What the dialog reads from a ``SlideTab``: its live grid and model, style, reader,
    slide info and viewport (here over the known lesion, 2 screen px per level-0 px... 0.5)."""
    enc = lesion_heatmap().encoded
    live = SimpleNamespace(grid=SimpleNamespace(encoded_map=lambda: enc.copy(), geometry=GEOMETRY),
                           model=SimpleNamespace(info=MODEL_INFO),
                           style=HeatmapStyle(colormap_lut("magma"), opacity=0.6, threshold=0.5))
    cx, cy = LESION_RECT[0] + LESION_RECT[2] / 2, LESION_RECT[1] + LESION_RECT[3] / 2
    view = SimpleNamespace(viewport=Viewport(cx, cy, 0.5, 800, 600))  # 1600 x 1200 level-0 px
    return SimpleNamespace(path=path, heatmap=SimpleNamespace(live=live) if heatmap else None,
                           session=SimpleNamespace(reader=reader, info=reader.info), view=view)


@pytest.fixture
def reader(tmp_path):
    with open_slide(slide(tmp_path)) as r:
        yield r


def _dialog(qtbot, tab, tmp_path) -> ExportDialog:
    d = ExportDialog(tab, out_dir=tmp_path / "exports")
    qtbot.addWidget(d)
    return d


def test_overlay_of_the_current_view_at_the_chosen_resolution(qtbot, tmp_path, reader):
    tab = fake_tab(reader.info.path, reader)
    d = _dialog(qtbot, tab, tmp_path)
    assert d.um_per_px.value() == pytest.approx(2 * 0.25)  # what the view shows: 2 l0 px a screen px
    d.um_per_px.setValue(2.0)  # 8 level-0 px an output px
    d.path.setText(str(tmp_path / "exports" / "view.png"))
    with qtbot.waitSignal(d.exported, timeout=30_000) as sig:
        assert d.start_export()
    result = sig.args[0]
    assert result.size == (200, 150) and result.path.is_file()
    prov = json.loads((tmp_path / "exports" / "view.png.provenance.json").read_text())
    assert prov["um_per_px"] == pytest.approx(2.0) and prov["colormap"] == "magma"
    assert prov["l0_region"] == pytest.approx(list(tab.view.viewport.l0_xywh))
    assert prov["extra"]["outlines"] == 1  # the AI lesion, with its diameter
    assert prov["slide_path"] == reader.info.path.name  # not where it lives, unless asked
    d.full_path.setChecked(True)
    assert d.request().record_full_slide_path is True
    with Image.open(result.path) as im:
        assert im.size[0] >= 200 and im.size[1] > 150  # image + legend band below it
        rgb = np.asarray(im.convert("RGB"))[:150, :200].astype(int)
    # the lesion (known rectangle) sits in the middle of the view: coloured there, not at the corner
    centre, corner = rgb[60:90, 85:115].reshape(-1, 3), rgb[:5, :5].reshape(-1, 3)
    assert np.abs(centre - [200, 10, 180]).sum(axis=1).mean() > 60
    assert np.abs(corner - [200, 60, 180]).sum(axis=1).mean() < 40
    assert str(result.path) in d.status.text()
    assert d.export_button.isEnabled() and not d.cancel_button.isEnabled()


def test_cancel_stops_the_export_and_leaves_no_file(qtbot, tmp_path, reader):
    gate = Gate()
    tab = fake_tab(reader.info.path, GatedReader(reader, gate))
    d = _dialog(qtbot, tab, tmp_path)
    d.region_slide.setChecked(True)
    d.um_per_px.setValue(0.25)  # level 0: 4000 x 3000 px, dozens of reads
    out = tmp_path / "exports" / "whole.png"
    d.path.setText(str(out))
    try:
        assert d.start_export()
        assert gate.wait_arrivals(1)  # the export is reading the slide
        assert d.cancel_button.isEnabled() and not d.export_button.isEnabled()
        with qtbot.waitSignal(d.cancelled, timeout=30_000):
            d.cancel_button.click()
            gate.open()
    finally:
        gate.open()
    assert d.wait(10)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial file either
    assert "no file" in d.status.text()


def test_report_of_this_slide(qtbot, tmp_path, reader):
    tab = fake_tab(reader.info.path, reader)
    d = _dialog(qtbot, tab, tmp_path)
    d.kind.setCurrentIndex(d.kind.findData("report"))
    assert d.path.text().endswith("-report.pdf") and not d.um_per_px.isEnabled()
    with qtbot.waitSignal(d.exported, timeout=60_000) as sig:
        assert d.start_export()
    pdf, js, *tables = sig.args[0].paths()
    assert pdf.read_bytes()[:5] == b"%PDF-" and len(tables) == 3
    doc = json.loads(js.read_text())
    # the map has one failed and one uncomputed tissue cell: no final label, the AI's label so far kept
    node = doc["slides"][0]
    assert node["node_label"] == "unknown" and node["label_so_far"] not in ("unknown", "negative")
    assert "1 of " in node["unknown_reason"] and "tissue patches failed" in node["unknown_reason"]
    assert doc["demonstration_model"] is True
    assert all(t.is_file() for t in tables)


def test_without_an_overlay_nothing_can_be_exported(qtbot, tmp_path, reader):
    d = _dialog(qtbot, fake_tab(reader.info.path, reader, heatmap=False), tmp_path)
    assert not d.export_button.isEnabled() and "AI overlay" in d.status.text()


def test_bad_region_is_reported_not_raised(qtbot, tmp_path, reader):
    d = _dialog(qtbot, fake_tab(reader.info.path, reader), tmp_path)
    d.region_typed.setChecked(True)
    d.region_text.setText("10, 20, 0, 5")
    assert not d.start_export() and "positive" in d.status.text()
    d.region_text.setText("1, 2, 3")
    assert not d.start_export() and "x, y, width, height" in d.status.text()


def test_file_name_follows_the_kind(qtbot, tmp_path, reader):
    d = _dialog(qtbot, fake_tab(reader.info.path, reader), tmp_path)
    d.kind.setCurrentIndex(d.kind.findData("pyramid"))
    assert d.path.text().endswith("synthetic-pyramid.tif")
    d.path.setText(str(tmp_path / "mine.png"))
    d.kind.setCurrentIndex(d.kind.findData("raw"))
    assert d.path.text() == str(tmp_path / "mine.tiff")


@pytest.mark.slow
def test_export_from_the_viewer_with_the_live_overlay(ai_window_factory, qtbot, tmp_path):
    """The real window: a phantom, the default model's live overlay, File > Export's dialog."""
    from histoviewer.core.export.source import clip_region
    from histoviewer.core.phantom import write_phantom
    from tests.qt.conftest import open_settled

    ph = write_phantom(tmp_path / "node.tiff", width=8000, height=8000, mpp=0.25, lesions="micro:0.6", seed=5)
    win = ai_window_factory()
    tab = open_settled(win, qtbot, ph.slide_path)
    qtbot.waitUntil(lambda: tab.heatmap is not None and tab.heatmap.live.grid is not None, timeout=60_000)
    qtbot.waitUntil(lambda: tab.heatmap.live.is_idle and tab.heatmap_coverage()[0] == 1.0, timeout=60_000)
    d = open_export_dialog(win, tab, out_dir=tmp_path)
    d.um_per_px.setValue(4.0)
    with qtbot.waitSignal(d.exported, timeout=60_000) as sig:
        assert d.start_export()
    _x, _y, w, h = clip_region((8000, 8000), tab.view.viewport.l0_xywh)  # the view, on the slide
    assert sig.args[0].size == (round(w / 16), round(h / 16))
    assert sig.args[0].provenance.model["demonstration"] is True
    d.close()


def test_the_slides_own_annotations_are_drawn_when_asked(qtbot, tmp_path, reader):
    from histoviewer.core.annotations import Annotation, ShapeKind
    from histoviewer.core.annotations.document import AnnotationDocument

    tab = fake_tab(reader.info.path, reader)
    tab.annotations = AnnotationDocument(mpp=reader.info.mpp)
    x, y, w, h = LESION_RECT
    tab.annotations.add(Annotation(ShapeKind.RECTANGLE, ((x, y), (x + w, y + h)), "Tumor", "drawn"))
    d = _dialog(qtbot, tab, tmp_path)
    assert d.drawn.isChecked() and "(1)" in d.drawn.text()
    d.um_per_px.setValue(2.0)
    d.path.setText(str(tmp_path / "exports" / "with-annotations.png"))
    with qtbot.waitSignal(d.exported, timeout=30_000):
        assert d.start_export()
    prov = json.loads((tmp_path / "exports" / "with-annotations.png.provenance.json").read_text())
    assert prov["extra"]["outlines"] == 2  # the AI lesion and the drawn rectangle
    d.drawn.setChecked(False)
    d.path.setText(str(tmp_path / "exports" / "without.png"))
    with qtbot.waitSignal(d.exported, timeout=30_000):
        assert d.start_export()
    prov = json.loads((tmp_path / "exports" / "without.png.provenance.json").read_text())
    assert prov["extra"]["outlines"] == 1


def test_an_existing_file_is_replaced_only_when_the_user_agrees(qtbot, tmp_path, reader):
    tab = fake_tab(reader.info.path, reader)
    d = _dialog(qtbot, tab, tmp_path)
    target = tmp_path / "exports" / "keep.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"the user's file")
    d.path.setText(str(target))
    asked = []
    d.confirm_overwrite = lambda path: asked.append(path) or False
    assert not d.start_export()
    assert asked == [target] and target.read_bytes() == b"the user's file"
    assert "exists" in d.status.text()
    d.confirm_overwrite = lambda path: True
    with qtbot.waitSignal(d.exported, timeout=30_000):
        assert d.start_export()
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_exports_go_beside_the_slide_by_default(qtbot, tmp_path, reader):
    d = ExportDialog(fake_tab(reader.info.path, reader))
    qtbot.addWidget(d)
    assert Path(d.path.text()).parent == Path(reader.info.path).parent


def test_the_slide_itself_is_never_an_export_target(qtbot, tmp_path, reader):
    slide_path = Path(reader.info.path)
    before = slide_path.read_bytes()
    d = _dialog(qtbot, fake_tab(slide_path, reader), tmp_path)
    asked = []
    d.confirm_overwrite = lambda path: asked.append(path) or True  # even a user who says "replace"
    d.kind.setCurrentIndex(d.kind.findData("overlay"))
    (tmp_path / "link.tiff").symlink_to(slide_path)
    for target in (slide_path, tmp_path / "link.tiff"):
        d.path.setText(str(target))
        assert not d.start_export()
        assert "a file the job reads" in d.status.text() and asked == []
    assert slide_path.read_bytes() == before


def test_a_failed_write_is_shown_in_a_message_box_naming_the_file(qtbot, tmp_path, reader, monkeypatch):
    import errno

    from histoviewer.core.export import png_stream

    def full_disk(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(png_stream.PngStripWriter, "close", full_disk)
    d = _dialog(qtbot, fake_tab(reader.info.path, reader), tmp_path)
    target = tmp_path / "exports" / "full.png"
    d.path.setText(str(target))
    with qtbot.waitSignal(d.failed, timeout=30_000) as sig:
        assert d.start_export()
    assert f"{target}: cannot write: the disk is full" in sig.args[0]
    assert d.error_box is not None and d.error_box.isVisible() and str(target) in d.error_box.text()
    assert not target.exists() and sorted(p.name for p in target.parent.iterdir()) == []
    d.error_box.close()
