"""PatchCamelyon HDF5 files, streamed (never loaded whole).

Layout (Veeling et al. 2018): ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``;
``x`` files hold dataset ``"x"`` of shape (N, 96, 96, 3) uint8, ``y`` files dataset ``"y"``
of shape (N, 1, 1, 1) (1 = tumour in the central 32 x 32 px). Patches are 96 px at
CAMELYON16 level 2, about 0.972 um/px.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import PCAM_MPP_UM, InputSpec
from histoviewer.core.patches.base import IndexIds, PatchSet
from histoviewer.core.patches.resample import to_model_scale
from histoviewer.core.safe_input import require_regular_file

__all__ = ["PCAM_SPLITS", "PCamPatchSet", "find_pcam_files", "open_pcam", "read_rows"]

PCAM_SPLITS = ("train", "valid", "test")
_NAME = "camelyonpatch_level_2_split_{split}_{xy}.h5"
# Requested rows closer than this are read as one slice (gzip chunks are read whole anyway).
_GAP_ROWS = 32


def read_rows(dataset, indices: np.ndarray) -> np.ndarray:
    """Rows ``indices`` (any order, repeats allowed) of an HDF5-like dataset.

    Reads only slices around the requested rows: the sorted unique rows are split into
    runs whose gaps are below ``_GAP_ROWS`` and each run is one slice read.
    """
    uniq, inverse = np.unique(indices, return_inverse=True)
    parts = []
    breaks = np.flatnonzero(np.diff(uniq) > _GAP_ROWS) + 1
    for run in np.split(uniq, breaks):
        start, stop = int(run[0]), int(run[-1]) + 1
        block = np.asarray(dataset[start:stop])
        parts.append(block[run - start])
    rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return rows[inverse.reshape(-1)]


def find_pcam_files(directory: Path, split: str | None) -> tuple[Path, Path | None, str]:
    """``(x_path, y_path or None, split)`` for a PCam directory; default split ``train``."""
    present = [s for s in PCAM_SPLITS if (directory / _NAME.format(split=s, xy="x")).is_file()]
    gz = sorted(p.name for p in directory.glob("camelyonpatch_*.h5.gz"))
    if split is not None and split not in PCAM_SPLITS:
        raise PatchDataError(
            f"{directory}: unknown PatchCamelyon split {split!r}; use one of {', '.join(PCAM_SPLITS)}"
        )
    if not present:
        if gz:
            raise PatchDataError(
                f"{directory}: the PatchCamelyon files are still gzip-compressed ({', '.join(gz)}); "
                f"decompress them first, e.g. `gunzip {directory}/*.h5.gz`"
            )
        raise PatchDataError(f"{directory}: no PatchCamelyon files ({_NAME.format(split='SPLIT', xy='x')})")
    chosen = split or ("train" if "train" in present else present[0])
    if chosen not in present:
        hint = (
            " (it is still gzip-compressed: gunzip it)" if any(f"_{chosen}_x.h5.gz" in g for g in gz) else ""
        )
        raise PatchDataError(
            f"{directory}: no {_NAME.format(split=chosen, xy='x')}{hint}; splits present: {', '.join(present)}"
        )
    y = directory / _NAME.format(split=chosen, xy="y")
    return directory / _NAME.format(split=chosen, xy="x"), (y if y.is_file() else None), chosen


class PCamPatchSet(PatchSet):
    """One PatchCamelyon ``_x.h5`` file (labels from ``_y.h5`` when given), read by rows."""

    layout = "pcam"

    def __init__(
        self,
        x_path: Path,
        y_path: Path | None,
        spec: InputSpec,
        *,
        source_mpp: float = PCAM_MPP_UM,
        name: str = "",
    ) -> None:
        super().__init__(spec)
        self.source_mpp = float(source_mpp)
        require_regular_file(x_path, "PatchCamelyon x file", PatchDataError)  # a FIFO would block
        try:
            self._file = h5py.File(x_path, "r")
        except OSError as exc:
            raise PatchDataError(
                f"{x_path}: cannot open as HDF5 ({exc}); is the file complete and not gzip-compressed?"
            ) from exc
        try:
            if "x" not in self._file:
                raise PatchDataError(
                    f"{x_path}: no dataset 'x' (found: {', '.join(self._file.keys()) or 'nothing'}); "
                    "not a PatchCamelyon x file"
                )
            self._x = self._file["x"]
            shape = self._x.shape
            if len(shape) != 4 or shape[3] not in (3, 4) or self._x.dtype != np.uint8:
                raise PatchDataError(
                    f"{x_path}: dataset 'x' is {self._x.dtype} {shape}, expected uint8 (N, h, w, 3)"
                )
            self._n = int(shape[0])
            self.labels = self._read_labels(y_path, h5py) if y_path is not None else None
        except BaseException:
            self._file.close()
            raise
        self.ids = IndexIds(f"{name or x_path.stem}:", self._n)
        self.groups = np.zeros(self._n, np.int32)
        labelled = "labelled" if self.labels is not None else "unlabelled"
        self.description = (
            f"PatchCamelyon {x_path.name} ({self._n} patches {shape[1]}x{shape[2]} px "
            f"at {self.source_mpp} um/px, {labelled})"
        )
        self.x_path, self.y_path = x_path, y_path

    def _read_labels(self, y_path: Path, h5py) -> np.ndarray:
        require_regular_file(y_path, "PatchCamelyon y file", PatchDataError)
        try:
            with h5py.File(y_path, "r") as f:
                if "y" not in f:
                    raise PatchDataError(f"{y_path}: no dataset 'y'; not a PatchCamelyon y file")
                y = np.asarray(f["y"][:]).reshape(-1)  # N bytes: small enough to keep
        except OSError as exc:
            raise PatchDataError(f"{y_path}: cannot open as HDF5 ({exc})") from exc
        if y.size != self._n:
            raise PatchDataError(
                f"{y_path}: {y.size} labels for {self._n} patches in the x file; use the matching pair of files"
            )
        if y.size and not np.isin(y, (0, 1)).all():
            raise PatchDataError(
                f"{y_path}: labels must be 0 or 1, found {sorted(set(np.unique(y).tolist()) - {0, 1})[:5]}"
            )
        return y.astype(np.int8)

    def __len__(self) -> int:
        return self._n

    def _read(self, indices: np.ndarray) -> np.ndarray:
        return to_model_scale(read_rows(self._x, indices), self.source_mpp, self.spec)

    def close(self) -> None:
        if self._file:
            self._file.close()


def open_pcam(
    path: Path, spec: InputSpec, *, split: str | None = None, patch_mpp: float | None = None
) -> PCamPatchSet:
    """Open a PCam directory (``split`` default ``train``) or one ``*_x.h5`` file.

    For a file, ``NAME_y.h5`` beside ``NAME_x.h5`` supplies labels when present; otherwise
    the set is unlabelled. ``patch_mpp`` overrides the known 0.972 um/px.
    """
    path = Path(path)
    mpp = PCAM_MPP_UM if patch_mpp is None else float(patch_mpp)
    if path.is_dir():
        x, y, chosen = find_pcam_files(path, split)
        return PCamPatchSet(x, y, spec, source_mpp=mpp, name=chosen)
    if path.name.endswith(".h5.gz"):
        raise PatchDataError(
            f"{path}: gzip-compressed HDF5; decompress it first (`gunzip {path}`) and pass the .h5 file"
        )
    if not path.is_file():
        raise PatchDataError(f"{path}: no such file or directory")
    if split is not None:
        raise PatchDataError(f"{path}: a split (train/valid/test) applies to a PatchCamelyon directory, "
                             "not a single file", setting="split")
    y = path.with_name(re.sub(r"_x\.h5$", "_y.h5", path.name)) if path.name.endswith("_x.h5") else None
    m = re.search(r"_split_(\w+?)_x\.h5$", path.name)
    return PCamPatchSet(
        path,
        y if y is not None and y.is_file() else None,
        spec,
        source_mpp=mpp,
        name=m.group(1) if m else path.stem,
    )
