"""The pixel size a user states for a slide whose file has none ("user-set" scale).

Where it is kept: ``<user data dir>/pixel-sizes.json``, one entry per slide keyed by the
slide's *content identity*: SHA-256 of the file size, its first MiB and its level-0 size.
Why not the path (or path + mtime), as the annotation autosave does: a scale is a fact
about the scan, not about where the file lies; keyed by content it follows the slide when
it is moved, renamed or copied to another disk (mtime changes on copy), and it can never
attach to a different slide later saved under the same name. Rescanning or rewriting the
slide changes its header bytes and so drops the stated scale, which is right: the new scan
must be measured again. One MiB is cheap even for a 3 GB slide on a network share.

Every result computed from a user-set scale carries ``mpp_source: "user"``
(``SlideInfo.mpp_source``, ``GridGeometry.slide_mpp_source``) so a reader of the output
knows the sizes rest on the user's word, not the scanner's.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.errors import HistoViewerError, SlideOpenError
from histoviewer.core.safe_input import read_json
from histoviewer.core.paths import user_data_dir
from histoviewer.core.slide.reader import SlideReader
from histoviewer.core.strict_json import strict_dumps
from histoviewer.core.units import mpp_problem

log = logging.getLogger(__name__)

__all__ = ["UserScaleError", "UserScaleStore", "apply_user_mpp", "slide_identity"]

_HEAD_BYTES = 1 << 20
_STORE_NAME = "pixel-sizes.json"
_MAX_ENTRIES = (
    10_000  # a settings file, not a database: the oldest go first beyond this
)


class UserScaleError(HistoViewerError, ValueError):
    """A user-stated pixel size cannot be used (implausible, or the slide has its own)."""


def slide_identity(path: str | os.PathLike[str], l0_size: tuple[int, int]) -> str:
    """Hex SHA-256 of the file's size, first MiB and level-0 size (see the module docstring)."""
    path = Path(path)
    h = hashlib.sha256()
    with path.open("rb") as fh:
        h.update(f"{path.stat().st_size}:{int(l0_size[0])}x{int(l0_size[1])}:".encode())
        h.update(fh.read(_HEAD_BYTES))
    return h.hexdigest()


def apply_user_mpp(reader: SlideReader, mpp: float, *, force: bool = False) -> None:
    """Give ``reader`` the pixel size ``mpp`` (um per level-0 px) the user stated.

    ``UserScaleError`` when ``mpp`` is not plausible (``units.mpp_problem``), or when the
    slide states its own scale and ``force`` is False: a scanner's calibrated scale is not
    silently replaced by a typed one.
    """
    info = reader.info
    if (problem := mpp_problem(mpp)) is not None:
        raise UserScaleError(f"{info.path}: {problem}", setting="mpp")
    if info.mpp is not None and info.mpp_source != "user" and not force:
        raise UserScaleError(
            f"{info.path}: the slide states its own pixel size ({info.mpp:g} um/px); "
            f"refusing to replace it with {float(mpp):g} um/px unless forced",
            setting="force_mpp",
        )
    reader.info = info.with_user_mpp(float(mpp))


class UserScaleStore:
    """The user-set pixel sizes (``<user data dir>/pixel-sizes.json`` by default)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else user_data_dir() / _STORE_NAME

    def _read(self) -> dict[str, dict]:
        if not os.path.lexists(self.path):
            return {}
        try:
            doc = read_json(self.path, "the user-set pixel sizes", HistoViewerError)
        except (HistoViewerError, OSError) as exc:
            log.warning(
                "%s: unreadable, user-set pixel sizes ignored: %s", self.path, exc
            )
            return {}
        entries = doc.get("slides") if isinstance(doc, dict) else None
        return entries if isinstance(entries, dict) else {}

    def get(
        self, path: str | os.PathLike[str], l0_size: tuple[int, int]
    ) -> float | None:
        """The pixel size stated for this slide, or None (none stated, or no longer plausible)."""
        try:
            key = slide_identity(path, l0_size)
        except OSError:
            return None
        entry = self._read().get(key)
        value = entry.get("mpp") if isinstance(entry, dict) else None
        return None if mpp_problem(value) is not None else float(value)

    def set(
        self, path: str | os.PathLike[str], l0_size: tuple[int, int], mpp: float | None
    ) -> None:
        """Remember ``mpp`` for this slide (None forgets it); ``UserScaleError`` when implausible,
        ``SlideOpenError`` naming the file when it cannot be read or the store not written."""
        if mpp is not None and (problem := mpp_problem(mpp)) is not None:
            raise UserScaleError(f"{path}: {problem}", setting="mpp")
        try:
            key = slide_identity(path, l0_size)
        except OSError as exc:
            raise SlideOpenError(
                f"{path}: cannot read the slide to remember its pixel size: {exc}"
            ) from exc
        entries = self._read()
        entries.pop(key, None)
        if mpp is not None:
            entries[key] = {"mpp": float(mpp), "name": Path(path).name}
        while len(entries) > _MAX_ENTRIES:
            entries.pop(next(iter(entries)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.path,
                strict_dumps(
                    {"version": 1, "slides": entries}, what=str(self.path), indent=1
                ),
            )
        except OSError as exc:
            raise SlideOpenError(
                f"{self.path}: cannot save the pixel size: {exc}"
            ) from exc
