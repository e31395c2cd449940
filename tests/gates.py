"""Event gates for fakes that run on HistoViewer's worker threads.

A test that needs "a read is in progress" or "the model is busy" used to sleep and hope the
worker got there; under load it had not. A ``Gate`` makes that moment an event: the fake
calls ``gate.passes()`` at the point of interest, which counts the arrival (the test waits
for it with ``wait_arrivals``) and holds the call until the test lets it through
(``allow(n)``, or ``open()`` for good). Every wait is bounded, so a test that forgets to
open a gate fails with a message instead of hanging, and fixtures open gates in teardown so
a failing test never leaves a worker parked in one.
"""

from __future__ import annotations

import math
import threading

# A ceiling for waits that end in milliseconds when things work: only a bug reaches it.
GATE_LIMIT_S = 30.0


class GateTimeout(AssertionError):
    """A call waited ``GATE_LIMIT_S`` at a gate the test never opened."""


class Gate:
    """A turnstile for calls on worker threads. ``held``: calls wait to be let through (else
    they pass at once and are only counted). ``hold_s``: a held call goes on by itself after
    this many seconds (a slow fake that the test can still release early); None: it waits
    for ``allow``/``open`` (at most ``GATE_LIMIT_S``, then ``GateTimeout``)."""

    def __init__(self, held: bool = True, hold_s: float | None = None) -> None:
        self._cond = threading.Condition()
        self._permits = 0 if held else math.inf
        self._hold_s = hold_s
        self.arrived = 0  # calls that reached the gate (waiting or through)

    def passes(self) -> None:
        """Worker thread: arrive, then wait for a permit."""
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
            limit = GATE_LIMIT_S if self._hold_s is None else self._hold_s
            if self._cond.wait_for(lambda: self._permits > 0, limit):
                self._permits -= 1
            elif self._hold_s is None:
                raise GateTimeout(f"a call waited {GATE_LIMIT_S:.0f} s at a gate the test never opened")

    def wait_arrivals(self, n: int, timeout: float = GATE_LIMIT_S) -> bool:
        """Test thread: block until ``n`` calls in all have reached the gate."""
        with self._cond:
            return self._cond.wait_for(lambda: self.arrived >= n, timeout)

    def allow(self, n: int = 1) -> None:
        """Let ``n`` more calls through (one each, in no particular order)."""
        with self._cond:
            self._permits += n
            self._cond.notify_all()

    def open(self) -> None:
        """Let every call through from now on."""
        with self._cond:
            self._permits = math.inf
            self._cond.notify_all()
