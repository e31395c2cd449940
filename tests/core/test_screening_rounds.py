"""The screened full pass's rounds: batches sized to the round so every model thread works."""

from __future__ import annotations

import threading

import numpy as np

from histoviewer.core.inference.screening import (
    MIN_ROUND_BATCH,
    ROUND_BATCHES_PER_THREAD,
    round_batch_size,
    run_screen,
)
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import LesionFractionModel
from tests.core.test_screening import ScreenFraction, _setup, screened_pass, wide  # noqa: F401 - a fixture


class TwoCallModel(LesionFractionModel):
    """The lesion-fraction fake called on two threads at once (``call_threads``, as the model
    process states it), recording each call's patch count and thread (by name: every round
    has a pool of its own, whose threads' idents need not be reused, but whose names are).

    Until two calls have run at once, a call waits (up to ``WAIT_S``) for a second one: this
    fake is so fast that a thread would otherwise finish its batch before the next is read,
    and the pool would hand every batch to the same idle thread. A round sent as one batch
    has no second call to wait for, and never overlaps."""

    call_threads = 2
    WAIT_S = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.overlapped = threading.Event()
        self._running = 0
        self._gave_up = False

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(patches))
            self.threads.add(threading.current_thread().name)
            self._running += 1
            if self._running >= 2:
                self.overlapped.set()
        try:
            if not self._gave_up and not self.overlapped.wait(self.WAIT_S):
                self._gave_up = True  # no second call came: later calls need not wait too
            return super().predict_proba(patches)
        finally:
            with self.lock:
                self._running -= 1


def _screened(reader, model, batch_size: int):
    grid, cutter = _setup(reader, model)
    screened = run_screen(reader, grid.geometry, grid.tissue, ScreenFraction())
    _, record = screened_pass(grid, cutter, model, screened, batch_size=batch_size, model_threads=None)
    return grid, record


def test_round_batch_size_shares_a_small_round_between_the_model_threads():
    assert round_batch_size(80, 512, 2) == 20  # 2 batches a thread
    assert round_batch_size(80, 512, 1) == 40
    assert (
        round_batch_size(10, 512, 2) == MIN_ROUND_BATCH
    )  # a whole small round in one call
    assert round_batch_size(5000, 512, 2) == 512  # a large round keeps the batch size
    assert round_batch_size(80, 16, 2) == 16
    assert ROUND_BATCHES_PER_THREAD >= 1


def test_a_screened_round_below_the_batch_size_runs_on_every_model_thread(wide):  # noqa: F811 - the fixture
    """A round smaller than ``batch_size`` was one model call (the model waited for the
    round's every read, then ran on one thread); now it is shared between the model threads,
    with the same results as one call."""
    with open_slide(wide) as reader:
        model = TwoCallModel()
        grid, record = _screened(reader, model, batch_size=100_000)
        assert (
            2 * MIN_ROUND_BATCH * ROUND_BATCHES_PER_THREAD
            < record.full_model_patches
            < 100_000
        )
        # the first round alone is more than half the patches; no call took more than a
        # thread's share of all of them, plus the region that crossed it (8 x 8 cells)
        assert len(model.sizes) >= 2 * ROUND_BATCHES_PER_THREAD
        assert (
            max(model.sizes)
            <= round_batch_size(record.full_model_patches, 100_000, 2) + 8 * 8
        )
        assert model.overlapped.is_set() and len(model.threads) == 2
        # the same cells, values and states as in batches of one patch each
        one = LesionFractionModel()
        grid1, record1 = _screened(reader, one, batch_size=1)
        np.testing.assert_array_equal(grid.state, grid1.state)
        np.testing.assert_array_equal(grid.values, grid1.values)
        assert record == record1
