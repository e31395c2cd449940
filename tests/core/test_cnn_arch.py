"""CNN architectures: the embed/head shape, batch-norm folding, torchvision's ResNet-50 names,
importing torchvision weights and starting training from them (``--init``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.cnn_arch import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    build_network,
)
from histoviewer.core.models.cnn_weights import (
    WEIGHTS_FORMAT,
    import_torchvision_weights,
    load_init_weights,
    weights_hash,
)
from histoviewer.core.models.model_file import save_model
from histoviewer.core.training import TrainConfig, train_cnn

from .model_helpers import ArrayPatchSet, toy_patches

SPEC = InputSpec()
EMBED_DIMS = {"compact-cnn": 128, "strided-cnn": 128, "resnet": 256, "resnet50": 2048, "screen-cnn": 64}


def _torchvision_resnet50_names() -> list[str]:
    """torchvision's ``resnet50().state_dict()`` keys, written out from its source
    (torchvision/models/resnet.py: ResNet.__init__, _make_layer, Bottleneck), fc last."""
    def bn(prefix: str) -> list[str]:
        return [f"{prefix}.{s}" for s in
                ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]

    names = ["conv1.weight", *bn("bn1")]
    for layer, n_blocks in zip((1, 2, 3, 4), (3, 4, 6, 3), strict=True):
        for b in range(n_blocks):
            p = f"layer{layer}.{b}"
            for i in (1, 2, 3):
                names += [f"{p}.conv{i}.weight", *bn(f"{p}.bn{i}")]
            if b == 0:  # every first block projects its shortcut (channels x4, or stride 2)
                names += [f"{p}.downsample.0.weight", *bn(f"{p}.downsample.1")]
    return [*names, "fc.weight", "fc.bias"]


def test_default_architecture_is_compact_cnn():
    assert DEFAULT_ARCHITECTURE == "compact-cnn" and TrainConfig().architecture == "compact-cnn"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_embeds_then_heads(arch):
    torch.manual_seed(0)
    net = build_network(arch).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        emb = net.embed(x)
        logit = net.head(emb)
        assert emb.shape == (2, EMBED_DIMS[arch]) and logit.shape == (2,)
        torch.testing.assert_close(net(x), logit)


@pytest.mark.parametrize("arch", ["compact-cnn", "resnet50"])
def test_folded_inference_equals_plain_eval(arch):
    torch.manual_seed(0)
    net = build_network(arch)
    net.train()  # non-trivial batch-norm statistics, so folding has something to fold
    with torch.no_grad():
        net(torch.rand(6, 3, 96, 96) * 4 - 2)
    net.eval()
    model = CnnClassifier(net, ModelInfo(name="t", kind="cnn", architecture=arch), device="cpu")
    patches = np.random.default_rng(1).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255
        ref = net((x - 0.5) / 0.25).numpy()
    np.testing.assert_allclose(model.logits(patches), ref, atol=2e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model._inference_net.modules())


def test_resnet50_parameter_names_are_torchvisions():
    expected = _torchvision_resnet50_names()
    assert len(expected) == 320  # len(torchvision.models.resnet50().state_dict())
    ours = list(build_network("resnet50").state_dict())
    # Same names in the same order, torchvision's 1000-class fc replaced by our one-logit head.
    assert ours == [*expected[:-2], "head.weight", "head.bias"]
    for name in ("conv1.weight", "layer1.0.downsample.0.weight", "layer2.3.conv2.weight",
                 "layer3.5.bn3.running_var", "layer4.2.bn3.bias", "layer4.0.downsample.1.weight"):
        assert name in ours
    shapes = {k: tuple(v.shape) for k, v in build_network("resnet50").state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer2.0.conv2.weight"] == (128, 128, 3, 3)  # stride on the 3x3 ("v1.5")
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["head.weight"] == (1, 2048)


def _fake_torchvision_pth(tmp_path, *, seed: int = 0):
    """A torchvision-shaped ResNet-50 checkpoint with random weights (fc: 1000 classes),
    saved as torchvision saves it; returns the path and the state dict."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in build_network("resnet50").state_dict().items():
        if k.startswith("head."):
            continue
        state[k] = (torch.randint(0, 9, v.shape, generator=gen) if v.dtype == torch.int64
                    else torch.randn(v.shape, generator=gen))
    state["fc.weight"] = torch.randn(1000, 2048, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    path = tmp_path / "resnet50-fake.pth"
    torch.save(state, path)
    return path, state


def test_import_weights_round_trip_and_init(tmp_path):
    pth, state = _fake_torchvision_pth(tmp_path)
    out = tmp_path / "imagenet-resnet50.safetensors"
    result = import_torchvision_weights(pth, "resnet50", out)
    assert result.skipped == ("fc.bias", "fc.weight")
    # 318 arrays minus the 53 batch-norm step counters, which training does not need
    assert result.n_loaded == 318 - 53
    saved = load_file(out)
    assert set(saved) == {k for k in state if not k.startswith("fc.")
                          and not k.endswith("num_batches_tracked")}
    np.testing.assert_array_equal(saved["layer3.2.conv2.weight"],
                                  state["layer3.2.conv2.weight"].numpy())

    torch.manual_seed(1)
    net = build_network("resnet50")
    head_before = net.head.weight.detach().clone()
    init = load_init_weights(net, "resnet50", out)
    assert init.n_loaded == result.n_loaded and init.skipped == ()
    for name in ("conv1.weight", "layer4.2.bn3.running_mean", "layer1.0.downsample.1.bias"):
        torch.testing.assert_close(net.state_dict()[name], state[name])
    torch.testing.assert_close(net.head.weight, head_before)  # the head is never initialised


def test_import_refuses_code_in_a_pickle(tmp_path):
    path = tmp_path / "evil.pth"
    # A pickle whose loading would call a function: weights_only refuses it.
    path.write_bytes(pickle.dumps({"conv1.weight": _Evil()}, protocol=2))
    with pytest.raises(ModelLoadError, match="evil.pth: not a torch state dict"):
        import_torchvision_weights(path, "resnet50", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_init_with_other_architecture_or_shapes_is_refused_naming_the_file(tmp_path):
    small = build_network("strided-cnn", {"widths": [8, 16, 32, 64], "dropout": 0.2})
    path = tmp_path / "narrow.safetensors"
    arrays = {k: v.numpy() for k, v in small.state_dict().items()}
    save_file(arrays, path, metadata={"format": WEIGHTS_FORMAT, "architecture": "strided-cnn",
                                      "content_hash": weights_hash("strided-cnn", arrays)})
    with pytest.raises(ModelLoadError, match=r"narrow.safetensors: .*'features.0.weight' has "
                                             r"shape \(8, 3, 3, 3\).*needs \(16, 3, 3, 3\)"):
        load_init_weights(build_network("strided-cnn"), "strided-cnn", path)
    with pytest.raises(ModelLoadError, match=r"narrow.safetensors: weights do not fit "
                                             r"architecture 'resnet50'.*missing"):
        load_init_weights(build_network("resnet50"), "resnet50", path)
    (tmp_path / "torch.pth").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ModelLoadError, match="torch.pth: not a safetensors weights file"):
        load_init_weights(build_network("strided-cnn"), "strided-cnn", tmp_path / "torch.pth")


def test_training_from_init_weights_and_with_weight_average(tmp_path):
    # A model trained on the toy problem, then used as the start of a second training with
    # the weight average on: one epoch from there already separates the held-out patches.
    x, y = toy_patches(96, seed=0)
    xv, yv = toy_patches(48, seed=1)
    train, valid = ArrayPatchSet(x, y, SPEC), ArrayPatchSet(xv, yv, SPEC)
    cfg = TrainConfig(architecture="strided-cnn", epochs=3, batch_size=32, learning_rate=5e-3,
                      seed=0, device="cpu")
    first = train_cnn(train, cfg, valid_set=valid, spec=SPEC)
    start = tmp_path / "start.safetensors"
    save_model(start, first.classifier)
    logs: list[str] = []
    second = train_cnn(train, TrainConfig(architecture="strided-cnn", epochs=1, batch_size=32,
                                          learning_rate=1e-3, seed=1, device="cpu",
                                          ema_decay=0.9, init_weights=str(start)),
                       valid_set=valid, spec=SPEC, log=logs.append)
    assert any("initial weights: 20 arrays from" in m for m in logs), logs
    assert second.valid_metrics.auc > 0.95


def test_init_weights_without_a_valid_hash_are_refused(tmp_path):
    """Imported weights carry a hash; a bare or edited weights file is refused, naming it."""
    net = build_network("strided-cnn")
    arrays = {k: v.numpy() for k, v in net.state_dict().items()}
    bare = tmp_path / "bare.safetensors"
    save_file(arrays, bare)
    with pytest.raises(ModelLoadError, match="bare.safetensors: not a HistoViewer weights file with an integrity hash"):
        load_init_weights(build_network("strided-cnn"), "strided-cnn", bare)
    edited = tmp_path / "edited.safetensors"
    stamp = weights_hash("strided-cnn", arrays)
    arrays["features.0.weight"] = arrays["features.0.weight"] + 1
    save_file(arrays, edited, metadata={"format": WEIGHTS_FORMAT, "architecture": "strided-cnn",
                                        "content_hash": stamp})
    with pytest.raises(ModelLoadError, match="edited.safetensors: weights do not match the hash"):
        load_init_weights(build_network("strided-cnn"), "strided-cnn", edited)
