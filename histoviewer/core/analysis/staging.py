"""The patient's pN stage from the labels of their lymph nodes (CAMELYON17 rules).

- pN0: no micro- or macrometastasis and no ITC in any node;
- pN0(i+): only isolated tumour cells (ITC-only nodes are not positive nodes);
- pN1mi: micrometastases, no macrometastasis (any number of micro nodes);
- pN1: metastases (micro or macro) in 1-3 nodes, at least one a macrometastasis;
- pN2: metastases in 4-9 nodes, at least one a macrometastasis.

Choices outside the rules, stated here and in the README:

- **10 or more positive nodes** would be pN3, which the CAMELYON17 scheme (pN0..pN2, at most
  5 nodes per patient) does not have: ``StagingError`` says so rather than mislabel it pN2.
  (Only with a macro; 10+ micro-only nodes stay pN1mi, as the rules say.)
- **A node whose label is unknown** (no scale on the slide, so no size class) makes the stage
  ``unknown``: one unmeasured node can change any stage, and a stage is never guessed.

Each result names the nodes that decided it and, through them, the deciding lesions.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from histoviewer.core.errors import StagingError
from histoviewer.core.staging_terms import NodeLabel

__all__ = ["MAX_PN2_NODES", "NodeResult", "PNStage", "StageResult", "stage_patient"]

MAX_PN2_NODES = 9


class PNStage(str, enum.Enum):
    """pN stage; the members are in the CAMELYON17 kappa order (``STAGE_ORDER``)."""

    PN0 = "pN0"
    PN0_ITC = "pN0(i+)"
    PN1MI = "pN1mi"
    PN1 = "pN1"
    PN2 = "pN2"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str) -> PNStage:
        key = text.strip().lower()
        for stage in cls:
            if stage.value.lower() == key:
                return stage
        allowed = ", ".join(s.value for s in STAGE_ORDER)
        raise ValueError(f"unknown pN stage {text.strip()!r} (expected one of {allowed})")

    @property
    def rank(self) -> int:
        """0..4 in the order pN0 < pN0(i+) < pN1mi < pN1 < pN2 (the kappa scale)."""
        if self is PNStage.UNKNOWN:
            raise ValueError("an unknown stage has no rank")
        return STAGE_ORDER.index(self)


STAGE_ORDER = (PNStage.PN0, PNStage.PN0_ITC, PNStage.PN1MI, PNStage.PN1, PNStage.PN2)


@dataclass(frozen=True)
class NodeResult:
    """One node (slide) of a patient: its label and, when known, its largest lesion."""

    node: str  # slide file name, e.g. patient_004_node_3.tif
    label: NodeLabel
    largest_lesion: str | None = None
    largest_diameter_mm: float | None = None
    provisional: bool = False
    reason: str | None = None  # why an AI label is unknown (e.g. tissue unlike the model's training data)

    def to_dict(self) -> dict[str, Any]:
        out = {"node": self.node, "label": self.label.value, "largest_lesion": self.largest_lesion,
               "largest_diameter_mm": self.largest_diameter_mm, "provisional": self.provisional}
        if self.reason:  # written only when set: files without it read the same both ways
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class StageResult:
    """A patient's stage, the nodes that decided it and why."""

    patient: str
    stage: PNStage
    nodes: tuple[NodeResult, ...]
    deciding: tuple[NodeResult, ...]
    reason: str

    @property
    def provisional(self) -> bool:
        """Any node still partly unclassified: the stage may still go up."""
        return any(n.provisional for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "stage": self.stage.value, "provisional": self.provisional,
                "reason": self.reason, "deciding_nodes": [n.node for n in self.deciding],
                "deciding_lesions": [
                    {"node": n.node, "lesion": n.largest_lesion, "diameter_mm": n.largest_diameter_mm}
                    for n in self.deciding if n.largest_lesion is not None],
                "nodes": [n.to_dict() for n in self.nodes]}


def _names(nodes: Sequence[NodeResult]) -> str:
    return ", ".join(n.node for n in nodes)


def stage_patient(patient: str, nodes: Sequence[NodeResult]) -> StageResult:
    """The pN stage of ``patient`` from its nodes (rules and choices in the module docstring)."""
    nodes = tuple(nodes)
    if not nodes:
        raise StagingError(f"{patient}: no nodes to stage")
    unknown = tuple(n for n in nodes if n.label is NodeLabel.UNKNOWN)
    if unknown:
        reasons = {n.reason for n in unknown if n.reason}
        if len(reasons) == 1 and all(n.reason for n in unknown):
            why = reasons.pop()  # one reason for every unknown node: say it once
        elif reasons:
            why = "; ".join(f"{n.node}: {n.reason or 'no scale on the slide, or not analysed'}" for n in unknown)
        else:
            why = "no scale on the slide, so no size class, or the slide was not analysed"
        return StageResult(patient, PNStage.UNKNOWN, nodes, unknown,
                           f"no label for {_names(unknown)} ({why}); the stage is not guessed")
    positive = tuple(n for n in nodes if n.label.is_metastasis)
    macro = tuple(n for n in positive if n.label is NodeLabel.MACRO)
    itc = tuple(n for n in nodes if n.label is NodeLabel.ITC)
    if macro:
        if len(positive) > MAX_PN2_NODES:
            raise StagingError(
                f"{patient}: metastases in {len(positive)} nodes with a macrometastasis would be "
                "pN3, which is outside the CAMELYON17 scheme (pN0 to pN2, 1-9 positive nodes); "
                "stage this patient by hand")
        stage = PNStage.PN1 if len(positive) <= 3 else PNStage.PN2
        return StageResult(patient, stage, nodes, positive,
                           f"metastases in {len(positive)} node(s) ({_names(positive)}), "
                           f"macrometastasis in {_names(macro)}")
    if positive:
        return StageResult(patient, PNStage.PN1MI, nodes, positive,
                           f"micrometastases only, in {_names(positive)}")
    if itc:
        return StageResult(patient, PNStage.PN0_ITC, nodes, itc,
                           f"isolated tumour cells only, in {_names(itc)}")
    return StageResult(patient, PNStage.PN0, nodes, nodes, f"all {len(nodes)} node(s) negative")
