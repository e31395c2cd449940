"""Where each slide of an analysis run writes, and how its folder appears: whole or not at all.

Folder names (``slide_folders``): the slide's file name without its extension, made safe
(no path separators, control or reserved characters, no leading dots, not ``.``/``..``, not
a Windows device name, at most 100 bytes), never one of the run's own files in OUT
(``stages.csv``, ``report.pdf``... compared without case, as case-insensitive file systems
do) and unique in the run. A name already taken gets ``-2``, ``-3``..., in input order: the
first slide keeps the plain name. A name is also taken by anything already in OUT that is
not this slide's earlier analysis (a file, a user's folder, another slide's analysis), so
an earlier run's results for another slide are never replaced. Every renamed folder is
stated (``SlideFolder.note``; the CLI prints it, and ``summary.json`` records ``out_dir``).

Writing (``analyze_into``): the slide is analysed into a temporary folder beside its
folder (``core.atomic``: PID-named, so a killed run's is cleaned by the next), which
replaces the folder only when complete: a failed slide leaves its earlier results as they
were and no half-written folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from histoviewer.core.analysis.summary import SlideFailure, SlideOutcome
from histoviewer.core.atomic import same_file
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.safe_input import read_json
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.outputs import analyze_into
from histoviewer.core.models.model_threads import set_process_model_threads
from histoviewer.core.models.registry import open_model

__all__ = [
    "RUN_FILES",
    "SlideFolder",
    "analyze_into",
    "analyze_slide_folder_job",
    "safe_folder_name",
    "slide_folders",
]

# What a run writes into OUT itself (case files, the batch report and its tables): no slide
# folder may take these names.
RUN_FILES = (
    "stages.csv",
    "cases.json",
    "report.pdf",
    "report.json",
    "lesions.csv",
    "slides.csv",
    "cases.csv",
)
RUN_FILES_FOLDED = frozenset(name.casefold() for name in RUN_FILES)
_MAX_NAME_BYTES = 100
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_SUMMARY_MAX_BYTES = 64 << 20  # a summary.json larger than this is not one of ours


@dataclass(frozen=True)
class SlideFolder:
    """Where one slide's results go. ``note``: why the name differs from the slide's, or ""."""

    slide: Path
    path: Path
    note: str = ""


def safe_folder_name(slide: str | os.PathLike[str]) -> str:
    """The slide's file name without its extension, safe as one folder name anywhere."""
    name = Path(os.fspath(slide).replace("\\", "/")).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = _UNSAFE.sub("_", stem).strip().lstrip(".").rstrip(". ")
    stem = stem.encode("utf-8")[:_MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip(". ")
    if not stem:
        stem = "slide"
    if _DEVICE.match(stem):
        stem += "_"
    return stem


def _summary_slide(folder: Path) -> str | None:
    """The slide an analysis folder's ``summary.json`` names, None for none or unreadable."""
    path = folder / "summary.json"
    if not os.path.lexists(path):
        return None
    try:
        data = read_json(path, "an earlier analysis summary", HistoViewerError, max_bytes=_SUMMARY_MAX_BYTES)
    except (HistoViewerError, OSError):
        return None
    slide = data.get("slide") if isinstance(data, dict) else None
    return slide if isinstance(slide, str) else None


def _usable(candidate: Path, slide: Path, inputs: Sequence[Path]) -> bool:
    """Whether ``candidate`` may become ``slide``'s folder: absent, empty, or ``slide``'s own
    earlier analysis; never an input or anything else already there."""
    if not os.path.lexists(candidate):
        return True
    if (
        candidate.is_symlink()
        or not candidate.is_dir()
        or any(same_file(candidate, s) for s in inputs)
    ):
        return False
    try:
        if not any(candidate.iterdir()):
            return True
    except OSError:
        return False
    earlier = _summary_slide(candidate)
    return earlier is not None and (earlier == str(slide) or same_file(earlier, slide))


def slide_folders(
    out_root: str | os.PathLike[str], slides: Sequence[str | os.PathLike[str]]
) -> list[SlideFolder]:
    """Each slide's folder in ``out_root`` (see the module docstring), in input order."""
    root = Path(out_root)
    paths = [Path(s) for s in slides]
    taken = set(RUN_FILES_FOLDED)
    out: list[SlideFolder] = []
    for slide in paths:
        base = safe_folder_name(slide)
        name, k = base, 1
        while name.casefold() in taken or not _usable(root / name, slide, paths):
            k += 1
            name = f"{base}-{k}"
        taken.add(name.casefold())
        note = ""
        if name != Path(slide).stem:
            if base.casefold() in RUN_FILES_FOLDED:
                why = "the name of one of OUT's own files"
            elif k > 1:
                why = "another slide or file has that name"
            else:
                why = "the name is not safe as a folder name"
            note = f"{slide}: results in {root / name} ({why})"
        out.append(SlideFolder(slide, root / name, note))
    return out


def analyze_slide_folder_job(
    slide: str, out_dir: str, options: AnalyzeOptions
) -> SlideOutcome:
    """One slide into ``out_dir`` (whole or not at all), for a worker process or a Dask
    worker: loads the model itself; returns the summary, or a ``SlideFailure`` (with its
    ``setting``) on a HistoViewerError, a write error included. Both pickle as they are."""
    try:
        model = open_model(options.model, device=options.device)
        if options.torch_threads:  # the model's engine's threads (torch or onnxruntime)
            set_process_model_threads(model, int(options.torch_threads))
        try:
            return analyze_into(
                out_dir, lambda tmp: analyze_slide(slide, tmp, model, options)
            )
        finally:
            model.close()
    except HistoViewerError as exc:
        return SlideFailure(str(slide), str(exc), exc.setting)
