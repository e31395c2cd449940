"""Probability calibration of a classifier's logit, fitted on validation patches.

A classifier's raw output is a logit ``z`` (tumour log-odds as the network or the logistic
regression sees them). Training with class weights (``pos_weight``, ``class_weight="balanced"``)
and early stopping leaves those log-odds mis-scaled, so ``sigmoid(z)`` is not a frequency.
Calibration maps ``z`` to a probability that is:

* ``temperature`` (CNN; Guo et al. 2017): ``p = sigmoid(z / T)``, one parameter fitted by
  minimising the validation negative log-likelihood. It keeps the ranking (AUC) and the
  network's decision at 0.5, and with one parameter it cannot overfit ~1,400 patches.
* ``platt`` (handcrafted): ``p = sigmoid(a * z + b)``, two parameters by the same NLL. The
  handcrafted model is a logistic regression fitted with balanced class weights, which shifts
  its intercept away from the real tumour prevalence: the offset ``b`` undoes exactly that,
  which a temperature cannot. Chosen over isotonic regression because isotonic is a step
  function (ties patches with different scores, so it changes the AUC, and it overfits the
  ends with a few hundred patches per class), while the logistic regression's scores are
  already a smooth monotone log-odds that a two-parameter map fits well.
* ``isotonic``: a monotone step map fitted by scikit-learn, stored as its knots and applied
  by linear interpolation; offered for experiments.

The fitted map is stored in ``ModelInfo.extra["calibration"]`` (JSON) and applied by
``calibrated_probability`` inside each classifier's ``predict_proba``, so every path (analyze,
live overlay, exports, evaluation) reads calibrated probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy  # scipy.optimize loads on first use (scipy's lazy submodules): 0.3-0.7 s of every start-up

from histoviewer.core.errors import ModelError

__all__ = [
    "CALIBRATION_KEY",
    "CALIBRATION_METHODS",
    "Calibration",
    "calibrated_probability",
    "fit_calibration",
    "fit_platt",
    "fit_temperature",
    "log_loss",
]

CALIBRATION_KEY = "calibration"  # ModelInfo.extra key
CALIBRATION_METHODS = ("temperature", "platt", "isotonic", "none")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for large |z|
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def _nll_of_logits(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary negative log-likelihood of labels ``y`` under ``sigmoid(z)``."""
    return float(-np.mean(y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z)))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary negative log-likelihood of ``labels`` under ``probs`` (clipped to eps)."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.clip(np.asarray(probs, np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _checked(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, np.float64).ravel()
    y = np.asarray(labels, np.float64).ravel()
    if z.shape != y.shape or z.size == 0:
        raise ModelError(f"calibration needs one label per logit, got {z.shape} and {y.shape}")
    if not np.all(np.isfinite(z)):
        raise ModelError("calibration logits contain NaN or infinity")
    if y.min() == y.max():
        raise ModelError("calibration needs validation patches of both classes")
    return z, y


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T`` in [e^-5, e^5] minimising the NLL of ``sigmoid(z / T)``."""
    z, y = _checked(logits, labels)
    res = scipy.optimize.minimize_scalar(lambda log_t: _nll_of_logits(z / np.exp(log_t), y),
                                         bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-7})
    return float(np.exp(res.x))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` minimising the NLL of ``sigmoid(a * z + b)`` (convex; BFGS from (1, 0))."""
    z, y = _checked(logits, labels)

    def nll_and_grad(ab: np.ndarray) -> tuple[float, np.ndarray]:
        s = ab[0] * z + ab[1]
        r = _sigmoid(s) - y  # d nll / d s, per patch
        return _nll_of_logits(s, y), np.array([np.mean(r * z), np.mean(r)])

    res = scipy.optimize.minimize(nll_and_grad, np.array([1.0, 0.0]), jac=True, method="BFGS",
                                  options={"gtol": 1e-10, "maxiter": 1000})
    return float(res.x[0]), float(res.x[1])


@dataclass(frozen=True)
class Calibration:
    """A fitted logit -> probability map (see the module docstring) and how well it fits."""

    method: str
    params: dict[str, Any]
    n: int = 0
    nll_before: float | None = None
    nll_after: float | None = None
    data: str = "validation"

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated tumour probability, float32, of raw logits."""
        z = np.asarray(logits, np.float64)
        if self.method == "temperature":
            p = _sigmoid(z / float(self.params["temperature"]))
        elif self.method == "platt":
            p = _sigmoid(float(self.params["a"]) * z + float(self.params["b"]))
        elif self.method == "isotonic":
            p = np.interp(z, np.asarray(self.params["x"], np.float64), np.asarray(self.params["y"], np.float64))
        elif self.method == "none":
            p = _sigmoid(z)
        else:
            raise ModelError(f"unknown calibration method {self.method!r}; "
                             f"known: {', '.join(CALIBRATION_METHODS)}")
        return p.astype(np.float32)

    def describe(self) -> str:
        if self.method == "temperature":
            what = f"temperature scaling, T = {self.params['temperature']:.3f}"
        elif self.method == "platt":
            what = f"Platt scaling, a = {self.params['a']:.3f}, b = {self.params['b']:.3f}"
        elif self.method == "isotonic":
            what = f"isotonic regression ({len(self.params['x'])} knots)"
        else:
            return "uncalibrated (sigmoid of the logit)"
        if self.nll_before is not None and self.nll_after is not None:
            what += f"; {self.data} NLL {self.nll_before:.4f} -> {self.nll_after:.4f} on {self.n} patches"
        return what

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params, "n": self.n, "nll_before": self.nll_before,
                "nll_after": self.nll_after, "data": self.data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        method = str(data.get("method", "none"))
        keys = {"temperature": ("temperature",), "platt": ("a", "b"), "isotonic": ("x", "y"),
                "none": ()}.get(method)
        if keys is None:
            raise ModelError(f"unknown calibration method {method!r}; known: {', '.join(CALIBRATION_METHODS)}")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ModelError(f"{method} calibration lacks {', '.join(missing)}")
        if method == "temperature" and not float(data["temperature"]) > 0:
            raise ModelError(f"a calibration temperature must be positive, got {data['temperature']}")
        return cls(method, {k: data[k] for k in keys}, n=int(data.get("n", 0)),
                   nll_before=data.get("nll_before"), nll_after=data.get("nll_after"),
                   data=str(data.get("data", "validation")))


def fit_calibration(logits: np.ndarray, labels: np.ndarray, method: str, data: str = "validation") -> Calibration:
    """Fit ``method`` on validation ``logits`` and ``labels``."""
    z, y = _checked(logits, labels)
    if method == "temperature":
        params: dict[str, Any] = {"temperature": fit_temperature(z, y)}
    elif method == "platt":
        a, b = fit_platt(z, y)
        params = {"a": a, "b": b}
    elif method == "isotonic":
        # Lazy: scikit-learn is only needed to fit, never to apply.
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        params = {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}
    elif method == "none":
        params = {}
    else:
        raise ModelError(f"unknown calibration method {method!r}; known: {', '.join(CALIBRATION_METHODS)}",
                         setting="calibration")
    cal = Calibration(method, params, n=int(z.size), data=data)
    before = _nll_of_logits(z, y)
    after = log_loss(y, cal.apply(z))
    return Calibration(method, params, n=int(z.size), nll_before=round(before, 6),
                       nll_after=round(after, 6), data=data)


def calibrated_probability(logits: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """The hook every classifier's ``predict_proba`` ends with: ``ModelInfo.extra["calibration"]``
    applied to raw logits, or the plain sigmoid for a model file without one. float32 ``(N,)``."""
    if not calibration:
        return _sigmoid(logits).astype(np.float32)
    return Calibration.from_dict(calibration).apply(logits)
