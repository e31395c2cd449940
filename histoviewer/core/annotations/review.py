"""The pathologist's review of the AI's hotspots: one decision per AI lesion.

A ``ReviewDecision`` records what the pathologist said about one AI lesion (tumour, not
tumour, unsure), who said it and when, and what the AI said at that moment (probability,
size class), with the lesion's outline in level-0 px. Decisions live in the slide's
``AnnotationDocument`` beside the annotations (``set_decision``/``clear_decision``: each
one undoable step, autosaved like any edit) and in its GeoJSON as QuPath-readable features
(``decision_feature``/``decision_from_feature``): classification "Tumor" / "Not tumor" /
"Unsure", the AI's numbers in ``measurements``, the decision in ``metadata``, the exact
record under ``properties.histoviewer.review``.

Identity. A hotspot is named by ``hotspot_id(l0_outline, model_hash)``: a hash of the
model hash and the outline's centroid and bounding box rounded to ``HOTSPOT_GRID_L0_PX``
level-0 px, so that analysing the slide again with the same model finds the same ids
(the lesion detector is deterministic; the rounding absorbs float noise). A lesion that
moved by a rounding step is still matched by ``find_decision`` (same model, centroid
within a tolerance). Another model's lesions are other hotspots: its decisions are not
carried over (the outlines differ, and a decision is about what was shown).

Training labels (``review_labels``): accepted lesions are tumour (1), rejected ones are
not tumour (0), unsure ones give no label.
"""

from __future__ import annotations

import enum
import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from histoviewer.core.annotations.shapes import Point
from histoviewer.core.staging_terms import SizeClass

if TYPE_CHECKING:  # the document imports this module; this only names its type
    from histoviewer.core.annotations.document import AnnotationDocument

__all__ = [
    "HOTSPOT_GRID_L0_PX",
    "REVIEW_KEY",
    "ReviewDecision",
    "ReviewLabel",
    "Verdict",
    "decision_feature",
    "decision_from_feature",
    "find_decision",
    "hotspot_id",
    "is_decision_feature",
    "outline_centroid",
    "review_labels",
    "utc_now_iso",
]

HOTSPOT_GRID_L0_PX = 16.0  # rounding of the centroid and bbox in the hotspot id
_GRID_OFFSET = 0.37  # of a grid step (see hotspot_id)
REVIEW_KEY = "review"  # properties.histoviewer.review in GeoJSON
_ID_NAMESPACE = uuid.UUID("7b0f3c56-2d7e-4b8e-9a51-4f1c2a6e9d30")  # GeoJSON feature ids of decisions


class Verdict(str, enum.Enum):
    """The pathologist's decision on one hotspot."""

    TUMOUR = "tumour"  # accepted: the AI lesion is tumour
    NOT_TUMOUR = "not_tumour"  # rejected: it is not tumour
    UNSURE = "unsure"  # looked at, no decision (counts as reviewed, gives no label)

    @property
    def training_label(self) -> int | None:
        """1 tumour, 0 not tumour, None for unsure."""
        return {Verdict.TUMOUR: 1, Verdict.NOT_TUMOUR: 0}.get(self)

    @property
    def display_name(self) -> str:
        return _VERDICT_NAMES[self]

    @property
    def qupath_class(self) -> tuple[str, tuple[int, int, int]]:
        """The QuPath classification (name, colour) a decision is exported with."""
        return _QUPATH_CLASSES[self]


_VERDICT_NAMES = {Verdict.TUMOUR: "tumour", Verdict.NOT_TUMOUR: "not tumour", Verdict.UNSURE: "unsure"}
_QUPATH_CLASSES = {
    Verdict.TUMOUR: ("Tumor", (200, 0, 0)),  # QuPath's own tumour class
    Verdict.NOT_TUMOUR: ("Not tumor", (0, 160, 0)),
    Verdict.UNSURE: ("Unsure", (255, 200, 0)),
}


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def outline_centroid(l0_outline: Sequence[Point]) -> Point:
    """The area centroid of a ring (level-0 px); the vertex mean when the area is ~0."""
    n = len(l0_outline)
    if n == 0:
        raise ValueError("an outline needs at least one vertex")
    a = cx = cy = 0.0
    for i in range(n):
        x0, y0 = l0_outline[i]
        x1, y1 = l0_outline[(i + 1) % n]
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(a) < 1e-9:
        return (sum(p[0] for p in l0_outline) / n, sum(p[1] for p in l0_outline) / n)
    return (cx / (3.0 * a), cy / (3.0 * a))


def _bbox(l0_outline: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in l0_outline]
    ys = [p[1] for p in l0_outline]
    return min(xs), min(ys), max(xs), max(ys)


def hotspot_id(l0_outline: Sequence[Point], model_hash: str) -> str:
    """A stable id for the AI lesion with this outline (level-0 px) found by the model
    ``model_hash`` (see module doc): ``"hs-"`` and 20 hex digits."""
    if not model_hash:
        raise ValueError("a hotspot id needs the model hash (decisions are about one model's lesions)")
    g = HOTSPOT_GRID_L0_PX
    cx, cy = outline_centroid(l0_outline)
    x0, y0, x1, y1 = _bbox(l0_outline)
    # The offset keeps rounding boundaries off the round numbers (multiples of 2, 4, 8 px)
    # that outlines traced on a patch grid sit on: float noise there would flip the id.
    key = "|".join(str(math.floor(v / g + _GRID_OFFSET)) for v in (cx, cy, x1 - x0, y1 - y0))
    return "hs-" + hashlib.sha256(f"{model_hash}|{key}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ReviewDecision:
    """The pathologist's decision on one AI hotspot. Geometry in level-0 px.

    ``ai_probability``: the lesion's maximum tumour probability when decided;
    ``ai_size_class``: its size class then (``UNKNOWN`` without a scale);
    ``ai_diameter_mm``: its largest diameter (None without a scale);
    ``ai_uncertainty``: the model's uncertainty there when it states one (else None).
    ``decided_at``: ISO 8601 UTC.
    """

    hotspot_id: str
    l0_outline: tuple[Point, ...]
    verdict: Verdict
    reviewer: str
    decided_at: str
    model_hash: str
    ai_probability: float | None
    ai_size_class: SizeClass
    ai_diameter_mm: float | None = None
    ai_uncertainty: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.hotspot_id, str) or not self.hotspot_id:
            raise ValueError("a review decision needs a hotspot id")
        ring = tuple((float(x), float(y)) for x, y in self.l0_outline)
        if len(ring) < 3 or not all(math.isfinite(v) for p in ring for v in p):
            raise ValueError(f"hotspot {self.hotspot_id}: the outline needs 3 or more finite vertices")
        object.__setattr__(self, "l0_outline", ring)
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        object.__setattr__(self, "ai_size_class", SizeClass(self.ai_size_class))
        for name in ("ai_probability", "ai_diameter_mm", "ai_uncertainty"):
            v = getattr(self, name)
            if v is not None:
                v = float(v)
                if not math.isfinite(v):
                    raise ValueError(f"hotspot {self.hotspot_id}: {name} must be finite or None")
                object.__setattr__(self, name, v)

    @property
    def training_label(self) -> int | None:
        return self.verdict.training_label

    @property
    def l0_centroid(self) -> Point:
        return outline_centroid(self.l0_outline)

    def to_dict(self) -> dict[str, Any]:
        return {"hotspot_id": self.hotspot_id, "verdict": self.verdict.value, "reviewer": self.reviewer,
                "decided_at": self.decided_at, "model_hash": self.model_hash,
                "ai_probability": self.ai_probability, "ai_size_class": self.ai_size_class.value,
                "ai_diameter_mm": self.ai_diameter_mm, "ai_uncertainty": self.ai_uncertainty,
                "note": self.note, "l0_outline": [list(p) for p in self.l0_outline]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewDecision:
        """The inverse of ``to_dict``; ``KeyError``/``ValueError``/``TypeError`` on bad input."""
        return cls(hotspot_id=str(d["hotspot_id"]), l0_outline=tuple((x, y) for x, y in d["l0_outline"]),
                   verdict=Verdict(d["verdict"]), reviewer=str(d.get("reviewer") or ""),
                   decided_at=str(d.get("decided_at") or ""), model_hash=str(d.get("model_hash") or ""),
                   ai_probability=d.get("ai_probability"), ai_size_class=SizeClass(d.get("ai_size_class", "unknown")),
                   ai_diameter_mm=d.get("ai_diameter_mm"), ai_uncertainty=d.get("ai_uncertainty"),
                   note=str(d.get("note") or ""))


def find_decision(decisions: Iterable[ReviewDecision], l0_outline: Sequence[Point], model_hash: str,
                  tolerance_l0_px: float = 2 * HOTSPOT_GRID_L0_PX) -> ReviewDecision | None:
    """The decision on the lesion with this outline found by ``model_hash``: by its id,
    else the same model's decision whose centroid lies within ``tolerance_l0_px`` (a
    lesion whose rounded position crossed a grid line when analysed again)."""
    decisions = list(decisions)
    hid = hotspot_id(l0_outline, model_hash)
    for d in decisions:
        if d.hotspot_id == hid:
            return d
    cx, cy = outline_centroid(l0_outline)
    best, best_dist = None, tolerance_l0_px
    for d in decisions:
        if d.model_hash != model_hash:
            continue
        dx, dy = d.l0_centroid
        dist = math.hypot(dx - cx, dy - cy)
        if dist <= best_dist:
            best, best_dist = d, dist
    return best


class ReviewLabel(NamedTuple):
    """One training label from the review: an outline (level-0 px) and 1 tumour / 0 not."""

    l0_polygon: tuple[Point, ...]
    label: int


def review_labels(document: AnnotationDocument) -> list[ReviewLabel]:
    """The slide's reviewed hotspots as ``(polygon_l0, label)`` for training: accepted
    lesions 1, rejected lesions 0; unsure ones are left out. In decision order."""
    return [ReviewLabel(d.l0_outline, label) for d in document.decisions()
            if (label := d.training_label) is not None]


# --- GeoJSON -------------------------------------------------------------------------------

def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


def decision_feature(decision: ReviewDecision, format_key: str) -> dict[str, Any]:
    """The GeoJSON feature of a decision, as QuPath reads it (module doc). ``format_key``:
    our own property name (``geojson_io.FORMAT_KEY``)."""
    cname, rgb = decision.verdict.qupath_class
    ring = [[_num(x), _num(y)] for x, y in decision.l0_outline]
    ring.append(list(ring[0]))
    measurements: dict[str, Any] = {
        "AI probability": "NaN" if decision.ai_probability is None else decision.ai_probability,
        "AI max diameter mm": "NaN" if decision.ai_diameter_mm is None else decision.ai_diameter_mm,
    }
    if decision.ai_uncertainty is not None:
        measurements["AI uncertainty"] = decision.ai_uncertainty
    metadata = {"Review decision": decision.verdict.display_name, "Reviewer": decision.reviewer,
                "Reviewed at": decision.decided_at, "AI size class": decision.ai_size_class.value,
                "Model hash": decision.model_hash, "Hotspot id": decision.hotspot_id}
    own = decision.to_dict()
    del own["l0_outline"]  # the geometry holds it
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(_ID_NAMESPACE, decision.hotspot_id)),  # QuPath wants a UUID
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "name": f"Review: {decision.verdict.display_name}",
                       "classification": {"name": cname, "color": list(rgb)},
                       "measurements": measurements, "metadata": metadata, format_key: {REVIEW_KEY: own}},
    }


def is_decision_feature(feat: Any, format_key: str) -> bool:
    """True for a feature written by ``decision_feature`` (also after a QuPath round trip,
    which keeps our property)."""
    if not isinstance(feat, dict):
        return False
    props = feat.get("properties")
    own = props.get(format_key) if isinstance(props, dict) else None
    return isinstance(own, dict) and isinstance(own.get(REVIEW_KEY), dict)


def decision_from_feature(feat: dict[str, Any], format_key: str) -> ReviewDecision:
    """The decision of a feature for which ``is_decision_feature`` holds; ``ValueError``
    (or ``KeyError``/``TypeError``) when it is malformed. The outline comes from the
    geometry (an outline edited in QuPath is kept as edited)."""
    own = dict(feat["properties"][format_key][REVIEW_KEY])
    geom = feat.get("geometry")
    if not isinstance(geom, dict) or geom.get("type") != "Polygon":
        raise ValueError("a review decision's geometry must be a Polygon")
    ring = geom["coordinates"][0]
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    own["l0_outline"] = ring
    return ReviewDecision.from_dict(own)
