"""Fine-tuning the handcrafted model: its logistic regression refitted on new patches with
the L2 penalty pulling the coefficients towards the parent's instead of towards zero.

The parent's feature standardisation and hinge knots are kept (the model's "architecture"),
so the refit is a small convex problem: balanced log-loss over the corrections plus
``||w - w_parent||^2 / (2 C n)``. A large ``C`` follows the corrections, a small one stays near the
parent; ``C`` is chosen on the validation part (``HANDCRAFTED_FT_C_GRID``), as in training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import minimize

from histoviewer.core.errors import ModelError
from histoviewer.core.models.handcrafted import HandcraftedClassifier
from histoviewer.core.models.metrics import binary_metrics
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.training.common import (
    EpochRecord,
    Log,
    TrainConfig,
    TrainResult,
    _calibrate,
    _metric_summary,
    _read_batches,
    _split,
)

__all__ = ["HANDCRAFTED_FT_C_GRID", "finetune_handcrafted"]

HANDCRAFTED_FT_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _basis(model: HandcraftedClassifier, features: np.ndarray) -> np.ndarray:
    z = model.embed_features(features)
    knots = model.tensors()["knots"]
    return np.concatenate([z] + [np.maximum(z - k, 0.0) for k in knots], axis=1)


def _refit(basis: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: float, c: float) -> tuple[np.ndarray, float]:
    """Minimise balanced log-loss + ||w - w0||^2 / (2 c n) from (w0, b0); L-BFGS."""
    n = len(y)
    weight = np.where(y == 1, n / (2.0 * max(int(y.sum()), 1)), n / (2.0 * max(int(n - y.sum()), 1)))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        z = basis @ w + b
        # log(1 + exp(-s z)) with s = 2y - 1, computed stably
        s = 2.0 * y - 1.0
        m = -s * z
        ll = np.logaddexp(0.0, m)
        p = 1.0 / (1.0 + np.exp(-m))  # d ll / d m
        g_z = weight * p * (-s) / n
        d = w - w0
        f = float((weight * ll).sum() / n + (d @ d) / (2.0 * c * n))
        grad = np.concatenate([basis.T @ g_z + d / (c * n), [g_z.sum()]])
        return f, grad

    res = minimize(loss, np.concatenate([w0, [b0]]), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return res.x[:-1], float(res.x[-1])


def _features(model: HandcraftedClassifier, patch_set: Any, idx: np.ndarray, control: JobControl,
              what: str) -> np.ndarray:
    return np.concatenate([model.features_of(batch) for batch in _read_batches(patch_set, idx, 256, control, what)])


def finetune_handcrafted(
    patch_set: Any,
    parent: HandcraftedClassifier,
    cfg: TrainConfig,
    *,
    control: JobControl = NO_CONTROL,
    log: Log = lambda _msg: None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Refit ``parent``'s coefficients on ``patch_set`` (module doc); one ``EpochRecord`` per
    value of C tried (its validation AUC)."""
    t_start = time.perf_counter()
    sp = _split(patch_set, None, cfg, log)
    f_train = _features(parent, patch_set, sp.train_idx, control, "features (training)")
    f_valid = _features(parent, patch_set, sp.valid_idx, control, "features (validation)")
    y_train, y_valid = sp.train_labels[sp.train_idx], sp.valid_labels[sp.valid_idx]
    b_train, b_valid = _basis(parent, f_train), _basis(parent, f_valid)
    tensors = parent.tensors()
    w0, b0 = tensors["coef"].ravel(), float(tensors["intercept"][0])
    history: list[EpochRecord] = []
    best: tuple[float, np.ndarray, float, Any] | None = None
    for i, c in enumerate(HANDCRAFTED_FT_C_GRID, start=1):
        control.check("fine-tuning")
        t0 = time.perf_counter()
        w, b = _refit(b_train, y_train.astype(np.float64), w0, b0, c)
        m = binary_metrics(y_valid, 1.0 / (1.0 + np.exp(-(b_valid @ w + b))))
        rec = EpochRecord(i, float("nan"), float("nan"), m.auc, time.perf_counter() - t0)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        log(f"C={c:g}: valid AUC {'n/a' if m.auc is None else f'{m.auc:.4f}'}")
        if best is None or (m.auc or 0) > (best[3].auc or 0) + 1e-4:
            best = (c, w, b, m)
    if best is None:
        raise ModelError("no handcrafted model could be fitted")
    c, w, b, metrics = best
    info = replace(parent.info, name=cfg.name or f"{parent.info.name}-ft", content_hash="",
                   created="", software_version="", metrics=_metric_summary(metrics),
                   extra={k: v for k, v in parent.info.extra.items() if k not in ("calibration", "evaluations",
                                                                                 "sources", "training")})
    model = HandcraftedClassifier(info, tensors["feature_mean"], tensors["feature_scale"], tensors["knots"],
                                  w.reshape(tensors["coef"].shape), np.array([b]))
    model.domain = getattr(parent, "domain", None)  # same features and tissue descriptors as the parent's
    seconds = time.perf_counter() - t_start
    model.info = replace(model.info, extra={**model.info.extra, "training": {
        "C": c, "C_grid": list(HANDCRAFTED_FT_C_GRID), "seed": cfg.seed, "n_train": len(sp.train_idx),
        "n_valid": len(sp.valid_idx), "n_test": len(sp.test_idx), "seconds": round(seconds, 1),
        "penalty": "L2 towards the parent's coefficients"}})
    log(f"chose C={c:g} on the validation part")
    model.info, metrics = _calibrate(model.info, model.logits_features(f_valid), sp, cfg, log)
    return TrainResult(classifier=model, valid_metrics=metrics, n_train=len(sp.train_idx), n_valid=len(sp.valid_idx),
                       n_test=len(sp.test_idx), seconds=seconds, history=history,
                       best_epoch=HANDCRAFTED_FT_C_GRID.index(c) + 1, seconds_per_epoch=seconds)
