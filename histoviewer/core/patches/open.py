"""``open_patch_set``: one entry point for every patch layout, with layout detection."""

from __future__ import annotations

import os
from pathlib import Path

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.base import LAYOUT_NAMES, PatchSet
from histoviewer.core.patches.class_folders import CLASS_FOLDER_LABELS, class_subfolders, open_class_folders
from histoviewer.core.patches.images import IMAGE_SUFFIXES, list_images, open_image_folder
from histoviewer.core.patches.kaggle import KAGGLE_LABELS_CSV, open_kaggle
from histoviewer.core.patches.pcam import open_pcam
from histoviewer.core.patches.slide_patches import (
    SLIDE_SUFFIXES,
    find_annotations,
    list_slides,
    open_slide_patches,
)

__all__ = ["LAYOUTS", "LAYOUT_CHOICES", "detect_layout", "open_patch_set"]

LAYOUTS = LAYOUT_NAMES  # ("pcam", "kaggle", "class-folders", "images", "slides")
LAYOUT_CHOICES = ("auto", *LAYOUTS)  # for a --layout option

_LOOKED_FOR = (
    "pcam: camelyonpatch_level_2_split_*_x.h5 files (or one *.h5 file); "
    f"kaggle: {KAGGLE_LABELS_CSV} or train/ and test/ folders of .tif; "
    f"class-folders: sub-folders {'/'.join(sorted(CLASS_FOLDER_LABELS))}; "
    f"images: {'/'.join(sorted(IMAGE_SUFFIXES))} files; "
    "slides: slide files (.svs, .ndpi, .mrxs, ... or .tif with a .geojson/.xml beside it)"
)
_PYRAMID_ONLY = SLIDE_SUFFIXES - {".tif", ".tiff"}


def _has_tif(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    with os.scandir(folder) as it:  # stop at the first: Kaggle's train/ holds 220,025 files
        return any(e.name.lower().endswith((".tif", ".tiff")) for e in it)


def _is_slide_file(p: Path) -> bool:
    return p.suffix.lower() in _PYRAMID_ONLY or find_annotations(p) is not None


def detect_layout(path: Path) -> str:
    """The layout of ``path``; ``PatchDataError`` when none or several match."""
    path = Path(path)
    if not path.exists():
        raise PatchDataError(f"{path}: no such file or directory")
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".h5", ".hdf5", ".h5.gz")):
            return "pcam"
        if path.suffix.lower() in SLIDE_SUFFIXES:
            return "slides"
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "images"
        raise PatchDataError(
            f"{path}: not a recognised patch file; looked for {_LOOKED_FOR}. Choose the layout.",
            setting="layout",
        )
    found = []
    if any(path.glob("*.h5")) or any(path.glob("camelyonpatch_*.h5.gz")):
        found.append("pcam")
    if (path / KAGGLE_LABELS_CSV).is_file() or _has_tif(path / "train") or _has_tif(path / "test"):
        found.append("kaggle")
    if class_subfolders(path):
        found.append("class-folders")
    slides = [p for p in list_slides(path) if _is_slide_file(p)]
    if slides:
        found.append("slides")
    if set(list_images(path)) - set(slides):
        found.append("images")
    if not found:
        raise PatchDataError(
            f"{path}: no patch data recognised; looked for {_LOOKED_FOR}. Choose the layout.",
            setting="layout",
        )
    if len(found) > 1:
        raise PatchDataError(
            f"{path}: ambiguous layout, it looks like {' and '.join(found)}; "
            f"choose the layout ({found[0]} or another)",
            setting="layout",
        )
    return found[0]


def _refuse(layout: str, **given: object) -> None:
    for option, value in given.items():
        if value is not None:
            raise PatchDataError(f"the {option.replace('_', ' ')} setting does not apply to the {layout} layout",
                                 setting=option)


def open_patch_set(
    path: str | os.PathLike[str],
    spec: InputSpec,
    *,
    layout: str = "auto",
    patch_mpp: float | None = None,
    split: str | None = None,
    label: int | None = None,
    annotations: str | os.PathLike[str] | None = None,
    seed: int = 0,
    negative_ratio: float | None = None,
    max_patches_per_slide: int | None = None,
) -> PatchSet:
    """Open the patches at ``path`` so that ``read`` returns ``spec``-sized patches at ``spec``'s scale.

    ``patch_mpp`` (um/px of the stored patches) is required for class folders and images,
    and overrides the known scale otherwise (PCam/Kaggle 0.972; a slide's level-0 mpp).
    ``split``: pcam train/valid/test (default train), kaggle train/test. ``label``: one
    label (0/1) for a flat image folder. ``annotations``, ``negative_ratio``,
    ``max_patches_per_slide`` and ``seed``: slides (see ``open_slide_patches``).
    """
    path = Path(path)
    if layout not in LAYOUT_CHOICES:
        raise PatchDataError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUT_CHOICES)}")
    if layout == "auto":
        layout = detect_layout(path)
    slide_opts = dict(
        annotations=annotations, negative_ratio=negative_ratio, max_patches_per_slide=max_patches_per_slide
    )
    if layout != "images":
        _refuse(layout, label=label)
    if layout not in ("pcam", "kaggle"):
        _refuse(layout, split=split)
    if layout != "slides":
        _refuse(layout, **slide_opts)
    if layout == "pcam":
        return open_pcam(path, spec, split=split, patch_mpp=patch_mpp)
    if layout == "kaggle":
        return open_kaggle(path, spec, split=split, patch_mpp=patch_mpp)
    if layout == "class-folders":
        return open_class_folders(path, spec, patch_mpp=patch_mpp)
    if layout == "images":
        return open_image_folder(path, spec, patch_mpp=patch_mpp, label=label)
    return open_slide_patches(
        path,
        spec,
        annotations=None if annotations is None else Path(annotations),
        patch_mpp=patch_mpp,
        seed=seed,
        negative_ratio=negative_ratio,
        max_patches_per_slide=max_patches_per_slide,
    )
