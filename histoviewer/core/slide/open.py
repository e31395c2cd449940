"""``open_slide``: choose a backend and turn every failure into a clear ``SlideOpenError``."""

from __future__ import annotations

import os
from pathlib import Path

from histoviewer.core.errors import SlideOpenError
from histoviewer.core.safe_input import require_regular_file
from histoviewer.core.slide.image_backend import ImageReader
from histoviewer.core.slide.openslide_backend import OpenSlideReader
from histoviewer.core.slide.reader import SlideReader
from histoviewer.core.slide.user_scale import apply_user_mpp

# Formats the flat-image fallback handles when OpenSlide declines a file.
FLAT_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


def _check_file(path: Path) -> None:
    """Fail early with a message that says what is wrong with the path itself."""
    if not path.exists():
        raise SlideOpenError(f"{path}: no such file")
    if path.is_dir():
        # MRXS and DICOM slides are chosen by their index file, not the folder.
        raise SlideOpenError(f"{path}: is a directory, not a slide file (choose the slide file inside it)")
    require_regular_file(path, "slide", SlideOpenError)  # a FIFO would block the readers for ever
    if not os.access(path, os.R_OK):
        raise SlideOpenError(f"{path}: permission denied (the file is not readable by this user)")
    if path.stat().st_size == 0:
        raise SlideOpenError(f"{path}: the file is empty (0 bytes); it may still be copying or be truncated")


def open_slide(path: str | os.PathLike[str], *, user_mpp: float | None = None,
               force_mpp: bool = False) -> SlideReader:
    """Open a slide with OpenSlide, falling back to the flat-image reader.

    Raises ``SlideOpenError`` naming the file and the cause for anything that cannot be
    opened (missing, directory, unreadable, empty, unsupported, corrupt). ``user_mpp``: the
    pixel size the user states (um/px), used when the slide has none, or instead of its own
    with ``force_mpp`` (``user_scale.apply_user_mpp``; ``UserScaleError`` otherwise); the
    slide's info then says ``mpp_source == "user"``.
    """
    reader = _open(Path(path))
    if user_mpp is not None:
        try:
            apply_user_mpp(reader, user_mpp, force=force_mpp)
        except BaseException:
            reader.close()
            raise
    return reader


def _open(path: Path) -> SlideReader:
    _check_file(path)
    try:
        return OpenSlideReader(path)
    except SlideOpenError as openslide_error:
        if path.suffix.lower() not in FLAT_IMAGE_SUFFIXES:
            raise
        try:
            return ImageReader(path)
        except SlideOpenError as image_error:
            # Both readers refused: the OpenSlide reason is usually the informative one
            # (for example "Unsupported TIFF compression: 52479").
            raise SlideOpenError(f"{openslide_error}; as a plain image: {image_error}") from image_error
    except PermissionError as exc:
        raise SlideOpenError(f"{path}: permission denied: {exc}") from exc
