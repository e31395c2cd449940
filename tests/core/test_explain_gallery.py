"""The top-losses gallery: the most confident mistakes, in order, drawn with their explanation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from histoviewer.cli import main
from histoviewer.core.errors import EvaluationError, OverwriteRefused
from histoviewer.core.explain.gallery import top_losses, write_gallery
from histoviewer.core.models.calibration_metrics import calibration_metrics
from histoviewer.core.models.metrics import binary_metrics, roc
from histoviewer.core.models.registry import open_model
from tests.core.model_helpers import ArrayPatchSet, toy_patches


def test_top_losses_are_the_most_confident_mistakes_in_order():
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1])
    probs = np.array([0.9, 0.2, 0.6, 0.1, 0.8, 0.45, 0.9, 0.3, 0.5, 0.05])
    t = top_losses(labels, probs, threshold=0.5, n=3)
    assert t.false_positives == (
        0,
        6,
        2,
    )  # P 0.9, 0.9 (tie: earlier first), 0.6; 0.5 is the 4th
    assert t.false_negatives == (9, 3, 7)  # P 0.05, 0.1, 0.3; 0.45 is the 4th
    assert (t.n_fp, t.n_fn) == (4, 4)
    m = binary_metrics(labels, probs, 0.5)
    assert (m.fp, m.fn) == (t.n_fp, t.n_fn)  # the same rule as the confusion matrix
    assert top_losses(labels, probs, 0.5, 10).false_positives == (0, 6, 2, 8)
    with pytest.raises(EvaluationError):
        top_losses(labels, probs, 0.5, 0)


@pytest.mark.parametrize("key", ["cnn", "handcrafted"])
def test_the_gallery_shows_each_mistake_with_its_explanation(key, tmp_path):
    model = open_model(key, device="cpu")
    x, y = toy_patches(24, seed=2)
    y[:12] = (
        1 - y[:12]
    )  # half the labels swapped: mistakes of both kinds for any decent model
    data = ArrayPatchSet(x, y, model.input)
    idx = np.arange(len(x))
    probs = model.predict_proba(x)
    threshold = float(np.median(probs))
    m = binary_metrics(y, probs, threshold)
    losses = top_losses(y, probs, threshold, 3)
    assert losses.false_positives and losses.false_negatives
    out = tmp_path / "gallery"
    entries = write_gallery(
        out,
        model,
        data,
        idx,
        y,
        probs,
        losses,
        metrics=m,
        curve=roc(y, probs),
        calibration=calibration_metrics(y, probs),
        title="t",
    )
    assert [e.index for e in entries] == [
        *losses.false_positives,
        *losses.false_negatives,
    ]
    page = (out / "index.html").read_text()
    for e in entries:
        assert e.image in page and e.patch_id in page
        img = Image.open(out / e.image)
        assert (
            img.width > 2 * 2 * model.input.patch_px
        )  # the patch (2x) and its explanation beside it
    for name in ("confusion_matrix.png", "roc.png", "calibration.png"):
        assert (out / name).is_file() and name in page
    with pytest.raises(OverwriteRefused):
        write_gallery(
            out,
            model,
            data,
            idx,
            y,
            probs,
            losses,
            metrics=m,
            curve=None,
            calibration=calibration_metrics(y, probs),
            title="t",
        )


def test_eval_patches_top_losses_gallery_as_a_user_runs_it(tmp_path, capsys):
    x, y = toy_patches(16, seed=4)
    for sub in ("normal", "tumor"):
        (tmp_path / "classes" / sub).mkdir(parents=True)
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(img).save(
            tmp_path / "classes" / ("tumor" if lab else "normal") / f"p{i:03d}.png"
        )
    gallery = tmp_path / "gallery"
    args = [
        "eval-patches",
        "--model",
        "cnn",
        "--data",
        str(tmp_path / "classes"),
        "--patch-mpp",
        "0.972",
        "--threshold",
        "0.5",
        "--top-losses",
        "2",
        "--gallery",
        str(gallery),
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    losses = out["top_losses"]
    assert (
        losses["gallery"] == str(gallery / "index.html")
        and (gallery / "index.html").is_file()
    )
    fps = [r["probability"] for r in losses["false_positives"]]
    assert fps == sorted(fps, reverse=True) and all(p >= 0.5 for p in fps)
    assert all(r["label"] == 0 for r in losses["false_positives"])
    assert losses["n_false_positives"] == out["metrics"]["fp"]
    assert main(args) != 0  # the gallery exists: refused without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
