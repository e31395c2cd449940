"""``histoviewer compare SLIDE --model A --model B --out DIR`` (issue 17)."""

from __future__ import annotations

import json

import pytest

from histoviewer.cli import main
from tests.core.inference_helpers import write_fresh_cnn
from tests.core.test_compare import write_synthetic_pyramid


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_synthetic_pyramid(tmp_path_factory.mktemp("cli-compare") / "slide.tiff")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write_fresh_cnn(tmp_path_factory.mktemp("cli-compare-model"))


def test_a_model_file_compared_with_itself_agrees(slide, model_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", str(slide), "--model", str(model_file), "--model", str(model_file), "--out", str(out),
            "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "mean |A-B| 0.000" in text and "the two models agree" in text and "0 by A only, 0 by B only" in text
    written = json.loads((out / "comparison.json").read_text())
    assert written["agree"] is True and written["difference"]["mean_abs"] == 0.0
    # an existing folder is refused with the flag that allows it, and nothing changes
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agree"] is True


def test_two_models_are_needed(slide, model_file, tmp_path, capsys):
    assert main(["compare", str(slide), "--model", str(model_file), "--out", str(tmp_path / "x")]) == 2
    assert "--model must be given twice" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
