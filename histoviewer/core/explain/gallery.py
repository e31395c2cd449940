"""The "top losses" of an evaluation: a model's most confident mistakes, as a gallery.

``top_losses`` picks, at the operating threshold, the false positives with the highest P
and the false negatives with the lowest P (the patches the model was surest about and
wrong). ``write_gallery`` writes a folder a browser opens: ``index.html`` with the confusion
matrix beside the ROC curve and the reliability diagram, then one row per mistake: the patch
as the model read it (at its scale, stain-normalised when the model is), its label, P and its
explanation (Grad-CAM overlay for a CNN, the feature terms for the handcrafted model). The
folder is written atomically (``atomic_folder``): a reader sees the old gallery or the new
one, never half of one.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from histoviewer.core.atomic import atomic_folder
from histoviewer.core.errors import EvaluationError
from histoviewer.core.explain.contributions import feature_contributions
from histoviewer.core.explain.gradcam import grad_cam
from histoviewer.core.explain.render import (
    cam_overlay,
    confusion_matrix_image,
    contribution_bars_image,
)
from histoviewer.core.models.calibration_metrics import CalibrationMetrics
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.handcrafted import HandcraftedClassifier
from histoviewer.core.models.metrics import PatchMetrics, RocCurve
from histoviewer.core.models.reliability_plot import write_reliability_png
from histoviewer.core.models.roc_plot import write_roc_png
from histoviewer.core.patches.base import PatchSet

__all__ = ["GalleryEntry", "TopLosses", "top_losses", "write_gallery"]

ZOOM = 2  # patches are drawn at 2x (nearest neighbour): a 96 px patch is too small to judge


@dataclass(frozen=True)
class TopLosses:
    """Positions (into the evaluated arrays) of the most confident mistakes at ``threshold``:
    ``false_positives`` by P descending, ``false_negatives`` by P ascending (ties: the
    earlier patch first); ``n_fp``/``n_fn``: how many mistakes of each kind there were."""

    false_positives: tuple[int, ...]
    false_negatives: tuple[int, ...]
    threshold: float
    n_fp: int
    n_fn: int


def top_losses(
    labels: np.ndarray, probs: np.ndarray, threshold: float, n: int
) -> TopLosses:
    """The ``n`` most confident false positives (label 0, ``P >= threshold``) and false
    negatives (label 1, ``P < threshold``), the same rule as ``binary_metrics``."""
    y = np.asarray(labels).reshape(-1)
    p = np.asarray(probs, np.float64).reshape(-1)
    if y.shape != p.shape:
        raise EvaluationError(
            f"top losses need one label per probability, got {y.shape} and {p.shape}"
        )
    if n < 1:
        raise EvaluationError(
            f"the number of top losses must be at least 1, got {n}",
            setting="top_losses",
        )
    pred = p >= threshold
    fp = np.flatnonzero((y == 0) & pred)
    fn = np.flatnonzero((y == 1) & ~pred)
    fp_sorted = fp[np.lexsort((fp, -p[fp]))]
    fn_sorted = fn[np.lexsort((fn, p[fn]))]
    return TopLosses(
        tuple(int(i) for i in fp_sorted[:n]),
        tuple(int(i) for i in fn_sorted[:n]),
        float(threshold),
        int(fp.size),
        int(fn.size),
    )


@dataclass(frozen=True)
class GalleryEntry:
    """One mistake in the gallery: ``kind`` "false positive"/"false negative", its rank (1 =
    most confident), the patch's position in the data (``index``) and id, label, P, and the
    file of its picture in the gallery folder."""

    kind: str
    rank: int
    index: int
    patch_id: str
    label: int
    probability: float
    image: str


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _zoom(rgb: np.ndarray) -> Image.Image:
    img = Image.fromarray(np.ascontiguousarray(rgb))
    return img.resize((img.width * ZOOM, img.height * ZOOM), Image.Resampling.NEAREST)


def _side_by_side(*parts: Image.Image, gap: int = 8) -> Image.Image:
    w = sum(p.width for p in parts) + gap * (len(parts) - 1)
    h = max(p.height for p in parts)
    out = Image.new("RGB", (w, h), "white")
    x = 0
    for p in parts:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def explanation_images(
    model: PatchClassifier, patches: np.ndarray
) -> tuple[list[Image.Image], str]:
    """One picture per patch (the patch as read, beside its explanation) and a sentence on
    what the explanation is."""
    if len(patches) == 0:
        return [], ""
    if isinstance(model, CnnClassifier) or hasattr(model, "as_torch"):  # torch or onnxruntime CNN
        cam = grad_cam(model, patches)
        images = [
            _side_by_side(
                _zoom(cam.patches[i]),
                _zoom(cam_overlay(cam.patches[i], cam.cam[i], cam.peak[i])),
            )
            for i in range(len(patches))
        ]
        return images, (
            f"Grad-CAM on the calibrated tumour log-odds (layer {cam.layer}): red = pixels that pushed "
            "the patch towards tumour; no colour = no such evidence"
        )
    if isinstance(model, HandcraftedClassifier):
        seen = model.prepare_patches(patches)
        contribs = feature_contributions(model, patches)
        images = [
            _side_by_side(_zoom(seen[i]), contribution_bars_image(c))
            for i, c in enumerate(contribs)
        ]
        return (
            images,
            "each feature group's term of the handcrafted model's log-odds (they add up to the logit)",
        )
    seen = model.prepare_patches(patches)
    return [
        _zoom(p) for p in seen
    ], f"no explanation is available for a {model.info.kind} model"


def write_gallery(
    folder: str | os.PathLike[str],
    model: PatchClassifier,
    data: PatchSet,
    indices: Sequence[int] | np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    losses: TopLosses,
    *,
    metrics: PatchMetrics,
    curve: RocCurve | None,
    calibration: CalibrationMetrics,
    title: str,
    subtitle: str = "",
    replace: bool = False,
) -> list[GalleryEntry]:
    """Write the gallery folder (see the module docstring) for an evaluation of ``model`` on
    the patches ``indices`` of ``data`` (``labels``/``probs``: per evaluated patch, in that
    order; ``losses`` indexes them). ``replace``: an existing folder is replaced, else
    ``OverwriteRefused``. Returns the entries in page order."""
    idx = np.asarray(indices, np.int64)
    picks = [
        ("false positive", losses.false_positives),
        ("false negative", losses.false_negatives),
    ]
    entries: list[GalleryEntry] = []
    with atomic_folder(folder, replace=replace) as tmp:
        tmp = Path(tmp)
        (tmp / "confusion_matrix.png").write_bytes(
            _png(confusion_matrix_image(metrics, title, subtitle))
        )
        if curve is not None:
            write_roc_png(tmp / "roc.png", curve, metrics, title, subtitle)
        write_reliability_png(tmp / "calibration.png", calibration, title, subtitle)
        sections = []
        for kind, positions in picks:
            rows: list[GalleryEntry] = []
            if positions:
                patches = data.read(idx[list(positions)])
                images, note = explanation_images(model, patches)
                for rank, (pos, img) in enumerate(
                    zip(positions, images, strict=True), start=1
                ):
                    name = f"{kind.replace(' ', '_')}_{rank:03d}.png"
                    (tmp / name).write_bytes(_png(img))
                    rows.append(
                        GalleryEntry(
                            kind,
                            rank,
                            int(idx[pos]),
                            str(data.ids[int(idx[pos])]),
                            int(labels[pos]),
                            float(probs[pos]),
                            name,
                        )
                    )
            else:
                note = ""
            entries.extend(rows)
            total = losses.n_fp if kind == "false positive" else losses.n_fn
            sections.append(_section_html(kind, rows, total, note))
        page = _page_html(
            model, title, subtitle, metrics, losses, curve is not None, sections
        )
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return entries


def _section_html(kind: str, rows: list[GalleryEntry], total: int, note: str) -> str:
    e = html.escape
    head = (
        f"<h2>{e(kind.capitalize())}s: the {len(rows)} most confident of {total}</h2>"
    )
    if not rows:
        return head + f"<p>No {e(kind)}s at this threshold.</p>"
    body = "".join(
        f"<tr><td>{r.rank}</td><td>{e(r.patch_id)}</td><td>{'tumour' if r.label else 'normal'}</td>"
        f"<td>{r.probability:.3f}</td><td><img src='{e(r.image)}' alt='{e(kind)} {r.rank}'></td></tr>"
        for r in rows
    )
    return (
        head
        + f"<p class='note'>{e(note)}</p><table><tr><th>#</th><th>patch</th><th>label</th>"
        f"<th>P(tumour)</th><th>patch as the model read it, and why</th></tr>{body}</table>"
    )


def _page_html(
    model: PatchClassifier,
    title: str,
    subtitle: str,
    m: PatchMetrics,
    losses: TopLosses,
    has_roc: bool,
    sections: list[str],
) -> str:
    e = html.escape
    info = model.info
    stain = info.extra.get("stain_normalisation")
    seen = (
        f"stain-normalised ({e(str(stain.get('method', 'yes')))}) as the model reads them"
        if isinstance(stain, dict)
        else "as the model reads them (no stain normalisation)"
    )
    plots = "<img src='confusion_matrix.png' alt='confusion matrix'>"
    plots += (
        "<img src='roc.png' alt='ROC curve'>"
        if has_roc
        else "<p>ROC curve: one class only</p>"
    )
    plots += "<img src='calibration.png' alt='reliability diagram'>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Top losses: {e(info.name)}</title><style>"
        "body{font-family:sans-serif;margin:1.5em} .plots img{width:32%;margin-right:1%} "
        "table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px;text-align:left;"
        "vertical-align:middle} .note,.caution{color:#555} .caution{font-weight:bold}</style></head><body>"
        f"<h1>Most confident mistakes: {e(title)}</h1><p>{e(subtitle)}</p>"
        f"<p class='caution'>{e(info.display_name())}: {e(info.caution)}</p>"
        f"<p>Threshold {losses.threshold:g}: {m.fp} false positives and {m.fn} false negatives among "
        f"{m.n} patches. Patches are shown at the model's scale ({info.input.mpp:g} um/px, "
        f"{info.input.patch_px} px, drawn {ZOOM}x), {seen}.</p>"
        f"<div class='plots'>{plots}</div>{''.join(sections)}</body></html>"
    )
