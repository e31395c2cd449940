"""Training-time augmentation on a batch of normalised-free float RGB tensors, on the device.

Works on ``(N, 3, H, W)`` float32 RGB in [0, 1]. What varies between labs and scanners is
stain intensity and hue, orientation, brightness and focus, so those are what we jitter:

- flips and 90-degree rotations (tissue has no up);
- stain jitter in haematoxylin-eosin(-DAB) optical-density space (Tellez et al. 2018 style:
  each stain's density scaled by ``1 + U(-sigma, sigma)`` and shifted by ``U(-bias, bias)``);
- brightness and contrast;
- a small Gaussian blur on a fraction of patches (focus variation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from skimage.color import rgb_from_hed

__all__ = ["AugmentConfig", "augment_batch"]

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB), unit length;
# optical density OD = -log10(rgb) = stains @ RGB_FROM_HED.
_RGB_FROM_HED = torch.tensor(rgb_from_hed, dtype=torch.float32)
_RGB_FROM_HED = _RGB_FROM_HED / _RGB_FROM_HED.norm(dim=1, keepdim=True)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_OD_FLOOR = 1e-6


@dataclass(frozen=True)
class AugmentConfig:
    stain_sigma: float = 0.05
    stain_bias: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    blur_probability: float = 0.2
    blur_sigma_px: float = 0.8


def _rot_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    k = torch.randint(0, 4, (x.shape[0],), generator=gen, device="cpu")
    flip = torch.randint(0, 2, (x.shape[0],), generator=gen, device="cpu").bool()
    out = x.clone()
    for rot in range(4):
        for fl in (False, True):
            sel = ((k == rot) & (flip == fl)).nonzero().flatten().to(x.device)
            if sel.numel() == 0 or (rot == 0 and not fl):
                continue
            part = x.index_select(0, sel)
            if fl:
                part = part.flip(-1)
            out[sel] = torch.rot90(part, rot, dims=(-2, -1))
    return out


def _stain_jitter(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    od = -torch.log10(x.clamp_min(_OD_FLOOR))  # (N, 3, H, W)
    stains = torch.einsum("nchw,cs->nshw", od, _HED_FROM_RGB.to(x.device))
    alpha = 1 + (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * cfg.stain_sigma
    beta = (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * cfg.stain_bias
    stains = stains * alpha.to(x.device) + beta.to(x.device)
    od = torch.einsum("nshw,sc->nchw", stains, _RGB_FROM_HED.to(x.device))
    return torch.pow(10.0, -od).clamp(0, 1)


def _brightness_contrast(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    b = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * cfg.brightness
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * cfg.contrast
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c.to(x.device) + mean + b.to(x.device)).clamp(0, 1)


def _blur(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    pick = (torch.rand(x.shape[0], generator=gen) < cfg.blur_probability).nonzero().flatten()
    if pick.numel() == 0:
        return x
    r = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(r**2) / (2 * cfg.blur_sigma_px**2))
    k1 = (k1 / k1.sum()).to(x.device)
    kernel = (k1[:, None] * k1[None, :]).expand(3, 1, 5, 5).contiguous()
    pick = pick.to(x.device)
    part = F.conv2d(F.pad(x.index_select(0, pick), (2, 2, 2, 2), mode="reflect"), kernel, groups=3)
    out = x.clone()
    out[pick] = part
    return out


def augment_batch(
    x: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig | None = None
) -> torch.Tensor:
    """Augment ``(N, 3, H, W)`` RGB in [0, 1]; randomness only from ``gen`` (reproducible)."""
    cfg = cfg or AugmentConfig()
    x = _rot_flip(x, gen)
    x = _stain_jitter(x, cfg, gen)
    x = _brightness_contrast(x, cfg, gen)
    return _blur(x, cfg, gen)
