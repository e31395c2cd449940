"""The command line: ``histoviewer info`` and error handling (on the tiny slides checked in
under tests/data, and on a real Aperio slide where ../shared/data is present)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from histoviewer.cli import main


def test_info_text(tiny_svs, capsys):
    assert main(["info", str(tiny_svs)]) == 0
    out = capsys.readouterr().out
    assert "64 x 48 px" in out and "0.5000 x 0.5000 um/px" in out and "aperio" in out and "20x" in out
    assert "level 1: 32 x 24 px, downsample 2" in out
    assert "label, thumbnail (not shown" in out and "physical size:     0.03 x 0.02 mm" in out


def test_info_json(tiny_svs, capsys):
    assert main(["info", str(tiny_svs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["width"] == 64 and data["mpp_x"] == 0.5 and data["objective_power"] == 20
    assert data["level_dimensions"] == [[64, 48], [32, 24]] and data["mpp_known"] is True
    assert "properties" not in data


def test_info_text_of_a_real_slide(cmu_small, capsys):
    assert main(["info", str(cmu_small)]) == 0
    out = capsys.readouterr().out
    assert "2220 x 2967 px" in out and "0.4990 x 0.4990 um/px" in out and "aperio" in out
    assert "label, macro, thumbnail (not shown" in out


def test_info_json_of_a_real_slide(cmu_small, capsys):
    assert main(["info", str(cmu_small), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["width"] == 2220 and data["mpp_x"] == 0.499 and data["objective_power"] == 20
    assert "properties" not in data


def test_info_without_mpp_says_unknown(tiny_slides, capsys):
    path = tiny_slides / "tiny-no-mpp.svs"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "microns per pixel: unknown" in out and "physical size:" not in out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mpp_x"] is None


@pytest.mark.parametrize("name, cause", [("unsupported-compression.tiff", "Unsupported TIFF compression: 52479"),
                                         ("truncated.svs", "not a slide format")])
def test_info_bad_file_exits_2_with_a_message(tiny_slides, capsys, name, cause):
    path = tiny_slides / name
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("histoviewer: error:") and str(path) in err and cause in err


def test_python_dash_m_entry_point(tiny_svs):
    result = subprocess.run([sys.executable, "-m", "histoviewer", "info", str(tiny_svs), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout)["vendor"] == "aperio"


def test_core_errors_speak_of_the_problem_and_the_cli_adds_its_flag(tmp_path, capsys):
    """The phantom's layout error says what to change; only the CLI names --width/--height."""
    rc = main(["phantom", str(tmp_path / "p.tiff"), "--width", "4096", "--height", "3072",
               "--lesions", "macro:3"])
    err = capsys.readouterr().err
    assert rc == 2 and "make the slide larger or the lesions fewer or smaller" in err
    assert err.rstrip().endswith("(use --width/--height)")
    assert not (tmp_path / "p.tiff").exists()


def test_flag_hints_for_settings():
    from histoviewer.cli import error_text
    from histoviewer.core.errors import HistoViewerError, ModelError, PatchDataError

    assert error_text(ModelError("no CUDA GPU; choose the CPU device", setting="device")) == \
        "histoviewer: error: no CUDA GPU; choose the CPU device (use --device cpu)"
    hint = error_text(PatchDataError("x", setting="max_patches_per_slide"))
    assert hint.endswith("(use --max-patches-per-slide)")
    assert error_text(HistoViewerError("plain")) == "histoviewer: error: plain"


def test_cli_control_is_silent_off_a_terminal_and_draws_one_bar_per_stage(capsys):
    from histoviewer.cli.progress import TqdmStages, cli_control
    from histoviewer.core.progress import NO_CONTROL

    assert cli_control(quiet=True) is NO_CONTROL
    assert cli_control(quiet=False) is NO_CONTROL  # pytest's stderr is not a terminal
    stages = TqdmStages("tile")
    stages("Classifying a.tiff", 0, 4, "")
    stages("Classifying a.tiff", 3, 4, "")
    assert stages.open_stages == ["Classifying a.tiff"]
    stages("Classifying b.tiff", 0, 2, "")  # a new stage closes the unfinished one
    assert stages.open_stages == ["Classifying b.tiff"]
    stages("Classifying b.tiff", 2, 2, "")  # complete: closed
    assert stages.open_stages == []
    assert "Classifying a.tiff" in capsys.readouterr().err
