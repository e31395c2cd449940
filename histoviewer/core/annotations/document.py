"""The open annotations of one slide: edits as undoable commands, change callbacks, queries.

The GUI is thin wiring over this object: tools call ``add``/``move``/``set_vertex``...,
the painter calls ``paint_list(view rect, zoom)``, the list panel calls ``class_summaries``,
and every view refreshes from ``subscribe`` callbacks. No Qt here.

Every edit is one step on the undo stack; ``with doc.group("Move"):`` makes several edits
one step (a drag that moves many annotations, an import). A step stores the annotations
before and after (they are immutable, so this is cheap) plus the class table when it
changed. Undoing a deletion puts annotations back at their old place in the drawing order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.measure import points_in_poly

from histoviewer.core.annotations.classes import DEFAULT_CLASSES, AnnotationClass, default_class_for
from histoviewer.core.annotations.measure import Measurement, area_px2, measure
from histoviewer.core.annotations.model import AnnotationSet
from histoviewer.core.annotations.review import ReviewDecision
from histoviewer.core.annotations.shapes import Annotation, ShapeKind, new_uid
from histoviewer.core.annotations.spatial import DisplayShape, GridIndex, LodCache
from histoviewer.core.units import l0_area_to_mm2

__all__ = ["AnnotationDocument", "ClassSummary", "DocumentChange"]

MAX_UNDO_STEPS = 1000

_Entry = tuple[int, Annotation]  # (drawing-order sequence number, annotation)


@dataclass(frozen=True)
class DocumentChange:
    """What one edit, undo or redo changed (annotation uids), for listeners."""

    description: str
    source: str  # "edit", "undo", "redo"
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    classes_changed: bool = False
    decisions_changed: tuple[str, ...] = ()  # hotspot ids whose review decision changed


@dataclass(frozen=True)
class ClassSummary:
    """Count and total area of the annotations of one class (area None when the scale is
    unknown), and the count of its detections (QuPath cells...), which have no area here."""

    class_name: str | None
    count: int
    area_px2: float
    area_mm2: float | None
    detections: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"class_name": self.class_name, "count": self.count, "area_px2": self.area_px2,
                "area_mm2": self.area_mm2, "detections": self.detections}


@dataclass
class _Step:
    description: str
    before: dict[str, _Entry | None] = field(default_factory=dict)
    after: dict[str, _Entry | None] = field(default_factory=dict)
    classes_before: tuple[AnnotationClass, ...] | None = None
    classes_after: tuple[AnnotationClass, ...] | None = None
    decisions_before: dict[str, ReviewDecision | None] = field(default_factory=dict)
    decisions_after: dict[str, ReviewDecision | None] = field(default_factory=dict)


class AnnotationDocument:
    """Annotations of one slide with undo/redo. ``mpp``: the slide's micrometres per
    level-0 pixel, or None when unknown (measurements then give pixels only)."""

    def __init__(self, classes: Sequence[AnnotationClass] = DEFAULT_CLASSES, mpp: float | None = None) -> None:
        self.mpp = mpp
        self._classes: tuple[AnnotationClass, ...] = tuple(classes)
        self._entries: dict[str, _Entry] = {}
        self._next_seq = 0
        self._index = GridIndex()
        self._lod = LodCache()
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._open_group: _Step | None = None
        self._group_depth = 0
        self._listeners: list[Callable[[DocumentChange], None]] = []
        self._ordered: list[Annotation] | None = None
        self._decisions: dict[str, ReviewDecision] = {}  # by hotspot id, in decision order
        self.revision = 0  # bumps on every change, undo and redo included

    @classmethod
    def from_set(cls, aset: AnnotationSet, mpp: float | None = None) -> AnnotationDocument:
        """A document holding ``aset`` (a file opened or an autosave restored), with its
        class table and no undo history."""
        doc = cls(aset.with_used_classes().classes, mpp)
        doc.add_many(aset.annotations, "Open")
        for decision in aset.decisions:
            doc.set_decision(decision)
        doc.clear_history()
        return doc

    # --- notification ----------------------------------------------------------------

    def subscribe(self, callback: Callable[[DocumentChange], None]) -> Callable[[], None]:
        """Call ``callback(change)`` after every change; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    # --- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    def __iter__(self) -> Iterator[Annotation]:
        return iter(self.annotations())

    def get(self, uid: str) -> Annotation:
        try:
            return self._entries[uid][1]
        except KeyError:
            raise KeyError(f"no annotation with id {uid!r}") from None

    def annotations(self) -> list[Annotation]:
        """All annotations in drawing order (first drawn first)."""
        if self._ordered is None:
            self._ordered = [a for _, a in sorted(self._entries.values(), key=lambda e: e[0])]
        return list(self._ordered)

    @property
    def classes(self) -> tuple[AnnotationClass, ...]:
        return self._classes

    def class_named(self, name: str | None) -> AnnotationClass | None:
        return next((c for c in self._classes if c.name == name), None)

    def is_tumour(self, ann: Annotation) -> bool:
        """True for an annotation (a region) of a tumour class: the only objects sized and
        staged. A detection is never tumour here, whatever its class (QuPath's cell
        detector classifies thousands of cells "Tumor"; one must not make a slide ITC)."""
        if not ann.is_region:
            return False
        cls = self.class_named(ann.class_name)
        return cls is not None and cls.is_tumour

    def to_set(self) -> AnnotationSet:
        return AnnotationSet(tuple(self.annotations()), self._classes, tuple(self._decisions.values()))

    # --- review decisions (``review``) ----------------------------------------------------

    def decisions(self) -> list[ReviewDecision]:
        """The review decisions on AI hotspots, in the order they were first made."""
        return list(self._decisions.values())

    def decision(self, hotspot_id: str) -> ReviewDecision | None:
        return self._decisions.get(hotspot_id)

    def set_decision(self, decision: ReviewDecision, description: str | None = None) -> None:
        """Record (or change) the decision on one hotspot: one undo step."""
        self._commit_decisions(description or f"Review: {decision.verdict.display_name}",
                               {decision.hotspot_id: decision})

    def clear_decision(self, hotspot_id: str, description: str = "Clear review decision") -> None:
        """Forget the decision on one hotspot (it is unreviewed again): one undo step."""
        if hotspot_id not in self._decisions:
            raise KeyError(f"no review decision on hotspot {hotspot_id!r}")
        self._commit_decisions(description, {hotspot_id: None})

    # --- queries for painting and picking ----------------------------------------------

    def _sorted(self, uids: Iterable[str]) -> list[Annotation]:
        return [a for _, a in sorted((self._entries[u] for u in uids), key=lambda e: e[0])]

    def query_rect(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float) -> list[Annotation]:
        """Annotations whose bounding box meets the level-0 rectangle, in drawing order."""
        return self._sorted(self._index.query(l0_x0, l0_y0, l0_x1, l0_y1))

    def paint_list(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float,
                   l0_per_screen_px: float) -> list[DisplayShape]:
        """Simplified outlines of what is in view, in drawing order (see ``spatial``)."""
        return [self._lod.get(a, l0_per_screen_px) for a in self.query_rect(l0_x0, l0_y0, l0_x1, l0_y1)]

    def hit_test(self, l0_x: float, l0_y: float, l0_tolerance: float) -> Annotation | None:
        """The topmost annotation under a click: inside an area, or within ``l0_tolerance``
        of a line, a point or an area's outline."""
        t = l0_tolerance
        for ann in reversed(self.query_rect(l0_x - t, l0_y - t, l0_x + t, l0_y + t)):
            pts = np.asarray(ann.outline())
            if ann.kind.is_area and points_in_poly([[l0_x, l0_y]], pts)[0]:
                if not any(points_in_poly([[l0_x, l0_y]], np.asarray(h))[0] for h in ann.l0_holes):
                    return ann
            closed = ann.kind.is_area
            if ann.kind is ShapeKind.POINTS:
                d = np.hypot(pts[:, 0] - l0_x, pts[:, 1] - l0_y).min()
            else:
                d = _distance_to_path(pts, (l0_x, l0_y), closed)
            if d <= t:
                return ann
        return None

    def measure(self, uid: str) -> Measurement:
        ann = self.get(uid)
        return measure(ann, self.mpp, is_tumour=self.is_tumour(ann))

    def class_summaries(self) -> list[ClassSummary]:
        """Count and total area per class, in class-table order, unclassified last."""
        count: dict[str | None, int] = {}
        detections: dict[str | None, int] = {}
        area: dict[str | None, float] = {}
        for ann in self.annotations():
            if not ann.is_region:
                detections[ann.class_name] = detections.get(ann.class_name, 0) + 1
                continue
            count[ann.class_name] = count.get(ann.class_name, 0) + 1
            if ann.kind.is_area:
                area[ann.class_name] = area.get(ann.class_name, 0.0) + area_px2(ann)
        names: list[str | None] = [c.name for c in self._classes]
        names += [n for n in (*count, *detections) if n not in names]
        out = []
        for n in dict.fromkeys(names):
            px2 = area.get(n, 0.0)
            mm2 = l0_area_to_mm2(px2, self.mpp)
            out.append(ClassSummary(n, count.get(n, 0), px2, mm2, detections.get(n, 0)))
        return out

    # --- undo machinery -----------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str | None:
        return self._undo[-1].description if self._undo else None

    @property
    def redo_text(self) -> str | None:
        return self._redo[-1].description if self._redo else None

    @contextlib.contextmanager
    def group(self, description: str) -> Iterator[None]:
        """Edits inside the block become one undo step (and one notification)."""
        if self._group_depth == 0:
            self._open_group = _Step(description)
        self._group_depth += 1
        try:
            yield
        finally:
            self._group_depth -= 1
            if self._group_depth == 0:
                step, self._open_group = self._open_group, None
                if step is not None and (step.after or step.classes_after is not None or step.decisions_after):
                    self._push(step)
                    self._notify(step, "edit", step.before, step.after)

    def _push(self, step: _Step) -> None:
        self._undo.append(step)
        del self._undo[:-MAX_UNDO_STEPS]
        self._redo.clear()

    def _apply(self, state: dict[str, _Entry | None], classes: tuple[AnnotationClass, ...] | None,
               decisions: dict[str, ReviewDecision | None] | None = None) -> None:
        for hid, decision in (decisions or {}).items():
            if decision is None:
                self._decisions.pop(hid, None)
            else:
                self._decisions[hid] = decision
        for uid, entry in state.items():
            self._lod.discard(uid)
            if entry is None:
                if self._entries.pop(uid, None) is not None:
                    self._index.remove(uid)
            else:
                self._entries[uid] = entry
                self._index.insert(uid, entry[1].l0_bounds())
        if classes is not None:
            self._classes = classes
        self._ordered = None
        self.revision += 1

    def _notify(self, step: _Step, source: str, old: dict[str, _Entry | None],
                new: dict[str, _Entry | None]) -> None:
        change = DocumentChange(
            description=step.description, source=source,
            added=tuple(u for u in new if old.get(u) is None and new[u] is not None),
            removed=tuple(u for u in new if old.get(u) is not None and new[u] is None),
            changed=tuple(u for u in new if old.get(u) is not None and new[u] is not None),
            classes_changed=step.classes_after is not None,
            decisions_changed=tuple(step.decisions_after),
        )
        for callback in list(self._listeners):
            callback(change)

    def _commit(self, description: str, after: dict[str, Annotation | None],
                classes: tuple[AnnotationClass, ...] | None = None) -> None:
        """Apply one edit: ``after`` maps uids to their new annotation (None: delete)."""
        before: dict[str, _Entry | None] = {u: self._entries.get(u) for u in after}
        new: dict[str, _Entry | None] = {}
        for uid, ann in after.items():
            if ann is None:
                new[uid] = None
            else:
                old = self._entries.get(uid)
                if old is None:
                    new[uid] = (self._next_seq, ann)
                    self._next_seq += 1
                else:
                    new[uid] = (old[0], ann)
        used = {a.class_name for a in after.values() if a is not None and a.class_name is not None}
        base = classes if classes is not None else self._classes
        missing = [default_class_for(n) for n in sorted(used - {c.name for c in base})]
        if missing:
            classes = base + tuple(missing)
        classes_before = self._classes if classes is not None else None
        self._apply(new, classes)
        if self._open_group is not None:
            g = self._open_group
            for uid in new:
                g.before.setdefault(uid, before[uid])
                g.after[uid] = new[uid]
            if classes is not None:
                if g.classes_before is None:
                    g.classes_before = classes_before
                g.classes_after = classes
            return
        step = _Step(description, before, new, classes_before, classes)
        self._push(step)
        self._notify(step, "edit", before, new)

    def _commit_decisions(self, description: str, after: dict[str, ReviewDecision | None]) -> None:
        before = {h: self._decisions.get(h) for h in after}
        self._apply({}, None, after)
        if self._open_group is not None:
            for h, d in after.items():
                self._open_group.decisions_before.setdefault(h, before[h])
                self._open_group.decisions_after[h] = d
            return
        step = _Step(description, decisions_before=before, decisions_after=dict(after))
        self._push(step)
        self._notify(step, "edit", {}, {})

    def undo(self) -> bool:
        """Undo the last step; False when there is none."""
        if not self._undo:
            return False
        step = self._undo.pop()
        self._apply(step.before, step.classes_before, step.decisions_before)
        self._redo.append(step)
        self._notify(step, "undo", step.after, step.before)
        return True

    def redo(self) -> bool:
        """Redo the last undone step; False when there is none."""
        if not self._redo:
            return False
        step = self._redo.pop()
        self._apply(step.after, step.classes_after, step.decisions_after)
        self._undo.append(step)
        self._notify(step, "redo", step.before, step.after)
        return True

    def clear_history(self) -> None:
        self._undo.clear()
        self._redo.clear()

    # --- annotation commands --------------------------------------------------------------

    def add(self, ann: Annotation, description: str | None = None) -> str:
        """Add one annotation (a drawing tool finished); returns its uid."""
        if ann.uid in self._entries:
            raise ValueError(f"an annotation with id {ann.uid!r} is already open")
        self._commit(description or f"Add {ann.kind.value}", {ann.uid: ann})
        return ann.uid

    def add_many(self, anns: Iterable[Annotation], description: str = "Add annotations") -> list[str]:
        anns = list(anns)
        taken = [a.uid for a in anns if a.uid in self._entries]
        if taken or len({a.uid for a in anns}) != len(anns):
            raise ValueError(f"duplicate annotation ids: {taken[:3] or 'within the new annotations'}")
        if anns:
            self._commit(description, {a.uid: a for a in anns})
        return [a.uid for a in anns]

    def remove(self, uids: Iterable[str], description: str | None = None) -> None:
        uids = [u for u in dict.fromkeys(uids)]
        for u in uids:
            self.get(u)
        if uids:
            self._commit(description or f"Delete {len(uids)} annotation{'s' if len(uids) > 1 else ''}",
                         {u: None for u in uids})

    def replace(self, ann: Annotation, description: str = "Edit annotation") -> None:
        """Put a new version of an open annotation (same uid) in its place."""
        self.get(ann.uid)
        self._commit(description, {ann.uid: ann})

    def _edit_each(self, uids: Iterable[str], fn: Callable[[Annotation], Annotation], description: str) -> None:
        after = {u: fn(self.get(u)) for u in dict.fromkeys(uids)}
        if after:
            self._commit(description, after)  # type: ignore[arg-type]

    def move(self, uids: Iterable[str], l0_dx: float, l0_dy: float) -> None:
        self._edit_each(uids, lambda a: a.translated(l0_dx, l0_dy), "Move")

    def set_vertex(self, uid: str, index: int, l0_x: float, l0_y: float) -> None:
        self._edit_each([uid], lambda a: a.with_vertex(index, l0_x, l0_y), "Move vertex")

    def insert_vertex(self, uid: str, index: int, l0_x: float, l0_y: float) -> None:
        self._edit_each([uid], lambda a: a.with_inserted_vertex(index, l0_x, l0_y), "Add vertex")

    def delete_vertex(self, uid: str, index: int) -> None:
        self._edit_each([uid], lambda a: a.without_vertex(index), "Delete vertex")

    def set_class(self, uids: Iterable[str], class_name: str | None) -> None:
        """Change the class (None: unclassified); an unknown name adds a class for it."""
        self._edit_each(uids, lambda a: a.with_changes(class_name=class_name), "Change class")

    def rename(self, uid: str, name: str) -> None:
        self._edit_each([uid], lambda a: a.with_changes(name=name), "Rename")

    def set_note(self, uid: str, note: str) -> None:
        self._edit_each([uid], lambda a: a.with_changes(note=note), "Edit note")

    def import_set(self, aset: AnnotationSet, *, replace_all: bool = False, description: str = "Import") -> list[str]:
        """Add (or, with ``replace_all``, swap in) the annotations of a file as one undo step.

        Imported annotations whose uid is already open get a fresh uid. Classes of the
        file that the document lacks are added; existing classes keep their colours.
        The file's review decisions replace those on the same hotspots.
        """
        with self.group(description):
            if replace_all and self._entries:
                self._commit(description, {u: None for u in self._entries})
            fresh = [a if a.uid not in self._entries else a.with_changes(uid=new_uid()) for a in aset.annotations]
            known = {c.name for c in self._classes}
            new_classes = tuple(c for c in aset.classes if c.name not in known)
            after: dict[str, Annotation | None] = {a.uid: a for a in fresh}
            if after or new_classes:
                self._commit(description, after, self._classes + new_classes if new_classes else None)
            if replace_all:
                for hid in [h for h in self._decisions if h not in {d.hotspot_id for d in aset.decisions}]:
                    self.clear_decision(hid)
            for decision in aset.decisions:
                self.set_decision(decision)
        return [a.uid for a in fresh]

    # --- class commands -------------------------------------------------------------------

    def _set_classes(self, classes: tuple[AnnotationClass, ...], description: str,
                     after: dict[str, Annotation | None] | None = None) -> None:
        self._commit(description, after or {}, classes)

    def add_class(self, cls: AnnotationClass) -> None:
        if self.class_named(cls.name) is not None:
            raise ValueError(f"a class named {cls.name!r} exists already")
        self._set_classes(self._classes + (cls,), f"Add class {cls.name}")

    def update_class(self, name: str, *, rgb: tuple[int, int, int] | None = None,
                     is_tumour: bool | None = None) -> None:
        """Recolour a class or change whether it is sized as tumour."""
        old = self._require_class(name)
        new = AnnotationClass(name, rgb if rgb is not None else old.rgb,
                              old.is_tumour if is_tumour is None else is_tumour)
        self._set_classes(tuple(new if c.name == name else c for c in self._classes), f"Edit class {name}")

    def rename_class(self, old_name: str, new_name: str) -> None:
        """Rename a class and relabel its annotations (one undo step)."""
        old = self._require_class(old_name)
        if self.class_named(new_name) is not None:
            raise ValueError(f"a class named {new_name!r} exists already")
        classes = tuple(AnnotationClass(new_name, c.rgb, c.is_tumour) if c is old else c for c in self._classes)
        after: dict[str, Annotation | None] = {
            u: a.with_changes(class_name=new_name) for u, (_, a) in self._entries.items() if a.class_name == old_name}
        self._set_classes(classes, f"Rename class {old_name} to {new_name}", after)

    def remove_class(self, name: str) -> None:
        """Remove a class; its annotations become unclassified (one undo step)."""
        self._require_class(name)
        after: dict[str, Annotation | None] = {
            u: a.with_changes(class_name=None) for u, (_, a) in self._entries.items() if a.class_name == name}
        self._set_classes(tuple(c for c in self._classes if c.name != name), f"Remove class {name}", after)

    def _require_class(self, name: str) -> AnnotationClass:
        cls = self.class_named(name)
        if cls is None:
            raise KeyError(f"no class named {name!r}")
        return cls


def _distance_to_path(pts: np.ndarray, p: tuple[float, float], closed: bool) -> float:
    """Shortest distance from ``p`` to the polyline (closed: back to the start)."""
    if len(pts) == 1:
        return float(np.hypot(*(pts[0] - p)))
    a = pts
    b = np.roll(pts, -1, axis=0) if closed else pts[1:]
    a = a if closed else pts[:-1]
    ab = b - a
    ap = np.asarray(p) - a
    denom = np.einsum("ij,ij->i", ab, ab)
    t = np.clip(np.einsum("ij,ij->i", ap, ab) / np.where(denom == 0, 1, denom), 0, 1)
    nearest = a + t[:, None] * ab
    return float(np.hypot(*(nearest - p).T).min())
