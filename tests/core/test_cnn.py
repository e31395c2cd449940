"""The CNN classifier: architectures, CPU inference path, training, augmentation, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histoviewer.core.errors import ModelError, ModelLoadError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.augment import AugmentConfig, augment_batch
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.cnn_arch import build_network
from histoviewer.core.models.device import choose_device
from histoviewer.core.models.metrics import binary_metrics
from histoviewer.core.training import TrainConfig, train_cnn

from .model_helpers import ArrayPatchSet, toy_patches

SPEC = InputSpec()


def _info(arch: str = "strided-cnn") -> ModelInfo:
    return ModelInfo(name="t", kind="cnn", architecture=arch)


@pytest.mark.parametrize("arch", ["strided-cnn", "resnet"])
def test_folded_channels_last_inference_equals_plain_eval(arch):
    torch.manual_seed(0)
    net = build_network(arch)
    # Non-trivial batch-norm statistics, so folding has something to fold.
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(8, 3, 96, 96) * 4 - 2)
    model = CnnClassifier(net, _info(arch), device="cpu")
    patches = np.random.default_rng(1).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255
        ref = torch.sigmoid(net.eval()((x - 0.5) / 0.25)).numpy()
    got = model.predict_proba(patches)
    assert got.dtype == np.float32 and got.shape == (5,)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    # The prepared inference copy really is folded: no batch norm left in it.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model._inference_net.modules())


def test_bad_patch_batches_are_refused():
    model = CnnClassifier.new(_info(), device="cpu")
    with pytest.raises(ModelError, match="96, 96, 3"):
        model.predict_proba(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ModelError, match="uint8"):
        model.predict_proba(np.zeros((2, 96, 96, 3), np.float32))


def test_unknown_architecture_is_refused():
    with pytest.raises(ModelLoadError, match="unknown CNN architecture"):
        build_network("os.system")
    with pytest.raises(ModelLoadError, match="unknown settings"):
        build_network("strided-cnn", {"widths": [8, 8], "evil": 1})


def test_training_learns_a_separable_toy_problem():
    # Small on purpose (about 5 s on two cores): 96 patches, 3 epochs learn this toy problem
    # to a held-out AUC of 1.0 for seeds 0-2; chance is 0.5.
    x, y = toy_patches(96, seed=0)
    xv, yv = toy_patches(48, seed=1)
    train, valid = ArrayPatchSet(x, y, SPEC), ArrayPatchSet(xv, yv, SPEC)
    cfg = TrainConfig(epochs=3, batch_size=32, learning_rate=5e-3, patience=3, seed=0,
                      device="cpu", name="toy")
    result = train_cnn(train, cfg, valid_set=valid, spec=SPEC)
    losses = [h.train_loss for h in result.history]
    assert len(losses) == 3 and losses[-1] < 0.7 * losses[0], losses  # it learns, not just runs
    assert result.valid_metrics.auc is not None and result.valid_metrics.auc > 0.95
    xt, yt = toy_patches(64, seed=2)
    held_out = binary_metrics(yt, result.classifier.predict_proba(xt))
    assert held_out.auc > 0.95
    assert result.classifier.info.metrics["valid_auc"] == pytest.approx(result.valid_metrics.auc,
                                                                        abs=1e-6)
    assert 1 <= result.best_epoch <= len(result.history) <= 3


def test_training_is_reproducible_with_a_seed():
    # two batches of one epoch: the seed decides the initial weights, the shuffle and the
    # augmentation, and all three show in the weights
    x, y = toy_patches(64, seed=3)
    xv, yv = toy_patches(16, seed=4)
    cfg = TrainConfig(epochs=1, batch_size=32, seed=5, device="cpu")
    runs = [train_cnn(ArrayPatchSet(x, y, SPEC), cfg, valid_set=ArrayPatchSet(xv, yv, SPEC))
            for _ in range(2)]
    a, b = (r.classifier.tensors() for r in runs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_training_needs_both_classes():
    x, _ = toy_patches(40, seed=0)
    from histoviewer.core.errors import PatchDataError

    with pytest.raises(PatchDataError, match="both classes"):
        train_cnn(ArrayPatchSet(x, np.zeros(40, np.int8), SPEC), TrainConfig(epochs=1, device="cpu"),
                  valid_set=ArrayPatchSet(x, np.zeros(40, np.int8), SPEC))


def test_augmentation_is_reproducible_bounded_and_keeps_shape():
    x = torch.rand(16, 3, 96, 96)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    c = augment_batch(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_stain_jitter_without_jitter_is_identity_up_to_rotation():
    x = torch.rand(4, 3, 32, 32) * 0.9 + 0.05
    cfg = AugmentConfig(stain_sigma=0, stain_bias=0, brightness=0, contrast=0, blur_probability=0)
    out = augment_batch(x, torch.Generator().manual_seed(0), cfg)
    # Each output patch is one of the 8 rotations/flips of its input.
    for i in range(4):
        variants = [torch.rot90(v, k, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for k in range(4)]
        assert min(float((out[i] - v).abs().max()) for v in variants) < 1e-4


def test_stain_jitter_changes_haematoxylin_not_geometry():
    x = torch.full((2, 3, 8, 8), 0.6)
    cfg = AugmentConfig(stain_sigma=0.3, stain_bias=0.0, brightness=0, contrast=0,
                        blur_probability=0)
    out = augment_batch(x, torch.Generator().manual_seed(3), cfg)
    assert float((out - x).abs().max()) > 0.005  # colour changed
    assert float(out.std(dim=(2, 3)).max()) < 1e-5  # still uniform


def test_auto_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    choice = choose_device("auto")
    assert choice.device.type == "cpu" and "CPU" in choice.reason
    model = CnnClassifier.new(_info(), device="auto")
    assert model.device.type == "cpu"


def test_explicit_missing_device_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(ModelError, match="MPS"):
        choose_device("mps")
    with pytest.raises(ModelError, match="unknown device"):
        choose_device("tpu")
