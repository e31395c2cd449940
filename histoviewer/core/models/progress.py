"""A minimal progress interface so core code can report progress without knowing the front end.

The CLI plugs in tqdm bars; tests and the GUI can pass their own or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["NullBar", "ProgressBar", "ProgressFactory", "null_progress"]


class ProgressBar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def set_postfix_str(self, text: str) -> object: ...
    def close(self) -> object: ...


class NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


ProgressFactory = Callable[[str, int], ProgressBar]  # (description, total) -> bar


def null_progress(description: str, total: int) -> ProgressBar:
    return NullBar()
