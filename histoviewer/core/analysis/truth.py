"""Ground-truth tumour polygons for evaluation, from the three forms CAMELYON material comes in.

- ASAP / CAMELYON16 XML: annotations in groups ``_0`` and ``_1`` (also ``Tumor``) are tumour,
  ``_2`` (also ``Exclusion``) are normal islands cut out of them. Parsed with ``defusedxml``:
  ground truth is a foreign file, and plain ``xml.etree`` is open to entity-expansion attacks.
- GeoJSON (QuPath, our phantoms): ``Polygon`` features; a classification named ``Exclusion``
  or ``Normal`` marks a cut-out, anything else is tumour.
- The shared JSON form of the real CAMELYON16 annotations:
  ``{"positive": [{"vertices": [[x, y], ...]}], "negative": [...]}``.

All coordinates are level-0 pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from defusedxml import ElementTree as SafeET

from histoviewer.core.annotations.geojson_io import read_geojson
from histoviewer.core.errors import AnnotationFormatError, EvaluationError
from histoviewer.core.safe_input import read_json

__all__ = ["TRUTH_SUFFIXES", "Truth", "find_truth_file", "read_truth"]

# In preference order when a folder has more than one file for a slide.
TRUTH_SUFFIXES = (".xml", ".geojson", ".json")
_EXCLUDE_GROUPS = {"_2", "exclusion"}
_EXCLUDE_CLASSES = {"exclusion", "normal", "non-tumor", "non-tumour"}


@dataclass(frozen=True)
class Truth:
    """Tumour polygons and cut-outs of one slide (each an ``(N, 2)`` float array, level-0 px)."""

    tumour: tuple[np.ndarray, ...]
    excluded: tuple[np.ndarray, ...] = ()


def _poly(points, path: Path, what: str) -> np.ndarray | None:
    try:
        arr = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{path}: {what} is not a list of (x, y) points: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise EvaluationError(f"{path}: {what} has non-finite coordinates")
    return arr if len(arr) >= 3 else None  # a dot or a line encloses no tumour


def _read_xml(path: Path) -> Truth:
    try:
        root = SafeET.parse(str(path)).getroot()
    except (OSError, SafeET.ParseError) as exc:
        raise EvaluationError(f"{path}: cannot read ASAP XML: {exc}") from exc
    except Exception as exc:  # defusedxml's refusals (entities, DTDs) have their own classes
        raise EvaluationError(f"{path}: refused unsafe XML: {type(exc).__name__}: {exc}") from exc
    if root.tag != "ASAP_Annotations":
        raise EvaluationError(f"{path}: root element is {root.tag!r}, not ASAP_Annotations")
    tumour, excluded = [], []
    for i, el in enumerate(root.iter("Annotation")):
        try:
            pts = sorted((int(c.get("Order", j)), float(c.attrib["X"]), float(c.attrib["Y"]))
                         for j, c in enumerate(el.iter("Coordinate")))
        except (KeyError, ValueError) as exc:
            raise EvaluationError(f"{path}: annotation {i} has a bad coordinate: {exc}") from None
        poly = _poly([(x, y) for _o, x, y in pts], path, f"annotation {i}")
        if poly is None:
            continue
        group = (el.get("PartOfGroup") or "_0").strip().lower()
        (excluded if group in _EXCLUDE_GROUPS else tumour).append(poly)
    return Truth(tuple(tumour), tuple(excluded))


def _read_geojson(path: Path) -> Truth:
    try:
        anns = read_geojson(path)
    except AnnotationFormatError as exc:
        raise EvaluationError(str(exc)) from exc
    tumour, excluded = [], []
    for a in anns:
        poly = np.asarray(a.l0_points, np.float64)
        (excluded if a.classification.strip().lower() in _EXCLUDE_CLASSES else tumour).append(poly)
    return Truth(tuple(tumour), tuple(excluded))


def _read_json(path: Path) -> Truth:
    doc = read_json(path, "ground truth", EvaluationError)  # errors name the file
    if not isinstance(doc, dict) or "positive" not in doc:
        raise EvaluationError(f"{path}: expected {{'positive': [...], 'negative': [...]}} polygons")
    out: dict[str, list[np.ndarray]] = {"positive": [], "negative": []}
    for key in out:
        for i, item in enumerate(doc.get(key) or []):
            verts = item.get("vertices") if isinstance(item, dict) else None
            if verts is None:
                raise EvaluationError(f"{path}: {key}[{i}] has no 'vertices'")
            poly = _poly(verts, path, f"{key}[{i}]")
            if poly is not None:
                out[key].append(poly)
    return Truth(tuple(out["positive"]), tuple(out["negative"]))


def read_truth(path: str | os.PathLike[str]) -> Truth:
    """Tumour polygons of one slide from ``.xml``, ``.geojson`` or ``.json`` (see module doc)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return _read_xml(path)
    if suffix == ".geojson":
        return _read_geojson(path)
    if suffix == ".json":
        return _read_json(path)
    raise EvaluationError(f"{path}: unknown ground-truth format (use .xml, .geojson or .json)")


def find_truth_file(folder: Path, slide_stem: str) -> Path | None:
    """``<folder>/<slide_stem>.<xml|geojson|json>`` in preference order, or None (a negative
    slide, as CAMELYON16's normal slides, which have no annotation file)."""
    for suffix in TRUTH_SUFFIXES:
        candidate = folder / f"{slide_stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None
