"""``analyze``'s outputs are never lost or half-written: each slide gets its own safe, unique
folder in OUT (two slides with one name, names of OUT's own files, unsafe names), the folder
appears only when complete, and a write failure fails that slide alone, with the file named."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from histoviewer.core.analysis.summary import SlideFailure, SlideSummary
from histoviewer.core.atomic import PARTIAL_TAG
from histoviewer.core.errors import WriteError
from histoviewer.core.inference import analyze as analyze_module
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.jobs import analysis as jobs_analysis
from histoviewer.core.jobs import analyze_case
from histoviewer.core.jobs.slide_folders import safe_folder_name, slide_folders
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff

OPTIONS = AnalyzeOptions(model="m", device="cpu")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_tiff(tmp_path_factory.mktemp("synthetic") / "synthetic.tiff")


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(
        jobs_analysis, "open_model", lambda spec, device="auto": LesionFractionModel()
    )
    # a stand-in model: loaded in place, not planned from the real file's header on a thread
    monkeypatch.setattr(jobs_analysis, "_open_model_early", lambda spec, device: LesionFractionModel())


def _copy(synthetic, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return shutil.copy(synthetic, path)


def _partials(folder):
    return [p for p in folder.rglob("*") if PARTIAL_TAG in p.name]


def test_unsafe_names_become_safe_folder_names():
    assert (
        safe_folder_name("x/CON.tiff") == "CON_"
        and safe_folder_name("lpt1.svs") == "lpt1_"
    )
    assert (
        safe_folder_name("a:b*c?.tiff") == "a_b_c_"
        and safe_folder_name("a\x01b.svs") == "a_b"
    )
    assert (
        safe_folder_name("..tiff") == "tiff"
        and safe_folder_name(".hidden.tiff") == "hidden"
    )
    assert (
        safe_folder_name("....") == "slide"
        and safe_folder_name("node. .tiff") == "node"
    )
    assert safe_folder_name("x\\..\\..\\evil.tiff") == "evil"
    long = safe_folder_name("\u00e9" * 300 + ".tiff")
    assert len(long.encode("utf-8")) <= 100 and long == "\u00e9" * 50


def test_folder_names_are_unique_never_ours_and_stated(tmp_path):
    slides = [
        tmp_path / "a" / "node.tiff",
        tmp_path / "b" / "node.tiff",
        tmp_path / "node-2.tiff",
        tmp_path / "stages.csv.tiff",
        tmp_path / "STAGES.CSV.svs",
        tmp_path / "c" / "Node.svs",
    ]
    folders = slide_folders(tmp_path / "out", slides)
    assert [f.path.name for f in folders] == [
        "node",
        "node-2",
        "node-2-2",
        "stages.csv-2",
        "STAGES.CSV-3",
        "Node-3",
    ]
    assert (
        folders[0].note == ""
        and "another slide or file has that name" in folders[1].note
    )
    assert "OUT's own files" in folders[3].note
    assert all(f.path.parent == tmp_path / "out" for f in folders)
    assert slide_folders(tmp_path / "out", slides) == folders  # deterministic


def test_an_earlier_folder_of_another_slide_or_a_users_file_is_never_taken(tmp_path):
    out = tmp_path / "out"
    (out / "node").mkdir(parents=True)
    (out / "node" / "summary.json").write_text(
        json.dumps({"slide": "/elsewhere/node.tiff"})
    )
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("the user's")
    (out / "file").write_text("a file")
    slide_node, slide_mine, slide_file = (
        tmp_path / "node.tiff",
        tmp_path / "mine.svs",
        tmp_path / "file.tiff",
    )
    names = [
        f.path.name for f in slide_folders(out, [slide_node, slide_mine, slide_file])
    ]
    assert names == ["node-2", "mine-2", "file-2"]
    (out / "node" / "summary.json").write_text(
        json.dumps({"slide": str(slide_node)})
    )  # its own earlier run
    assert slide_folders(out, [slide_node])[0].path.name == "node"


def test_a_slide_inside_out_named_like_its_folder_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    slide = out / "node"  # a slide without an extension, where its folder would go
    slide.write_bytes(b"slide")
    assert slide_folders(out, [slide])[0].path.name == "node-2"


def test_two_slides_with_one_name_keep_both_results(synthetic, tmp_path, fake_model):
    a = _copy(synthetic, tmp_path / "p1" / "node.tiff")
    b = _copy(synthetic, tmp_path / "p2" / "node.tiff")
    c = _copy(synthetic, tmp_path / "stages.csv.tiff")
    run = analyze_case([a, b, c], tmp_path / "out", OPTIONS)
    assert all(isinstance(s, SlideSummary) for s in run.summaries)
    dirs = [s.out_dir for s in run.summaries]
    assert dirs == [
        str(tmp_path / "out" / n) for n in ("node", "node-2", "stages.csv-2")
    ]
    for s in run.summaries:
        on_disk = json.loads(
            (tmp_path / "out" / s.out_dir / "summary.json").read_text()
        )
        assert on_disk["slide"] == s.slide and on_disk["out_dir"] == s.out_dir
        assert on_disk["files"]["probability_tiff"].startswith(s.out_dir + "/")
    assert (tmp_path / "out" / "stages.csv").is_file()
    assert not _partials(tmp_path / "out")


def test_a_write_failure_fails_that_slide_only_and_leaves_nothing_half_written(
    synthetic, tmp_path, fake_model, monkeypatch
):
    slides = [_copy(synthetic, tmp_path / f"s{i}.tiff") for i in range(3)]
    out = tmp_path / "out"
    earlier = out / "s1"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text(
        json.dumps({"slide": str(slides[1]), "earlier": True})
    )
    real = analyze_module.write_heatmap_png

    def full_disk_for_s1(path, *args, **kwargs):
        if "s1" in str(path.parent.name):
            raise WriteError(f"{path}: cannot write: the disk is full")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(analyze_module, "write_heatmap_png", full_disk_for_s1)
    run = analyze_case(slides, out, OPTIONS)
    ok0, failed, ok2 = run.summaries
    assert isinstance(ok0, SlideSummary) and isinstance(ok2, SlideSummary)
    assert (
        isinstance(failed, SlideFailure)
        and "heatmap.png: cannot write: the disk is full" in failed.error
    )
    assert (
        json.loads((earlier / "summary.json").read_text())["earlier"] is True
    )  # the earlier results stay
    assert sorted(p.name for p in earlier.iterdir()) == ["summary.json"]
    assert not _partials(out) and (out / "stages.csv").is_file()


def test_a_real_os_error_mid_slide_is_a_failure_naming_the_file(
    synthetic, tmp_path, fake_model, monkeypatch
):
    slides = [_copy(synthetic, tmp_path / f"t{i}.tiff") for i in range(2)]
    real = analyze_module.atomic_write_text

    def enospc(path, text):
        if path.name == "summary.json" and "t0" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(analyze_module, "atomic_write_text", enospc)
    run = analyze_case(slides, tmp_path / "out", OPTIONS)
    assert isinstance(run.summaries[0], SlideFailure) and isinstance(
        run.summaries[1], SlideSummary
    )
    assert not (tmp_path / "out" / "t0").exists() and not _partials(tmp_path / "out")


def test_a_write_error_names_the_file_in_the_slides_folder_not_the_temporary_one(
    synthetic, tmp_path, fake_model, monkeypatch
):
    def full(path, *args, **kwargs):
        raise WriteError(f"{path}: cannot write: the disk is full")

    monkeypatch.setattr(analyze_module, "write_heatmap_png", full)
    (failed,) = analyze_case([synthetic], tmp_path / "out", OPTIONS).summaries
    assert (
        failed.error
        == f"{tmp_path / 'out' / 'synthetic' / 'heatmap.png'}: cannot write: the disk is full"
    )


def test_out_given_as_a_file_is_a_clear_error(synthetic, tmp_path, fake_model):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(WriteError, match="it is a file, not a folder"):
        analyze_case([synthetic], tmp_path / "out", OPTIONS)


def test_a_slide_named_like_a_formula_is_escaped_in_stages_csv(
    synthetic, tmp_path, fake_model
):
    import csv

    slide = _copy(synthetic, tmp_path / "=HYPERLINK(1).tiff")
    analyze_case([slide], tmp_path / "out", OPTIONS)
    cells = [
        c
        for row in csv.reader(
            (tmp_path / "out" / "stages.csv").read_text().splitlines()
        )
        for c in row
    ]
    assert "'=HYPERLINK(1).tiff" in cells and not any(c.startswith("=") for c in cells)


def test_an_exports_analysis_cut_short_leaves_no_half_folder_to_be_found(synthetic, tmp_path, monkeypatch):
    """``export-heatmap`` analyses a slide into its analysis store when it must: a failure
    (or a kill) half way leaves nothing there that a later export would take for a result."""
    import histoviewer.core.export.source as source_mod
    from histoviewer.core.errors import SlideReadError
    from histoviewer.core.export import heatmap_for_slide

    def fails_half_way(slide, folder, *args, **kwargs):
        (folder / "probability.tiff").write_bytes(b"half a map")
        raise SlideReadError(f"{slide}: a tile could not be read")

    monkeypatch.setattr(source_mod, "analyze_slide", fails_half_way)
    store = tmp_path / "store"
    with pytest.raises(SlideReadError):
        heatmap_for_slide(synthetic, "handcrafted", analysis_root=store, device="cpu")
    assert not [p for p in store.rglob("*") if p.is_file()] and not _partials(store)
