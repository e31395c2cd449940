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
- **An unresolved node** (label ``unknown``: failed or unclassified tissue, no scale, tissue
  unlike the model's training data; ``node_label.resolve_node_label``) could hold anything
  from nothing to a macrometastasis. The rules are monotone (a node with a larger label never
  lowers the stage), so the stage lies between the stage with every unresolved node at its
  lower bound (``at_least``: what its classified tissue showed, else negative) and the stage
  with every unresolved node a macrometastasis. When the two agree, no label the node could
  have changes the stage and it is stated (with the unresolved nodes named in the reason);
  otherwise the stage is ``unknown``, with the lower bound (``at_least``, "at least pN1")
  when it says more than pN0. A stage is never guessed.

Each result names the nodes that decided it and, through them, the deciding lesions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from histoviewer.core.errors import StagingError
from histoviewer.core.staging_terms import NodeLabel

__all__ = ["MAX_PN2_NODES", "NodeResult", "PNStage", "StageResult", "border_warning", "stage_patient"]

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
    reason: str | None = None  # why the label is unknown (failed patches, no scale, out of domain...)
    # an unresolved node's lower bound: what its classified tissue showed (negative: nothing known)
    at_least: NodeLabel = NodeLabel.NEGATIVE
    # the learned node classifier's one-line opinion (``LearnedLabel.to_dict``), shown beside
    # the label; it never enters the stage. None: no classifier was run.
    learned: Mapping[str, Any] | None = field(default=None, hash=False)
    # a lesion at a size-class border (its diameter's interval straddles 0.2 or 2 mm) could
    # give the node this other label (``lesions.node_class_border``); ``border_note`` says
    # which lesion and its interval, in words
    border_label: NodeLabel | None = None
    border_note: str = ""

    def __post_init__(self) -> None:
        if self.provisional and self.label is not NodeLabel.UNKNOWN:
            # a label over partly unclassified tissue is no final label: a lower bound
            object.__setattr__(self, "at_least", self.label)
            object.__setattr__(self, "label", NodeLabel.UNKNOWN)
            object.__setattr__(self, "reason", self.reason or "part of the tissue not classified")
        elif self.label is not NodeLabel.UNKNOWN or self.at_least is NodeLabel.UNKNOWN:
            object.__setattr__(self, "at_least", NodeLabel.NEGATIVE if self.label is NodeLabel.UNKNOWN
                               else self.label)

    @property
    def resolved(self) -> bool:
        return self.label is not NodeLabel.UNKNOWN

    @property
    def why_unresolved(self) -> str:
        return self.reason or "not analysed, or the slide states no scale"

    @property
    def label_text(self) -> str:
        """"macro", or "unknown (micro so far: 12 of 252 tissue patches failed)"."""
        if self.resolved:
            return self.label.value
        so_far = f"{self.at_least.value} so far: " if self.at_least is not NodeLabel.NEGATIVE else ""
        return f"unknown ({so_far}{self.why_unresolved})"

    def to_dict(self) -> dict[str, Any]:
        out = {"node": self.node, "label": self.label.value, "largest_lesion": self.largest_lesion,
               "largest_diameter_mm": self.largest_diameter_mm, "provisional": self.provisional}
        if not self.resolved:  # written only when unresolved: files without it read the same both ways
            out["reason"] = self.why_unresolved
            out["label_so_far"] = self.at_least.value
        if self.learned is not None:  # written only when a classifier ran
            out["learned_label"] = dict(self.learned)
        if self.border_label is not None:  # likewise only for a node at a size-class border
            out["border_label"] = self.border_label.value
            out["border_note"] = self.border_note
        return out


@dataclass(frozen=True)
class StageResult:
    """A patient's stage, the nodes that decided it and why."""

    patient: str
    stage: PNStage
    nodes: tuple[NodeResult, ...]
    deciding: tuple[NodeResult, ...]
    reason: str
    at_least: PNStage | None = None  # the lower bound of an unknown stage, when above pN0
    # set when a node at a size-class border decides the stage (``border_warning``); the
    # stage itself stays that of the best estimates
    border_warning: str = ""

    @property
    def unresolved(self) -> tuple[NodeResult, ...]:
        """The nodes without a final label (whether or not they could change the stage)."""
        return tuple(n for n in self.nodes if not n.resolved)

    @property
    def provisional(self) -> bool:
        """The stage is not final: a node is unresolved and its label could change the stage."""
        return self.stage is PNStage.UNKNOWN and bool(self.unresolved)

    @property
    def stage_text(self) -> str:
        """How people read the stage: "pN1", "unknown", "unknown (at least pN1)"."""
        if self.stage is PNStage.UNKNOWN and self.at_least is not None:
            return f"unknown (at least {self.at_least.value})"
        return self.stage.value

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "stage": self.stage.value, "provisional": self.provisional,
                "stage_at_least": None if self.at_least is None else self.at_least.value,
                "stage_text": self.stage_text,
                "unresolved_nodes": [{"node": n.node, "reason": n.why_unresolved, "label_so_far": n.at_least.value}
                                     for n in self.unresolved],
                "reason": self.reason, "deciding_nodes": [n.node for n in self.deciding],
                "deciding_lesions": [
                    {"node": n.node, "lesion": n.largest_lesion, "diameter_mm": n.largest_diameter_mm}
                    for n in self.deciding if n.largest_lesion is not None],
                "nodes": [n.to_dict() for n in self.nodes],
                "border_warning": self.border_warning or None}


def _names(nodes: Sequence[NodeResult]) -> str:
    return ", ".join(n.node for n in nodes)


def stage_patient(patient: str, nodes: Sequence[NodeResult]) -> StageResult:
    """The pN stage of ``patient`` from its nodes (rules and choices in the module docstring):
    the one staging every output states, with ``border_warning`` when a border lesion decides it."""
    result = _stage_patient(patient, tuple(nodes))
    warning = border_warning(patient, result)
    return replace(result, border_warning=warning) if warning else result


def border_warning(patient: str, result: StageResult) -> str:
    """Words for the pathologist when the stage would change if one node's border lesion
    had the class on the other side of its border ("" when no such node): each such node,
    its lesion's interval and the stage it would give. The stage is not changed: it is the
    best estimate; the lesion is to be measured on the glass."""
    notes = []
    for i, node in enumerate(result.nodes):
        if node.border_label is None or not node.resolved:
            continue
        flipped = list(result.nodes)
        flipped[i] = replace(node, label=node.border_label, border_label=None, border_note="")
        try:
            other = _stage_patient(patient, tuple(flipped)).stage_text
        except StagingError:
            other = "not stageable by these rules (pN3)"
        if other != result.stage_text:
            word = "ITC" if node.border_label is NodeLabel.ITC else node.border_label.value
            notes.append(f"{node.node}: {node.border_note}; were it {word}, "
                         f"the stage would be {other}")
    if not notes:
        return ""
    return (f"{result.stage_text} rests on a lesion at a size-class border ({'; '.join(notes)}): "
            "measure it on the glass before signing out")


def _stage_patient(patient: str, nodes: tuple[NodeResult, ...]) -> StageResult:
    if not nodes:
        raise StagingError(f"{patient}: no nodes to stage")
    unresolved = tuple(n for n in nodes if not n.resolved)
    if not unresolved:
        return _stage_labels(patient, nodes)
    why = "; ".join(f"{n.node} ({n.label_text.removeprefix('unknown (')}" for n in unresolved)
    lower = _stage_labels(patient, [n if n.resolved else NodeResult(n.node, n.at_least, n.largest_lesion,
                                                                     n.largest_diameter_mm) for n in nodes])
    try:
        upper = _stage_labels(patient, [n if n.resolved else NodeResult(n.node, NodeLabel.MACRO) for n in nodes])
    except StagingError:  # all unresolved nodes macro would be pN3: the stage has no upper bound
        upper = None
    if upper is not None and upper.stage is lower.stage:
        return StageResult(patient, lower.stage, nodes, lower.deciding,
                           f"{lower.reason}; no final label for {why}, but no label "
                           f"{'it' if len(unresolved) == 1 else 'they'} could have changes the stage")
    at_least = lower.stage if lower.stage is not PNStage.PN0 else None
    bound = f"at least {at_least.value} ({lower.reason}); " if at_least is not None else ""
    return StageResult(patient, PNStage.UNKNOWN, nodes, unresolved,
                       f"{bound}no final label for {why}, which could change the stage: it is not guessed", at_least)


def _stage_labels(patient: str, nodes: tuple[NodeResult, ...] | list[NodeResult]) -> StageResult:
    """The CAMELYON17 rules on nodes that all have a final label."""
    nodes = tuple(nodes)
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
