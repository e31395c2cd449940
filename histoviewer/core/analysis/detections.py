"""Detections for FROC: what a detector reported per slide, read from disk.

Two forms, per slide ``<stem>``:

- ``<stem>/summary.json`` (``histoviewer analyze`` output): one detection per lesion at its
  centroid with its maximum probability; the slide's mpp from the summary; the slide score
  (for the slide-level AUC) is the highest probability on its map (``probability.tiff``).
- ``<stem>.csv`` (the CAMELYON16 submission form): rows ``probability,x,y`` in level-0 px,
  an optional header row; the mpp must come from the caller.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from histoviewer.core.analysis.froc import Detection
from histoviewer.core.analysis.map_io import check_map_values
from histoviewer.core.analysis.summary import SlideFailure, read_summary
from histoviewer.core.errors import (
    EvaluationError,
    InferenceError,
    SummaryFormatError,
    SummaryWithoutLesionsError,
)
from histoviewer.core.safe_input import require_regular_file

__all__ = ["SlideDetections", "read_detections"]


@dataclass(frozen=True)
class SlideDetections:
    slide: str  # stem
    detections: tuple[Detection, ...]
    mpp: float | None
    slide_score: float | None  # None: the highest detection probability


def _from_summary(folder: Path) -> SlideDetections:
    path = folder / "summary.json"
    try:
        summary = read_summary(path, lesions_required=True)
    except SummaryWithoutLesionsError as exc:
        raise EvaluationError(str(exc)) from exc
    except SummaryFormatError as exc:
        raise EvaluationError(f"not a usable analyze summary: {exc}") from exc
    if isinstance(summary, SlideFailure):
        raise EvaluationError(f"{path}: the slide was not analysed ({summary.error}); no detections")
    dets = tuple(Detection(les.l0_centroid[0], les.l0_centroid[1], les.max_probability) for les in summary.lesions)
    score = None
    tiff = folder / "probability.tiff"
    if tiff.is_file():
        values = tifffile.imread(tiff)
        try:
            check_map_values(np.asarray(values, np.float64), tiff)  # +Inf would be the slide's score
        except InferenceError as exc:
            raise EvaluationError(str(exc)) from exc
        finite = values[np.isfinite(values) & (values >= 0)]
        score = float(finite.max()) if finite.size else 0.0
    return SlideDetections(folder.name, dets, summary.mpp, score)


def _from_csv(path: Path, mpp: float | None) -> SlideDetections:
    dets = []
    require_regular_file(path, "detections", EvaluationError)  # a FIFO would block for ever
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for row in reader:
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                if len(cells) < 3:
                    raise EvaluationError(f"{path}:{reader.line_num}: expected probability,x,y, got {row!r}")
                try:
                    p, x, y = (float(c) for c in cells[:3])
                except ValueError:
                    if reader.line_num == 1:
                        continue  # a header
                    raise EvaluationError(f"{path}:{reader.line_num}: expected probability,x,y numbers, "
                                          f"got {row!r}") from None
                if not all(math.isfinite(v) for v in (p, x, y)) or not 0 <= p <= 1:
                    raise EvaluationError(f"{path}:{reader.line_num}: expected probability (0..1),x,y, got {row!r}")
                dets.append(Detection(x, y, p))
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read detections: {exc}") from exc
    return SlideDetections(path.stem, tuple(dets), mpp, None)


# Tables ``analyze`` (and ``analyze --report``) writes beside the slide folders: not detections.
ANALYZE_TABLES = frozenset({"stages.csv", "lesions.csv", "slides.csv", "cases.csv"})


def read_detections(folder: str | Path, mpp: float | None = None) -> list[SlideDetections]:
    """Every slide's detections in ``folder`` (analyze sub-folders and ``*.csv``), by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder of detections")
    out = [_from_summary(p) for p in sorted(folder.iterdir()) if (p / "summary.json").is_file()]
    out += [_from_csv(p, mpp) for p in sorted(folder.glob("*.csv")) if p.name not in ANALYZE_TABLES]
    if not out:
        raise EvaluationError(f"{folder}: no detections (<slide>/summary.json from analyze, or "
                              "<slide>.csv with probability,x,y rows)")
    names = [d.slide for d in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvaluationError(f"{folder}: slides given twice (folder and CSV): {', '.join(dupes)}")
    if mpp is not None:
        out = [d if d.mpp is not None else SlideDetections(d.slide, d.detections, mpp, d.slide_score) for d in out]
    return out
