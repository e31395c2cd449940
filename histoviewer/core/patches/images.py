"""Patches stored as one image file each (PNG, JPEG, TIFF), any size, read on demand.

``ImageFilesPatchSet`` is shared by the Kaggle, class-folder and flat-folder layouts.
Image files rarely state their scale, so the caller supplies ``source_mpp`` (um/px);
images of different sizes are resampled separately and all come back at the model's
scale and size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.base import PatchSet
from histoviewer.core.patches.resample import to_model_scale
from histoviewer.core.safe_input import require_regular_file

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFilesPatchSet",
    "list_images",
    "load_image",
    "open_image_folder",
    "require_patch_mpp",
    "slide_groups",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
# CAMELYON-style patch names "<slide>_<x>_<y>" (level-0 position) reveal the source slide.
_SLIDE_XY = re.compile(r"^(?P<slide>.+)_\d+_\d+$")


def list_images(directory: Path) -> list[Path]:
    """Image files directly in ``directory`` (no recursion, hidden files skipped), sorted."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_image(path: Path) -> np.ndarray:
    """uint8 ``(h, w, 3)`` RGB, or ``(h, w, 4)`` RGBA when the file has transparency."""
    require_regular_file(path, "image", PatchDataError)  # a FIFO would block for ever
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise PatchDataError(f"{path}: cannot read the image ({exc}); remove or replace the file") from exc


def require_patch_mpp(patch_mpp: float | None, where: Path) -> float:
    """The image scale in um/px, or a ``PatchDataError`` asking for the patch scale."""
    if patch_mpp is None:
        raise PatchDataError(
            f"{where}: image files do not say their scale; give the patches' scale in micrometres "
            "per pixel (e.g. 0.243 for 40x, 0.486 for 20x, 0.972 for 10x / PatchCamelyon)",
            setting="patch_mpp",
        )
    mpp = float(patch_mpp)
    if not (0.05 <= mpp <= 64):
        raise PatchDataError(f"{where}: the patch scale {patch_mpp} um/px is outside 0.05..64",
                             setting="patch_mpp")
    return mpp


def slide_groups(stems: Sequence[str]) -> np.ndarray:
    """Group index per file: the slide name when every stem is ``<slide>_<x>_<y>``, else 0."""
    matches = [_SLIDE_XY.match(s) for s in stems]
    if not stems or not all(matches):
        return np.zeros(len(stems), np.int32)
    names = [m.group("slide") for m in matches]  # type: ignore[union-attr]
    order = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.array([order[n] for n in names], np.int32)


class ImageFilesPatchSet(PatchSet):
    """Patches from a list of image files, all at ``source_mpp`` um/px."""

    def __init__(
        self,
        files: Sequence[Path],
        spec: InputSpec,
        *,
        source_mpp: float,
        layout: str,
        description: str,
        labels: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
        groups: np.ndarray | None = None,
    ) -> None:
        super().__init__(spec)
        self.files = list(files)
        self.layout = layout
        self.description = description
        self.source_mpp = float(source_mpp)
        self.labels = None if labels is None else np.asarray(labels, np.int8)
        self.ids = list(ids) if ids is not None else [f.stem for f in self.files]
        self.groups = np.zeros(len(self.files), np.int32) if groups is None else np.asarray(groups, np.int32)

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        p = self.spec.patch_px
        out = np.empty((indices.size, p, p, 3), np.uint8)
        images = [load_image(self.files[i]) for i in indices]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, img in enumerate(images):
            by_shape.setdefault(img.shape, []).append(k)
        for ks in by_shape.values():  # one batched resample per distinct size
            out[ks] = to_model_scale(np.stack([images[k] for k in ks]), self.source_mpp, self.spec)
        return out


def open_image_folder(
    path: Path, spec: InputSpec, *, patch_mpp: float | None, label: int | None = None
) -> ImageFilesPatchSet:
    """A flat folder of images (or one image file): unlabelled, or all given ``label`` (0/1)."""
    path = Path(path)
    files = [path] if path.is_file() else list_images(path) if path.is_dir() else []
    if not path.exists():
        raise PatchDataError(f"{path}: no such file or directory")
    if not files:
        raise PatchDataError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    mpp = require_patch_mpp(patch_mpp, path)
    if label is not None and label not in (0, 1):
        raise PatchDataError(f"{path}: the folder's label must be 0 (normal) or 1 (tumour), got {label!r}",
                             setting="label")
    labels = None if label is None else np.full(len(files), label, np.int8)
    stems = [f.stem for f in files]
    kind = "unlabelled" if label is None else f"all labelled {label}"
    return ImageFilesPatchSet(
        files,
        spec,
        source_mpp=mpp,
        layout="images",
        description=f"image folder {path.name} ({len(files)} patches at {mpp} um/px, {kind})",
        labels=labels,
        groups=slide_groups(stems),
    )
