"""Read a probability map for ``histoviewer lesions``: any single-channel image or array.

- ``probability.tiff`` from ``analyze``: float32 with the grid geometry in its description
  (or in a ``probability.json`` beside it): the map's frame on the slide is known.
- Other TIFFs, ``.npy`` arrays, PNG / JPEG images: a bare grid of values. Floats are taken as
  probabilities; 8-bit integers are divided by 255 and 16-bit ones by 65535 (an image
  editor's grey levels).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry

__all__ = ["read_probability_map"]


def _geometry_of(path: Path, description: str | None) -> GridGeometry | None:
    for text in (description, None):
        if text is None:
            sidecar = path.with_suffix(".json")
            if not sidecar.is_file():
                continue
            try:
                text = sidecar.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        try:
            meta = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("geometry"), dict):
            try:
                return GridGeometry.from_dict(meta["geometry"])
            except (KeyError, TypeError) as exc:
                raise InferenceError(f"{path}: the map's geometry is incomplete: {exc}") from None
    return None


def read_probability_map(path: str | os.PathLike[str]) -> tuple[np.ndarray, GridGeometry | None]:
    """(float64 map rows x cols, its ``GridGeometry`` or None for a bare map). ``InferenceError``
    naming the file for anything unreadable or not single-channel."""
    path = Path(path)
    suffix = path.suffix.lower()
    description = None
    try:
        if suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tf:
                data = tf.asarray()
                description = tf.pages[0].description or None
        else:
            with Image.open(path) as im:
                if im.mode not in ("L", "I;16", "I", "F"):
                    raise InferenceError(f"{path}: a probability map must be a single-channel image, "
                                         f"this one is {im.mode}")
                data = np.asarray(im)
    except InferenceError:
        raise
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{path}: cannot read the probability map: {exc}") from exc
    data = np.squeeze(np.asarray(data))
    if data.ndim != 2:
        raise InferenceError(f"{path}: a probability map must be single-channel (rows x cols), "
                             f"got shape {data.shape}")
    if data.dtype == np.uint8:
        values = data / 255.0
    elif data.dtype == np.uint16:
        values = data / 65535.0
    elif np.issubdtype(data.dtype, np.floating):
        values = data.astype(np.float64)
    else:
        raise InferenceError(f"{path}: unsupported value type {data.dtype} (use float 0..1, or 8/16-bit grey)")
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() > 1.0 + 1e-6:
        raise InferenceError(f"{path}: values up to {finite.max():g}: a probability map holds 0..1 "
                             "(and -1 / -2 / NaN codes for background / failed / not computed)")
    return values, _geometry_of(path, description)
