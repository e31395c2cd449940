"""The one orchestration layer both front ends call (top of ``core``: it may import any other
part of core; nothing in core imports it).

- ``analysis``: analyse slides (in this process with one model for all of them, in local
  processes, or on a Dask cluster) and the cases they form (``stages.csv``, ``cases.json``).
- ``exports``: one export of a slide's heatmap (image, overlay, pyramidal TIFF, raw
  probabilities, report), from an ``ExportRequest``.
- ``reports``: the report job (PDF, JSON, CSV tables) of analysis folders or of one slide;
  the front end passes the PDF writer (Qt code) in.
- ``processes``: the worker-process runner behind ``analyze_slides(workers=N)``.
- ``slide_folders``: each slide's output folder (unique, safe names) and its whole-or-nothing
  writing, for every way of running the slides.

Progress and cancel: ``core.progress.JobControl``. The CLI drives tqdm bars from it
(``cli.progress.cli_control``); the GUI runs these functions on a worker thread, relays
progress through signals and cancels by setting the control's ``threading.Event``.
"""

from histoviewer.core.jobs.analysis import CaseRun, analyze_case, analyze_slides
from histoviewer.core.jobs.exports import EXPORT_KINDS, ExportRequest, run_export
from histoviewer.core.jobs.reports import ReportFiles, write_report, write_report_files

__all__ = ["EXPORT_KINDS", "CaseRun", "ExportRequest", "ReportFiles", "analyze_case", "analyze_slides", "run_export",
           "write_report", "write_report_files"]
