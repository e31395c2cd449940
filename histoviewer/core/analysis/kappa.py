"""CAMELYON17's score: quadratic-weighted Cohen's kappa between reference and submitted pN
stages, on the ordinal scale pN0 < pN0(i+) < pN1mi < pN1 < pN2 (``staging.STAGE_ORDER``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from histoviewer.core.analysis.staging import STAGE_ORDER, PNStage
from histoviewer.core.errors import EvaluationError

__all__ = ["KappaResult", "stage_kappa"]


@dataclass(frozen=True)
class KappaResult:
    """``kappa`` is None when undefined (every patient has one and the same stage in both:
    chance agreement is then total and the ratio is 0/0)."""

    kappa: float | None
    patients: int
    exact_agreement: float
    confusion: tuple[tuple[int, ...], ...]  # rows reference, columns submitted, STAGE_ORDER
    disagreements: tuple[tuple[str, str, str], ...]  # (patient, reference, submitted)

    def to_dict(self) -> dict[str, Any]:
        return {"kappa": None if self.kappa is None else round(self.kappa, 6), "patients": self.patients,
                "exact_agreement": round(self.exact_agreement, 6),
                "stages": [s.value for s in STAGE_ORDER], "confusion": [list(r) for r in self.confusion],
                "disagreements": [{"patient": p, "reference": r, "submitted": s}
                                  for p, r, s in self.disagreements]}


def stage_kappa(reference: Mapping[str, PNStage], submitted: Mapping[str, PNStage]) -> KappaResult:
    """Kappa over the patients of ``reference``; every one must be in ``submitted`` and no
    extra one may be (a typo in a patient id would otherwise be silently dropped)."""
    if not reference:
        raise EvaluationError("kappa needs at least one reference patient")
    missing = sorted(set(reference) - set(submitted))
    extra = sorted(set(submitted) - set(reference))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing from the submission: {', '.join(missing[:10])}")
        if extra:
            parts.append(f"not in the reference: {', '.join(extra[:10])}")
        raise EvaluationError("the patients differ: " + "; ".join(parts))
    patients = sorted(reference)
    for name, stages in (("reference", reference), ("submission", submitted)):
        bad = [p for p in patients if stages[p] is PNStage.UNKNOWN]
        if bad:
            raise EvaluationError(f"the {name} has no stage (unknown) for {', '.join(bad[:10])}")
    ref = np.array([reference[p].rank for p in patients])
    sub = np.array([submitted[p].rank for p in patients])
    k = len(STAGE_ORDER)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (ref, sub), 1)
    kappa: float | None = None
    if not (len(set(ref)) == 1 and len(set(sub)) == 1 and ref[0] == sub[0]):
        # Lazy: scikit-learn takes ~0.5 s to import, as long as the whole CLI's start-up.
        from sklearn.metrics import cohen_kappa_score

        kappa = float(cohen_kappa_score(ref, sub, labels=list(range(k)), weights="quadratic"))
    return KappaResult(kappa=kappa, patients=len(patients), exact_agreement=float(np.mean(ref == sub)),
                       confusion=tuple(tuple(int(v) for v in row) for row in confusion),
                       disagreements=tuple((p, reference[p].value, submitted[p].value)
                                           for p, r, s in zip(patients, ref, sub) if r != s))
