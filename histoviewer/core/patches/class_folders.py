"""A folder with one sub-folder of images per class (``0``/``1``, ``normal``/``tumor``, ...).

Image files do not say their scale, so ``patch_mpp`` (um/px) is required. Files of any
size are resampled to the model's scale. When every file is named ``<slide>_<x>_<y>``
(as CAMELYON patch exports are), patches are grouped by slide so a validation split can
keep slides apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.images import ImageFilesPatchSet, list_images, require_patch_mpp, slide_groups

__all__ = ["CLASS_FOLDER_LABELS", "class_subfolders", "open_class_folders"]

# Sub-folder name (lower case) -> label (1 = tumour).
CLASS_FOLDER_LABELS = {
    "0": 0,
    "normal": 0,
    "negative": 0,
    "1": 1,
    "tumor": 1,
    "tumour": 1,
    "positive": 1,
}


def class_subfolders(directory: Path) -> dict[Path, int]:
    """Recognised class sub-folders of ``directory`` and their labels (maybe empty)."""
    return {
        p: CLASS_FOLDER_LABELS[p.name.lower()]
        for p in sorted(directory.iterdir())
        if p.is_dir() and p.name.lower() in CLASS_FOLDER_LABELS
    }


def open_class_folders(path: Path, spec: InputSpec, *, patch_mpp: float | None) -> ImageFilesPatchSet:
    """Patches from ``path/<class>/*.{png,jpg,tif}``; raises ``PatchDataError`` when unusable."""
    path = Path(path)
    if not path.is_dir():
        raise PatchDataError(
            f"{path}: not a folder; class folders need PATH/normal and PATH/tumor (or 0 and 1)"
        )
    folders = class_subfolders(path)
    if not folders:
        raise PatchDataError(
            f"{path}: no class sub-folders; expected {' / '.join(sorted(CLASS_FOLDER_LABELS))} "
            "(one folder per class, images inside)"
        )
    others = [
        p.name for p in path.iterdir() if p.is_dir() and p not in folders and not p.name.startswith(".")
    ]
    if others:
        raise PatchDataError(
            f"{path}: sub-folder(s) {', '.join(sorted(others))} are not a known class name "
            f"({', '.join(sorted(CLASS_FOLDER_LABELS))}); rename or move them"
        )
    by_label: dict[int, list[str]] = {}
    for folder, label in folders.items():
        by_label.setdefault(label, []).append(folder.name)
    clash = {lab: names for lab, names in by_label.items() if len(names) > 1}
    if clash:
        lab, names = next(iter(clash.items()))
        raise PatchDataError(
            f"{path}: folders {' and '.join(names)} both mean label {lab}; merge them into one"
        )
    mpp = require_patch_mpp(patch_mpp, path)
    files, labels, counts = [], [], []
    for folder, label in folders.items():
        images = list_images(folder)
        if not images:
            raise PatchDataError(
                f"{folder}: no image files (.png, .jpg, .jpeg, .tif, .tiff) in this class folder"
            )
        files += images
        labels += [label] * len(images)
        counts.append(f"{len(images)} {folder.name}")
    return ImageFilesPatchSet(
        files,
        spec,
        source_mpp=mpp,
        layout="class-folders",
        description=f"class folders {path.name} ({', '.join(counts)} at {mpp} um/px)",
        labels=np.array(labels, np.int8),
        groups=slide_groups([f.stem for f in files]),
    )
