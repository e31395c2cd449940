"""Read probability maps: the one reader of ``probability.json`` (``MapMeta``), and any
single-channel image or array as a map (``read_probability_map``, for the lesion finder).

- ``probability.tiff`` from the analysis (written by ``inference.outputs.write_probability_map``):
  float32 with its metadata (grid geometry, model, slide) in its description and in a
  ``probability.json`` beside it: the map's frame on the slide is known.
- Other TIFFs, ``.npy`` arrays, PNG / JPEG images: a bare grid of values. Floats are taken as
  probabilities; 8-bit integers are divided by 255 and 16-bit ones by 65535 (an image
  editor's grey levels).

The reader lives here, below the writer's layer (inference), so that the analysis and the
exports read the metadata one way; every error names the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.safe_input import (
    parse_json,
    read_bytes_limited,
    require_regular_file,
)

__all__ = ["MAX_MAP_CELLS", "DomainMap", "MapMeta", "check_map_values", "parse_map_meta", "read_domain_map", "read_map_meta", "read_probability_map"]


# A probability map has one cell per patch: a whole slide at a 96 px patch is ~10^5 cells,
# CAMELYON16's level-5 masks ~2 x 10^7. Above this a map is refused before it is decoded: the
# lesion finder's working copies cost ~60 bytes a cell (a 20000 x 20000 map took 23.7 GB).
MAX_MAP_CELLS = 25_000_000
# probability.json and a map's TIFF description: kilobytes (the geometry and the model).
_MAX_META_BYTES = 16 * 1024 * 1024


def _check_map_size(path: Path, shape: tuple[int, ...]) -> None:
    """``InferenceError`` naming ``path`` when the declared ``shape`` has more cells than
    ``MAX_MAP_CELLS`` (checked from the header, before any pixel is decoded)."""
    cells = 1
    for side in shape:
        cells *= int(side)
    if cells > MAX_MAP_CELLS:
        raise InferenceError(
            f"{path}: a map of {' x '.join(str(int(s)) for s in shape)} cells is larger than "
            f"{MAX_MAP_CELLS:,} cells (about 5000 x 5000); a probability map holds one cell per "
            "patch, so this is not one (or is far finer than any analysis grid); refused")


@dataclass(frozen=True)
class MapMeta:
    """What ``probability.json`` (and the map TIFF's description) says about its map: the
    grid geometry (the map's frame on the slide), the model that made it and the slide."""

    geometry: GridGeometry
    model: ModelRecord  # "unknown" when the file does not record it
    slide: str | None = None


def parse_map_meta(text: str | None, source: str | os.PathLike[str]) -> MapMeta | None:
    """The metadata in ``text`` (JSON), or None when it holds none (not JSON, or no
    ``geometry`` object: a bare map). ``InferenceError`` naming ``source`` when the geometry
    or model it holds is incomplete or invalid (an unknown slide scale, say)."""
    if text is None:
        return None
    try:  # bounded size, depth and numbers (safe_input)
        doc = parse_json(text, source, "the map's metadata", InferenceError, max_bytes=_MAX_META_BYTES)
    except InferenceError:
        if str(text).lstrip()[:1] == "{":
            raise  # JSON (ours, damaged or hostile): say so, naming the file
        return None  # another program's description: a bare map
    if not isinstance(doc, dict) or not isinstance(doc.get("geometry"), dict):
        return None
    try:
        geometry = GridGeometry.from_dict(doc["geometry"])
    except KeyError as exc:
        raise InferenceError(f"{source}: the map's geometry is incomplete: missing {exc}") from None
    except (TypeError, ValueError, InferenceError) as exc:
        raise InferenceError(f"{source}: the map's geometry is invalid: {exc}") from None
    try:
        model = ModelRecord.from_dict(doc.get("model") or {})
    except (TypeError, ValueError) as exc:
        raise InferenceError(f"{source}: the map's model record is invalid: {exc}") from None
    slide = doc.get("slide")
    return MapMeta(geometry, model, None if slide is None else str(slide))


def read_map_meta(path: str | os.PathLike[str]) -> MapMeta:
    """``probability.json`` read; ``InferenceError`` naming it when it is unreadable or
    holds no map metadata."""
    path = Path(path)
    data = read_bytes_limited(path, "the map's metadata", InferenceError, _MAX_META_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InferenceError(f"{path}: cannot read the map's metadata: not UTF-8 text (byte {exc.start})") from None
    meta = parse_map_meta(text, path)
    if meta is None:
        raise InferenceError(f"{path}: not a probability map's metadata (no 'geometry' object)")
    return meta


def _geometry_of(path: Path, description: str | None) -> GridGeometry | None:
    """The map's geometry from the TIFF description, else from ``probability.json`` beside
    it (when readable), else None (a bare map)."""
    meta = _meta_of(path, description)
    return None if meta is None else meta.geometry


def map_model_of(path: str | os.PathLike[str]) -> ModelRecord | None:
    """The model that made the map at ``path`` (its operating point sets the lesion
    threshold), from the TIFF description or ``probability.json`` beside it; None for a bare
    map or one whose metadata is unreadable."""
    path = Path(path)
    description = None
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            require_regular_file(path, "probability map", InferenceError)
            with tifffile.TiffFile(path) as tf:
                description = tf.pages[0].description or None
        except (OSError, ValueError, InferenceError):
            return None
    try:
        meta = _meta_of(path, description)
    except InferenceError:
        return None
    return None if meta is None else meta.model


def _meta_of(path: Path, description: str | None) -> MapMeta | None:
    meta = parse_map_meta(description, path)
    if meta is None:
        sidecar = path.with_suffix(".json")
        try:  # is_file: a FIFO beside the map is no sidecar (reading it would block)
            text = (read_bytes_limited(sidecar, "the map's metadata", InferenceError, _MAX_META_BYTES)
                    .decode("utf-8") if sidecar.is_file() else None)
        except (InferenceError, UnicodeDecodeError):
            text = None
        meta = parse_map_meta(text, sidecar)
    return meta


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape a ``.npy`` file's header declares (nothing else is read)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, _ = read_header(fh)
    return tuple(shape)


def read_probability_map(path: str | os.PathLike[str]) -> tuple[np.ndarray, GridGeometry | None]:
    """(float64 map rows x cols, its ``GridGeometry`` or None for a bare map). ``InferenceError``
    naming the file for anything unreadable or not single-channel."""
    path = Path(path)
    suffix = path.suffix.lower()
    description = None
    require_regular_file(path, "probability map", InferenceError)  # a FIFO would block for ever
    try:  # each format's declared size is checked before its pixels are decoded
        if suffix == ".npy":
            _check_map_size(path, _npy_shape(path))
            data = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tf:
                _check_map_size(path, tf.series[0].shape if tf.series else tf.pages[0].shape)
                data = tf.asarray()
                description = tf.pages[0].description or None
        else:
            with Image.open(path) as im:
                _check_map_size(path, (im.height, im.width))
                if im.mode not in ("L", "I;16", "I", "F"):
                    raise InferenceError(f"{path}: a probability map must be a single-channel image, "
                                         f"this one is {im.mode}")
                data = np.asarray(im)
    except InferenceError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own limit, met before ours
        raise InferenceError(f"{path}: a map of more than {MAX_MAP_CELLS:,} cells; refused ({exc})") from None
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
    check_map_values(values, path)
    return values, _geometry_of(path, description)


_CODES = (-1.0, -2.0, -3.0)  # background, failed, screened negative (``inference.grid.ENCODED``); NaN: not computed


def check_map_values(values: np.ndarray, source: str | os.PathLike[str]) -> None:
    """``InferenceError`` naming ``source`` unless ``values`` is a probability map a result
    can rest on: at least one cell, every value a probability 0..1 or one of the codes
    (-1 background, -2 failed, NaN not computed), and at least one cell computed or known
    background. +/-Inf and other negatives are refused (they are neither probabilities nor
    codes: a range check on the finite values alone would let them vanish), and so is a
    0x0 or all-NaN map (nothing was computed: no label, negative least of all)."""
    if values.size == 0:
        raise InferenceError(f"{source}: the probability map is empty ({values.shape[0]}x{values.shape[1]} cells)")
    if np.isinf(values).any():
        n = int(np.count_nonzero(np.isinf(values)))
        raise InferenceError(f"{source}: {n} map value(s) are infinite; a probability map holds 0..1 "
                             "(and -1 / -2 / NaN codes for background / failed / not computed)")
    finite = values[np.isfinite(values)]
    if not finite.size:
        raise InferenceError(f"{source}: every map value is NaN (not computed): there is nothing to find lesions in")
    if finite.max() > 1.0 + 1e-6:
        raise InferenceError(f"{source}: values up to {finite.max():g}: a probability map holds 0..1 "
                             "(and -1 / -2 / NaN codes for background / failed / not computed)")
    negative = finite[finite < 0]
    if negative.size and not np.isin(negative, _CODES).all():
        bad = negative[~np.isin(negative, _CODES)]
        raise InferenceError(f"{source}: value {bad[0]:g} is neither a probability 0..1 nor a code "
                             "(-1 background, -2 failed, NaN not computed)")


@dataclass(frozen=True)
class DomainMap:
    """``domain.tiff`` read back: per-cell domain distance (float64 rows x cols; NaN / -1 /
    -2 as in the probability map), its geometry and the model's per-patch threshold."""

    values: np.ndarray
    geometry: GridGeometry
    patch_threshold: float


def read_domain_map(path: str | os.PathLike[str]) -> DomainMap:
    """``domain.tiff`` (or the analysis folder holding it); ``InferenceError`` naming the
    file when it is unreadable or lacks its metadata."""
    path = Path(path)
    if path.is_dir():
        path = path / "domain.tiff"
    require_regular_file(path, "domain map", InferenceError)
    try:
        with tifffile.TiffFile(path) as tf:
            _check_map_size(path, tf.series[0].shape if tf.series else tf.pages[0].shape)
            data = np.asarray(tf.asarray(), np.float64)
            description = tf.pages[0].description or None
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{path}: cannot read the domain map: {exc}") from exc
    meta = parse_map_meta(description, path)
    try:
        doc = parse_json(description or "{}", path, "the domain map's description", InferenceError)
        threshold = float(doc["patch_threshold"])
    except (KeyError, TypeError, ValueError, InferenceError) as exc:
        raise InferenceError(f"{path}: the domain map does not state its patch threshold") from exc
    if meta is None or data.ndim != 2 or data.shape != meta.geometry.shape:
        raise InferenceError(f"{path}: not a domain map (no geometry, or shape {data.shape} does not fit it)")
    return DomainMap(data, meta.geometry, threshold)
