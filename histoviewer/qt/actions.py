"""One way to make a menu action: text, what it calls, its keys, checked state, its menu.

Every controller builds its actions with ``make_action`` and keeps them as attributes, so
nothing ever looks an action up by its display text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

__all__ = ["KeyLike", "make_action"]

KeyLike = str | QKeySequence | QKeySequence.StandardKey


def _key_sequences(shortcut: KeyLike | Sequence[KeyLike] | None) -> list[QKeySequence]:
    if shortcut is None:
        return []
    keys = shortcut if isinstance(shortcut, (list, tuple)) else [shortcut]
    out: list[QKeySequence] = []
    for key in keys:
        if isinstance(key, QKeySequence.StandardKey):
            out.extend(QKeySequence.keyBindings(key))  # the platform's bindings (Ctrl+O, ...)
        else:
            out.append(QKeySequence(key))
    unique: list[QKeySequence] = []
    for key in out:  # a standard key and an explicit one may name the same keys
        if key not in unique:
            unique.append(key)
    return unique


def make_action(parent: QObject, text: str, slot: Callable[..., object], *,
                shortcut: KeyLike | Sequence[KeyLike] | None = None, checked: bool | None = None,
                menu: QMenu | None = None) -> QAction:
    """A ``QAction`` owned by ``parent`` that calls ``slot`` when triggered; checkable (and
    set to ``checked``) when ``checked`` is not None; appended to ``menu`` when given."""
    action = QAction(text, parent)
    keys = _key_sequences(shortcut)
    if keys:
        action.setShortcuts(keys)
    if checked is not None:
        action.setCheckable(True)
        action.setChecked(checked)
    action.triggered.connect(slot)
    if menu is not None:
        menu.addAction(action)
    return action
