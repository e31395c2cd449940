"""A case (one patient's nodes) from ``analyze`` results: node labels -> pN stage -> files.

``analyze`` calls ``write_case_outputs`` after its slides: it groups them into cases
(``camelyon17.case_of``: CAMELYON17 names by patient, other slides by folder), stages each
case and writes ``stages.csv`` (the CAMELYON17 submission format) and ``cases.json`` (each
stage with the nodes and lesions that decided it). A slide that failed to analyse
(``SlideFailure``; a slide without a scale fails), or whose label is not final (failed
patches, unclassified tissue, tissue unlike the model's training data), is an *unresolved*
node: the stage is ``unknown`` unless no label the node could have changes it
(``staging.stage_patient``). ``cases.json`` also lists the slides that failed, so a report
made from the folder later still shows every node.

Every output that states a node label or a stage (``stages.csv``, ``cases.json``, the
report's JSON, CSV and PDF, the case view) takes it from ``node_result`` and
``stage_patient``: one staging result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from histoviewer.core.analysis.camelyon17 import (
    check_unique_nodes,
    group_cases,
    submission_csv,
)
from histoviewer.core.analysis.lesions import node_border
from histoviewer.core.analysis.staging import NodeResult, StageResult, stage_patient
from histoviewer.core.analysis.summary import SlideFailure, SlideOutcome
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.errors import StagingError
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.strict_json import strict_dumps

__all__ = ["CaseOutputs", "node_result", "node_result_from_annotations", "stage_summaries", "write_case_outputs"]


def node_result(outcome: SlideOutcome) -> NodeResult:
    """A node from one slide's analysis (a failed one is ``unknown`` with its error)."""
    if isinstance(outcome, SlideFailure):
        return NodeResult(outcome.node, NodeLabel.UNKNOWN, reason=f"analysis failed: {outcome.error}")
    resolution = outcome.resolution
    border_label, border_note = node_border(resolution.label, outcome.lesions)
    return NodeResult(outcome.node, resolution.label, largest_lesion=outcome.largest_lesion,
                      largest_diameter_mm=outcome.largest_diameter_mm, provisional=outcome.provisional,
                      reason=resolution.reason, at_least=resolution.label_so_far,
                      learned=None if outcome.learned is None else outcome.learned.to_dict(),
                      border_label=border_label, border_note=border_note)


def node_result_from_annotations(node: str, label: str, lesions: Sequence[tuple[str, float | None]]) -> NodeResult:
    """A node from the pathologist's annotations: ``label`` as ``annotations.slide_label``
    gives it (negative / itc / micro / macro / unknown) and its tumour annotations as
    (name, largest diameter mm or None)."""
    largest = max(lesions, key=lambda les: -1.0 if les[1] is None else les[1], default=None)
    parsed = NodeLabel.parse(label)
    reason = "the annotated lesions cannot be sized: the slide states no scale" if parsed is NodeLabel.UNKNOWN else None
    return NodeResult(node, parsed, largest_lesion=None if largest is None else largest[0],
                      largest_diameter_mm=None if largest is None else largest[1], reason=reason,
                      at_least=NodeLabel.ITC if parsed is NodeLabel.UNKNOWN and lesions else NodeLabel.NEGATIVE)


def stage_summaries(summaries: Sequence[SlideOutcome]) -> tuple[list[StageResult], dict[str, str]]:
    """(stages, errors by patient) for the cases the slides' outcomes form; a node given by
    two slides (``patient_004_node_1.tif`` and ``.svs``, or one name in two folders) is an
    error for its case, naming both."""
    by_slide = {s.slide: s for s in summaries}
    results, errors = [], {}
    for patient, slides in group_cases(by_slide).items():
        try:
            check_unique_nodes(patient, slides)
            results.append(stage_patient(patient, [node_result(by_slide[s]) for s in slides]))
        except StagingError as exc:
            errors[patient] = str(exc)
    return results, errors


@dataclass(frozen=True)
class CaseOutputs:
    stages_csv: Path
    cases_json: Path
    results: tuple[StageResult, ...]
    errors: Mapping[str, str]

    @property
    def unresolved(self) -> bool:
        """A node without a final label, or a case not staged: the batch is not complete."""
        return bool(self.errors) or any(r.unresolved for r in self.results)


def write_case_outputs(out_dir: str | os.PathLike[str], summaries: Sequence[SlideOutcome]) -> CaseOutputs:
    """Write ``stages.csv`` and ``cases.json`` into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    results, errors = stage_summaries(summaries)
    csv_path, json_path = out / "stages.csv", out / "cases.json"
    atomic_write_text(csv_path, submission_csv(results))
    doc = {"cases": [r.to_dict() for r in results],
           "errors": [{"patient": p, "error": e} for p, e in errors.items()],
           "failed_slides": [f.to_dict() for f in summaries if isinstance(f, SlideFailure)]}
    atomic_write_text(json_path, strict_dumps(doc, indent=2))
    return CaseOutputs(csv_path, json_path, tuple(results), errors)
