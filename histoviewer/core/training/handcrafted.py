"""Training the handcrafted model: features once per patch, the logistic regression's
regularisation chosen on the validation split, then calibration and the domain profile."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from histoviewer import __version__
from histoviewer.core.errors import ModelError
from histoviewer.core.input_spec import PCAM_MPP_UM, PCAM_PATCH_PX, InputSpec
from histoviewer.core.models.domain import descriptor_of_features, fit_domain_profile
from histoviewer.core.models.domain_fit import (
    DOMAIN_FIT_PATCHES,
    sample_indices,
)
from histoviewer.core.models.features import extract_features
from histoviewer.core.models.handcrafted import fit_handcrafted
from histoviewer.core.models.metrics import binary_metrics
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.training.common import (
    EpochRecord,
    Log,
    TrainConfig,
    TrainResult,
    _calibrate,
    _fit_stain,
    _metric_summary,
    _read_batches,
    _split,
    _stain_transform,
    _with_stain,
)


def _features(patch_set: Any, idx: np.ndarray, mpp: float, control: JobControl,
              what: str, to_input: Callable[[np.ndarray], np.ndarray] = lambda p: p) -> np.ndarray:
    return np.concatenate([extract_features(to_input(batch), mpp)
                           for batch in _read_batches(patch_set, idx, 256, control, what)])


HANDCRAFTED_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def train_handcrafted(
    patch_set: Any,
    cfg: TrainConfig = TrainConfig(),  # noqa: B008 - a frozen dataclass: immutable
    *,
    valid_set: Any | None = None,
    spec: InputSpec | None = None,
    control: JobControl = NO_CONTROL,
    log: Log = lambda _msg: None,
) -> TrainResult:
    """Extract features once, pick the L2 strength C on the validation split, refit."""
    t_start = time.perf_counter()
    spec = spec or getattr(patch_set, "spec", InputSpec(PCAM_PATCH_PX, PCAM_MPP_UM))
    sp = _split(patch_set, valid_set, cfg, log)
    train_idx, valid_idx = sp.train_idx, sp.valid_idx
    stain = _fit_stain(patch_set, train_idx, cfg, control, log)
    to_input = _stain_transform(stain)
    f_train = _features(patch_set, train_idx, spec.mpp, control, "features (training)", to_input)
    f_valid = _features(sp.valid_set, valid_idx, spec.mpp, control, "features (validation)", to_input)
    y_train, y_valid = sp.train_labels[train_idx], sp.valid_labels[valid_idx]
    history: list[EpochRecord] = []
    best = None
    for i, c in enumerate(HANDCRAFTED_C_GRID, start=1):
        t0 = time.perf_counter()
        model = fit_handcrafted(f_train, y_train, spec=spec, seed=cfg.seed, C=c,
                                name=cfg.name or f"handcrafted-seed{cfg.seed}",
                                training_data=patch_set.description)
        prob = model.predict_proba_features(f_valid)
        m = binary_metrics(y_valid, prob)
        log(f"C={c:g}: valid AUC {m.auc:.4f}, accuracy {m.accuracy:.4f}")
        history.append(EpochRecord(i, float("nan"), float("nan"), m.auc, time.perf_counter() - t0))
        if best is None or (m.auc or 0) > (best[2].auc or 0) + 1e-4:
            best = (c, model, m)
    if best is None:
        raise ModelError("no handcrafted model could be fitted")
    c, model, metrics = best
    seconds = time.perf_counter() - t_start
    stained = _with_stain(model.info, stain)
    model.info = replace(
        stained,
        metrics=_metric_summary(metrics),
        software_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        demonstration=cfg.demonstration,
        extra={**stained.extra, "training": {
            "seed": cfg.seed, "valid_fraction": cfg.valid_fraction,
            "test_fraction": cfg.test_fraction, "n_test": len(sp.test_idx), "C": c, "stain_norm": cfg.stain_norm,
            "C_grid": list(HANDCRAFTED_C_GRID), "n_train": len(train_idx),
            "n_valid": len(valid_idx), "seconds": round(seconds, 1)}},
    )
    # Domain profile: the descriptor is part of the features already computed; thresholds from validation.
    pos = sample_indices(np.arange(len(f_train)), DOMAIN_FIT_PATCHES, cfg.seed)
    try:
        model.domain = fit_domain_profile(descriptor_of_features(f_train[pos]), descriptor_of_features(f_valid),
                                          data=patch_set.description)
    except ModelError as exc:  # too few patches: the model judges no slide ("not assessed")
        log(f"no domain profile: {exc}")
    log(f"chose C={c:g} on the validation split")
    model.info, metrics = _calibrate(model.info, model.logits_features(f_valid), sp, cfg, log)
    return TrainResult(classifier=model, valid_metrics=metrics, n_train=len(train_idx),
                       n_valid=len(valid_idx), n_test=len(sp.test_idx), seconds=seconds, history=history,
                       best_epoch=HANDCRAFTED_C_GRID.index(c) + 1,
                       seconds_per_epoch=seconds)
