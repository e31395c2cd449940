"""What the analysis of one slide found (``SlideSummary``) or why it failed (``SlideFailure``).

``inference.analyze.analyze_slide`` makes a ``SlideSummary`` and writes it as
``summary.json``; a slide that could not be analysed is a ``SlideFailure``. Both are plain
frozen dataclasses, so they travel to and from worker processes and Dask workers as they
are (pickled); ``to_dict`` / ``from_dict`` are for JSON only (``summary.json``,
``analyze --json``), and ``read_summary`` reads a ``summary.json`` back, naming the file
when it is malformed.

A summary holds exactly what ``summary.json`` holds: values as written (rounded), lesions
without outlines (``lesions.geojson`` has them), so a summary made in this process and one
read back from disk are equal.

Units and frames: times in seconds; geometry in level-0 px / model px (``GridGeometry``);
``mpp`` micrometres per level-0 px (an analysed slide always has one: without a scale the
analysis fails, and the node is ``unknown`` in its case).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from histoviewer.core.analysis.learned_label import LearnedLabel
from histoviewer.core.analysis.lesions import Lesion, LesionParams
from histoviewer.core.analysis.node_label import NodeResolution, SlideLesions, resolve_node_label
from histoviewer.core.errors import InferenceError, SummaryFormatError, SummaryWithoutLesionsError
from histoviewer.core.grid_geometry import GridGeometry, known_slide_mpp
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON, DomainVerdict
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.safe_input import read_json
from histoviewer.core.staging_terms import NodeLabel

__all__ = ["SlideFailure", "SlideFiles", "SlideOutcome", "SlideSummary", "SlideTiming", "analysis_domain",
           "outcome_from_dict", "read_summary"]


@dataclass(frozen=True)
class SlideTiming:
    """Wall-clock seconds of each step of one slide's analysis (rounded to ms)."""

    tissue_s: float = 0.0
    read_decode_s: float = 0.0
    resize_cut_s: float = 0.0
    model_s: float = 0.0
    wait_for_reads_s: float = 0.0
    classify_wall_s: float = 0.0
    write_s: float = 0.0
    lesions_s: float = 0.0
    total_s: float = 0.0
    uncertainty_s: float = 0.0  # the TTA uncertainty map, when asked for (8 model passes a patch)

    def rounded(self) -> SlideTiming:
        return SlideTiming(**{f.name: round(getattr(self, f.name), 3) for f in fields(self)})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideTiming:
        return cls(**{f.name: float(data[f.name]) for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class SlideFiles:
    """The files one analysis wrote into its folder."""

    probability_tiff: str
    probability_json: str
    heatmap_png: str
    lesions_geojson: str
    summary_json: str
    domain_tiff: str | None = None  # the per-cell domain distance (a model with a domain profile)
    uncertainty_tiff: str | None = None  # the TTA uncertainty map, when asked for

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideFiles:
        optional = ("domain_tiff", "uncertainty_tiff")
        return cls(**{f.name: str(data[f.name]) for f in fields(cls) if f.name not in optional},
                   **{name: None if data.get(name) is None else str(data[name]) for name in optional})


@dataclass(frozen=True)
class SlideSummary:
    """One analysed slide (see the module docstring). ``node_label`` is the node's label as
    every output states it: the size class of the largest lesion when final, else ``unknown``
    (``node_label.resolve_node_label``: failed or unclassified tissue patches, tissue unlike
    the model's training data; ``unknown_reason`` says why) with ``label_so_far`` what the
    classified tissue showed (a lower bound). Give either: the other follows. ``provisional``
    while part of the tissue was left unclassified (failed cells included); ``coverage`` the
    classified fraction of the tissue (failed cells are not coverage); ``lesions`` largest
    first; ``failures``: a few messages about regions that failed; out of domain the lesions
    stay listed."""

    slide: str
    out_dir: str
    model: ModelRecord
    mpp: float  # um per level-0 px: an analysed slide always has one (its geometry needs it)
    level_read: int
    region_source: str
    geometry: GridGeometry
    tissue_patches: int
    classified_patches: int
    failed_patches: int
    coverage: float
    timing: SlideTiming
    files: SlideFiles
    failures: tuple[str, ...] = ()
    node_label: NodeLabel = NodeLabel.UNKNOWN
    provisional: bool = False
    lesion_params: LesionParams = field(default_factory=LesionParams)
    lesions: tuple[Lesion, ...] = ()
    domain: DomainVerdict = field(default_factory=DomainVerdict.not_assessed)
    label_so_far: NodeLabel | None = None  # None: ``node_label`` is what the classified tissue showed
    # the learned node classifier's second opinion (None: none was run); never decides the stage
    learned: LearnedLabel | None = None
    # "exhaustive" or "screened" (``inference.screening``); ``screened_patches``: tissue
    # patches screened negative (not classified by the full model, not coverage);
    # ``screening``: the screen's record (``ScreeningRecord.to_dict``), None when not screened
    strategy: str = "exhaustive"
    screened_patches: int = 0
    screening: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # One rule for coverage and the label, whoever made the summary (an older summary.json
        # counted failed cells as covered and kept a label over failed tissue).
        if self.tissue_patches > 0:
            object.__setattr__(self, "coverage", round(min(self.coverage, self.classified_patches
                                                               / self.tissue_patches), 6))
        so_far = self.node_label if self.label_so_far is None else self.label_so_far
        object.__setattr__(self, "label_so_far", so_far)
        object.__setattr__(self, "node_label", self.resolution.label)
        # screened-negative tissue was looked at by the screen: not classified, but not pending
        # (counted in whole patches: the coverage is rounded)
        pending = (self.classified_patches + self.screened_patches < self.tissue_patches if self.tissue_patches
                   else self.coverage < 1.0)
        if self.failed_patches > 0 or pending:
            object.__setattr__(self, "provisional", True)

    @property
    def resolution(self) -> NodeResolution:
        """Whether the label is final and why not (``resolve_node_label``)."""
        assert self.label_so_far is not None  # set by __post_init__
        return resolve_node_label(
            self.label_so_far, tissue=self.tissue_patches, classified=self.classified_patches,
            failed=self.failed_patches,
            out_of_domain_reason=OUT_OF_DOMAIN_REASON if self.domain.out_of_domain else None,
            screened=self.screened_patches)

    @property
    def unknown_reason(self) -> str | None:
        """Why the node label is unknown (None when it is final)."""
        return self.resolution.reason

    @property
    def node(self) -> str:
        """The slide's file name: the node's name in its case."""
        return Path(self.slide).name

    @property
    def largest(self) -> Lesion | None:
        return self.lesions[0] if self.lesions else None

    @property
    def largest_lesion(self) -> str | None:
        return None if self.largest is None else self.largest.name

    @property
    def largest_diameter_mm(self) -> float | None:
        return None if self.largest is None else self.largest.diameter_mm

    @staticmethod
    def written_lesions(found: SlideLesions) -> tuple[Lesion, ...]:
        """``found``'s lesions as ``summary.json`` holds them (rounded, no outlines)."""
        return tuple(Lesion.from_dict(les.to_dict(with_outline=False)) for les in found.lesions)

    def to_dict(self) -> dict[str, Any]:
        """``summary.json`` (its keys and their order are the file format)."""
        return {
            "slide": self.slide, "out_dir": self.out_dir, "model": self.model.to_dict(), "mpp": self.mpp,
            "mpp_source": self.geometry.slide_mpp_source,  # "user": sizes rest on a user-set scale
            "level_read": self.level_read, "region_source": self.region_source,
            "geometry": self.geometry.to_dict(), "tissue_patches": self.tissue_patches,
            "classified_patches": self.classified_patches, "failed_patches": self.failed_patches,
            "coverage": self.coverage, "timing": self.timing.to_dict(), "files": self.files.to_dict(),
            "failures": list(self.failures), "node_label": self.node_label.value,
            "label_so_far": self.resolution.label_so_far.value, "unresolved_reason": self.unknown_reason,
            "provisional": self.provisional,
            "largest_lesion": self.largest_lesion, "largest_diameter_mm": self.largest_diameter_mm,
            "lesion_params": self.lesion_params.to_dict(),
            "lesions": [les.to_dict(with_outline=False) for les in self.lesions],
            "domain": self.domain.to_dict(),
            "learned_label": None if self.learned is None else self.learned.to_dict(),
            "strategy": self.strategy, "screened_negative_patches": self.screened_patches,
            "screening": self.screening,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideSummary:
        """From ``to_dict``'s form. Raises KeyError / TypeError / ValueError on a malformed
        summary (``read_summary`` names the file). A summary from before lesions were
        found (no ``node_label``) reads as ``unknown`` with no lesions."""
        label = data.get("node_label")
        so_far = data.get("label_so_far") if label is not None else None  # no label: nothing known
        return cls(
            slide=str(data["slide"]), out_dir=str(data["out_dir"]), model=ModelRecord.from_dict(data["model"]),
            mpp=known_slide_mpp(data["mpp"]), level_read=int(data["level_read"]),
            region_source=str(data["region_source"]), geometry=GridGeometry.from_dict(data["geometry"]),
            tissue_patches=int(data["tissue_patches"]), classified_patches=int(data["classified_patches"]),
            failed_patches=int(data["failed_patches"]), coverage=float(data["coverage"]),
            timing=SlideTiming.from_dict(data["timing"]), files=SlideFiles.from_dict(data["files"]),
            failures=tuple(str(f) for f in data.get("failures") or ()),
            node_label=NodeLabel.UNKNOWN if label is None else NodeLabel.parse(str(label)),
            provisional=bool(data.get("provisional", False)),
            lesion_params=LesionParams.from_dict(data.get("lesion_params") or {}),
            lesions=tuple(Lesion.from_dict(d) for d in data.get("lesions") or ()),
            domain=DomainVerdict.from_dict(data.get("domain")),
            label_so_far=None if so_far is None else NodeLabel.parse(str(so_far)),
            learned=None if not data.get("learned_label") else LearnedLabel.from_dict(data["learned_label"]),
            strategy=str(data.get("strategy", "exhaustive")),
            screened_patches=int(data.get("screened_negative_patches", 0)),
            screening=data.get("screening") if isinstance(data.get("screening"), dict) else None,
        )


@dataclass(frozen=True)
class SlideFailure:
    """A slide that could not be analysed: its node label is ``unknown`` in its case."""

    slide: str
    error: str
    setting: str | None = None  # the option that caused it (HistoViewerError.setting), e.g. "device"

    @property
    def node(self) -> str:
        """The slide's file name: the node's name in its case."""
        return Path(self.slide).name

    def to_dict(self) -> dict[str, str]:
        data = {"slide": self.slide, "error": self.error}
        if self.setting:  # written only when set: files without it read the same both ways
            data["setting"] = self.setting
        return data


SlideOutcome = SlideSummary | SlideFailure


def outcome_from_dict(data: Mapping[str, Any]) -> SlideOutcome:
    """A summary, or a failure when the entry is ``{"slide", "error"}``."""
    if "error" in data:
        setting = data.get("setting")
        return SlideFailure(str(data["slide"]), str(data["error"]), None if setting is None else str(setting))
    return SlideSummary.from_dict(data)


def read_summary(path: str | os.PathLike[str], *, lesions_required: bool = False) -> SlideOutcome:
    """A ``summary.json`` (or the analysis folder holding it) read back; ``SummaryFormatError``
    naming the file when it is unreadable or malformed. A summary from before lesions were
    found reads as ``unknown`` with no lesions, or, with ``lesions_required`` (a reader of its
    lesions, for whom "none" would be a wrong answer), raises ``SummaryWithoutLesionsError``."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    # Regular file, bounded size, depth and numbers: errors name the file (safe_input).
    data = read_json(path, "analysis summary", SummaryFormatError)
    if not isinstance(data, dict) or "slide" not in data:
        raise SummaryFormatError(f"{path}: not an analysis summary (no 'slide' entry)")
    if lesions_required and "error" not in data and "node_label" not in data:
        raise SummaryWithoutLesionsError(
            f"{path}: has no lesions (written before the analysis found lesions); analyse the slide again")
    try:
        return outcome_from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, InferenceError) as exc:
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SummaryFormatError(f"{path}: malformed analysis summary: {detail}") from exc


def analysis_domain(folder: str | os.PathLike[str]) -> DomainVerdict | None:
    """The tissue check the analysis in ``folder`` wrote in its ``summary.json``; None when
    there is no readable summary, or the analysis failed (a failure has none)."""
    try:
        summary = read_summary(Path(folder) / "summary.json")
    except SummaryFormatError:
        return None
    return getattr(summary, "domain", None)
