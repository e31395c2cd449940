"""Autosave and recovery of a slide's annotations.

The annotations of ``slide.svs`` are kept in ``slide.svs.annotations.geojson`` beside it
(QuPath-readable GeoJSON with our class table and the save time), or, when that folder
cannot be written (a read-only share, a DVD), under the user data folder in
``annotations/<slide name>.<hash of its absolute path>.annotations.geojson`` so that the
same slide finds them again. Writes are atomic: a kill during a save leaves the previous
file whole.

``Autosaver`` saves a few seconds after the last edit (a debounce: a burst of edits is one
write) and at most ``max_delay_s`` after the first unsaved one, so a long drag cannot
postpone saving for ever. It has no thread and no timer: the GUI calls ``tick()`` from a
timer (every half second is plenty) and ``flush()`` when the slide closes; the clock is
injectable for tests.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from histoviewer.core.annotations.document import AnnotationDocument, DocumentChange
from histoviewer.core.annotations.geojson_io import geojson_bytes, parse_geojson
from histoviewer.core.annotations.model import AnnotationSet
from histoviewer.core.annotations.safe_read import read_limited
from histoviewer.core.annotations.sanitize import Replacements
from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import AnnotationFormatError, AnnotationStoreError
from histoviewer.core.paths import user_data_dir

__all__ = [
    "AUTOSAVE_SUFFIX",
    "Autosaver",
    "Recovery",
    "autosave_candidates",
    "load_autosave",
    "open_document",
    "save_document",
]

AUTOSAVE_SUFFIX = ".annotations.geojson"
DEFAULT_DELAY_S = 3.0
DEFAULT_MAX_DELAY_S = 30.0


def _slide(slide_path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(slide_path))


def autosave_candidates(slide_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(beside the slide, in the user data folder)`` for ``slide_path``."""
    slide = _slide(slide_path)
    key = hashlib.sha256(str(slide).encode("utf-8")).hexdigest()[:16]
    return (slide.with_name(slide.name + AUTOSAVE_SUFFIX),
            user_data_dir() / "annotations" / f"{slide.name}.{key}{AUTOSAVE_SUFFIX}")


def save_document(doc: AnnotationDocument, slide_path: str | os.PathLike[str],
                  now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                  replacements: Replacements | None = None) -> Path:
    """Write ``doc`` beside the slide, else in the user data folder; returns where.

    The other location's older copy is removed, so that recovery never finds a stale one.
    A value no file can hold (NaN, a lone surrogate in a name) never stops the save: it is
    replaced and counted in ``replacements`` and everything else is saved.
    ``AnnotationStoreError`` names the file(s) and the problem when nothing could be saved.
    """
    beside, fallback = autosave_candidates(slide_path)
    meta = {"autosave": {"slide": str(_slide(slide_path)), "saved_at": now().isoformat(timespec="seconds"),
                         "annotations": len(doc), "mpp": doc.mpp,
                         "review_decisions": len(doc.decisions())}}
    try:
        data = geojson_bytes(doc.to_set(), meta, replacements, target=str(beside))
    except AnnotationFormatError as exc:  # more than our reader accepts: saving would lose it on reopening
        raise AnnotationStoreError(f"cannot save annotations: {exc}") from exc
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:  # a bug, not the user's doing
        raise AnnotationStoreError(f"cannot save annotations to {beside}: {type(exc).__name__}: {exc}") from exc
    errors = []
    for target, other in ((beside, fallback), (fallback, beside)):
        try:
            atomic_write_bytes(target, data)
        except OSError as exc:
            errors.append(f"{target}: {exc.strerror or exc}")
            continue
        try:
            other.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder keeps its old copy; the newer file wins on load
        return target
    raise AnnotationStoreError("cannot save annotations: " + "; ".join(errors))


@dataclass(frozen=True)
class Recovery:
    """Annotations found for a slide, and where and when they were saved."""

    path: Path
    annotation_set: AnnotationSet
    saved_at: str
    warnings: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """What the viewer says on reopening (the time in the user's own time zone)."""
        n = len(self.annotation_set.annotations)
        k = len(self.annotation_set.decisions)
        review = f" and {k} review decision{'s' if k != 1 else ''}" if k else ""
        return (f"Restored {n} annotation{'s' if n != 1 else ''}{review} from the autosave of "
                f"{_local_time(self.saved_at)} ({self.path})")

    def to_dict(self) -> dict:
        return {"path": str(self.path), "saved_at": self.saved_at,
                "annotations": len(self.annotation_set.annotations),
                "review_decisions": len(self.annotation_set.decisions), "warnings": list(self.warnings)}


def load_autosave(slide_path: str | os.PathLike[str]) -> Recovery | None:
    """The saved annotations of a slide (the newer of the two locations), or None.

    A damaged file raises ``AnnotationFormatError`` naming it (it is left in place for
    the user to inspect: never silently replaced by an empty document).
    """
    found = [p for p in autosave_candidates(slide_path) if p.is_file()]
    if not found:
        return None
    path = max(found, key=lambda p: p.stat().st_mtime_ns)
    result = parse_geojson(read_limited(path, "autosaved annotations"), str(path))
    saved = (result.meta.get("autosave") or {}).get("saved_at") if isinstance(result.meta.get("autosave"), dict) else None
    if saved is None:
        saved = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return Recovery(path, result.annotation_set, str(saved), result.warnings)


def open_document(slide_path: str | os.PathLike[str], mpp: float | None) -> tuple[AnnotationDocument, Recovery | None]:
    """A document for a slide being opened, restored from its autosave when there is one
    (with an empty undo history)."""
    recovery = load_autosave(slide_path)
    if recovery is None:
        return AnnotationDocument(mpp=mpp), None
    return AnnotationDocument.from_set(recovery.annotation_set, mpp=mpp), recovery


class Autosaver:
    """Saves ``doc`` for ``slide_path`` ``delay_s`` after the last edit (see module doc)."""

    def __init__(self, doc: AnnotationDocument, slide_path: str | os.PathLike[str], *,
                 delay_s: float = DEFAULT_DELAY_S, max_delay_s: float = DEFAULT_MAX_DELAY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.doc = doc
        self.slide_path = _slide(slide_path)
        self.delay_s = delay_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._first_unsaved: float | None = None
        self._due: float | None = None
        self._saved_revision = doc.revision
        self.last_path: Path | None = None
        self.last_error: str | None = None
        self.last_replacements: tuple[str, ...] = ()  # values the last save had to replace
        self._unsubscribe = doc.subscribe(self._on_change)

    @property
    def pending(self) -> bool:
        """True when there are edits not yet saved."""
        return self.doc.revision != self._saved_revision

    def _on_change(self, _change: DocumentChange) -> None:
        t = self._clock()
        if self._first_unsaved is None:
            self._first_unsaved = t
        self._due = min(t + self.delay_s, self._first_unsaved + self.max_delay_s)

    def tick(self) -> Path | None:
        """Save if an edit is due; returns the file written, else None."""
        if self._due is not None and self._clock() >= self._due:
            return self.flush()
        return None

    def flush(self) -> Path | None:
        """Save now if anything changed. On failure the edits stay pending and the next
        try is ``delay_s`` later; ``AnnotationStoreError`` says where it could not write."""
        if not self.pending:
            self._first_unsaved = self._due = None
            return None
        revision = self.doc.revision
        replacements = Replacements()
        try:
            path = save_document(self.doc, self.slide_path, replacements=replacements)
        except AnnotationStoreError as exc:
            self.last_error = str(exc)
            self._due = self._clock() + self.delay_s
            raise
        self._saved_revision = revision
        self._first_unsaved = self._due = None
        self.last_path, self.last_error = path, None
        self.last_replacements = tuple(replacements.messages())
        return path

    def discard(self) -> None:
        """Stop listening to the document without saving (the user chose to lose the edits)."""
        self._unsubscribe()
        self._first_unsaved = self._due = None

    def close(self) -> Path | None:
        """Save what is pending and stop listening to the document."""
        try:
            return self.flush()
        finally:
            self._unsubscribe()


def _local_time(iso: str) -> str:
    """An ISO timestamp (as saved, UTC) as local "YYYY-MM-DD HH:MM:SS"; unchanged if unreadable."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return iso
