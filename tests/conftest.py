"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent), and
the check that no test leaves a HistoViewer thread running (``tests/leaks.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.leaks import describe_threads, histoviewer_threads, join_threads

# Qt must run without a screen in tests; set before any QApplication exists.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# ``histoviewer analyze`` in a test process loads its model in this process (tests replace
# the loader with fakes), not in the child process a real run starts (1-2 s of CPU each);
# tests/core/test_model_process.py runs the child itself.
os.environ.setdefault("HISTOVIEWER_MODEL_PROCESS", "0")

REPO = Path(__file__).resolve().parents[1]
# Tiny slides checked in with the tests (tests/data/make_fixtures.py writes them): no skip.
TEST_DATA = Path(__file__).resolve().parent / "data"
SHARED_DATA = Path(os.environ.get("HISTOVIEWER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep recent files and demo data out of the developer's home folder."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("HISTOVIEWER_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("HISTOVIEWER_DATA_DIR", str(base / "data"))


@pytest.fixture(autouse=True)
def _no_histoviewer_thread_outlives_its_test():
    """Fail a test that leaves a ``histoviewer-*`` thread alive after its fixtures closed
    (threads of wider-scoped fixtures, alive when the test started, are not its own)."""
    before = set(histoviewer_threads())
    yield
    left = join_threads(t for t in histoviewer_threads() if t not in before)
    if left:
        pytest.fail(f"the test left HistoViewer threads running: {describe_threads(left)} "
                    "(close what started them, in a fixture or a finally)", pytrace=False)


@pytest.fixture(scope="session")
def tiny_slides() -> Path:
    """The checked-in tiny slides (see tests/data/make_fixtures.py for what each one is)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def tiny_svs(tiny_slides) -> Path:
    """A 64 x 48 px Aperio SVS (2 levels, 0.5 um/px, 20x, label and thumbnail)."""
    return tiny_slides / "tiny.svs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (it sits beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def slides_dir(shared_data) -> Path:
    return shared_data / "slides"


@pytest.fixture(scope="session")
def cmu_small(slides_dir) -> Path:
    return slides_dir / "CMU-1-Small-Region.svs"
