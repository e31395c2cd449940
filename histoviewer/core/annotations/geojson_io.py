"""Polygon annotations as GeoJSON, in the form QuPath writes and reads.

A ``FeatureCollection`` whose features are ``Polygon`` geometries in level-0 pixel
coordinates (x right, y down), each with QuPath's ``properties``::

    {"objectType": "annotation", "name": "macro-1",
     "classification": {"name": "Tumor", "color": [200, 0, 0]}, ...extra}

The reader here is deliberately simple (it is used to check our own output); hardened
import of foreign files is a separate concern.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import AnnotationFormatError

__all__ = [
    "PolygonAnnotation",
    "geojson_dict",
    "read_geojson",
    "write_atomic",
    "write_geojson",
]

DEFAULT_CLASS = "Tumor"
DEFAULT_COLOR = (200, 0, 0)


@dataclass(frozen=True)
class PolygonAnnotation:
    """One named polygon in level-0 pixels, as an open ring (first vertex not repeated).

    ``properties`` holds extra JSON-serialisable values (diameter, size class, ...) that
    the GeoJSON writer stores beside QuPath's own keys.
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


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` atomically (see ``histoviewer.core.atomic``) and return the path."""
    atomic_write_bytes(path, data)
    return Path(path)


def geojson_dict(annotations: Sequence[PolygonAnnotation]) -> dict[str, Any]:
    """The GeoJSON ``FeatureCollection`` for ``annotations`` (closed rings, as QuPath)."""
    features = []
    for ann in annotations:
        ring = [[x, y] for x, y in ann.l0_points]
        ring.append(list(ring[0]))
        props: dict[str, Any] = {
            "objectType": "annotation",
            "name": ann.name,
            "classification": {"name": ann.classification, "color": list(ann.color)},
        }
        for key, value in ann.properties.items():
            props.setdefault(key, value)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(
    path: str | os.PathLike[str], annotations: Sequence[PolygonAnnotation]
) -> Path:
    """Write ``annotations`` as a QuPath-compatible GeoJSON file (atomically)."""
    text = json.dumps(geojson_dict(annotations), indent=1, allow_nan=False)
    return write_atomic(path, (text + "\n").encode("utf-8"))


def read_geojson(path: str | os.PathLike[str]) -> list[PolygonAnnotation]:
    """Polygons from a GeoJSON ``FeatureCollection`` (outer rings only; holes ignored).

    Raises ``AnnotationFormatError`` naming the file for anything else.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationFormatError(f"{path}: cannot read GeoJSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise AnnotationFormatError(f"{path}: expected a GeoJSON FeatureCollection")
    out: list[PolygonAnnotation] = []
    for i, feat in enumerate(doc.get("features") or []):
        try:
            geom = feat["geometry"]
            if geom["type"] != "Polygon":
                continue
            ring = geom["coordinates"][0]
            props = dict(feat.get("properties") or {})
            cls = props.pop("classification", None) or {}
            name = str(props.pop("name", f"annotation-{i + 1}"))
            props.pop("objectType", None)
            out.append(
                PolygonAnnotation(
                    name=name,
                    l0_points=tuple((float(p[0]), float(p[1])) for p in ring),
                    classification=str(cls.get("name", DEFAULT_CLASS)),
                    color=tuple(cls.get("color", DEFAULT_COLOR))[:3],
                    properties=props,
                )
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise AnnotationFormatError(f"{path}: feature {i} is not a valid polygon: {exc}") from exc
    return out
