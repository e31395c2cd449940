"""A case (one patient's nodes) from ``analyze`` results: node labels -> pN stage -> files.

``analyze`` calls ``write_case_outputs`` after its slides: it groups them into cases
(``camelyon17.case_of``: CAMELYON17 names by patient, other slides by folder), stages each
case and writes ``stages.csv`` (the CAMELYON17 submission format) and ``cases.json`` (each
stage with the nodes and lesions that decided it). A slide that failed to analyse
(``SlideFailure``; a slide without a scale fails), or whose summary has an ``unknown``
label, makes its case's stage ``unknown``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from histoviewer.core.analysis.camelyon17 import group_cases, submission_csv
from histoviewer.core.analysis.staging import NodeResult, StageResult, stage_patient
from histoviewer.core.analysis.summary import SlideFailure, SlideOutcome
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.errors import StagingError
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.strict_json import strict_dumps

__all__ = ["CaseOutputs", "node_result", "node_result_from_annotations", "stage_summaries", "write_case_outputs"]


def node_result(outcome: SlideOutcome) -> NodeResult:
    """A node from one slide's analysis (a failed one is ``unknown``)."""
    if isinstance(outcome, SlideFailure):
        return NodeResult(outcome.node, NodeLabel.UNKNOWN)
    return NodeResult(outcome.node, outcome.node_label, largest_lesion=outcome.largest_lesion,
                      largest_diameter_mm=outcome.largest_diameter_mm, provisional=outcome.provisional,
                      reason=outcome.unknown_reason)


def node_result_from_annotations(node: str, label: str, lesions: Sequence[tuple[str, float | None]]) -> NodeResult:
    """A node from the pathologist's annotations: ``label`` as ``annotations.slide_label``
    gives it (negative / itc / micro / macro / unknown) and its tumour annotations as
    (name, largest diameter mm or None)."""
    largest = max(lesions, key=lambda les: -1.0 if les[1] is None else les[1], default=None)
    return NodeResult(node, NodeLabel.parse(label), largest_lesion=None if largest is None else largest[0],
                      largest_diameter_mm=None if largest is None else largest[1])


def stage_summaries(summaries: Sequence[SlideOutcome]) -> tuple[list[StageResult], dict[str, str]]:
    """(stages, errors by patient) for the cases the slides' outcomes form."""
    by_slide = {s.slide: s for s in summaries}
    results, errors = [], {}
    for patient, slides in group_cases(by_slide).items():
        try:
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


def write_case_outputs(out_dir: str | os.PathLike[str], summaries: Sequence[SlideOutcome]) -> CaseOutputs:
    """Write ``stages.csv`` and ``cases.json`` into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    results, errors = stage_summaries(summaries)
    csv_path, json_path = out / "stages.csv", out / "cases.json"
    atomic_write_text(csv_path, submission_csv(results))
    doc = {"cases": [r.to_dict() for r in results],
           "errors": [{"patient": p, "error": e} for p, e in errors.items()]}
    atomic_write_text(json_path, strict_dumps(doc, indent=2))
    return CaseOutputs(csv_path, json_path, tuple(results), errors)
