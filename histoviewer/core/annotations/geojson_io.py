"""Annotations as GeoJSON, in the form QuPath reads and writes.

A ``FeatureCollection`` of features in level-0 pixel coordinates (x right, y down)::

    {"type": "Feature", "id": "<uuid>",
     "geometry": {"type": "Polygon", "coordinates": [[[x, y], ...closed ring], ...holes]},
     "properties": {"objectType": "annotation", "name": "macro-1",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                    "histoviewer": {"shape": "ellipse", "l0_points": [[x0, y0], [x1, y1]],
                                    "note": "..."}, ...other properties kept as they were}}

QuPath writes Polygon, MultiPolygon, LineString, Point and MultiPoint; it marks no shape
kind, so ours go in the ``histoviewer`` property (QuPath keeps unknown properties and
ignores them). A rectangle or ellipse whose outline was edited elsewhere no longer matches
its recorded corners and is read back as a polygon. A MultiPolygon becomes one polygon per
part (with a warning). The document's class table, and autosave details, go in a
``histoviewer`` member of the collection.

Reading is for untrusted files: size and vertex limits (``limits``), every value checked,
errors naming the file and the feature index. The older ``PolygonAnnotation`` functions
(``read_geojson``/``write_geojson``) are kept for pipelines that only need tumour polygons
(phantom ground truth, patch labels) and use the same reader.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoviewer.core.annotations.classes import AnnotationClass, default_class_for, merge_classes, parse_color
from histoviewer.core.annotations.model import AnnotationSet, ImportResult
from histoviewer.core.annotations.review import ReviewDecision, decision_feature, decision_from_feature, is_decision_feature
from histoviewer.core.annotations.safe_read import VertexBudget, check_output_size, read_limited
from histoviewer.core.annotations.sanitize import Replacements
from histoviewer.core.annotations.shapes import Annotation, ObjectKind, ShapeKind, new_uid
from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import AnnotationFormatError
from histoviewer.core.strict_json import strict_dumps

__all__ = [
    "FORMAT_KEY",
    "PolygonAnnotation",
    "geojson_bytes",
    "geojson_dict",
    "load_geojson",
    "parse_geojson",
    "read_geojson",
    "save_geojson",
    "write_atomic",
    "write_geojson",
]

FORMAT_KEY = "histoviewer"  # our property / foreign member name
FORMAT_VERSION = 1
DEFAULT_CLASS = "Tumor"
DEFAULT_COLOR = (200, 0, 0)
_OWN_PROPS = frozenset({"objectType", "object_type", "name", "classification", FORMAT_KEY})
SIZE_SAMPLE_VERTICES = 32  # vertices per annotation written to estimate a file's size
NUCLEUS_KEY = "nucleusGeometry"  # a QuPath cell's nucleus (feature member; kept in properties here)
_QUPATH_MAPS = frozenset({"measurements", "metadata", NUCLEUS_KEY})


# --- writing -------------------------------------------------------------------------------

def _num(v: float) -> float | int:
    # Integral values as ints: smaller files, and the text of integer coordinates survives.
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def _ring_json(ring: Sequence[tuple[float, float]], close: bool) -> list[list[float | int]]:
    out = [[_num(x), _num(y)] for x, y in ring]
    if close:
        out.append(list(out[0]))
    return out


def _geometry(ann: Annotation) -> dict[str, Any]:
    if ann.kind.is_area:
        rings = [ann.outline(), *ann.l0_holes]
        geom: dict[str, Any] = {"type": "Polygon", "coordinates": [_ring_json(r, True) for r in rings]}
        if ann.kind is ShapeKind.ELLIPSE:
            geom["isEllipse"] = True  # QuPath's own mark (ROITypeAdapters): read back as an ellipse
        return geom
    if ann.kind is ShapeKind.LINE:
        return {"type": "LineString", "coordinates": _ring_json(ann.l0_points, False)}
    if len(ann.l0_points) == 1:
        (x, y), = ann.l0_points
        return {"type": "Point", "coordinates": [_num(x), _num(y)]}
    return {"type": "MultiPoint", "coordinates": _ring_json(ann.l0_points, False)}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _qupath_maps(extra: dict[str, Any]) -> None:
    """Copy our numeric properties into QuPath's ``measurements`` map (``{name: number}``,
    QuPath >= 0.4; ``"NaN"`` for a missing value, as QuPath writes it) and our text
    properties into its ``metadata`` map (QuPath >= 0.5), keeping what a foreign file had
    there. QuPath shows both in its measurement table and drops other properties."""
    measurements = dict(extra["measurements"]) if isinstance(extra.get("measurements"), dict) else {}
    metadata = dict(extra["metadata"]) if isinstance(extra.get("metadata"), dict) else {}
    for key, value in extra.items():
        if key in _QUPATH_MAPS:
            continue
        if _is_number(value):
            measurements.setdefault(key, value)
        elif isinstance(value, str):
            metadata.setdefault(key, value)
    if measurements:
        extra["measurements"] = {k: ("NaN" if v is None else v) for k, v in measurements.items()}
    if metadata:
        extra["metadata"] = metadata


def _feature(ann: Annotation, classes: Mapping[str, AnnotationClass], rep: Replacements) -> dict[str, Any]:
    props: dict[str, Any] = {"objectType": ann.object_kind.value}
    if ann.name:
        props["name"] = rep.text(ann.name, "names")
    if ann.class_name is not None:
        cls = classes.get(ann.class_name) or default_class_for(ann.class_name)
        props["classification"] = {"name": rep.text(cls.name, "class names"), "color": list(cls.rgb)}
    own: dict[str, Any] = {}
    if ann.kind not in (ShapeKind.POLYGON, ShapeKind.LINE, ShapeKind.POINTS):
        own["shape"] = ann.kind.value
    if ann.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
        own["l0_points"] = _ring_json(ann.l0_points, False)
    if ann.note:
        own["note"] = rep.text(ann.note, "notes")
    if own:
        props[FORMAT_KEY] = own
    extra = rep.json_value({k: v for k, v in ann.properties.items() if k not in _OWN_PROPS})
    nucleus = extra.pop(NUCLEUS_KEY, None)
    _qupath_maps(extra)
    for key, value in extra.items():
        props.setdefault(key, value)
    feature = {"type": "Feature", "id": ann.uid, "geometry": _geometry(ann), "properties": props}
    if nucleus is not None:
        feature[NUCLEUS_KEY] = nucleus  # QuPath keeps a cell's nucleus beside its geometry
    return feature


def geojson_dict(aset: AnnotationSet, meta: Mapping[str, Any] | None = None,
                 replacements: Replacements | None = None) -> dict[str, Any]:
    """The ``FeatureCollection`` for ``aset``; ``meta`` joins the class table in our member.
    Values no strict JSON reader accepts are replaced and counted in ``replacements``."""
    rep = replacements if replacements is not None else Replacements()
    classes = {c.name: c for c in aset.classes}
    table = [{**c.to_dict(), "name": rep.text(c.name, "class names")} for c in aset.classes]
    return {
        "type": "FeatureCollection",
        FORMAT_KEY: {"format_version": FORMAT_VERSION, "classes": table, **rep.json_value(dict(meta or {}))},
        "features": [_feature(a, classes, rep) for a in aset.annotations]
        + [rep.json_value(decision_feature(d, FORMAT_KEY)) for d in aset.decisions],
    }


def _written_vertices(ann: Annotation) -> int:
    """Positions the feature of ``ann`` will hold, as the reader counts them (an ellipse is
    written as its 128-gon, every ring closed by repeating its first vertex)."""
    if ann.kind.is_area:
        return len(ann.outline()) + 1 + sum(len(h) + 1 for h in ann.l0_holes)
    return len(ann.l0_points)


def _estimated_bytes(aset: AnnotationSet) -> int:
    """A slight underestimate of the GeoJSON size: each annotation's vertices at the
    length of its first few as written (the rest of a feature is small beside them)."""
    total = 0
    for ann in aset.annotations:
        n = _written_vertices(ann)
        if n <= SIZE_SAMPLE_VERTICES or ann.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
            continue
        sample = json.dumps(_ring_json(ann.l0_points[:SIZE_SAMPLE_VERTICES], False), separators=(",", ":"))
        total += int(0.9 * len(sample) / min(len(ann.l0_points), SIZE_SAMPLE_VERTICES) * n)
    return total


def geojson_bytes(aset: AnnotationSet, meta: Mapping[str, Any] | None = None,
                  replacements: Replacements | None = None, target: str = "GeoJSON") -> bytes:
    """The UTF-8 GeoJSON text for ``aset``. Never fails on a value (see ``sanitize``);
    ``AnnotationFormatError`` when the file would exceed what our reader accepts."""
    budget = VertexBudget(target, writing=True)
    for i, ann in enumerate(aset.annotations):
        budget.annotation(f"annotation {i} ({ann.name!r})", _written_vertices(ann))
    for d in aset.decisions:
        budget.annotation(f"review decision {d.hotspot_id}", len(d.l0_outline) + 1)
    check_output_size(target, _estimated_bytes(aset))  # early: building a too-large text takes minutes
    # Compact separators keep json on its C encoder (indent switches to pure Python: 10x slower).
    text = strict_dumps(geojson_dict(aset, meta, replacements), separators=(",", ":"),
                        ensure_ascii=False)
    data = (text + "\n").encode("utf-8")
    check_output_size(target, len(data))
    return data


def save_geojson(path: str | os.PathLike[str], aset: AnnotationSet, meta: Mapping[str, Any] | None = None) -> list[str]:
    """Write ``aset`` as QuPath-readable GeoJSON, atomically; returns what had to be
    replaced to be written (invalid characters, NaN values), empty when nothing."""
    rep = Replacements()
    write_atomic(path, geojson_bytes(aset, meta, rep, target=str(path)))
    return rep.messages()


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` atomically (see ``histoviewer.core.atomic``) and return the path."""
    atomic_write_bytes(path, data)
    return Path(path)


# --- reading -------------------------------------------------------------------------------

class _FeatureError(ValueError):
    pass


def _point(p: Any) -> tuple[float, float]:
    if not isinstance(p, list) or len(p) < 2:
        raise _FeatureError(f"a position must be [x, y], got {str(p)[:40]}")
    x, y = p[0], p[1]
    if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        raise _FeatureError(f"a position must hold numbers, got {str(p)[:40]}")
    return float(x), float(y)


def _positions(seq: Any, what: str) -> list[tuple[float, float]]:
    if not isinstance(seq, list):
        raise _FeatureError(f"{what} must be a list of positions")
    return [_point(p) for p in seq]


def _rings(coords: Any) -> list[list[tuple[float, float]]]:
    if not isinstance(coords, list) or not coords:
        raise _FeatureError("a Polygon needs at least one ring")
    return [_positions(r, "a ring") for r in coords]


def _close_enough(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> bool:
    return len(a) == len(b) and all(math.isclose(p[0], q[0], abs_tol=1e-6) and math.isclose(p[1], q[1], abs_tol=1e-6)
                                    for p, q in zip(a, b))


_GEOMETRY_TYPES = frozenset({"Polygon", "MultiPolygon", "LineString", "MultiLineString", "Point", "MultiPoint",
                             "GeometryCollection"})
_NON_FINITE_TEXT = frozenset({"nan", "inf", "-inf", "infinity", "-infinity", "+inf", "+infinity"})


@dataclass
class _Reader:
    source: str
    budget: VertexBudget
    warnings: list[str] = field(default_factory=list)
    classes: dict[str, AnnotationClass] = field(default_factory=dict)
    uids: set[str] = field(default_factory=set)
    rep: Replacements = field(default_factory=Replacements)
    kinds: dict[str, int] = field(default_factory=dict)  # unknown objectType values met

    def _object_kind(self, feat: dict, props: dict) -> ObjectKind:
        """QuPath's ``objectType`` (``object_type`` before 0.3; the class name in ``id`` in
        0.2). Absent or unknown: an annotation, as QuPath itself reads it."""
        for raw in (props.get("objectType"), props.get("object_type"), feat.get("id")):
            kind = ObjectKind.from_qupath(raw)
            if kind is not None:
                return kind
        raw = props.get("objectType", props.get("object_type"))
        if raw is not None:
            self.kinds[str(raw)[:40]] = self.kinds.get(str(raw)[:40], 0) + 1
        return ObjectKind.ANNOTATION

    def _measurements(self, value: Any) -> dict[str, Any] | None:
        """QuPath's measurements (a ``{name: value}`` map since 0.4, a list of ``{name,
        value}`` before) as one map of numbers, None for a missing value (``"NaN"``)."""
        if isinstance(value, list):
            pairs = [(m.get("name"), m.get("value")) for m in value if isinstance(m, dict)]
        elif isinstance(value, dict):
            pairs = list(value.items())
        else:
            return None
        out: dict[str, Any] = {}
        for name, v in pairs:
            if not isinstance(name, str):
                continue
            if isinstance(v, str) and v.strip().lower() in _NON_FINITE_TEXT:
                v = None
            elif isinstance(v, float) and not math.isfinite(v):
                v = None
            elif not (v is None or _is_number(v) or isinstance(v, str)):
                continue
            out[self.rep.text(name, "measurement names")] = v
        return out

    def _extra(self, props: dict) -> dict[str, Any]:
        """The properties we keep as they are, JSON-safe; QuPath maps that only repeat our
        own properties (we write them so) are not kept twice."""
        extra = {k: v for k, v in props.items() if k not in _OWN_PROPS}
        measurements = self._measurements(extra.pop("measurements", None))
        extra = self.rep.json_value(extra)
        for key, derived in (("measurements", measurements), ("metadata", extra.pop("metadata", None))):
            if not isinstance(derived, dict):
                if derived is not None:
                    extra[key] = derived
                continue
            own = {k: v for k, v in derived.items() if not (k in extra and _same_value(extra[k], v))}
            if own:
                extra[key] = own
        return extra

    def feature(self, i: int, feat: Any) -> list[Annotation]:
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise _FeatureError("not a GeoJSON Feature")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise _FeatureError("properties must be an object")
        geom = feat.get("geometry")
        if geom is None:
            self.warnings.append(f"feature {i}: no geometry; skipped")
            return []
        if not isinstance(geom, dict):
            raise _FeatureError("geometry must be an object")
        gtype, coords = geom.get("type"), geom.get("coordinates")
        name = props.get("name", "")
        if name is not None and not isinstance(name, str):
            raise _FeatureError("name must be a string")
        name = self.rep.text(name or "", "names")
        class_name = self._classification(props.get("classification"))
        own = props.get(FORMAT_KEY) or {}
        if not isinstance(own, dict):
            raise _FeatureError(f"properties.{FORMAT_KEY} must be an object")
        extra = self._extra(props)
        if NUCLEUS_KEY in feat:
            extra[NUCLEUS_KEY] = self.rep.json_value(feat[NUCLEUS_KEY])
        note = own.get("note", "")
        base = dict(class_name=class_name, name=name, note=self.rep.text(str(note), "notes"), properties=extra,
                    object_kind=self._object_kind(feat, props))

        parts: list[tuple[ShapeKind, list, list]] = []  # (kind, points, holes)
        if gtype == "Polygon":
            rings = _rings(coords)
            parts.append((ShapeKind.POLYGON, rings[0], rings[1:]))
        elif gtype == "MultiPolygon":
            if not isinstance(coords, list) or not coords:
                raise _FeatureError("a MultiPolygon needs at least one polygon")
            parts += [(ShapeKind.POLYGON, r[0], r[1:]) for r in map(_rings, coords)]
            if len(parts) > 1:
                self.warnings.append(f"feature {i} ({name!r}): MultiPolygon split into {len(parts)} polygons")
        elif gtype == "LineString":
            parts.append((ShapeKind.LINE, _positions(coords, "a LineString"), []))
        elif gtype == "MultiLineString":
            if not isinstance(coords, list) or not coords:
                raise _FeatureError("a MultiLineString needs at least one line")
            parts += [(ShapeKind.LINE, _positions(c, "a line"), []) for c in coords]
            if len(parts) > 1:
                self.warnings.append(f"feature {i} ({name!r}): MultiLineString split into {len(parts)} lines")
        elif gtype == "Point":
            parts.append((ShapeKind.POINTS, [_point(coords)], []))
        elif gtype == "MultiPoint":
            parts.append((ShapeKind.POINTS, _positions(coords, "a MultiPoint"), []))
        else:
            self.warnings.append(f"feature {i} ({name!r}): geometry {str(gtype)[:40]!r} not supported; skipped")
            return []
        for k, (_, p, h) in enumerate(parts):  # each part becomes an annotation: each is counted
            self.budget.annotation(f"feature {i}" + (f" part {k}" if k else ""), len(p) + sum(map(len, h)))

        out = []
        for kind, pts, holes in parts:
            ann_kind, pts, holes = self._shape_kind(i, name, own, geom, kind, pts, holes)
            uid = self._uid(feat.get("id")) if not out else new_uid()
            out.append(Annotation(ann_kind, tuple(pts), l0_holes=tuple(map(tuple, holes)), uid=uid, **base))
        return out

    def _shape_kind(self, i: int, name: str, own: dict, geom: dict, kind: ShapeKind, pts: list, holes: list):
        shape = own.get("shape")
        if kind is not ShapeKind.POLYGON:
            return kind, pts, holes
        if shape is None and geom.get("isEllipse") is True and not holes:
            # QuPath's ellipse: a polygon marked isEllipse, the ellipse being its bounding box.
            arr = [min(p[0] for p in pts), min(p[1] for p in pts)], [max(p[0] for p in pts), max(p[1] for p in pts)]
            if arr[0][0] < arr[1][0] and arr[0][1] < arr[1][1]:
                return ShapeKind.ELLIPSE, [tuple(arr[0]), tuple(arr[1])], []
        if shape is None:
            return kind, pts, holes
        if shape == "freehand":
            return ShapeKind.FREEHAND, pts, holes
        if shape in ("rectangle", "ellipse") and not holes:
            try:
                defining = _positions(own.get("l0_points"), "l0_points")
                candidate = Annotation(ShapeKind(shape), tuple(defining))
            except (_FeatureError, ValueError):
                candidate = None
            ring = pts[:-1] if len(pts) > 1 and pts[0] == pts[-1] else pts
            if candidate is not None and _close_enough(candidate.outline(), ring):
                return ShapeKind(shape), defining, []
            self.warnings.append(f"feature {i} ({name!r}): {shape} outline was changed elsewhere; read as a polygon")
        return kind, pts, holes

    def _classification(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):  # QuPath reads a bare name too (PathClass.fromString)
            value = {"name": value}
        if not isinstance(value, dict):
            raise _FeatureError("classification must be a name or an object {name, color}")
        cname = value.get("name")
        if cname is None and isinstance(value.get("names"), list):  # QuPath derived classes
            cname = ": ".join(str(n) for n in value["names"])
        if not isinstance(cname, str) or not cname.strip():
            if not value:  # QuPath's NULL_CLASS ({}): unclassified
                return None
            raise _FeatureError("classification needs a name")
        cname = self.rep.text(cname, "class names")
        if cname not in self.classes:
            raw = value.get("color", value.get("colorRGB"))
            try:
                rgb = None if raw is None else parse_color(raw)
            except ValueError as exc:
                raise _FeatureError(f"classification {cname!r}: {exc}") from None
            self.classes[cname] = default_class_for(cname, rgb)
        return cname

    def _uid(self, fid: Any) -> str:
        ok = isinstance(fid, str) and fid and len(fid) <= 200 and fid not in self.uids
        ok = ok and ObjectKind.from_qupath(fid) is None  # QuPath 0.2 put the class name there
        uid = self.rep.text(fid, "ids") if ok else new_uid()
        self.uids.add(uid)
        return uid


def _same_value(a: Any, b: Any) -> bool:
    return a == b or (a is None and b in (None, "NaN"))


def _doc_classes(doc: dict, source: str) -> list[AnnotationClass]:
    own = doc.get(FORMAT_KEY)
    if not isinstance(own, dict) or "classes" not in own:
        return []
    try:
        return [AnnotationClass.from_dict(c) for c in own["classes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationFormatError(f"{source}: the {FORMAT_KEY} class table is invalid: {exc}") from exc


def parse_geojson(data: bytes, source: str = "<GeoJSON>") -> ImportResult:
    """Annotations from GeoJSON bytes: a FeatureCollection, one Feature, a bare geometry, or
    a list of Features as older QuPath exports. ``AnnotationFormatError`` naming ``source``
    and the line (syntax) or feature index (content) at fault. Values a strict writer could
    not write back (NaN, lone surrogates) are replaced on reading, with a warning."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise AnnotationFormatError(f"{source}: not UTF-8 text (byte {exc.start}); not GeoJSON") from exc
    except json.JSONDecodeError as exc:
        raise AnnotationFormatError(f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise AnnotationFormatError(f"{source}: JSON nested too deeply; refused") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise AnnotationFormatError(f"{source}: not usable JSON: {exc}") from exc
    if isinstance(doc, list):
        features, doc = doc, {}
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise AnnotationFormatError(f"{source}: FeatureCollection has no list of features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features, doc = [doc], {}
    elif isinstance(doc, dict) and doc.get("type") in _GEOMETRY_TYPES:
        features, doc = [{"type": "Feature", "geometry": doc, "properties": {}}], {}
    else:
        raise AnnotationFormatError(
            f"{source}: expected a GeoJSON FeatureCollection, Feature, geometry or list of Features")
    reader = _Reader(source, VertexBudget(source))
    annotations: list[Annotation] = []
    decisions: dict[str, ReviewDecision] = {}
    for i, feat in enumerate(features):
        try:
            if is_decision_feature(feat, FORMAT_KEY):  # a review decision (``review``), not an annotation
                decision = decision_from_feature(feat, FORMAT_KEY)
                reader.budget.annotation(f"feature {i} (review decision)", len(decision.l0_outline))
                if decision.hotspot_id in decisions:
                    reader.warnings.append(f"feature {i}: a second decision on hotspot {decision.hotspot_id}; "
                                           "the later one is kept")
                decisions[decision.hotspot_id] = decision
                continue
            annotations += reader.feature(i, feat)
        except (_FeatureError, ValueError, TypeError, KeyError, IndexError) as exc:
            label = feat.get("properties", {}).get("name") if isinstance(feat, dict) and isinstance(feat.get("properties"), dict) else None
            where = f"feature {i}" + (f" ({label!r})" if isinstance(label, str) and label else "")
            raise AnnotationFormatError(f"{source}: {where}: {exc}") from exc
    classes = merge_classes(_doc_classes(doc, source) or AnnotationSet().classes, reader.classes.values())
    own = doc.get(FORMAT_KEY) if isinstance(doc, dict) else None
    meta = reader.rep.json_value({k: v for k, v in own.items() if k != "classes"}) if isinstance(own, dict) else {}
    aset = AnnotationSet(tuple(annotations), classes, tuple(decisions.values())).with_used_classes()
    warnings = list(reader.warnings) + [f"read with changes: {m}" for m in reader.rep.messages()]
    warnings += [f"{n} object{'s' if n != 1 else ''} of unknown type {k!r} read as annotations"
                 for k, n in reader.kinds.items()]
    detections = sum(1 for a in annotations if not a.is_region)
    if detections:
        warnings.append(f"{detections} detection{'s' if detections != 1 else ''} (QuPath detections/cells/tiles) "
                        "read as detections: shown and counted, never sized or staged")
    return ImportResult(aset, source, "geojson", tuple(warnings), meta)


def load_geojson(path: str | os.PathLike[str]) -> ImportResult:
    """``parse_geojson`` of a file, within the size limit."""
    return parse_geojson(read_limited(path, "GeoJSON"), str(path))


# --- tumour polygons for pipelines (phantom truth, patch labels) ---------------------------

@dataclass(frozen=True)
class PolygonAnnotation:
    """One named polygon in level-0 pixels, as an open ring (first vertex not repeated).

    ``group`` is the ASAP/CAMELYON group (``_0``/``_1`` tumour, ``_2`` exclusion), used only
    by ``asap_xml.write_asap_xml``; ``properties`` holds extra JSON values (diameter, size
    class, ...) stored beside QuPath's own keys.
    """

    name: str
    l0_points: tuple[tuple[float, float], ...]
    classification: str = DEFAULT_CLASS
    color: tuple[int, int, int] = DEFAULT_COLOR
    group: str = "_0"
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        pts = tuple((float(x), float(y)) for x, y in self.l0_points)
        if len(pts) > 1 and pts[0] == pts[-1]:
            pts = pts[:-1]
        if len(pts) < 3:
            raise ValueError(f"polygon {self.name!r} needs at least 3 distinct vertices")
        if not all(math.isfinite(v) for p in pts for v in p):
            raise ValueError(f"polygon {self.name!r} has non-finite coordinates")
        object.__setattr__(self, "l0_points", pts)
        object.__setattr__(self, "color", tuple(int(c) for c in self.color))

    def to_annotation(self, class_name: str | None = None, uid: str | None = None) -> Annotation:
        return Annotation(ShapeKind.POLYGON, self.l0_points, class_name=class_name or self.classification,
                          name=self.name, uid=uid or new_uid(), properties=dict(self.properties))

    @classmethod
    def from_annotation(cls, ann: Annotation, color: tuple[int, int, int] = DEFAULT_COLOR) -> PolygonAnnotation:
        group = ann.class_name or "None"
        return cls(ann.name, ann.outline(), classification=ann.class_name or DEFAULT_CLASS, color=color,
                   group=group, properties=dict(ann.properties))


def write_geojson(path: str | os.PathLike[str], annotations: Sequence[PolygonAnnotation]) -> Path:
    """Write tumour polygons as a QuPath-compatible GeoJSON file (atomically)."""
    classes = {p.classification: AnnotationClass(p.classification, p.color,
                                                  default_class_for(p.classification).is_tumour)
               for p in reversed(annotations)}
    # Ids derived from position and name: the same polygons give byte-identical files.
    anns = tuple(p.to_annotation(uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"histoviewer:{i}:{p.name}")))
                 for i, p in enumerate(annotations))
    aset = AnnotationSet(anns, tuple(classes.values())[::-1])
    save_geojson(path, aset)
    return Path(path)


def read_geojson(path: str | os.PathLike[str]) -> list[PolygonAnnotation]:
    """The area annotations of a GeoJSON file as polygons (rectangles and ellipses as their
    outlines; holes dropped: the patch labeller has its own exclusion polygons). Detections
    (QuPath cells, tiles) are not annotations and are left out."""
    aset = load_geojson(path).annotation_set
    out = []
    for ann in aset.annotations:
        if ann.kind.is_area and ann.is_region:
            cls = aset.class_named(ann.class_name)
            poly = PolygonAnnotation.from_annotation(ann, cls.rgb if cls else DEFAULT_COLOR)
            out.append(PolygonAnnotation(poly.name, poly.l0_points, poly.classification, poly.color,
                                         properties=poly.properties))
    return out
