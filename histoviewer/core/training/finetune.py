"""Fine-tuning a model from a pathologist's corrections ("Improve the model from my corrections").

The labels are the slides' review decisions and tumour/normal annotations
(``patches.region_patches``). The parent model's architecture, weights, input and stain
normalisation are kept and its weights trained further on patches of the labelled regions at
a lower learning rate (``FinetuneSettings``); validation, calibration and the operating point
are redone on a part of the corrections held out by region (``split.three_way_split`` over
region blocks), and a test part is kept out of training as for any model.

The new model file records what it came from in ``extra["fine_tune"]``: the parent's name and
content hash, each slide with the file its labels were read from and every region used
(hotspot ids of the decisions, uids of the annotations), and the validation numbers. It is
written atomically at the end, only when training finished: a cancelled or failed fine-tune
leaves no file.

A CNN is fine-tuned by gradient steps from the parent's weights (``train_cnn(parent=...)``);
the handcrafted model's logistic regression is refitted on the corrections' features with
its L2 penalty pulling towards the parent's coefficients instead of towards zero
(``handcrafted_finetune``), the parent's feature scaling kept.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from histoviewer.core.errors import ModelError, OverwriteRefused
from histoviewer.core.models.classifier import RESEARCH_CAVEAT, PatchClassifier
from histoviewer.core.models.model_file import save_model
from histoviewer.core.models.registry import open_model, resolve_model_path
from histoviewer.core.patches.region_patches import SlideLabels, open_region_patches
from histoviewer.core.paths import user_models_dir
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.training.cnn import train_cnn
from histoviewer.core.training.common import EpochRecord, Log, TrainConfig, TrainResult
from histoviewer.core.training.handcrafted_finetune import finetune_handcrafted

__all__ = ["FINETUNE_KEY", "FinetuneOutcome", "FinetuneSettings", "default_output_path", "finetune_model"]

FINETUNE_KEY = "fine_tune"  # ModelInfo.extra key of the record


@dataclass(frozen=True)
class FinetuneSettings:
    """How a fine-tune runs. A lower peak learning rate than training from scratch (3e-3)
    and few epochs: the corrections are few, and the parent's knowledge should survive.
    ``max_patches_per_class``: per slide and label, a seeded sample."""

    epochs: int = 8
    learning_rate: float = 1e-3
    batch_size: int = 32
    patience: int = 4
    seed: int = 0
    valid_fraction: float = 0.25
    test_fraction: float = 0.1
    max_patches_per_class: int | None = 1500
    device: str = "auto"
    name: str = ""
    augment: bool = True

    def train_config(self, architecture: str, demonstration: bool) -> TrainConfig:
        return TrainConfig(architecture=architecture, epochs=self.epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, patience=self.patience, seed=self.seed,
                           valid_fraction=self.valid_fraction, test_fraction=self.test_fraction,
                           split_seed=self.seed, device=self.device, name=self.name,
                           demonstration=demonstration, augment=self.augment)


@dataclass(frozen=True)
class FinetuneOutcome:
    """The fine-tuned model's file (``path``), its header record and the training run."""

    path: Path
    classifier: PatchClassifier
    train: TrainResult
    record: dict[str, Any]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"


def default_output_path(parent_name: str, now: _dt.datetime | None = None) -> Path:
    """``<user models folder>/<parent>-ft-<UTC time>.safetensors``: a new file every time."""
    stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y%m%d-%H%M%S")
    return user_models_dir() / f"{_slug(parent_name)}-ft-{stamp}.safetensors"


def _caveat(parent: PatchClassifier, n_train: int, n_slides: int) -> str:
    base = parent.info.caveat.removesuffix(f"; {RESEARCH_CAVEAT}") or "research model"
    return (f"{base}, fine-tuned on {n_train:,} patches from the review of {n_slides} slide"
            f"{'s' if n_slides != 1 else ''}; {RESEARCH_CAVEAT}")


def finetune_model(
    parent_spec: str | os.PathLike[str],
    labelled: Sequence[SlideLabels],
    settings: FinetuneSettings = FinetuneSettings(),
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    control: JobControl = NO_CONTROL,
    log: Log = lambda _msg: None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneOutcome:
    """Fine-tune the model ``parent_spec`` ("cnn", "handcrafted", a file) on the labelled
    regions of ``labelled`` and write it to ``out`` (default ``default_output_path``; an
    existing file is replaced only with ``overwrite``).
    ``Cancelled`` (via ``control``) stops before anything is written."""
    parent_path = resolve_model_path(parent_spec)
    parent = open_model(parent_spec, device=settings.device)
    if not parent.info.content_hash:
        raise ModelError(f"{parent_path}: the parent model has no content hash to record")
    target = Path(out) if out is not None else default_output_path(parent.info.name)
    data = open_region_patches(labelled, parent.input, max_patches_per_class=settings.max_patches_per_class,
                               seed=settings.seed)
    cfg = settings.train_config(parent.info.architecture, parent.info.demonstration)
    cfg = replace(cfg, name=settings.name or f"{parent.info.name}-ft")
    try:
        log(f"fine-tuning {parent.info.name} ({parent.info.kind}, {parent.info.architecture}) on {data.description}")
        if parent.info.kind == "cnn":
            result = train_cnn(data, cfg, spec=parent.input, control=control, log=log,
                               parent=parent, on_epoch=on_epoch)  # type: ignore[arg-type]
        elif parent.info.kind == "handcrafted":
            result = finetune_handcrafted(data, parent, cfg, control=control, log=log,  # type: ignore[arg-type]
                                          on_epoch=on_epoch)
        else:
            raise ModelError(f"{parent_path}: cannot fine-tune a model of kind {parent.info.kind!r}")
    finally:
        data.close()
    control.check("fine-tuning")  # a stop asked during the last step still writes nothing
    m = result.valid_metrics
    record = {
        "parent": {"name": parent.info.name, "content_hash": parent.info.content_hash,
                   "file": str(parent_path), "kind": parent.info.kind,
                   "architecture": parent.info.architecture},
        "slides": [sl.to_dict() for sl in labelled],
        "n_review_decisions": sum(r.origin.endswith("hotspot") for sl in labelled for r in sl.regions),
        "n_annotations": sum(r.origin.endswith("annotation") for sl in labelled for r in sl.regions),
        "patches": {"train": result.n_train, "valid": result.n_valid, "test": result.n_test},
        "split": "by region (large regions in blocks of patches); test part never read",
        "validation": {"auc": m.auc, "sensitivity": m.sensitivity, "specificity": m.specificity,
                       "accuracy": m.accuracy, "threshold": m.threshold, "n": m.n,
                       "tumour": m.positives, "normal": m.negatives},
        "settings": {"epochs": settings.epochs, "learning_rate": settings.learning_rate,
                     "batch_size": settings.batch_size, "seed": settings.seed},
        "seconds": round(result.seconds, 1),
    }
    model = result.classifier
    model.info = replace(model.info, caveat=_caveat(parent, result.n_train, len(labelled)),
                         training_data=data.description,
                         extra={**model.info.extra, FINETUNE_KEY: record})
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise OverwriteRefused(f"{target}: exists already; the fine-tuned model is not written over it",
                               setting="out")
    save_model(target, model)
    log(f"wrote {target}")
    return FinetuneOutcome(target, model, result, record)
