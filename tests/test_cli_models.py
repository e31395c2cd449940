"""``histoviewer train / eval-patches / predict-patches / models`` as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from histoviewer.cli import main

from .core.model_helpers import toy_patches


@pytest.fixture(scope="module")
def toy_folders(tmp_path_factory):
    """Class folders (normal/, tumor/) of 96 px PNGs, and a flat unlabelled folder."""
    root = tmp_path_factory.mktemp("toy")
    x, y = toy_patches(240, seed=11)
    for sub in ("normal", "tumor"):
        (root / "classes" / sub).mkdir(parents=True)
    (root / "flat").mkdir()
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(img).save(root / "classes" / ("tumor" if lab else "normal") / f"p{i:03d}.png")
        if i < 30:
            Image.fromarray(img).save(root / "flat" / f"id{i:03d}.png")
    return root


def test_train_eval_predict_handcrafted(toy_folders, tmp_path, capsys, monkeypatch):
    model = tmp_path / "hc.safetensors"
    data = str(toy_folders / "classes")
    assert main(["train", "handcrafted", "--data", data, "--patch-mpp", "0.972",
                 "--out", str(model), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "handcrafted" and summary["validation"]["auc"] > 0.9
    assert len(summary["content_hash"]) == 64 and model.exists()

    roc = tmp_path / "roc.png"
    assert main(["eval-patches", "--model", str(model), "--data", data, "--patch-mpp", "0.972",
                 "--roc", str(roc)]) == 0
    out = capsys.readouterr().out
    assert "AUC" in out and "sensitivity" in out and "confusion matrix" in out
    assert Image.open(roc).size == (640, 640)
    # Without --roc nothing is written into the current folder (it used to get roc.png).
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["eval-patches", "--model", str(model), "--data", data, "--patch-mpp", "0.972"]) == 0
    assert "ROC curve: not drawn (--roc FILE.png draws it)" in capsys.readouterr().out
    assert list(cwd.iterdir()) == []

    sub = tmp_path / "submission.csv"
    assert main(["predict-patches", "--model", str(model), "--data", str(toy_folders / "flat"),
                 "--patch-mpp", "0.972", "--out", str(sub)]) == 0
    rows = list(csv.reader(sub.open()))
    assert rows[0] == ["id", "label"] and len(rows) == 31
    assert {r[0] for r in rows[1:]} == {f"id{i:03d}" for i in range(30)}
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows[1:])


def test_train_cnn_short_run_and_eval_json(toy_folders, tmp_path, capsys):
    # the command's plumbing, not learning (tests/core/test_cnn.py checks that): one epoch
    model = tmp_path / "cnn.safetensors"
    data = str(toy_folders / "classes")
    assert main(["train", "cnn", "--data", data, "--patch-mpp", "0.972", "--out", str(model),
                 "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--name", "toy-cnn"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "toy-cnn" in out and "DEMONSTRATION" not in out
    assert main(["eval-patches", "--model", str(model), "--data", data, "--patch-mpp", "0.972",
                 "--roc", str(tmp_path / "r.png"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["metrics"]["n"] == 240 and "warning" not in res


def test_train_screen_writes_a_screening_model_at_2_5x(toy_folders, tmp_path, capsys):
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.screen_model import SCREEN_INPUT, screen_settings

    model = tmp_path / "screen.safetensors"
    data = str(toy_folders / "classes")
    assert main(["train", "screen", "--data", data, "--patch-mpp", "0.972", "--out", str(model), "--epochs", "1",
                 "--batch-size", "32", "--device", "cpu", "--screen-margin", "2", "--json"]) == 0
    info = read_model_info(model)
    assert info.architecture == "screen-cnn" and info.input.patch_px == SCREEN_INPUT.patch_px == 24
    assert info.input.mpp == pytest.approx(3.888)
    settings = screen_settings(info)
    assert settings.margin_patches == 2 and settings.target == "sensitivity >= 0.99"
    assert settings.sensitivity >= 0.99  # chosen on validation for the stated sensitivity
    # a patch model's training takes no screening margin
    assert main(["train", "cnn", "--data", data, "--patch-mpp", "0.972", "--out", str(tmp_path / "x.safetensors"),
                 "--screen-margin", "1"]) == 2


def test_missing_patch_scale_is_an_error_not_a_guess(toy_folders, tmp_path, capsys):
    rc = main(["train", "handcrafted", "--data", str(toy_folders / "classes"),
               "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    # the core speaks of the patch scale, the CLI adds its flag
    assert rc == 2 and "give the patches' scale" in err and "(use --patch-mpp)" in err
    assert not (tmp_path / "m.safetensors").exists()


def test_unknown_model_is_a_clear_error(toy_folders, capsys):
    rc = main(["eval-patches", "--model", "no-such-model", "--data", str(toy_folders / "classes"),
               "--patch-mpp", "0.972"])
    assert rc == 2 and "no-such-model" in capsys.readouterr().err


def test_default_models_are_named_with_what_they_were_trained_on(toy_folders, tmp_path, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "models folder" in out and "DEMONSTRATION" not in out
    # cnn, handcrafted and the GPU model cnn-resnet, each with its held-out numbers from its
    # header, and the screening model (listed since issue 15: it was missing)
    assert out.count("real PatchCamelyon patches") == 4 and out.count("not validated for clinical use") == 4
    assert out.count("held out, kaggle-test: 1427 patches, AUC 0.9") == 3
    assert "cnn-resnet: cnn-pcam-resnet (cnn, resnet)" in out
    assert main(["eval-patches", "--model", "cnn", "--data", str(toy_folders / "classes"),
                 "--patch-mpp", "0.972", "--roc", str(tmp_path / "r.png")]) == 0
    out = capsys.readouterr().out
    assert "caveat: research model trained on" in out and "WARNING: demonstration" not in out


def test_models_lists_the_screening_model_and_the_node_classifier_with_digests(capsys):
    """``histoviewer models`` names every shipped model: the screening model (with its
    screening threshold and held-out numbers) and the learned node classifier (what it was
    trained on, its file's and its trees' digests, the latter pinned in SHIPPED_NODE_FORESTS)."""
    import json

    from histoviewer.core.analysis.learned_label import SHIPPED_NODE_FORESTS
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.screen_model import resolve_screen_model_path

    screen = read_model_info(resolve_screen_model_path("screen"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    listing = out.split("screening model (", 1)[1]
    assert f"screen: {screen.display_name()}" in listing
    assert f"sha256 {screen.content_hash[:16]}" in listing and "held out, kaggle-test: 1427 patches" in listing
    assert "screens at threshold 0.0647 (sensitivity >= 0.99" in listing
    forest = listing.split("node classifier (", 1)[1]
    assert "node-forest-phantom" in forest and "trained on phantoms only" in forest
    assert "644 nodes of 160 patients" in forest and "out-of-bag accuracy 91.8 %" in forest
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["screening_model"]["info"]["content_hash"] == screen.content_hash
    assert data["screening_model"]["settings"]["margin_patches"] == 1
    node = data["node_classifier"]
    assert node["shipped"] and node["arrays_digest"] in SHIPPED_NODE_FORESTS and len(node["content_hash"]) == 64


def test_eval_reports_calibration_at_the_operating_point_on_the_held_out_part(toy_folders, tmp_path, capsys):
    model = tmp_path / "hc.safetensors"
    data = str(toy_folders / "classes")
    assert main(["train", "handcrafted", "--data", data, "--patch-mpp", "0.972", "--out", str(model),
                 "--operating-point", "sensitivity", "--target-sensitivity", "0.9", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_train"] + summary["n_valid"] + summary["n_test"] == 240
    assert summary["n_test"] >= 36  # at least 15 %
    point = summary["operating_point"]
    assert point["target"] == "sensitivity >= 0.9" and point["sensitivity"] >= 0.9
    assert summary["calibration"]["method"] == "platt"
    assert summary["caveat"] == (f"research model trained on {summary['n_train']} labelled patches; "
                                 "not validated for clinical use")

    rel = tmp_path / "reliability.png"
    assert main(["eval-patches", "--model", str(model), "--data", data, "--patch-mpp", "0.972",
                 "--part", "test", "--roc", str(tmp_path / "roc.png"), "--calibration", str(rel),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["metrics"]["n"] == summary["n_test"] and res["seen_by_training"] == 0
    assert 0.0 <= res["ece"] <= 1.0 and 0.0 <= res["brier"] <= 1.0 and res["auc"] > 0.8
    assert res["calibration"]["ece_bins"] == 15
    assert res["threshold"] == pytest.approx(point["threshold"])
    assert res["threshold_source"] == "the model's operating point"
    assert Image.open(rel).size == (640, 640) and res["calibration_png"] == str(rel)

    # --record keeps the numbers in the model file's header; the weights and their hash stay
    from histoviewer.core.models.model_file import load_model, read_model_info

    before = read_model_info(model)
    assert main(["eval-patches", "--model", str(model), "--data", data, "--patch-mpp", "0.972",
                 "--part", "test", "--roc", str(tmp_path / "roc.png"), "--record", "toy-test"]) == 0
    assert "evaluation 'toy-test'" in capsys.readouterr().out
    after = read_model_info(model)
    recorded = after.extra["evaluations"]["toy-test"]
    assert recorded["auc"] == pytest.approx(res["auc"]) and recorded["n"] == summary["n_test"]
    assert recorded["part"] == "test" and recorded["seen_by_training"] == 0
    assert after.content_hash == before.content_hash and after.operating_point == before.operating_point
    load_model(model)  # still loads: the hash still matches the weights
    from histoviewer.cli.models import _evaluation_text

    line = _evaluation_text(recorded)
    assert line.startswith(f"{summary['n_test']} patches, AUC {res['auc']:.3f}") and "ECE" in line

    # all of the training data: said plainly; --threshold overrides the operating point
    assert main(["eval-patches", "--model", str(model), "--data", data, "--patch-mpp", "0.972",
                 "--roc", str(tmp_path / "roc.png"), "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "trained, selected or calibrated the model" in out
    assert "threshold 0.5: given" in out and "ECE" in out and "Brier" in out


def test_train_on_two_sources_with_validation_from_the_first(toy_folders, tmp_path, capsys):
    second = tmp_path / "second"
    x, y = toy_patches(60, seed=12)
    for sub in ("normal", "tumor"):
        (second / sub).mkdir(parents=True)
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(img).save(second / ("tumor" if lab else "normal") / f"q{i:03d}.png")
    model = tmp_path / "two.safetensors"
    assert main(["train", "handcrafted", "--data", str(toy_folders / "classes"), "--data", str(second),
                 "--valid-from", "1", "--patch-mpp", "0.972", "--out", str(model),
                 "--caveat", "toy model; not validated for clinical use", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    first, other = summary["sources"]
    assert first["role"] == "train, validation and test" and other["role"] == "training only"
    assert other["n_train"] == 60 and summary["n_train"] == first["n_train"] + 60
    assert summary["caveat"] == "toy model; not validated for clinical use"
    rc = main(["train", "handcrafted", "--data", str(second), "--data", str(second), "--valid-from", "3",
               "--patch-mpp", "0.972", "--out", str(tmp_path / "x.safetensors")])
    assert rc == 2 and "--valid-from" in capsys.readouterr().err


def test_train_stain_norm_flag_is_stored_in_the_model(toy_folders, tmp_path, capsys):
    from histoviewer.core.models.model_file import read_model_info

    model = tmp_path / "hc-macenko.safetensors"
    assert main(["train", "handcrafted", "--data", str(toy_folders / "classes"), "--patch-mpp", "0.972",
                 "--out", str(model), "--stain-norm", "macenko"]) == 0
    assert "stain normalisation: Macenko" in capsys.readouterr().out
    info = read_model_info(model)
    assert info.extra["stain_normalisation"]["method"] == "macenko"
    assert info.input.normalisation.startswith("Macenko stain normalisation")


def test_import_weights_then_init_refused_for_another_architecture(toy_folders, tmp_path, capsys):
    import torch

    from histoviewer.core.models.cnn_arch import build_network

    # A torchvision-shaped checkpoint of random weights (never a download), fc of 1000 classes.
    state = {k: v for k, v in build_network("resnet50").state_dict().items()
             if not k.startswith("head.")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    pth = tmp_path / "resnet50-random.pth"
    torch.save(state, pth)
    out = tmp_path / "r50.safetensors"
    assert main(["import-weights", str(pth), "--arch", "resnet50", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: 265 resnet50 parameter arrays" in text and "fc.bias, fc.weight" in text
    rc = main(["train", "cnn", "--arch", "strided-cnn", "--init", str(out), "--data",
               str(toy_folders / "classes"), "--patch-mpp", "0.972", "--epochs", "1",
               "--device", "cpu", "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{out}: weights do not fit architecture 'strided-cnn'" in err
    assert "(use --init)" in err and not (tmp_path / "m.safetensors").exists()
