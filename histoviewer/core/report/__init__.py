"""Reports of analyses (no Qt): typed per-slide and per-case results (``model.py``), their
JSON and CSV files (``tables.py``) and the pictures of a report page (``images.py``). The
PDF itself is drawn by ``histoviewer.qt.report_pdf``."""

from histoviewer.core.report.images import SlideImages, Snapshot, render_slide_images
from histoviewer.core.report.model import (CaseReport, LesionEntry, Report, SlideReport, build_report,
                                           failed_slide_report, failed_slides, find_analysis_dirs, load_report, load_slide_report,
                                           slide_report_from_map)
from histoviewer.core.report.tables import (cases_csv, lesions_csv, slides_csv, write_report_csv,
                                            write_report_json)

__all__ = [
                                           "CaseReport",
                                           "LesionEntry",
                                           "Report",
                                           "SlideImages",
                                           "SlideReport",
                                           "Snapshot",
                                           "build_report",
                                           "cases_csv",
                                           "failed_slide_report",
                                           "failed_slides",
                                           "find_analysis_dirs",
                                           "lesions_csv",
                                           "load_report",
                                           "load_slide_report",
                                           "render_slide_images",
                                           "slide_report_from_map",
                                           "slides_csv",
                                           "write_report_csv",
                                           "write_report_json",
]
