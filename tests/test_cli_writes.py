"""No subcommand destroys a user's file or ends a write failure in a traceback:
``export-heatmap`` and ``phantom`` never write over their inputs, replace existing files only
with ``--overwrite``, and a full disk is one error line naming the file, exit 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from histoviewer.cli import main
from histoviewer.core.atomic import PARTIAL_TAG
from histoviewer.core.inference.outputs import write_probability_map
from tests.core.export_helpers import GEOMETRY, MODEL, lesion_heatmap, slide

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def analysis(tmp_path):
    path = slide(tmp_path)
    folder = tmp_path / "analysis"
    folder.mkdir()
    write_probability_map(
        folder, lesion_heatmap().encoded, GEOMETRY, slide=str(path), model=MODEL
    )
    return path, folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(capsys, *argv):
    rc = main([*map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(
    "kind", [(), ("--overlay",), ("--raw",)], ids=["heatmap", "overlay", "raw"]
)
def test_export_onto_the_slide_is_refused_even_with_overwrite(
    analysis, tmp_path, capsys, kind
):
    path, folder = analysis
    before = _digest(path)
    os.link(path, tmp_path / "hardlink.tiff")
    (tmp_path / "symlink.tiff").symlink_to(path)
    for out in (
        path,
        tmp_path / "hardlink.tiff",
        tmp_path / "symlink.tiff",
        tmp_path / "." / path.name,
    ):
        for extra in ((), ("--overwrite",)):
            rc, _, err = _run(
                capsys,
                "export-heatmap",
                path,
                "--probability",
                folder,
                "--out",
                out,
                *kind,
                *extra,
            )
            assert rc == 2, (out, extra)
            assert "a file the job reads" in err and "Traceback" not in err
    assert _digest(path) == before
    assert not [p for p in tmp_path.iterdir() if PARTIAL_TAG in p.name]


def test_export_onto_the_analysis_it_reads_is_refused(analysis, capsys):
    path, folder = analysis
    before = _digest(folder / "probability.tiff")
    rc, _, err = _run(
        capsys,
        "export-heatmap",
        path,
        "--probability",
        folder,
        "--out",
        folder / "probability.tiff",
        "--raw",
        "--overwrite",
    )
    assert rc == 2 and "a file the job reads" in err
    assert _digest(folder / "probability.tiff") == before


def test_an_existing_export_is_replaced_only_with_overwrite(analysis, tmp_path, capsys):
    path, folder = analysis
    out = tmp_path / "mine.png"
    out.write_bytes(b"the user's own picture")
    rc, _, err = _run(
        capsys, "export-heatmap", path, "--probability", folder, "--out", out
    )
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"the user's own picture"
    rc, _, _ = _run(
        capsys,
        "export-heatmap",
        path,
        "--probability",
        folder,
        "--out",
        out,
        "--overwrite",
    )
    assert rc == 0 and out.read_bytes().startswith(b"\x89PNG")
    # a sidecar that exists (a user's file named like one) is an existing file too
    out2 = tmp_path / "b.tif"
    (tmp_path / "b.tif.legend.png").write_bytes(b"keep")
    rc, _, err = _run(
        capsys, "export-heatmap", path, "--probability", folder, "--out", out2
    )
    assert rc == 2 and "b.tif.legend.png already exists" in err and not out2.exists()


def test_a_folder_given_as_the_export_file_is_an_error(analysis, tmp_path, capsys):
    path, folder = analysis
    (tmp_path / "dir.png").mkdir()
    rc, _, err = _run(
        capsys,
        "export-heatmap",
        path,
        "--probability",
        folder,
        "--out",
        tmp_path / "dir.png",
        "--overwrite",
    )
    assert rc == 2 and "dir.png: cannot write: it is a folder" in err
    rc, _, err = _run(
        capsys, "export-heatmap", path, "--probability", folder, "--out", path / "x.png"
    )  # a file given as the folder
    assert rc == 2 and "is a file, not a folder" in err


def test_phantom_refuses_existing_files_and_a_name_its_truth_would_replace(
    tmp_path, capsys
):
    out = tmp_path / "p.tiff"
    args = ["phantom", out, "--width", "300", "--height", "300", "--lesions", ""]
    assert _run(capsys, *args)[0] == 0
    before = _digest(out)
    rc, _, err = _run(capsys, *args, "--seed", "3")
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert _digest(out) == before
    (tmp_path / "q.xml").write_text(
        "<ASAP_Annotations/>"
    )  # a user's annotations where the truth would go
    rc, _, err = _run(
        capsys, "phantom", tmp_path / "q.tiff", "--width", "300", "--height", "300"
    )
    assert (
        rc == 2 and "q.xml already exists" in err and not (tmp_path / "q.tiff").exists()
    )
    rc, _, err = _run(
        capsys, "phantom", tmp_path / "r.geojson", "--width", "300", "--height", "300"
    )
    assert rc == 2 and "same file" in err and not (tmp_path / "r.geojson").exists()
    assert _run(capsys, *args, "--seed", "3", "--overwrite")[0] == 0
    assert _digest(out) != before


def _limited(argv: list[str], limit_bytes: int) -> subprocess.CompletedProcess:
    """``histoviewer argv`` in a process that may write no file larger than ``limit_bytes``
    (RLIMIT_FSIZE: a deterministic full disk; the write fails with EFBIG)."""
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); "
        "from histoviewer.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("kind", [(), ("--raw",)], ids=["png", "raw"])
def test_a_full_disk_during_an_export_is_an_error_naming_the_file(
    analysis, tmp_path, kind
):
    path, folder = analysis
    out = tmp_path / ("x.tiff" if kind else "x.png")
    res = _limited(
        [
            "export-heatmap",
            str(path),
            "--probability",
            str(folder),
            "--out",
            str(out),
            *kind,
        ],
        2000,
    )
    assert res.returncode == 2, res.stderr
    assert (
        "Traceback" not in res.stderr
        and f"{out}: cannot write: the file is larger" in res.stderr
    )
    assert not out.exists() and not [
        p for p in tmp_path.iterdir() if PARTIAL_TAG in p.name
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_while_writing_a_phantom_is_an_error_naming_the_file(tmp_path):
    out = tmp_path / "p.tiff"
    res = _limited(
        ["phantom", str(out), "--width", "600", "--height", "600", "--lesions", ""],
        3000,
    )
    assert res.returncode == 2, res.stderr
    assert (
        "Traceback" not in res.stderr
        and f"{out}: could not write the phantom slide" in res.stderr
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_while_writing_the_report_pdf_is_an_error_not_a_truncated_pdf(
    tmp_path_factory, tmp_path
):
    """Qt's PDF writer ignores write errors: before, a full disk gave a truncated PDF and
    exit 0. Now the file is checked before it replaces REPORT.pdf."""
    from tests.core.report_helpers import shared_case

    case = shared_case(tmp_path_factory)
    out = tmp_path / "r.pdf"
    out.write_bytes(b"%PDF-1.4 an earlier, complete report\n%%EOF\n")
    res = _limited(["report", str(case), "--out", str(out), "--overwrite"], 20000)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and f"{out}: cannot write:" in res.stderr
    assert out.read_bytes().startswith(
        b"%PDF-1.4 an earlier"
    )  # the earlier report is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pdf"]


def test_report_never_writes_over_the_analyses_and_replaces_only_with_overwrite(
    tmp_path_factory, tmp_path, capsys
):
    from tests.core.report_helpers import shared_case

    case = shared_case(tmp_path_factory)
    summary = case / "patient_007_node_1" / "summary.json"
    before = _digest(summary)
    rc, _, err = _run(capsys, "report", case, "--json", summary, "--overwrite")
    assert rc == 2 and "a file the job reads" in err and _digest(summary) == before
    rc, _, err = _run(
        capsys, "report", case, "--csv", case / "patient_007_node_1", "--overwrite"
    )
    # a slide's analysis folder: refused saying what it is and what to give instead (it
    # called the folder "a file the job reads")
    assert rc == 2 and "a slide's analysis folder" in err and "give another folder" in err
    assert not (case / "patient_007_node_1" / "lesions.csv").exists()
    mine = tmp_path / "r.json"
    mine.write_text("the user's")
    rc, _, err = _run(capsys, "report", case, "--json", mine)
    assert (
        rc == 2
        and "already exists" in err
        and "--overwrite" in err
        and mine.read_text() == "the user's"
    )
    rc, _, _ = _run(capsys, "report", case, "--json", mine, "--overwrite")
    assert rc == 0 and mine.read_text().startswith("{")


def test_model_commands_never_write_over_their_inputs_or_an_unasked_file(
    tmp_path, capsys
):
    data = tmp_path / "patches.h5"
    data.write_bytes(b"the user's data")
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"a trained model")
    for argv in (
        ["train", "handcrafted", "--data", data, "--out", data, "--overwrite"],
        [
            "predict-patches",
            "--model",
            "cnn",
            "--data",
            data,
            "--out",
            data,
            "--overwrite",
        ],
        ["eval-patches", "--model", "cnn", "--data", data, "--roc", data],
    ):
        rc, _, err = _run(capsys, *argv)
        assert rc == 2 and "a file the job reads" in err, argv
    rc, _, err = _run(capsys, "train", "handcrafted", "--data", data, "--out", out)
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert (
        data.read_bytes() == b"the user's data"
        and out.read_bytes() == b"a trained model"
    )


def test_lesions_geojson_never_replaces_the_map_and_asks_for_existing_files(
    analysis, tmp_path, capsys
):
    _path, folder = analysis
    before = _digest(folder / "probability.tiff")
    rc, _, err = _run(
        capsys,
        "lesions",
        folder / "probability.tiff",
        "--geojson",
        folder / "probability.tiff",
        "--overwrite",
    )
    assert (
        rc == 2
        and "a file the job reads" in err
        and _digest(folder / "probability.tiff") == before
    )
    mine = tmp_path / "mine.geojson"
    mine.write_text("{}")
    rc, _, err = _run(capsys, "lesions", folder / "probability.tiff", "--geojson", mine)
    assert rc == 2 and "--overwrite" in err and mine.read_text() == "{}"
    rc, _, _ = _run(
        capsys, "lesions", folder / "probability.tiff", "--geojson", mine, "--overwrite"
    )
    assert rc == 0 and mine.read_text() != "{}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kill -9 is POSIX")
def test_kill_9_during_a_streamed_slide_write_leaves_named_partials_the_next_write_cleans(
    tmp_path,
):
    """A phantom slide (the streaming pyramid writer: a temporary file and a spill folder)
    killed mid-write: what it leaves names its process, and the next write there removes it."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "histoviewer",
            "phantom",
            str(tmp_path / "big.tiff"),
            "--width",
            "12000",
            "--height",
            "12000",
            "--workers",
            "1",
            "--lesions",
            "",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            len([p for p in tmp_path.iterdir() if PARTIAL_TAG in p.name]) < 2
        ):  # the file and the spill folder
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the writer ended before it was killed"
            )
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    left = [p for p in tmp_path.iterdir() if PARTIAL_TAG in p.name]
    assert (
        left
        and all(f".{proc.pid}." in p.name for p in left)
        and any(p.is_dir() for p in left)
    )
    assert not (tmp_path / "big.tiff").exists()
    assert (
        main(
            [
                "phantom",
                str(tmp_path / "small.tiff"),
                "--width",
                "300",
                "--height",
                "300",
                "--lesions",
                "",
                "--json",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "small.geojson",
        "small.lesions.json",
        "small.tiff",
        "small.xml",
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX")
def test_analyze_on_a_full_disk_fails_each_slide_cleanly_and_exits_1_with_a_summary(
    tmp_path,
):
    from tests.core.inference_helpers import write_synthetic_tiff

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_synthetic_tiff(tmp_path / "a" / "node.tiff")
    b = tmp_path / "b" / "node.tiff"
    b.write_bytes(a.read_bytes())
    out = tmp_path / "out"
    res = _limited(
        [
            "analyze",
            str(a),
            str(b),
            "--model",
            "handcrafted",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        6000,
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "2 of 2 slides failed" in res.stderr
    assert f"{out / 'node' / 'heatmap.png'}: cannot write:" in res.stderr
    assert f"{out / 'node-2' / 'heatmap.png'}: cannot write:" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "cases.json",
        "stages.csv",
    ]  # no half-written slide folder


def test_analyze_report_that_cannot_be_written_fails_alone(
    tmp_path, capsys, monkeypatch
):
    from histoviewer.core.jobs import analysis as jobs_analysis
    from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff

    monkeypatch.setattr(
        jobs_analysis, "open_model", lambda spec, device="auto": LesionFractionModel()
    )
    monkeypatch.setattr(jobs_analysis, "_open_model_early", lambda spec, device: LesionFractionModel())
    slide_path = write_synthetic_tiff(tmp_path / "patient_001_node_0.tiff")
    out = tmp_path / "out"
    (out / "report.pdf").mkdir(parents=True)  # a folder where the report goes
    rc, stdout, err = _run(capsys, "analyze", slide_path, "--out", out, "--report")
    assert (
        rc == 1
        and f"{out / 'report.pdf'}: cannot write: it is a folder" in err
        and "Traceback" not in err
    )
    assert (
        "stages:" in stdout and (out / "patient_001_node_0" / "summary.json").is_file()
    )
    assert not [p for p in out.iterdir() if PARTIAL_TAG in p.name]
