"""Analyse slides and the cases they form: the loop ``histoviewer analyze`` and the case view
both run.

Three ways to run the slides, one result shape (outcomes in input order, each a typed
``SlideSummary`` or a ``SlideFailure`` for a slide that failed; one slide's failure never
loses the others):

- in this process (default): the model is loaded once for every slide; progress is one
  stage per slide, in patches; cancel stops between regions;
- ``workers > 1``: local processes (spawned), each loading the model (``jobs.processes``:
  a worker that dies fails its own slide only; the others are rerun in a fresh pool);
- ``scheduler``: the same per-slide function on a Dask distributed cluster.

Each slide writes into its own folder (``jobs.slide_folders``: unique, safe names that never
take OUT's own files or another slide's results), filled as a temporary folder that takes
the folder's place only when complete; a write error fails that slide alone.

A cancelled run (``control.cancel``) raises ``Cancelled``: the slide in hand leaves no
output folder, and no case files are written. Slides finished before stay complete.
In this process and in local processes that holds fully: worker processes are terminated
and joined before ``Cancelled`` is raised, and the folders this run created for slides
that did not finish are removed (a folder an earlier run left is never deleted).
On a Dask cluster it holds only in part: ``client.cancel`` drops the slides still queued,
but cannot interrupt a task already running on a worker; such a slide's task goes on and
may write its complete folder after ``Cancelled`` was raised (only its folder, if still
empty, is removed at cancel). The case files are never written after a cancel.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histoviewer.core.analysis.case import CaseOutputs, write_case_outputs
from histoviewer.core.analysis.summary import SlideFailure, SlideOutcome
from histoviewer.core.atomic import check_output, clean_stale_partials
from histoviewer.core.cpu_cores import usable_cores
from histoviewer.core.errors import Cancelled, HistoViewerError, InferenceError, ModelLoadError
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide, remove_if_empty
from histoviewer.core.inference.model_loading import PendingModel, loaded_model
from histoviewer.core.jobs.processes import run_in_processes
from histoviewer.core.jobs.slide_folders import SlideFolder, analyze_into, analyze_slide_folder_job, slide_folders
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.model_file import read_model_info, read_model_info_unverified
from histoviewer.core.models.registry import open_model, resolve_model_path
from histoviewer.core.progress import NO_CONTROL, JobControl

log = logging.getLogger(__name__)

__all__ = ["CaseRun", "SlideDone", "SlideStarted", "analyze_case", "analyze_slides"]

SlideStarted = Callable[[int, Path], None]  # (index in the input, slide path)
SlideDone = Callable[[int, SlideOutcome], None]  # (index in the input, summary or failure)


@dataclass(frozen=True)
class CaseRun:
    """What ``analyze_case`` did: the per-slide summaries (input order) and the case files."""

    summaries: tuple[SlideOutcome, ...]
    outputs: CaseOutputs


def _failure(slide: str | os.PathLike[str], message: str, setting: str | None = None) -> SlideFailure:
    return SlideFailure(str(slide), message, setting)


def _result_or_failure(future: Any, slide: str) -> SlideOutcome:
    """A worker's summary, or a failure when the worker itself died (killed process, lost
    Dask worker, unexpected exception)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - reported per slide, the run goes on
        return _failure(slide, f"worker failed: {type(exc).__name__}: {exc}")


def _collect(futures: Sequence[Future | Any], slides: Sequence[Path], control: JobControl,
             on_started: SlideStarted, on_done: SlideDone, cancel_rest: Callable[[], None]) -> list[SlideOutcome]:
    results: list[SlideOutcome] = []
    for i, (slide, future) in enumerate(zip(slides, futures)):
        on_started(i, slide)
        while True:  # wait in short steps so a cancel is heard while a worker runs
            if control.cancelled():
                cancel_rest()
                control.check("analysis")
            try:
                future.result(timeout=0.2)
            except Exception:  # noqa: BLE001 - done (with an error): handled below
                if not future.done():
                    continue
            break
        results.append(_result_or_failure(future, str(slide)))
        on_done(i, results[-1])
    return results


def _in_processes(slides: list[Path], folders: list[Path], options: AnalyzeOptions, workers: int,
                  control: JobControl, on_started: SlideStarted, on_done: SlideDone) -> list[SlideOutcome]:
    # checked once here (the model file's header, cheap) rather than once per slide in workers
    read_model_info(resolve_model_path(options.model))
    return run_in_processes(slides, folders, options, workers, control, on_started, on_done, cpus=usable_cores())


def _on_dask(slides: list[Path], folders: list[Path], options: AnalyzeOptions, scheduler: str,
             control: JobControl, on_started: SlideStarted, on_done: SlideDone) -> list[SlideOutcome]:
    try:
        from dask.distributed import Client  # lazy: optional dependency, only for cluster runs
    except ImportError as exc:
        # no setting: the fix is installing Dask, not another --scheduler value
        raise InferenceError("running on a Dask cluster needs Dask: pip install 'dask[distributed]'") from exc
    with Client(scheduler) as client:
        futures = [client.submit(analyze_slide_folder_job, str(s), str(f), options, pure=False)
                   for s, f in zip(slides, folders)]

        def cancel_rest() -> None:
            client.cancel(futures)  # queued tasks are dropped; a running one cannot be stopped
            for folder, future in zip(folders, futures):
                if not future.done():
                    remove_if_empty(folder)

        return _collect(futures, slides, control, on_started, on_done, cancel_rest)


def _in_this_process(slides: list[Path], folders: list[Path], options: AnalyzeOptions, control: JobControl,
                     on_started: SlideStarted, on_done: SlideDone,
                     model: PatchClassifier | PendingModel | None = None) -> list[SlideOutcome]:
    if model is None:
        model = _open_model_early(options.model, options.device)  # once for every slide
    results: list[SlideOutcome] = []
    try:
        for i, (slide, out) in enumerate(zip(slides, folders)):
            control.check("analysis")
            on_started(i, slide)
            try:  # written into a temporary folder that becomes ``out`` only when complete
                summary: SlideOutcome = analyze_into(
                    out, lambda tmp, slide=slide: analyze_slide(slide, tmp, model, options, control=control))
            except Cancelled:  # a HistoViewerError too, but it ends the run instead of a slide
                raise
            except HistoViewerError as exc:
                _raise_if_not_loaded(model)  # a model that cannot load fails the run, not one slide
                summary = _failure(slide, str(exc), exc.setting)
            except Exception as exc:
                _raise_if_not_loaded(model)
                log.exception("analysis of %s failed", slide)
                summary = _failure(slide, f"{type(exc).__name__}: {exc}")
            results.append(summary)
            on_done(i, summary)
        loaded_model(model)  # as when it loaded first: a model that cannot load fails the run
    finally:
        model.close()
    return results


def _open_model_early(spec: str, device: str) -> PatchClassifier | PendingModel:
    """The model of an in-process run: loading on a thread while the first slide is read
    (start-up: ~1 s, mostly importing torch) when its file's description can be read first;
    else loaded here (``open_model`` raises what is wrong with it)."""
    try:  # the header alone (no torch); ``open_model`` on the thread verifies the whole file
        info = read_model_info_unverified(resolve_model_path(spec))
    except ModelLoadError:
        return open_model(spec, device=device)
    return PendingModel(info, lambda: open_model(spec, device=device))


def _raise_if_not_loaded(model: PatchClassifier | PendingModel) -> None:
    """Raise the error of a model that failed to load (after a slide failed because of it)."""
    if isinstance(model, PendingModel) and model.done():
        model.result()


def analyze_slides(
    slides: Sequence[str | os.PathLike[str]],
    out_root: str | os.PathLike[str],
    options: AnalyzeOptions = AnalyzeOptions(),
    *,
    workers: int = 1,
    scheduler: str | None = None,
    control: JobControl = NO_CONTROL,
    on_started: SlideStarted | None = None,
    on_done: SlideDone | None = None,
    folders: Sequence[SlideFolder] | None = None,
    model: PatchClassifier | PendingModel | None = None,
) -> list[SlideOutcome]:
    """Analyse ``slides`` into ``out_root/<slide name>/``; summaries in input order.

    ``model``: the loaded (or loading) ``options.model`` for a run in this process (one
    slide, or ``workers`` 1, no ``scheduler``), which closes it; None: loaded here.

    ``folders``: where each slide goes (``slide_folders(out_root, slides)``, computed here
    when None): unique, safe names that never take OUT's own files; each folder appears
    complete or not at all (``jobs.slide_folders``). A slide that fails, writing included,
    is a ``SlideFailure`` and the others go on.

    ``on_started(i, path)`` / ``on_done(i, summary)`` are called on the calling thread as
    each slide starts and ends (for parallel runs: as its result is collected, in order).
    Raises ``ModelLoadError`` when the model cannot be loaded (in-process runs) or its file
    not read (``workers > 1``: checked once before any process starts),
    ``InferenceError`` when Dask is asked for but missing, ``WriteError`` when ``out_root``
    cannot be a folder (a file, or one of the slides), ``Cancelled`` when cancelled.
    """
    paths = [Path(s) for s in slides]
    out = check_output(out_root, inputs=paths, folder=True)
    chosen = [f.path for f in (folders if folders is not None else slide_folders(out, paths))]
    if len(chosen) != len(paths):
        raise InferenceError(f"{out}: {len(chosen)} output folders for {len(paths)} slides")
    if out.is_dir():
        clean_stale_partials(out)  # folders a killed run of this host left
    started = on_started or (lambda _i, _p: None)
    done = on_done or (lambda _i, _s: None)
    if model is not None and (scheduler or (workers > 1 and len(paths) > 1)):
        model.close()  # not used: the workers load their own
    if scheduler:
        return _on_dask(paths, chosen, options, scheduler, control, started, done)
    if workers > 1 and len(paths) > 1:
        return _in_processes(paths, chosen, options, workers, control, started, done)
    return _in_this_process(paths, chosen, options, control, started, done, model)


def analyze_case(
    slides: Sequence[str | os.PathLike[str]],
    out_root: str | os.PathLike[str],
    options: AnalyzeOptions = AnalyzeOptions(),
    *,
    workers: int = 1,
    scheduler: str | None = None,
    control: JobControl = NO_CONTROL,
    on_started: SlideStarted | None = None,
    on_done: SlideDone | None = None,
    folders: Sequence[SlideFolder] | None = None,
    model: PatchClassifier | PendingModel | None = None,
) -> CaseRun:
    """``analyze_slides``, then the cases the slides form (CAMELYON17 patients, else
    folders): their pN stages in ``out_root/stages.csv`` and ``out_root/cases.json``.
    Raises ``InferenceError`` when the case files cannot be written."""
    summaries = analyze_slides(slides, out_root, options, workers=workers, scheduler=scheduler,
                               control=control, on_started=on_started, on_done=on_done, folders=folders,
                               model=model)
    control.check("analysis")
    try:
        outputs = write_case_outputs(out_root, summaries)
    except OSError as exc:
        raise InferenceError(f"{out_root}: cannot write the case files: {exc}") from exc
    return CaseRun(tuple(summaries), outputs)
