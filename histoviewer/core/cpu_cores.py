"""How many CPU cores this process may run on (what thread and worker counts are sized by)."""

from __future__ import annotations

import os

__all__ = ["usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the platform has one (a
    container or ``taskset`` may allow fewer than the machine has), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
