"""``core.jobs.processes``: slides in worker processes. A worker that dies fails its own
slide only (the others are rerun); a cancel terminates and joins the workers and removes
the unfinished slides' folders this run created, never an earlier run's.

The fast tests fork their pools (the fake job is patched in, and forking takes
milliseconds); two spawn, as ``analyze_slides`` does (about a second each)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from histoviewer.core.errors import Cancelled, ModelLoadError
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.jobs import analysis as jobs_analysis
from histoviewer.core.jobs import analyze_slides, processes
from histoviewer.core.progress import JobControl
from tests.core.jobs_fakes import DONE, fake_slide_job


def fork_pool(workers, started):
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=processes._start_worker, initargs=(started,))


def _run(slides, out, control=JobControl(), new_pool=fork_pool, workers=2):
    events = []
    results = processes.run_in_processes(
        [Path(s) for s in slides], out, AnalyzeOptions(), workers, control,
        lambda i, p: events.append(("start", i)), lambda i, s: events.append(("done", i)),
        job=fake_slide_job, new_pool=new_pool)
    return results, events


def _check_crash_fails_only_its_slide(tmp_path, new_pool):
    slides = ["a.tiff", "b_crash.tiff", "c.tiff", "d.tiff", "e.tiff"]
    results, events = _run(slides, tmp_path / "out", new_pool=new_pool)
    assert [r.slide for r in results] == slides
    assert [r.error for r in results] == [DONE, processes.CRASH_MESSAGE, DONE, DONE, DONE]
    assert events == [(kind, i) for i in range(5) for kind in ("start", "done")]
    for stem in ("a", "c", "d", "e"):
        assert (tmp_path / "out" / stem / "complete").is_file()
    assert not (tmp_path / "out" / "b_crash").exists()  # created by this run: removed


def test_a_crashed_worker_fails_its_slide_only(tmp_path):
    _check_crash_fails_only_its_slide(tmp_path, fork_pool)


def test_two_crashing_slides_among_running_ones_are_each_found(tmp_path):
    slides = ["a_crash.tiff", "b.tiff", "c_crash.tiff", "d.tiff"]
    results, _events = _run(slides, tmp_path / "out", workers=3)
    assert [r.error for r in results] == [processes.CRASH_MESSAGE, DONE, processes.CRASH_MESSAGE, DONE]


def test_a_crash_keeps_the_folder_an_earlier_run_left(tmp_path):
    earlier = tmp_path / "out" / "b_crash"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"slide": "b_crash.tiff"}')  # this slide's earlier analysis
    results, _events = _run(["a.tiff", "b_crash.tiff"], tmp_path / "out")
    assert results[1].error == processes.CRASH_MESSAGE
    assert (earlier / "summary.json").is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _check_cancel_stops_workers(tmp_path, new_pool):
    """Cancel once both held slides run (their ``started`` files exist: no timing). The
    finished slide stays complete, the held slide's new folder is removed, the held slide
    with an earlier run's folder keeps it, the queued slide never writes, and the worker
    processes are gone (terminated and joined) when ``Cancelled`` arrives."""
    out = tmp_path / "out"
    earlier = out / "c_hold"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"slide": "c_hold.tiff"}')  # this slide's earlier analysis
    started = [out / "b_hold" / "started", earlier / "started"]
    control = JobControl(cancel=lambda: all(p.is_file() for p in started))
    with pytest.raises(Cancelled):
        _run(["a.tiff", "b_hold.tiff", "c_hold.tiff", "d.tiff"], out, control=control, new_pool=new_pool)
    assert (out / "a" / "complete").is_file()
    assert not (out / "b_hold").exists()
    assert (earlier / "summary.json").is_file() and not (earlier / "complete").exists()
    assert not (out / "d").exists()
    assert not _pid_alive(int((earlier / "started").read_text()))


def test_cancel_terminates_the_workers_and_removes_unfinished_folders(tmp_path):
    _check_cancel_stops_workers(tmp_path, fork_pool)


def test_a_crashed_spawned_worker_fails_its_slide_only(tmp_path):
    _check_crash_fails_only_its_slide(tmp_path, processes.spawn_pool)


def test_cancel_terminates_spawned_workers(tmp_path):
    _check_cancel_stops_workers(tmp_path, processes.spawn_pool)


def test_analyze_slides_with_workers_goes_on_after_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(processes, "spawn_pool", fork_pool)
    monkeypatch.setattr(processes, "analyze_slide_folder_job", fake_slide_job)
    monkeypatch.setattr(jobs_analysis, "read_model_info", lambda path: None)
    results = analyze_slides(["x/a.tiff", "x/b_crash.tiff", "x/c.tiff"], tmp_path, workers=2)
    assert [r.error for r in results] == [DONE, processes.CRASH_MESSAGE, DONE]


def test_a_model_that_cannot_load_stops_a_parallel_run_before_any_process(monkeypatch, tmp_path):
    def no_pool(workers, started):
        raise AssertionError("no process may start")

    monkeypatch.setattr(processes, "spawn_pool", no_pool)
    with pytest.raises(ModelLoadError):
        analyze_slides(["a.tiff", "b.tiff"], tmp_path / "out", AnalyzeOptions(model="no-such-model"), workers=2)
    assert not (tmp_path / "out").exists()


def _crash_on_start(started):
    os._exit(4)


def workers_that_cannot_start(workers, started):
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_crash_on_start, initargs=(started,))


def test_workers_that_cannot_start_fail_the_slides_after_one_retry(tmp_path):
    pools = []

    def counting(workers, started):
        pools.append(workers)
        return workers_that_cannot_start(workers, started)

    results, events = _run(["a.tiff", "b.tiff", "c.tiff"], tmp_path / "out", new_pool=counting)
    assert [r.error for r in results] == [processes.NO_START_MESSAGE] * 3
    assert pools == [2, 2] and not (tmp_path / "out").exists()
