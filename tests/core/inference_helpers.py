"""Test doubles for the inference tests: a synthetic slide whose pixels encode a known
rectangle, fake models (position-dependent, slow, failing)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from histoviewer.core.errors import SlideReadError
from histoviewer.core.inference.worker import InferenceWorker
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier

GLASS = (255, 255, 255)
TISSUE = (200, 60, 180)
LESION = (200, 10, 180)
MPP = 0.25
# level-0 px: glass left of GLASS_X1, tissue right of it, lesion rectangle inside the tissue
W, H = 4000, 3000
GLASS_X1 = 1500
LESION_RECT = (2100.0, 900.0, 1300.0, 1100.0)  # x, y, w, h


GRAIN_L0_PX = 128  # side of the grain's checker squares, level-0 px (about 33 model px)
GRAIN_BLUE = 14  # how much darker the blue channel is on the dark squares


def synthetic_rgb(w: int = W, h: int = H, *, grain: bool = True) -> np.ndarray:
    """The synthetic slide. ``grain``: a checker of ``GRAIN_L0_PX`` squares in the blue
    channel only, so patches have structure like any real image (a uniform patch in tissue
    is a damaged tile, ``inference.blank``) while the green channel (what
    ``LesionFractionModel`` reads) stays exact and glass stays unsaturated (not tissue)."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = TISSUE
    img[:, :GLASS_X1] = GLASS
    x, y, lw, lh = (int(v) for v in LESION_RECT)
    img[y : y + lh, x : x + lw] = LESION
    if grain:
        yy, xx = np.ogrid[:h, :w]
        dark = ((yy // GRAIN_L0_PX + xx // GRAIN_L0_PX) % 2).astype(bool)
        img[..., 2][dark] -= GRAIN_BLUE
    return img


def write_synthetic_tiff(path: Path, *, grain: bool = True) -> Path:
    """A flat RGB TIFF with its scale in the resolution tags (read by the image backend);
    ``grain``: see ``synthetic_rgb`` (off for tests of exact colours)."""
    import tifffile

    px_per_cm = 1e4 / MPP
    tifffile.imwrite(path, synthetic_rgb(grain=grain), photometric="rgb", resolution=(px_per_cm, px_per_cm),
                     resolutionunit="CENTIMETER")
    return path


def write_fresh_cnn(folder: Path, name: str = "fresh", **info_fields) -> Path:
    """An untrained (random-weight) default-architecture CNN saved as ``<name>.safetensors``:
    a real model file for tests of the pipeline, not of accuracy (``info_fields``: more
    ``ModelInfo`` fields, e.g. a caveat or an operating point)."""
    from histoviewer.core.models.cnn import CnnClassifier
    from histoviewer.core.models.model_file import save_model

    import torch

    # seeded: random weights that differ from run to run made the maps, and so the lesions
    # the tests see, differ too (a flaky test is a bug); fork_rng leaves the global seed alone
    with torch.random.fork_rng():
        torch.manual_seed(20261204)
        model = CnnClassifier.new(ModelInfo(name=name, kind="cnn", architecture="strided-cnn", **info_fields),
                                  device="cpu")
    path = folder / f"{name}.safetensors"
    save_model(path, model)
    return path


def lesion_fraction(l0_x: np.ndarray, l0_y: np.ndarray, l0_size: float) -> np.ndarray:
    """Exact fraction of squares (top-left, side) inside ``LESION_RECT``."""
    x, y, w, h = LESION_RECT
    ox = np.clip(np.minimum(l0_x + l0_size, x + w) - np.maximum(l0_x, x), 0, None)
    oy = np.clip(np.minimum(l0_y + l0_size, y + h) - np.maximum(l0_y, y), 0, None)
    return ox * oy / l0_size**2


class LesionFractionModel(PatchClassifier):
    """Probability = fraction of the patch in lesion colour (read from its green channel).
    ``gate`` (a ``tests.gates.Gate``): every batch passes it first, so a test can act while
    the model is busy."""

    def __init__(self, gate=None, fail_on_calls: tuple[int, ...] = ()) -> None:
        self.info = ModelInfo(name="fraction", kind="fake", architecture="green-channel",
                              content_hash="f" * 64)
        self.gate = gate
        self.fail_on_calls = fail_on_calls
        self.calls = 0
        self.lock = threading.Lock()

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            call = self.calls
        if self.gate is not None:
            self.gate.passes()
        if call in self.fail_on_calls:
            raise RuntimeError(f"injected model failure on call {call}")
        g = patches[..., 1].astype(np.float32)
        lo, hi = LESION[1], TISSUE[1]
        return np.clip((hi - g) / (hi - lo), 0, 1).mean(axis=(1, 2)).astype(np.float32)


class FailingReader:
    """Wraps a reader; reads whose level-0 top-left x is at or beyond ``fail_x`` raise."""

    def __init__(self, reader, fail_x: float) -> None:
        self._reader = reader
        self.info = reader.info
        self.fail_x = fail_x

    def read_region(self, l0_x, l0_y, level, lv_w, lv_h):
        if l0_x >= self.fail_x:
            raise SlideReadError(f"synthetic: broken tile at level-0 x {l0_x}")
        return self._reader.read_region(l0_x, l0_y, level, lv_w, lv_h)

    def thumbnail(self, max_size):
        return self._reader.thumbnail(max_size)


def run_until_idle(reader, model, grid, **kwargs) -> InferenceWorker:
    """An ``InferenceWorker`` (``background=True``, ``kwargs`` besides) run until idle, closed."""
    worker = InferenceWorker(reader, model, grid, background=True, **kwargs)
    try:
        assert worker.wait_idle(60)
    finally:
        worker.close()
    return worker
