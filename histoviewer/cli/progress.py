"""tqdm progress bars for the CLI: on a terminal only, never in ``--json`` mode."""

from __future__ import annotations

import sys

from histoviewer.core.models.progress import NullBar, ProgressBar, ProgressFactory

__all__ = ["cli_progress"]


def cli_progress(quiet: bool = False) -> ProgressFactory:
    """A factory of tqdm bars on stderr, or of silent bars when quiet or not a terminal."""
    if quiet or not sys.stderr.isatty():
        return lambda _description, _total: NullBar()
    from tqdm import tqdm

    def make(description: str, total: int) -> ProgressBar:
        return tqdm(total=total, desc=description, unit="patch", leave=False, dynamic_ncols=True)

    return make
