"""Grad-CAM lands where a model's decision is known by construction, for every architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histoviewer.core.errors import ModelError
from histoviewer.core.explain.gradcam import feature_module, grad_cam
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.cnn_arch import ARCHITECTURES, StridedCnn, build_network
from histoviewer.core.models.registry import open_model

P = 96


def bright_square_detector(calibration: dict | None = None) -> CnnClassifier:
    """A one-channel strided CNN that sees only bright pixels: stage 1 averages RGB and
    keeps what is above a brightness of ~0.8 (relu of mean - bias), stages 2..4 blur and
    subsample, the head adds the pooled map up. Its logit is the amount of bright area, so
    its evidence for "tumour" is exactly the bright square, nowhere else."""
    net = StridedCnn(widths=(1, 1, 1, 1), dropout=0.0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                (
                    m.weight.fill_(1.0),
                    m.bias.zero_(),
                    m.running_mean.zero_(),
                    m.running_var.fill_(1.0 - m.eps),
                )
        convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
        convs[0].weight.zero_()
        convs[0].weight[0, :, 1, 1] = (
            1.0 / 3
        )  # mean of the normalised RGB at the centre tap
        net.features[1].bias.fill_(
            -1.2
        )  # normalised 0.8 brightness = (0.8 - 0.5) / 0.25 = 1.2
        for conv in convs[1:]:
            conv.weight.fill_(1.0 / 9)  # 3x3 box blur
        net.head.weight.fill_(10.0)
        net.head.bias.fill_(-1.0)
    extra = {} if calibration is None else {"calibration": calibration}
    info = ModelInfo(
        name="bright-square",
        kind="cnn",
        architecture="strided-cnn",
        input=InputSpec(patch_px=P),
        extra=extra,
    )
    return CnnClassifier(net, info, device="cpu")


def square_patch(
    y0: int, x0: int, side: int = 24, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    patch = rng.integers(60, 150, (P, P, 3)).astype(np.uint8)  # dim textured tissue
    patch[y0 : y0 + side, x0 : x0 + side] = 250
    mask = np.zeros((P, P), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return patch, mask


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
@pytest.mark.parametrize("corner", [(8, 8), (8, 64), (64, 8), (60, 60), (36, 36)])
def test_the_cam_peaks_on_the_bright_square_the_model_responds_to(corner, method):
    model = bright_square_detector()
    patch, mask = square_patch(*corner)
    cam = grad_cam(model, patch[None], method)
    assert cam.cam.shape == (1, P, P) and cam.cam.dtype == np.float32
    assert cam.peak[0] > 0 and cam.cam.max() == pytest.approx(1.0)
    y, x = np.unravel_index(np.argmax(cam.cam[0]), (P, P))
    # a Grad-CAM map is good to a cell (16 px here); this network looks through one centre
    # tap, so the image-resize placement puts its evidence up to half a cell (8 px) down-right
    y0, x0 = corner
    assert y0 <= y < y0 + 24 + 8 and x0 <= x < x0 + 24 + 8, (
        f"peak at {(y, x)}, square at {corner}"
    )
    # most of the map's mass lies on the square or within a cell of it (down-right: a cell and
    # the half-cell offset); that window is under half the patch
    grown = np.zeros_like(mask)
    grown[max(0, y0 - 16) : y0 + 24 + 24, max(0, x0 - 16) : x0 + 24 + 24] = True
    assert grown.mean() < 0.5
    assert cam.cam[0][grown].sum() / cam.cam[0].sum() > 0.9
    assert cam.probability[0] == pytest.approx(
        model.predict_proba(patch[None])[0], abs=1e-5
    )


def test_no_bright_square_no_evidence_and_no_false_hot_spot():
    model = bright_square_detector()
    patch = np.full((1, P, P, 3), 100, np.uint8)
    cam = grad_cam(model, patch)
    assert cam.peak[0] == 0 and not cam.cam.any()


def test_the_map_follows_the_calibrated_score_even_when_calibration_flips_its_sign():
    patch, mask = square_patch(8, 8)
    flipped = bright_square_detector({"method": "platt", "a": -1.0, "b": 0.0})
    cam = grad_cam(flipped, patch[None])
    # now brightness lowers P: the square argues against tumour, and nothing else carries
    # evidence (the dim pixels are zero after stage 1), so no pixel is shown as tumour evidence
    assert cam.peak[0] == 0 and not cam.cam.any()
    assert grad_cam(bright_square_detector(), patch[None]).cam[0][mask].mean() > 0.5
    scaled = bright_square_detector({"method": "temperature", "temperature": 3.0})
    plain = bright_square_detector()
    np.testing.assert_allclose(
        grad_cam(scaled, patch[None]).cam, grad_cam(plain, patch[None]).cam, atol=1e-5
    )


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_has_a_target_layer_and_a_full_size_map(arch):
    torch.manual_seed(0)
    net = build_network(arch)
    info = ModelInfo(
        name=arch, kind="cnn", architecture=arch, input=InputSpec(patch_px=P)
    )
    model = CnnClassifier(net, info, device="cpu")
    name, module = feature_module(net)
    assert isinstance(module, torch.nn.Module) and name
    patches = np.random.default_rng(1).integers(0, 255, (3, P, P, 3)).astype(np.uint8)
    cam = grad_cam(model, patches)
    assert cam.cam.shape == (3, P, P) and np.all((cam.cam >= 0) & (cam.cam <= 1))
    np.testing.assert_allclose(cam.probability, model.predict_proba(patches), atol=2e-4)


@pytest.mark.parametrize("key", ["cnn", "cnn-resnet"])
def test_the_shipped_cnns_explain_their_patches(key):
    model = open_model(key, device="cpu")
    patch, _ = square_patch(30, 30)
    cam = grad_cam(model, np.stack([patch, patch[::-1]]))
    assert cam.cam.shape == (2, model.input.patch_px, model.input.patch_px)
    np.testing.assert_allclose(
        cam.probability, model.predict_proba(np.stack([patch, patch[::-1]])), atol=2e-4
    )


def test_grad_cam_refuses_a_model_without_a_network():
    model = open_model("handcrafted")
    with pytest.raises(ModelError, match="needs a CNN"):
        grad_cam(model, np.zeros((1, P, P, 3), np.uint8))
