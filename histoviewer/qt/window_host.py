"""What the main window's controllers may ask of it, and nothing more.

The controllers (``AiController``, ``LesionController``, ``CaseController``,
``AnnotationActions``) own their widgets, actions, menus and timers; the window places them
(menu bar, docks, status bar) and calls each controller's ``attach(tab)`` for a new slide.
In the other direction a controller sees the window only through one of these protocols,
so a test can hand it a stand-in and a reader sees at a glance what it depends on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import SignalInstance

if TYPE_CHECKING:
    from histoviewer.qt.slide_tab import SlideTab


class TabHost(Protocol):
    """The open slides and the status bar."""

    # (SlideTab | None): another tab is in front, or the last one closed; emitted after the
    # window updated its own actions and labels
    currentTabChanged: SignalInstance

    def current_tab(self) -> SlideTab | None:
        """The slide in front, None when no slide is open."""

    def slide_tabs(self) -> list[SlideTab]:
        """Every open slide, in tab order."""

    def show_message(self, text: str, timeout_ms: int) -> None:
        """A transient status-bar message."""

    def current_message(self) -> str:
        """The status-bar message showing now ("" when none)."""

    def report_error(self, title: str, message: str) -> None:
        """Tell the user, without blocking."""


class CaseHost(TabHost, Protocol):
    """The case view also opens slides and brings one to the front."""

    def open_slide(self, path: str | os.PathLike[str]) -> SlideTab | None:
        """Open ``path`` in a tab (or show the tab it is open in); None when it cannot open."""

    def show_slide(self, path: str | os.PathLike[str]) -> None:
        """Bring the tab of ``path`` to the front, if it is open."""
