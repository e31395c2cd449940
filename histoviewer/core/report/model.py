"""What a report says, as typed results: per slide (node) and per case (patient).

Built from the folders ``histoviewer analyze`` writes (``summary.json`` + ``lesions.geojson``
per slide) or, in the viewer, from a live probability map. Cases are staged again here
from the slides' node labels with the same core rules (``staging.stage_patient``), so a
report over folders from several ``analyze`` runs still gets one stage per patient.

Units and frames: geometry in level-0 px (``_l0``), sizes in mm / mm^2. A slide without a
scale has ``mpp`` None, lesion sizes None and size class / node label ``unknown``: sizes
are never guessed (writers show them as ``unknown``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import histoviewer
from histoviewer.core.analysis.camelyon17 import case_of, check_unique_nodes, natural_key
from histoviewer.core.analysis.lesions import Lesion, MapFrame, describe_size, interval_straddles_border, node_border
from histoviewer.core.analysis.learned_label import (LearnedLabel, default_node_classifier, learned_label,
                                                     resolve_node_classifier)
from histoviewer.core.analysis.node_label import NodeResolution, SlideLesions, analyse_map, resolve_node_label
from histoviewer.core.analysis.staging import NodeResult, PNStage, StageResult, stage_patient
from histoviewer.core.analysis.summary import SlideFailure, outcome_from_dict, read_summary
from histoviewer.core.analysis.threshold import choose_lesion_params, describe_threshold
from histoviewer.core.annotations.geojson_io import read_geojson
from histoviewer.core.errors import HistoViewerError, ReportError, StagingError, SummaryFormatError
from histoviewer.core.safe_input import read_json
from histoviewer.core.strict_json import strict_dumps
from histoviewer.core.export.provenance import SOFTWARE
from histoviewer.core.export.source import HeatmapData
from histoviewer.core.models.classifier import DEMO_WARNING
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON, DomainVerdict
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.report.review import SlideReview, case_with_review, map_slide_review, slide_review
from histoviewer.core.staging_terms import NodeLabel, SizeClass

log = logging.getLogger(__name__)

__all__ = [
    "CaseReport",
    "LesionEntry",
    "Report",
    "SlideReport",
    "build_report",
    "failed_slide_report",
    "failed_slides",
    "find_analysis_dirs",
    "load_report",
    "load_slide_report",
    "slide_report_from_map",
]

Point = tuple[float, float]
# the model of a slide whose analysis failed (its summary names none)
UNKNOWN_MODEL = ModelRecord(name="unknown", display_name="unknown")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass(frozen=True)
class LesionEntry:
    """One lesion row. ``outline_l0`` (open ring) is for drawing only; it is not written to
    the JSON or CSV (``lesions.geojson`` holds it)."""

    name: str
    size_class: SizeClass
    diameter_mm: float | None
    area_mm2: float | None
    max_probability: float
    mean_probability: float
    cells: int
    centroid_l0: Point
    bbox_l0: tuple[float, float, float, float]  # x, y, w, h
    diameter_ends_l0: tuple[Point, Point] | None = None
    outline_l0: tuple[Point, ...] = field(default=(), compare=False, repr=False)
    # the diameter's interval (analysis/lesions.py, 6); None without a scale or when not recorded
    diameter_low_mm: float | None = None
    diameter_high_mm: float | None = None
    # TTA uncertainty over the lesion's cells (std of P over 8 views, 0..0.5): mean and max;
    # None when no uncertainty map was computed for it
    tta_uncertainty_mean: float | None = None
    tta_uncertainty_max: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_class", SizeClass(self.size_class))  # "micro" -> SizeClass.MICRO

    @property
    def border(self) -> bool:
        """The diameter's interval straddles a size-class border (``Lesion.border``)."""
        return interval_straddles_border(self.diameter_low_mm, self.diameter_high_mm)

    @property
    def size_text(self) -> str:
        """'0.95 mm (micro)' or '0.205 mm (0.195-0.215 mm: ITC/micro border)' (``describe_size``)."""
        return describe_size(self)

    @classmethod
    def from_lesion(cls, lesion: Lesion, l0_outline: Sequence[Point] | None = None) -> LesionEntry:
        """From a core ``analysis.lesions.Lesion`` (an analysis' or the viewer's live lesions);
        ``l0_outline`` replaces the lesion's own (a summary's lesions have none)."""
        return cls(
            name=lesion.name, size_class=lesion.size_class, diameter_mm=lesion.diameter_mm,
            area_mm2=lesion.area_mm2, max_probability=float(lesion.max_probability),
            mean_probability=float(lesion.mean_probability), cells=int(lesion.cells),
            centroid_l0=lesion.l0_centroid, bbox_l0=lesion.l0_bbox, diameter_ends_l0=lesion.l0_diameter_ends,
            outline_l0=tuple(lesion.l0_outline if l0_outline is None else l0_outline),
            diameter_low_mm=lesion.diameter_low_mm, diameter_high_mm=lesion.diameter_high_mm,
            tta_uncertainty_mean=lesion.tta_uncertainty_mean, tta_uncertainty_max=lesion.tta_uncertainty_max,
        )

    def to_dict(self) -> dict[str, Any]:
        # rounded as summary.json rounds them (Lesion.to_dict): a live map's lesions and an
        # analysis' read back give the same report.json
        return {"name": self.name, "size_class": self.size_class.value,
                "diameter_mm": _rounded(self.diameter_mm, 6), "area_mm2": _rounded(self.area_mm2, 6),
                "max_probability": round(self.max_probability, 6),
                "mean_probability": round(self.mean_probability, 6), "cells": self.cells,
                "centroid_l0": [round(v, 2) for v in self.centroid_l0],
                "bbox_l0": [round(v, 2) for v in self.bbox_l0],
                "diameter_ends_l0": None if self.diameter_ends_l0 is None
                else [[round(v, 2) for v in p] for p in self.diameter_ends_l0],
                "diameter_range_mm": (None if self.diameter_low_mm is None or self.diameter_high_mm is None
                                      else [round(self.diameter_low_mm, 6), round(self.diameter_high_mm, 6)]),
                "size_class_border": self.border,
                "size_text": self.size_text,
                **({} if self.tta_uncertainty_max is None else {
                    "tta_uncertainty_mean": _rounded(self.tta_uncertainty_mean, 6),
                    "tta_uncertainty_max": _rounded(self.tta_uncertainty_max, 6)})}


@dataclass(frozen=True)
class SlideReport:
    """One slide (lymph node). ``node_label``: the AI's label of the node as every output
    states it: final, or ``unknown`` with ``unknown_reason`` when unresolved (failed or
    unclassified tissue, no scale, out of domain, analysis failed: ``resolution``), and
    ``label_so_far`` what the classified tissue showed (give either label: the other follows).
    ``provisional`` while part of the tissue is unclassified (``coverage`` < 1: the classified
    fraction; failed patches are not coverage). ``analysed``: when the analysis was written
    (ISO, UTC), "" when not known. ``analysis_dir`` None for a live map."""

    slide_path: str
    patient: str
    node: int | None
    node_label: NodeLabel
    provisional: bool
    coverage: float
    mpp: float | None
    l0_size: tuple[int, int]
    lesions: tuple[LesionEntry, ...]
    model: ModelRecord
    threshold: float
    analysed: str = ""
    analysis_dir: str | None = None
    error: str | None = None
    threshold_source: str = ""  # where threshold came from (analysis/threshold.py); "" not recorded
    # whether the tissue lies inside what the model learned; out of domain the label is unknown
    domain: DomainVerdict = field(default_factory=DomainVerdict.not_assessed)
    # tissue patches of the map (0 tissue: not known, e.g. a failed analysis; coverage then says it)
    tissue_patches: int = 0
    classified_patches: int = 0
    failed_patches: int = 0
    label_so_far: NodeLabel | None = None
    review: SlideReview | None = field(default=None, compare=False)  # the pathologist's (report/review.py)
    # the learned node classifier's second opinion (None: none was run); never decides pN
    learned: LearnedLabel | None = None
    # tissue patches screened negative (the screened strategy): not classified, counted apart
    screened_patches: int = 0

    def __post_init__(self) -> None:
        so_far = NodeLabel(self.node_label if self.label_so_far is None else self.label_so_far)
        object.__setattr__(self, "label_so_far", so_far)  # "micro" -> NodeLabel.MICRO
        object.__setattr__(self, "node_label", self.resolution.label)

    @property
    def resolution(self) -> NodeResolution:
        """Whether the label is final and why not: ``resolve_node_label``, the rule of every output."""
        so_far = NodeLabel(self.label_so_far if self.label_so_far is not None else self.node_label)
        if self.error:
            return NodeResolution(NodeLabel.UNKNOWN, NodeLabel.UNKNOWN, f"analysis failed: {self.error}")
        ood = OUT_OF_DOMAIN_REASON if self.domain.out_of_domain else None
        return resolve_node_label(so_far, tissue=self.tissue_patches, classified=self.classified_patches,
                                  failed=self.failed_patches, scale_known=self.mpp is not None,
                                  out_of_domain_reason=ood, coverage=self.coverage,
                                  screened=self.screened_patches)

    @property
    def unknown_reason(self) -> str | None:
        """Why the node has no final label (None when it has one)."""
        return self.resolution.reason

    @property
    def slide_name(self) -> str:
        return Path(self.slide_path).name

    @property
    def largest(self) -> LesionEntry | None:
        return self.lesions[0] if self.lesions else None

    @property
    def scale_known(self) -> bool:
        return self.mpp is not None

    @property
    def demonstration(self) -> bool:
        return self.model.demonstration

    @property
    def threshold_text(self) -> str:
        """"threshold 0.37: sensitivity 95 %, specificity 88 % on validation (model operating
        point)", or the threshold with where it came from."""
        return describe_threshold(self.threshold, self.threshold_source, self.model.operating_point)

    def node_result(self) -> NodeResult:
        """The node as staging sees it (the same rule as ``case.node_result`` for ``analyze``)."""
        big = self.largest
        resolution = self.resolution
        border_label, border_note = node_border(resolution.label, self.lesions)
        return NodeResult(self.slide_name, resolution.label, largest_lesion=None if big is None else big.name,
                          largest_diameter_mm=None if big is None else big.diameter_mm,
                          provisional=self.provisional, reason=resolution.reason, at_least=resolution.label_so_far,
                          learned=None if self.learned is None else self.learned.to_dict(),
                          border_label=border_label, border_note=border_note)

    def to_dict(self) -> dict[str, Any]:
        big = self.largest
        return {"slide": self.slide_name, "slide_path": self.slide_path, "patient": self.patient,
                "node": self.node, "node_label": self.node_label.value,
                "label_so_far": self.resolution.label_so_far.value, "provisional": self.provisional,
                "coverage": self.coverage, "tissue_patches": self.tissue_patches,
                "failed_patches": self.failed_patches, "screened_negative_patches": self.screened_patches, "mpp": self.mpp, "scale_known": self.scale_known,
                "l0_size": list(self.l0_size), "lesion_count": len(self.lesions),
                "largest_lesion": None if big is None else big.name,
                "largest_diameter_mm": None if big is None else big.diameter_mm,
                "threshold": self.threshold, "threshold_source": self.threshold_source,
                "threshold_text": self.threshold_text, "model": self.model.to_identity_dict(),
                "analysed": self.analysed,
                "analysis_dir": self.analysis_dir, "error": self.error,
                "domain": self.domain.to_dict(), "unknown_reason": self.unknown_reason,
                "lesions": [self._lesion_dict(les) for les in self.lesions],
                "review": None if self.review is None else self.review.to_dict(),
                "learned_label": None if self.learned is None else self.learned.to_dict()}

    def _lesion_dict(self, les: LesionEntry) -> dict[str, Any]:
        """A lesion as report.json states it: on tissue unlike the model's training data its
        region is no metastasis to class, so ``size_class`` is null (the PDF and the panel
        give none either)."""
        d = les.to_dict()
        if self.domain.out_of_domain:
            d["size_class"] = None
            d["size_text"] = None  # no class, so no class border either
            d["size_class_border"] = False
        return d


@dataclass(frozen=True)
class CaseReport:
    """One patient: the pN stage from its slides' labels, what decided it and why.
    ``stage`` is ``PNStage.UNKNOWN`` with ``error`` set when the rules cannot stage it (pN3)."""

    patient: str
    slides: tuple[str, ...]  # slide file names, natural order
    stage: PNStage
    provisional: bool
    reason: str
    deciding_nodes: tuple[str, ...] = ()
    deciding_lesions: tuple[tuple[str, str, float | None], ...] = ()  # (node, lesion, diameter_mm)
    error: str | None = None
    at_least: PNStage | None = None  # an unknown stage's lower bound (above pN0)
    unresolved: tuple[tuple[str, str], ...] = ()  # (node, why it has no final label)
    reviewed_stage: str | None = None  # the stage text as reviewed (report/review.py); None: no review
    reviewed_reason: str = ""
    border_warning: str = ""  # a border lesion decides the stage (``staging.border_warning``)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage", PNStage(self.stage))  # "pN1" -> PNStage.PN1

    @classmethod
    def from_stage(cls, result: StageResult) -> CaseReport:
        """The case as ``staging.stage_patient`` staged it: the one result every output states."""
        return cls(result.patient, tuple(n.node for n in result.nodes), result.stage,
                   result.provisional, result.reason, tuple(n.node for n in result.deciding),
                   tuple((n.node, n.largest_lesion, n.largest_diameter_mm)
                         for n in result.deciding if n.largest_lesion is not None),
                   at_least=result.at_least, unresolved=tuple((n.node, n.why_unresolved) for n in result.unresolved),
                   border_warning=result.border_warning)

    @property
    def stage_text(self) -> str:
        """"pN1", "unknown", "unknown (at least pN1)" (``StageResult.stage_text``)."""
        if self.error:
            return "unknown (not staged)"
        if self.stage is PNStage.UNKNOWN and self.at_least is not None:
            return f"unknown (at least {self.at_least.value})"
        return self.stage.value

    def to_dict(self) -> dict[str, Any]:
        return {"patient": self.patient, "stage": self.stage.value, "provisional": self.provisional,
                "stage_at_least": None if self.at_least is None else self.at_least.value,
                "stage_text": self.stage_text,
                "unresolved_nodes": [{"node": n, "reason": r} for n, r in self.unresolved],
                "reason": self.reason, "slides": list(self.slides),
                "deciding_nodes": list(self.deciding_nodes),
                "deciding_lesions": [{"node": n, "lesion": les, "diameter_mm": _rounded(d, 6)}
                                     for n, les, d in self.deciding_lesions],
                "error": self.error, "stage_as_reviewed": self.reviewed_stage,
                "stage_as_reviewed_reason": self.reviewed_reason or None,

                "border_warning": self.border_warning or None}


@dataclass(frozen=True)
class Report:
    """Slides (in case order) and their cases, with when and by what the report was made."""

    slides: tuple[SlideReport, ...]
    cases: tuple[CaseReport, ...]
    sources: tuple[str, ...] = ()
    software: str = SOFTWARE
    software_version: str = histoviewer.__version__
    created: str = field(default_factory=_now)

    @property
    def demonstration(self) -> bool:
        """A default demonstration model made at least one of the maps."""
        return any(s.demonstration for s in self.slides)

    @property
    def cautions(self) -> list[str]:
        """What each model that made a map says of itself (``ModelRecord.caution``), once each."""
        return list(dict.fromkeys(s.model.caution for s in self.slides if not s.error))

    def case_for(self, slide: SlideReport) -> CaseReport | None:
        return next((c for c in self.cases if c.patient == slide.patient), None)

    def slides_of(self, case: CaseReport) -> list[SlideReport]:
        return [s for s in self.slides if s.patient == case.patient]

    def to_dict(self) -> dict[str, Any]:
        return {"software": self.software, "software_version": self.software_version,
                "created": self.created, "sources": list(self.sources),
                "demonstration_model": self.demonstration,
                "warning": DEMO_WARNING if self.demonstration else None,
                "model_cautions": self.cautions,
                "label_image_included": False,
                "cases": [c.to_dict() for c in self.cases], "slides": [s.to_dict() for s in self.slides]}

    def to_json(self) -> str:
        return strict_dumps(self.to_dict(), indent=2)


# -- building ------------------------------------------------------------------------------

def build_report(slides: Iterable[SlideReport], sources: Sequence[str] = ()) -> Report:
    """Group ``slides`` into cases (CAMELYON17 names by patient, else by folder) and stage
    each. The same node twice (two analyses of one slide, or ``node_1.tif`` and
    ``node_01.svs``: ``camelyon17.node_identity``) would count the node twice: that case is
    not staged (``unknown``, its ``error`` naming both), as ``analyze`` does; the other cases
    are reported as usual."""
    slides = list(slides)
    by_patient: dict[str, list[SlideReport]] = {}
    for s in sorted(slides, key=lambda s: (_natural(s.patient), -1 if s.node is None else s.node,
                                           _natural(s.slide_name))):
        by_patient.setdefault(s.patient, []).append(s)
    cases = []
    for patient, members in by_patient.items():
        try:
            check_unique_nodes(patient, [m.slide_path for m in members])  # two same-named folders
            case = CaseReport.from_stage(stage_patient(patient, [m.node_result() for m in members]))
            cases.append(case_with_review(case, members))
        except StagingError as exc:
            cases.append(CaseReport(patient, tuple(m.slide_name for m in members), PNStage.UNKNOWN,
                                    False, str(exc), error=str(exc),
                                    unresolved=tuple((m.slide_name, m.unknown_reason) for m in members
                                                     if m.unknown_reason)))
    ordered = tuple(s for members in by_patient.values() for s in members)
    return Report(ordered, tuple(cases), tuple(str(p) for p in sources))


def _natural(text: str) -> tuple:
    return natural_key(text)  # the one natural order (never int() of a hostile digit run)


def find_analysis_dirs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Per-slide analysis folders: each path is one (holds ``summary.json``) or an
    ``analyze --out`` folder whose subfolders are."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            found.append(p)
        elif p.is_dir():
            subs = sorted(d for d in p.iterdir() if (d / "summary.json").is_file())
            if not subs and not (p / "cases.json").is_file():  # cases.json: every slide failed
                raise ReportError(f"{p}: no analysis here (no summary.json in it or its subfolders); "
                                  "analyse the slides first")
            found.extend(subs)
        else:
            raise ReportError(f"{p}: no such analysis folder")
    return found


def _outlines(folder: Path) -> dict[str, tuple[Point, ...]]:
    path = folder / "lesions.geojson"
    if not path.is_file():
        return {}
    try:
        return {p.name: p.l0_points for p in read_geojson(path)}
    except (OSError, ValueError, HistoViewerError) as exc:
        # the table comes from summary.json; only the drawings lose their outlines
        log.warning("%s: lesion outlines unreadable (%s); boxes are drawn instead", path, exc)
        return {}


def load_slide_report(folder: str | os.PathLike[str]) -> SlideReport:
    """One slide from an ``analyze`` folder (``summary.json``, outlines from
    ``lesions.geojson`` when present)."""
    folder = Path(folder)
    path = folder / "summary.json"
    try:
        summary = read_summary(path)
        analysed = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the analysis summary: {exc}") from exc
    except SummaryFormatError as exc:
        raise ReportError(str(exc)) from exc
    patient, node = case_of(summary.slide)
    if isinstance(summary, SlideFailure):
        return failed_slide_report(summary, analysed, str(folder))
    outlines = _outlines(folder)
    g = summary.geometry
    return SlideReport(
        slide_path=summary.slide, patient=patient, node=node, node_label=summary.node_label,
        provisional=summary.provisional, coverage=summary.coverage, mpp=summary.mpp,
        l0_size=(g.l0_width, g.l0_height),
        lesions=tuple(LesionEntry.from_lesion(les, outlines.get(les.name, ())) for les in summary.lesions),
        model=summary.model, threshold=summary.lesion_params.threshold, analysed=analysed,
        analysis_dir=str(folder), threshold_source=summary.lesion_params.threshold_source,
        domain=summary.domain, tissue_patches=summary.tissue_patches, classified_patches=summary.classified_patches,
        failed_patches=summary.failed_patches, label_so_far=summary.label_so_far, review=slide_review(summary),
        learned=summary.learned,
        screened_patches=summary.screened_patches)


def failed_slide_report(failure: SlideFailure, analysed: str = "", analysis_dir: str | None = None) -> SlideReport:
    """A slide whose analysis failed: its node is in the report, unresolved, with the error."""
    patient, node = case_of(failure.slide)
    return SlideReport(failure.slide, patient, node, NodeLabel.UNKNOWN, False, 0.0, None, (0, 0), (),
                       UNKNOWN_MODEL, 0.5, analysed, analysis_dir, failure.error)


def failed_slides(paths: Iterable[str | os.PathLike[str]]) -> list[SlideReport]:
    """The slides that failed in the ``analyze --out`` folders among ``paths`` (their
    ``cases.json`` lists them: a failed slide leaves no analysis folder), so a report made
    later still shows every node."""
    out = []
    for p in map(Path, paths):
        cases = p / "cases.json"
        if not cases.is_file():
            continue
        try:
            doc = read_json(cases, "the case file", ReportError)
            entries = doc.get("failed_slides") or [] if isinstance(doc, dict) else []
            failures = [outcome_from_dict(e) for e in entries]
        except ReportError:
            raise
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ReportError(f"{cases}: cannot read the failed slides: {exc}") from exc
        out.extend(failed_slide_report(f, "", str(p)) for f in failures if isinstance(f, SlideFailure))
    return out


def load_report(paths: Iterable[str | os.PathLike[str]]) -> Report:
    """The report of every slide analysis under ``paths`` (see ``find_analysis_dirs``)."""
    paths = list(paths)
    return build_report([load_slide_report(d) for d in find_analysis_dirs(paths)] + failed_slides(paths),
                        [str(p) for p in paths])


def slide_report_from_map(slide_path: str | os.PathLike[str], heatmap: HeatmapData,
                          found: SlideLesions | None = None, node_classifier: str | None = "default") -> SlideReport:
    """One slide from a live map; ``found``: its lesions, computed here at the model's
    operating point (0.5 when it states none) when None; ``node_classifier``: the learned
    label's classifier (``default``, ``none`` or a file: the viewer's choice)."""
    g = heatmap.geometry
    if found is None:
        found = analyse_map(heatmap.encoded, MapFrame.from_geometry(g),
                            choose_lesion_params(None, heatmap.model.operating_point))
    patient, node = case_of(slide_path)
    report = SlideReport(
        slide_path=str(slide_path), patient=patient, node=node, node_label=found.label,
        provisional=found.provisional, coverage=round(float(found.coverage), 6), mpp=float(g.slide_mpp),
        l0_size=(int(g.l0_width), int(g.l0_height)),
        lesions=tuple(LesionEntry.from_lesion(les) for les in found.lesions), model=heatmap.model,
        threshold=float(found.params.threshold), analysed=_now(), analysis_dir=None,
        threshold_source=found.params.threshold_source,
        domain=heatmap.domain or DomainVerdict.not_assessed("not judged for this map"),
        tissue_patches=found.counts.tissue, classified_patches=found.counts.classified,
        failed_patches=found.counts.failed, screened_patches=found.counts.screened,
        review=map_slide_review(str(slide_path), found, heatmap.model.content_hash, float(g.slide_mpp)))
    # the viewer's choice; the shipped one (trained on phantoms only) unless the user chose another
    classifier = (default_node_classifier() if node_classifier == "default"
                  else resolve_node_classifier(node_classifier))
    if classifier is None:
        return report
    return replace(report, learned=learned_label(classifier, heatmap.encoded, found, report.resolution))
