"""Resolving model names, the user's models folder, metrics conventions and the ROC image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.metrics import binary_metrics, roc
from histoviewer.core.models.model_file import save_model
from histoviewer.core.models.registry import available_models, open_model, resolve_model_path
from histoviewer.core.models.roc_plot import write_roc_png


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOVIEWER_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "models"
    folder.mkdir(parents=True)
    return folder


def _save(path, name="user"):
    torch.manual_seed(0)
    model = CnnClassifier.new(ModelInfo(name=name, kind="cnn", architecture="strided-cnn"),
                              device="cpu")
    save_model(path, model)
    return model


def test_user_models_folder_is_listed_and_resolved_by_name(models_dir):
    _save(models_dir / "mine.safetensors", "mine")
    (models_dir / "broken.safetensors").write_bytes(b"not a model")
    found = {a.path.name: a for a in available_models()}
    assert found["mine.safetensors"].info.name == "mine"
    assert "broken.safetensors" in found["broken.safetensors"].problem
    assert found["broken.safetensors"].info is None
    assert resolve_model_path("mine") == models_dir / "mine.safetensors"
    assert open_model("mine.safetensors", device="cpu").info.name == "mine"


def test_paths_resolve_and_unknown_names_say_what_was_tried(models_dir, tmp_path):
    path = tmp_path / "elsewhere.safetensors"
    _save(path)
    assert resolve_model_path(str(path)) == path
    with pytest.raises(ModelLoadError, match="nosuch.*tried.*models"):
        resolve_model_path("nosuch")


def test_default_model_names_resolve_to_bundled_files(models_dir):
    for key in ("cnn", "handcrafted"):
        try:
            path = resolve_model_path(key)
        except ModelLoadError as exc:  # bundled files are built by scripts/train_default_models.sh
            pytest.fail(f"default model {key} missing: {exc}")
        model = open_model(key, device="cpu")
        info = model.info
        # research models trained on real patches: they say on what, where they are read, how
        # they did on held-out real patches, and what their tissue looks like
        assert not info.demonstration and "DEMONSTRATION" not in info.display_name(), path
        assert "real PatchCamelyon patches" in info.caution and "not validated for clinical use" in info.caution
        assert info.operating_point is not None and 0 < info.operating_point.threshold < 1
        test = info.extra["evaluations"]["kaggle-test"]
        assert test["seen_by_training"] == 0 and test["n"] >= 1400 and test["auc"] >= 0.90
        assert model.domain is not None
        probs = model.predict_proba(np.full((2, 96, 96, 3), 240, np.uint8))
        assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1))


def test_binary_metrics_conventions():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.8, 0.7, 0.3])
    m = binary_metrics(y, p, 0.5)
    assert (m.tn, m.fp, m.fn, m.tp) == (3, 1, 1, 3)
    assert m.sensitivity == 0.75 and m.specificity == 0.75 and m.accuracy == 0.75
    assert m.auc == pytest.approx(15 / 16)
    only_negatives = binary_metrics(np.zeros(4), np.array([0.1, 0.2, 0.7, 0.3]))
    assert only_negatives.auc is None and only_negatives.sensitivity is None
    assert only_negatives.specificity == 0.75
    assert roc(np.zeros(4), np.zeros(4)) is None


def test_roc_png_is_written(tmp_path):
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    out = write_roc_png(tmp_path / "roc.png", roc(y, p), binary_metrics(y, p), "model", "data")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (640, 640, 3)
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 500  # the curve and its AUC label are drawn
