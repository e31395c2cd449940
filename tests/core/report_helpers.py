"""A small two-node case analysed by the real pipeline (``analyze_slide``), in seconds: the
synthetic slide with its known lesion rectangle as node 0 (a model that sees the lesion
colour) and the same pixels as node 1 under a model that sees nothing (negative)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from histoviewer.core.analysis.case import write_case_outputs
from histoviewer.core.inference.analyze import analyze_slide, slide_out_dir
from histoviewer.core.models.classifier import ModelInfo
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff


class DemoFractionModel(LesionFractionModel):
    """The lesion-colour model, flagged as a demonstration model like the default one."""

    def __init__(self) -> None:
        super().__init__()
        self.info = ModelInfo(name="fraction-demo", kind="fake", architecture="green-channel",
                              content_hash="d" * 64, demonstration=True)


class BlindModel(DemoFractionModel):
    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        return np.zeros(len(patches), np.float32)


def patched_associated_images(monkeypatch, calls: list) -> None:
    """Record every read of a label/macro image, whichever backend opens the slide."""
    from histoviewer.core.slide.image_backend import ImageReader
    from histoviewer.core.slide.openslide_backend import OpenSlideReader

    for cls in (ImageReader, OpenSlideReader):
        original = cls.associated_image

        def spy(self, name, _original=original):
            calls.append(name)
            return _original(self, name)

        monkeypatch.setattr(cls, "associated_image", spy)


def make_case(root: Path) -> Path:
    """``root/out`` as ``histoviewer analyze`` leaves it for patient_007 (nodes 0 and 1)."""
    slides = root / "slides"
    slides.mkdir(parents=True)
    node0 = write_synthetic_tiff(slides / "patient_007_node_0.tiff")
    node1 = slides / "patient_007_node_1.tiff"
    shutil.copy(node0, node1)
    out = root / "out"
    summaries = []
    for path, model in ((node0, DemoFractionModel()), (node1, BlindModel())):
        summaries.append(analyze_slide(path, slide_out_dir(out, path), model))
    write_case_outputs(out, summaries)
    return out


def summaries(out: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "summary.json").read_text()) for d in sorted(out.iterdir())
            if (d / "summary.json").is_file()}


def shared_case(tmp_path_factory) -> Path:
    """``make_case`` once per test session (three test modules read it; none writes in it)."""
    base = tmp_path_factory.getbasetemp() / "report-case"
    out = base / "out"
    if not (out / "stages.csv").is_file():
        make_case(base)
    return out
