"""The one CSV writer: every CSV HistoViewer writes (stages, submission, report tables,
patch predictions) goes through ``csv_text``, so no cell is ever read as a formula.

Spreadsheets (Excel, LibreOffice, Google Sheets) run a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return as a formula (``=HYPERLINK(...)`` in a slide's name
becomes a live link, ``=cmd|...`` worse). Such a text cell gets a leading ``'`` (OWASP's
advice; the spreadsheet shows the text as it was). A plain number (``-0.5``, ``+3e-4``)
cannot be a formula and is written as it is. Leading spaces do not hide a formula.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["FORMULA_START", "csv_cell", "csv_text"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def csv_cell(value: Any) -> str:
    """``value`` as one safe CSV cell: None -> "", numbers as they are, text that a
    spreadsheet would run as a formula prefixed with ``'``."""
    if value is None:
        return ""
    text = str(value)
    # Spreadsheets skip leading spaces before they look for a formula (" =1+1" runs too).
    if text.lstrip(" ").startswith(FORMULA_START) and not _NUMBER.match(text.strip(" ")):
        return "'" + text
    return text


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The CSV text (``\\n`` line ends) of ``header`` and ``rows``, every cell through
    ``csv_cell``. Raises ``ValueError`` for a row whose length is not the header's."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in header])
    for i, row in enumerate(rows, start=1):
        if len(row) != len(header):  # a programming error, caught by the tests
            raise ValueError(
                f"CSV row {i} has {len(row)} cells for {len(header)} columns"
            )
        writer.writerow([csv_cell(c) for c in row])
    return buf.getvalue()
