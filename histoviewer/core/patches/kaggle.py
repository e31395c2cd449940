"""The Kaggle "Histopathologic Cancer Detection" layout (PatchCamelyon re-packaged).

``DIR/train/<id>.tif`` with ``DIR/train_labels.csv`` (``id,label``; 1 = tumour in the
central 32 x 32 px) and ``DIR/test/<id>.tif`` without labels. Patches are 96 x 96 px at
about 0.972 um/px (CAMELYON16 level 2).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import PCAM_MPP_UM, InputSpec
from histoviewer.core.patches.images import ImageFilesPatchSet
from histoviewer.core.safe_input import require_regular_file

__all__ = ["KAGGLE_LABELS_CSV", "KAGGLE_SPLITS", "open_kaggle", "read_kaggle_labels"]

KAGGLE_LABELS_CSV = "train_labels.csv"
KAGGLE_SPLITS = ("train", "test")
_SHOW = 5  # ids named in an error message


def read_kaggle_labels(csv_path: Path) -> dict[str, int]:
    """``{id: label}`` from ``train_labels.csv``; errors name the file and line."""
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    require_regular_file(csv_path, "label file", PatchDataError)  # a FIFO would block for ever
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None or [h.strip().lower() for h in header] != ["id", "label"]:
                raise PatchDataError(
                    f"{csv_path} line 1: expected the header 'id,label', got {','.join(header or [])!r}"
                )
            for row in rows:
                line = rows.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 2 or row[1].strip() not in ("0", "1") or not row[0].strip():
                    raise PatchDataError(
                        f"{csv_path} line {line}: expected 'id,label' with label 0 or 1, got {','.join(row)!r}"
                    )
                pid = row[0].strip()
                if pid in labels:
                    raise PatchDataError(
                        f"{csv_path} line {line}: id {pid} is listed twice (first on line {first_line[pid]})"
                    )
                labels[pid] = int(row[1])
                first_line[pid] = line
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PatchDataError(f"{csv_path}: cannot read the label file ({exc})") from exc
    if not labels:
        raise PatchDataError(f"{csv_path}: no labels after the header")
    return labels


def _tif_ids(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in folder.iterdir()
        if p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith(".")
    }


def open_kaggle(
    path: Path, spec: InputSpec, *, split: str | None = None, patch_mpp: float | None = None
) -> ImageFilesPatchSet:
    """Open the ``train`` split (labelled, default) or the unlabelled ``test`` split."""
    path = Path(path)
    split = split or "train"
    if split not in KAGGLE_SPLITS:
        raise PatchDataError(f"{path}: unknown Kaggle split {split!r}; use train or test")
    folder = path / split
    if not folder.is_dir():
        raise PatchDataError(
            f"{path}: no {split}/ folder of .tif patches (Kaggle layout: train/, test/, {KAGGLE_LABELS_CSV})"
        )
    files = _tif_ids(folder)
    if not files:
        raise PatchDataError(f"{folder}: no .tif patches")
    mpp = PCAM_MPP_UM if patch_mpp is None else float(patch_mpp)
    if split == "test":
        ids = sorted(files)
        labels = None
    else:
        csv_path = path / KAGGLE_LABELS_CSV
        if not csv_path.is_file():
            raise PatchDataError(
                f"{path}: no {KAGGLE_LABELS_CSV} beside train/; the training split needs its labels"
            )
        table = read_kaggle_labels(csv_path)
        missing = [i for i in table if i not in files]
        if missing:
            raise PatchDataError(
                f"{csv_path}: {len(missing)} id(s) have no image in {folder} (e.g. {', '.join(missing[:_SHOW])}); "
                "the download may be incomplete"
            )
        extra = sorted(set(files) - set(table))
        if extra:
            raise PatchDataError(
                f"{folder}: {len(extra)} file(s) have no label in {csv_path.name} (e.g. "
                f"{', '.join(files[i].name for i in extra[:_SHOW])}); remove them or add their labels"
            )
        ids = list(table)
        labels = np.fromiter((table[i] for i in ids), np.int8, len(ids))
    kind = "labelled" if labels is not None else "unlabelled"
    return ImageFilesPatchSet(
        [files[i] for i in ids],
        spec,
        source_mpp=mpp,
        layout="kaggle",
        description=f"Kaggle histopathologic-cancer-detection {split} ({len(ids)} patches at {mpp} um/px, {kind})",
        labels=labels,
        ids=ids,
    )
