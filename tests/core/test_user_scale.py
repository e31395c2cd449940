"""The pixel size a user states for a slide that has none: checked by the one sanity range,
saved per slide (by content, so it follows a moved copy), refused over a slide's own scale
unless forced, and marked "user" in the geometry every output writes."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from histoviewer.cli import analyze as cli_analyze
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.user_scale import (
    UserScaleError,
    UserScaleStore,
    apply_user_mpp,
)

DATA = Path(__file__).resolve().parents[1] / "data"
NO_MPP = DATA / "tiny-no-mpp.svs"
WITH_MPP = DATA / "tiny.svs"


def test_open_slide_with_a_user_pixel_size_marks_it_user_set():
    with open_slide(NO_MPP) as reader:
        assert reader.info.mpp is None and reader.info.mpp_source is None
    with open_slide(NO_MPP, user_mpp=0.5) as reader:
        info = reader.info
        assert (
            info.mpp == 0.5
            and info.mpp_source == "user"
            and info.base_magnification == pytest.approx(20)
        )
        g = GridGeometry.for_slide(
            info.dimensions, info.mpp, 0.972, 96, mpp_source=info.mpp_source
        )
        assert g.to_dict()["slide_mpp_source"] == "user"
        assert GridGeometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e-300, -0.5, 0.0, 1e6])
def test_an_implausible_user_pixel_size_is_refused(bad):
    with pytest.raises(UserScaleError, match="pixel size"):
        open_slide(NO_MPP, user_mpp=bad)


def test_a_slides_own_scale_is_replaced_only_when_forced():
    with open_slide(WITH_MPP) as reader:
        own = reader.info.mpp
        assert own is not None and reader.info.mpp_source == "slide"
        with pytest.raises(UserScaleError, match="states its own pixel size") as err:
            apply_user_mpp(reader, own * 2)
        assert err.value.setting == "force_mpp" and reader.info.mpp == own
        apply_user_mpp(reader, own * 2, force=True)
        assert reader.info.mpp == own * 2 and reader.info.mpp_source == "user"


def test_old_maps_without_a_source_read_as_slide_stated():
    g = GridGeometry.for_slide((1000, 1000), 0.25, 0.972, 96)
    doc = g.to_dict()
    del doc["slide_mpp_source"]
    assert GridGeometry.from_dict(doc).slide_mpp_source == "slide"


def test_the_store_keeps_a_pixel_size_per_slide_content(tmp_path):
    store = UserScaleStore(tmp_path / "sizes.json")
    size = (1024, 768)
    assert store.get(NO_MPP, size) is None
    store.set(NO_MPP, size, 0.46)
    moved = tmp_path / "renamed copy.svs"
    shutil.copyfile(NO_MPP, moved)
    assert (
        UserScaleStore(tmp_path / "sizes.json").get(moved, size) == 0.46
    )  # follows the slide's content
    assert store.get(WITH_MPP, size) is None  # another slide: nothing
    with pytest.raises(UserScaleError):
        store.set(NO_MPP, size, float("inf"))
    store.set(NO_MPP, size, None)
    assert store.get(NO_MPP, size) is None
    (tmp_path / "sizes.json").write_text("{not json", encoding="utf-8")
    assert (
        store.get(NO_MPP, size) is None
    )  # a damaged store costs the stated sizes, not the viewer


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="histoviewer")
    cli_analyze.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args), capsys.readouterr()


def test_analyze_with_mpp_marks_every_output_user_set(tmp_path, capsys):
    rc, out = _run(
        [
            "analyze",
            str(NO_MPP),
            "--model",
            "handcrafted",
            "--out",
            str(tmp_path / "a"),
            "--mpp",
            "0.5",
        ],
        capsys,
    )
    # the fixture holds no tissue, so its node has no final label (exit 3); the scale is the user's
    assert rc == 3 and "user-set" in out.out and "no tissue found" in out.out
    summary = json.loads((tmp_path / "a" / "tiny-no-mpp" / "summary.json").read_text())
    assert summary["mpp"] == 0.5 and summary["mpp_source"] == "user"
    assert summary["geometry"]["slide_mpp_source"] == "user"
    meta = json.loads((tmp_path / "a" / "tiny-no-mpp" / "probability.json").read_text())
    assert meta["geometry"]["slide_mpp_source"] == "user"
    rc, out = _run(
        [
            "analyze",
            str(WITH_MPP),
            "--model",
            "handcrafted",
            "--out",
            str(tmp_path / "b"),
            "--mpp",
            "0.3",
        ],
        capsys,
    )
    assert rc != 0 and "refusing to replace" in out.err and "--force-mpp" in out.err
    with pytest.raises(Exception, match="outside the plausible range"):
        _run(
            ["analyze", str(NO_MPP), "--out", str(tmp_path / "c"), "--mpp", "1e-300"],
            capsys,
        )


def test_export_heatmap_with_mpp_marks_the_provenance_user_set(tmp_path, capsys):
    from histoviewer.cli import export_heatmap as cli_export

    parser = argparse.ArgumentParser(prog="histoviewer")
    cli_export.register(parser.add_subparsers(dest="command"))
    base = [
        "export-heatmap",
        str(NO_MPP),
        "--model",
        "handcrafted",
        "--analysis-dir",
        str(tmp_path / "an"),
    ]
    with pytest.raises(Exception, match="scale .* is unknown"):
        args = parser.parse_args([*base, "--out", str(tmp_path / "a.png")])
        args.func(args)
    assert not (tmp_path / "a.png").exists()
    args = parser.parse_args([*base, "--out", str(tmp_path / "b.png"), "--mpp", "0.5"])
    assert args.func(args) == 0
    prov = json.loads((tmp_path / "b.png.provenance.json").read_text())
    assert prov["slide_mpp"] == 0.5 and prov["grid"]["slide_mpp_source"] == "user"
