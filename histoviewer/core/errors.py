"""The small error hierarchy every front end catches.

Messages name the file, say what went wrong and, where it helps, what to do, in terms of
the problem and the setting, never of one front end's controls: ``setting`` names the
setting that would fix it (``"device"``, ``"patch_mpp"``...), and each front end points at
its own control for it (the CLI adds the flag, ``cli.errors``).
"""

from __future__ import annotations


class HistoViewerError(Exception):
    """Base of every error HistoViewer raises on purpose. ``setting``: the setting (snake
    case, as the options and dataclass fields spell it) that would fix the problem, or None."""

    def __init__(self, *args: object, setting: str | None = None) -> None:
        super().__init__(*args)
        self.setting = setting


class SlideOpenError(HistoViewerError):
    """A slide file could not be opened (missing, unreadable, not a slide, unsupported)."""


class SlideReadError(HistoViewerError):
    """A slide opened, but reading pixels from it failed (for example broken tile data)."""


class PhantomSpecError(HistoViewerError, ValueError):
    """A phantom-slide request (size, lesion list) is invalid."""


class AnnotationFormatError(HistoViewerError):
    """An annotation file is malformed or unsafe."""


class ModelLoadError(HistoViewerError):
    """A model file is missing, truncated, of the wrong kind or refused as unsafe."""


class PatchDataError(HistoViewerError):
    """A patch dataset (HDF5, Kaggle folder, class folders, slide + annotations) is unusable."""


class ModelError(HistoViewerError):
    """A model could not do what was asked (bad input shape, training diverged, ...)."""


class InferenceError(HistoViewerError):
    """Whole-slide inference cannot run (no scale, bad grid, unusable output folder, ...)."""


class StagingError(HistoViewerError, ValueError):
    """Node labels cannot be turned into a pN stage (bad label file, outside the scheme)."""


class EvaluationError(HistoViewerError, ValueError):
    """Ground truth or detections for FROC / kappa are missing, malformed or inconsistent."""


class SummaryFormatError(HistoViewerError, ValueError):
    """An analysis summary (``summary.json``) is unreadable or malformed; the message names it."""


class SummaryWithoutLesionsError(SummaryFormatError):
    """A ``summary.json`` written before the analysis found lesions (it has no ``node_label``),
    read where its lesions are needed; the message names the file."""


class AnnotationStoreError(HistoViewerError):
    """Annotations could not be saved (autosave beside the slide and in the user folder failed)."""


class ExportError(HistoViewerError):
    """An export (heatmap image, overlay, raw probabilities) cannot be written."""


class Cancelled(HistoViewerError):
    """The user asked a long job (analysis, training, export) to stop; it stopped cleanly."""


class ExportCancelled(ExportError, Cancelled):
    """The user cancelled an export; its partial output file has been removed."""


class WriteError(HistoViewerError, OSError):
    """A file or folder could not be written (full disk, read-only folder, permission, a
    folder where a file is wanted, ...); the message names the path and the problem. Every
    writer raises it (``core.atomic``). It is an ``OSError`` too, so code that falls back to
    another place on ``OSError`` (the annotation autosave) keeps doing so; ``errno``,
    ``strerror`` and ``filename`` are those of the system error."""

    def __str__(self) -> str:  # OSError's own would print "[Errno n] ..." once errno is set
        return str(self.args[0]) if self.args else ""


class OverwriteRefused(WriteError):
    """Writing would replace an input of the same job (the slide itself) or, unless asked,
    an existing file; nothing was written."""


class ReportError(HistoViewerError):
    """A report (JSON, CSV, PDF) cannot be built from the given analyses or written."""
