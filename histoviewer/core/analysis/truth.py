"""Ground-truth tumour polygons for evaluation: one rule for every file form.

Files are read by the annotation readers (``annotations/asap_xml.py``: safe SAX without DTDs
or entities; ``annotations/geojson_io.py``) and the annotations then pass one rule
(``truth_from_annotations``), so an ASAP XML file and its GeoJSON conversion give the same
truth:

- tumour: area annotations (polygons, rectangles, ellipses) of a tumour class: the CAMELYON16
  groups ``_0`` / ``_1``, or ``Tumor`` / ``Tumour`` / ``Metastasis`` / ``Metastases`` /
  ``Carcinoma`` (any case: the names ``annotations/classes.py`` sizes as tumour);
- cut-outs: the holes of those annotations, and area annotations of an exclusion class
  (``_2``, ``Exclusion``, ``Normal``, ``Non-tumor``): normal tissue inside tumour. They are
  subtracted from the tumour area; outside tumour they change nothing;
- never tumour, with a warning: unclassified areas, areas of any other class, points, point
  sets and lines (no area), and QuPath detections/cells (``objectType`` other than
  ``annotation``: a cell classifier's output, not a pathologist's outline).

The shared JSON form of the real CAMELYON16 annotations
(``{"positive": [{"vertices": [[x, y], ...]}], "negative": [...]}``) has positive polygons as
tumour and negative ones as cut-outs. All coordinates are level-0 pixels.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoviewer.core.annotations.asap_xml import load_asap_xml
from histoviewer.core.annotations.geojson_io import load_geojson
from histoviewer.core.annotations.shapes import Annotation
from histoviewer.core.errors import AnnotationFormatError, EvaluationError
from histoviewer.core.safe_input import read_json

__all__ = ["EXCLUSION_NAMES", "TRUTH_SUFFIXES", "TUMOUR_NAMES", "Truth", "find_truth_file", "read_truth",
           "truth_from_annotations"]

# In preference order when a folder has more than one file for a slide.
TRUTH_SUFFIXES = (".xml", ".geojson", ".json")
TUMOUR_NAMES = frozenset({"_0", "_1", "tumor", "tumour", "metastasis", "metastases", "carcinoma"})
EXCLUSION_NAMES = frozenset({"_2", "exclusion", "normal", "non-tumor", "non-tumour"})


@dataclass(frozen=True)
class Truth:
    """Tumour polygons and cut-outs of one slide (each an ``(N, 2)`` float array, level-0 px);
    ``warnings``: what in the file was not taken as tumour, and why."""

    tumour: tuple[np.ndarray, ...]
    excluded: tuple[np.ndarray, ...] = ()
    warnings: tuple[str, ...] = ()


def _poly(points, path: Path, what: str) -> np.ndarray | None:
    try:
        arr = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{path}: {what} is not a list of (x, y) points: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise EvaluationError(f"{path}: {what} has non-finite coordinates")
    return arr if len(arr) >= 3 else None  # a dot or a line encloses no tumour


def truth_from_annotations(annotations: Iterable[Annotation], source: str = "") -> Truth:
    """The truth of a slide from its annotations, by the rule of the module docstring."""
    tumour: list[np.ndarray] = []
    excluded: list[np.ndarray] = []
    ignored: Counter[str] = Counter()
    for ann in annotations:
        name = (ann.class_name or "").strip().lower()
        if not ann.is_region:  # QuPath detections, cells, tiles: a detector's output, never truth
            ignored[f"QuPath {ann.object_kind.value} objects"] += 1
        elif not ann.kind.is_area:
            if name in TUMOUR_NAMES:
                ignored[f"{ann.kind.value} annotations of a tumour class (no area)"] += 1
        elif name in TUMOUR_NAMES:
            tumour.append(np.asarray(ann.outline(), np.float64))
            excluded.extend(np.asarray(h, np.float64) for h in ann.l0_holes)
        elif name in EXCLUSION_NAMES:
            excluded.append(np.asarray(ann.outline(), np.float64))
            excluded.extend(np.asarray(h, np.float64) for h in ann.l0_holes)  # tumour inside normal: rare, dropped
        else:
            ignored["unclassified areas" if not name else f"areas of class {ann.class_name!r}"] += 1
    where = f"{source}: " if source else ""
    warnings = tuple(f"{where}{n} {what} not counted as tumour" for what, n in sorted(ignored.items()))
    return Truth(tuple(tumour), tuple(excluded), warnings)


def _read_annotations(path: Path, loader) -> Truth:
    try:
        result = loader(path)
    except AnnotationFormatError as exc:
        raise EvaluationError(str(exc)) from exc
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read ground truth: {exc}") from exc
    truth = truth_from_annotations(result.annotation_set.annotations, str(path))
    return Truth(truth.tumour, truth.excluded, tuple(result.warnings) + truth.warnings)


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
        return _read_annotations(path, load_asap_xml)
    if suffix == ".geojson":
        return _read_annotations(path, load_geojson)
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
