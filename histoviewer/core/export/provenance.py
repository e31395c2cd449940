"""Where an exported file came from: slide, region, resolution, model, settings, software.

Every export embeds this record (TIFF ImageDescription, PNG text chunks) and writes it
beside the file as ``<file>.provenance.json``. It never holds pixels of the slide's label or
macro image, nor the slide's properties (which can carry patient identifiers); only the
slide's file name, size and scale. The slide's full path is recorded only when asked
(``full_slide_path``): folder names often carry a patient's or a hospital's name, and an
export is made to be sent to other people and tools, so by default it says which file, not
where it lives on this computer.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import histoviewer
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.strict_json import strict_dumps

__all__ = ["CellCrop", "Provenance", "provenance_path", "pyramid_description", "write_provenance"]

SOFTWARE = "HistoViewer"


@dataclass(frozen=True)
class CellCrop:
    """A window of probability-map cells: rows ``row0 .. row0 + rows`` and columns
    ``col0 .. col0 + cols`` of the full-slide map (a raw export's crop)."""

    row0: int
    col0: int
    rows: int
    cols: int

    def to_dict(self) -> dict[str, int]:
        """The JSON shape (file format: raw export descriptions and provenance)."""
        return {"row0": self.row0, "col0": self.col0, "rows": self.rows, "cols": self.cols}


# Typed fields that the file format keeps under its "extra" object, in this order; each is
# written only when set (None: not part of this kind of export).
_EXTRA_FIELDS = ("outlines", "slide_level_read", "heatmap_source", "pyramid_levels", "crop", "threshold_source",
                 "tissue_check")


@dataclass(frozen=True)
class Provenance:
    """The record of one export. Frames: ``l0_region`` is (x, y, width, height) in level-0
    pixels of the slide; ``output_mpp`` (um per output px, written as ``um_per_px``) and
    ``l0_per_px`` give the output's scale (``output_mpp`` is None when the slide has no
    scale); ``output_size`` is (width, height) in output px of the image area (without
    legend bands). ``model`` is written in its identity shape (``ModelRecord``).

    Under the JSON's ``extra``: ``outlines`` (how many were drawn), ``slide_level_read``
    (the slide level an overlay was read from), ``heatmap_source`` (where the map came from:
    ``HeatmapData.origin``), ``pyramid_levels`` ((width, height) px of each level of a
    pyramidal TIFF), ``crop`` (a raw export's map cells) and ``threshold_source`` (where the
    colour threshold came from: "model operating point", "set by user", "default, model
    states none"; absent for a display choice such as the heatmap alone's 0) and
    ``tissue_check`` (whether the slide's tissue is like the model's training data, in words:
    ``DomainVerdict.describe``; out of domain, the PNG's Warning chunk says so too)."""

    kind: str  # "overlay", "heatmap", "raw-probabilities", "pyramid-overlay"
    slide_path: str
    slide_l0_size: tuple[int, int]
    slide_mpp: float | None
    l0_region: tuple[float, float, float, float]
    model: ModelRecord
    output_size: tuple[int, int] = (0, 0)
    l0_per_px: float | None = None
    output_mpp: float | None = None
    threshold: float | None = None
    colormap: str | None = None
    opacity: float | None = None
    grid: GridGeometry | None = None
    coverage: float | None = None
    outlines: int | None = None
    slide_level_read: int | None = None
    heatmap_source: str | None = None
    pyramid_levels: tuple[tuple[int, int], ...] | None = None
    crop: CellCrop | None = None
    threshold_source: str | None = None
    tissue_check: str | None = None
    out_of_domain: bool = False
    full_slide_path: bool = False  # record slide_path as given (absolute), not its file name only
    software: str = SOFTWARE
    software_version: str = histoviewer.__version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                         .isoformat(timespec="seconds"))

    @property
    def recorded_slide_path(self) -> str:
        """The slide as the record names it: its file name, or the full path when asked."""
        if self.full_slide_path:
            return str(Path(self.slide_path).absolute()) if self.slide_path else ""
        return Path(self.slide_path).name

    def with_output(self, **changes: Any) -> Provenance:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record; its keys (``um_per_px`` for ``output_mpp``) are the file format."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("out_of_domain", "full_slide_path"):  # said in other words
                continue
            if f.name == "slide_path":
                out["slide_path"] = self.recorded_slide_path
                continue
            if f.name in _EXTRA_FIELDS:
                if "extra" not in out:  # where the file has always had it: after coverage
                    out["extra"] = self._extra_dict()
                continue
            if f.name == "model":
                value = self.model.to_identity_dict()
            elif f.name == "grid":
                value = None if self.grid is None else self.grid.to_dict()
            elif f.name == "output_mpp":
                out["um_per_px"] = value
                continue
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["label_image_included"] = False  # never: it can show patient identifiers
        return out

    def _extra_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for name in _EXTRA_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, CellCrop):
                value = value.to_dict()
            elif name == "pyramid_levels":
                value = [list(level) for level in value]
            extra[name] = value
        return extra

    def to_json(self, indent: int | None = None) -> str:
        return strict_dumps(self.to_dict(), indent=indent)

    def text_chunks(self) -> dict[str, str]:
        """PNG text chunks: standard keywords plus the full record as JSON."""
        model = self.model
        return {
            "Software": f"{self.software} {self.software_version}",
            "Creation Time": self.created,
            "Source": self.recorded_slide_path,
            "Description": f"{self.kind} of {Path(self.slide_path).name}; model {model.display_name}",
            "Warning": "; ".join(w for w in (self.tissue_check if self.out_of_domain else None,
                                             model.warning) if w),
            "Disclaimer": model.caution,
            "histoviewer:provenance": self.to_json(),
        }


def pyramid_description(record: Provenance) -> str:
    """A pyramidal TIFF export's ImageDescription: what it is in plain words, its scale, and
    the record as JSON on one ``provenance = `` line (``key = value`` lines are what
    Bio-Formats' TIFF reader lists as metadata; the JSON is ASCII, as TIFF text must be)."""
    scale = "unknown" if record.output_mpp is None else f"{record.output_mpp:.6g}"
    name = Path(record.slide_path).name.encode("ascii", "backslashreplace").decode("ascii")
    return (
        f"{record.software} {record.kind} export of {name}\n"
        f"mpp = {scale}\nprovenance = {record.to_json()}"
    )


def provenance_path(out_path: str | os.PathLike[str]) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".provenance.json")


def write_provenance(out_path: str | os.PathLike[str], record: Provenance) -> Path:
    """Write ``<out_path>.provenance.json`` (atomically); returns its path."""
    path = provenance_path(out_path)
    atomic_write_text(path, record.to_json(indent=2) + "\n")
    return path
