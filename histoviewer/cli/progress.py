"""The CLI's ``JobControl``: tqdm bars on stderr, one per stage, on a terminal only, never
in ``--json`` mode. Ctrl-C is the CLI's cancel (``KeyboardInterrupt``), so no cancel event."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from histoviewer.core.progress import NO_CONTROL, JobControl

__all__ = ["TqdmStages", "cli_control", "close_bars"]


class TqdmStages:
    """``JobControl.progress`` onto tqdm bars: a bar per stage description, closed when the
    stage is complete or another stage starts (a failed or cancelled stage never completes)."""

    def __init__(self, unit: str = "patch") -> None:
        self.unit = unit
        self._bars: dict[str, tuple[Any, int]] = {}  # stage -> (bar, done so far)

    def __call__(self, stage: str, done: int, total: int, detail: str) -> None:
        if stage not in self._bars:
            self.close()
            bar = tqdm(total=total, desc=stage, unit=self.unit, leave=False, dynamic_ncols=True)
            self._bars[stage] = (bar, 0)
        bar, before = self._bars[stage]
        if detail:
            bar.set_postfix_str(detail)
        if done > before:
            bar.update(done - before)
        self._bars[stage] = (bar, max(done, before))
        if total and done >= total:
            bar.close()
            del self._bars[stage]

    @property
    def open_stages(self) -> list[str]:
        return list(self._bars)

    def close(self) -> None:
        for bar, _done in self._bars.values():
            bar.close()
        self._bars.clear()


def cli_control(quiet: bool = False, unit: str = "patch") -> JobControl:
    """Progress bars on stderr, or silence when ``quiet`` (``--json``) or not a terminal."""
    if quiet or not sys.stderr.isatty():
        return NO_CONTROL
    return JobControl(progress=TqdmStages(unit))


def close_bars(control: JobControl) -> None:
    """Close the bars of stages that never completed (a failed or cancelled job)."""
    if isinstance(control.progress, TqdmStages):
        control.progress.close()
