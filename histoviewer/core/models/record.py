"""The record of the model that made a result: what every output says about its model.

One frozen ``ModelRecord`` travels with a probability map from the analysis to the summary,
the exports, the report and the PDF. It is made from a loaded model's ``ModelInfo``
(``from_info``) or read back from the JSON an earlier analysis wrote (``from_dict``), and
written as JSON in two shapes that the files have always had:

- ``to_dict``: the analysis files (``summary.json``, ``probability.json``): name, display
  name, kind, architecture, content hash, demonstration flag, input scale and patch size;
- ``to_identity_dict``: exports (provenance) and ``report.json``: which model it was
  (name, display name, kind, content hash, demonstration flag).

Both add ``warning`` (the demonstration warning) for a demonstration model, so the warning
is never lost on the way to a picture or a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from histoviewer.core.errors import ModelError
from histoviewer.core.models.classifier import (
    DEMO_WARNING,
    RESEARCH_CAVEAT,
    ModelInfo,
    OperatingPoint,
)

__all__ = ["ModelRecord"]


@dataclass(frozen=True)
class ModelRecord:
    """Which model made a result. ``mpp`` (um per model input px) and ``patch_px`` are the
    model's input scale and patch side, None when the record was read from a file that does
    not state them (an export's provenance); ``content_hash`` is "" for an unsaved model."""

    name: str
    display_name: str
    kind: str | None = None
    architecture: str | None = None
    content_hash: str = ""
    demonstration: bool = False
    mpp: float | None = None
    patch_px: int | None = None
    caveat: str = ""
    operating_point: OperatingPoint | None = None
    # What ran the model (``model_engine``: "onnxruntime", "torch", "numpy"); "" when not
    # recorded (exports, files written before it was).
    engine: str = ""

    def __post_init__(self) -> None:
        # One caveat per record, so that a record survives JSON unchanged: a demonstration
        # record's is the warning (it follows the flag), any other's is never empty.
        if self.demonstration:
            object.__setattr__(self, "caveat", "")
        elif not self.caveat:
            object.__setattr__(self, "caveat", f"research model; {RESEARCH_CAVEAT}")

    @property
    def caution(self) -> str:
        """What to say beside the model's name (``ModelInfo.caution``)."""
        return DEMO_WARNING if self.demonstration else self.caveat

    @property
    def warning(self) -> str | None:
        """The demonstration warning, None for a real model."""
        return DEMO_WARNING if self.demonstration else None

    @classmethod
    def from_info(cls, info: ModelInfo, engine: str = "") -> ModelRecord:
        """From a loaded model's (or a model file's) ``ModelInfo``; ``engine``: what ran it."""
        return cls(name=info.name, display_name=info.display_name(), kind=info.kind,
                   architecture=info.architecture, content_hash=info.content_hash,
                   demonstration=bool(info.demonstration), mpp=float(info.input.mpp),
                   patch_px=int(info.input.patch_px),
                   caveat="" if info.demonstration else info.caution,
                   operating_point=info.operating_point, engine=engine)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        """From either JSON shape (see the module docstring); missing entries are unknown,
        a missing name is "unknown". The warning is not read: it follows the flag."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a model record must be a JSON object, got {type(data).__name__}")
        name = str(data.get("name", "unknown"))
        kind, architecture = data.get("kind"), data.get("architecture")
        mpp, patch_px = data.get("mpp_um"), data.get("patch_px")
        point = data.get("operating_point")
        try:
            operating_point = None if point is None else OperatingPoint.from_dict(point)
        except KeyError as exc:
            raise ValueError(f"the model's operating point lacks {exc}") from None
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        return cls(name=name, display_name=str(data.get("display_name") or name),
                   kind=None if kind is None else str(kind),
                   architecture=None if architecture is None else str(architecture),
                   content_hash=str(data.get("content_hash") or ""),
                   demonstration=bool(data.get("demonstration", False)),
                   mpp=None if mpp is None else float(mpp),
                   patch_px=None if patch_px is None else int(patch_px),
                   # a demonstration record's caution is the warning, which follows the flag
                   caveat="" if data.get("demonstration") else str(data.get("caveat") or ""),
                   operating_point=operating_point, engine=str(data.get("engine") or ""))

    def to_dict(self) -> dict[str, Any]:
        """The analysis files' shape (``summary.json``, ``probability.json``); the input
        scale keeps its file key ``mpp_um``."""
        out: dict[str, Any] = {"name": self.name, "display_name": self.display_name, "kind": self.kind,
                               "architecture": self.architecture, "content_hash": self.content_hash,
                               "demonstration": self.demonstration, "mpp_um": self.mpp,
                               "patch_px": self.patch_px, "caveat": self.caution,
                               "operating_point": self._point_dict()}
        if self.engine:
            out["engine"] = self.engine
        if self.demonstration:
            out["warning"] = DEMO_WARNING
        return out

    def to_identity_dict(self) -> dict[str, Any]:
        """The exports' and reports' shape: which model, without its input spec."""
        out: dict[str, Any] = {"name": self.name, "display_name": self.display_name, "kind": self.kind,
                               "content_hash": self.content_hash, "demonstration": self.demonstration,
                               "caveat": self.caution, "operating_point": self._point_dict()}
        if self.demonstration:
            out["warning"] = DEMO_WARNING
        return out

    def _point_dict(self) -> dict[str, Any] | None:
        return None if self.operating_point is None else self.operating_point.to_dict()
