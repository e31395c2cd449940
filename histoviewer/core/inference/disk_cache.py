"""Finished and partial prediction grids on disk, so a reopened slide shows its heatmap at once.

Key: a cheap slide fingerprint (file size, mtime, SHA-256 of the first MiB, level-0 size),
the model's ``content_hash`` and the grid geometry, hashed together. A changed slide,
model or stride therefore never sees a stale grid. Files are ``.npz`` written atomically;
they hold only plain arrays and a JSON string (loaded with ``allow_pickle=False``). A
corrupt or mismatching file is ignored with a warning, never an exception.

Location: ``<user data dir>/heatmap-cache/<key>.npz``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.paths import user_data_dir
from histoviewer.core.safe_input import parse_json
from histoviewer.core.strict_json import strict_dumps

log = logging.getLogger(__name__)

__all__ = ["CACHE_VERSION", "HeatmapCache", "default_cache_dir", "slide_fingerprint"]

# Bump whenever the same model on the same slide and grid would give other cell values: the
# key knows the model, the slide and the grid, not the code between them. 2: blank patches
# (damaged tiles) are failed, not classified, and a batch is prepared (stain-normalised) once
# for the network and the tissue descriptor; a map cached before either was stale and could
# show a damaged tile as classified tissue (and gave the viewer other sizes than analyze).
CACHE_VERSION = 2
_HEAD_BYTES = 1 << 20


def default_cache_dir() -> Path:
    return user_data_dir() / "heatmap-cache"


def slide_fingerprint(path: str | os.PathLike[str], l0_size: tuple[int, int]) -> str:
    """Hex SHA-256 of size, mtime, the first MiB and the level-0 size of a slide file.

    Cheap (one MiB read) and changes whenever the file is rewritten. MRXS and DICOM keep
    pixels in other files; a rescan rewrites the index file too, so its stamp changes.
    """
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    h.update(f"{st.st_size}:{st.st_mtime_ns}:{l0_size[0]}x{l0_size[1]}:".encode())
    with path.open("rb") as fh:
        h.update(fh.read(_HEAD_BYTES))
    return h.hexdigest()


@dataclass(frozen=True)
class HeatmapCache:
    """The cache entry of one (slide, model, geometry); ``folder`` defaults to the user's."""

    slide_fingerprint: str
    model_hash: str
    geometry: GridGeometry
    folder: Path | None = None

    @classmethod
    def for_slide(cls, slide_path: str | os.PathLike[str], model_hash: str, geometry: GridGeometry,
                  folder: Path | None = None) -> HeatmapCache:
        fp = slide_fingerprint(slide_path, (geometry.l0_width, geometry.l0_height))
        return cls(fp, model_hash, geometry, folder)

    @property
    def key(self) -> str:
        text = strict_dumps({"v": CACHE_VERSION, "slide": self.slide_fingerprint, "model": self.model_hash,
                           "geometry": self.geometry.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    @property
    def path(self) -> Path:
        return (self.folder or default_cache_dir()) / f"{self.key}.npz"

    def save(self, grid: PredictionGrid) -> Path | None:
        """Write the grid (atomically); returns the path, or None when it could not be written."""
        values, state = grid.snapshot()
        meta = strict_dumps({"v": CACHE_VERSION, "key": self.key, "geometry": self.geometry.to_dict()})
        buf = io.BytesIO()
        # ``domain``: the per-patch domain distances (NaN where none), beside the probabilities.
        np.savez_compressed(buf, values=values, state=state, domain=grid.domain_snapshot(),
                            meta=np.frombuffer(meta.encode(), np.uint8))
        try:
            atomic_write_bytes(self.path, buf.getvalue())
        except OSError as exc:
            log.warning("%s: could not write the heatmap cache: %s", self.path, exc)
            return None
        return self.path

    def load(self, grid: PredictionGrid) -> bool:
        """Restore ``grid`` from the cache; False (with a warning for a bad file) when absent,
        corrupt or for another key. BACKGROUND cells of ``grid`` stay background; FAILED
        cells are retried (NOT_COMPUTED): a failure may have been transient."""
        path = self.path
        if not path.is_file():
            return False
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = parse_json(bytes(data["meta"]), path, "cache entry", InferenceError)
                values = np.asarray(data["values"], np.float32)
                state = np.asarray(data["state"], np.uint8)
                # absent in entries written before domain distances were kept: none known
                domain = np.asarray(data["domain"], np.float32) if "domain" in data.files else None
            if not isinstance(meta, dict) or meta.get("v") != CACHE_VERSION or meta.get("key") != self.key:
                raise ValueError("the entry belongs to another slide, model or grid")
            if values.shape != self.geometry.shape or state.shape != self.geometry.shape:
                raise ValueError(f"grid shape {values.shape} is not {self.geometry.shape}")
            if state.max(initial=0) > max(CellState) or not np.all(np.isfinite(values)):
                raise ValueError("invalid cell states or values")
            if domain is not None and domain.shape != values.shape:
                raise ValueError(f"domain grid shape {domain.shape} is not {values.shape}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError,
                InferenceError) as exc:
            log.warning("%s: ignoring a damaged heatmap cache file: %s", path, exc)
            return False
        background = ~grid.tissue
        state = state.copy()
        state[state == CellState.FAILED] = CellState.NOT_COMPUTED
        # a screen's verdict is not the cached model's result: screened again after a reopen
        state[state == CellState.SCREENED_NEGATIVE] = CellState.NOT_COMPUTED
        state[background] = CellState.BACKGROUND
        grid.restore(values, state, domain)
        return True
