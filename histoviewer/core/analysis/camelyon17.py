"""CAMELYON17 label files and cases (a patient's set of node slides).

The format (one CSV, header ``patient,stage``)::

    patient,stage
    patient_004.zip,pN1
    patient_004_node_0.tif,negative
    patient_004_node_3.tif,macro

Node rows carry a slide label (``negative``, ``itc``, ``micro``, ``macro``); patient rows
(``<patient>.zip``) a pN stage. ``read_node_labels`` reads node rows and ignores patient
rows; ``read_patient_stages`` reads patient rows (for kappa); ``submission_csv`` writes a
patient row followed by its node rows, patients and nodes in natural order.

A case is CAMELYON17-named slides (``patient_<p>_node_<n>.<ext>``) grouped by ``<p>``, or
otherwise the slides of one folder, named after the folder.

A node's identity (``node_identity``) is its patient and node number, whatever the extension
or the leading zeros: ``patient_004_node_1.tif``, ``.tiff``, ``.svs``, no extension and
``patient_4_node_01`` are one node (patients are written ``patient_004``, as CAMELYON17
names them). A slide without a CAMELYON17 name is its file stem in its case. One node given
twice would be counted twice (pN1 read as pN2): ``read_node_labels`` collapses the same label
given twice (with a warning) and refuses two different labels, naming both rows;
``check_unique_nodes`` refuses two slides of one node.

Node rows may say ``unknown`` (as ``analyze`` writes a node without a final label): the node
is unresolved and staged as ``staging.stage_patient`` says.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from histoviewer.core.analysis.staging import NodeResult, PNStage, StageResult, stage_patient
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.csv_table import csv_text
from histoviewer.core.errors import StagingError
from histoviewer.core.safe_input import require_regular_file
from histoviewer.core.staging_terms import NodeLabel

log = logging.getLogger(__name__)

__all__ = [
    "case_of",
    "check_unique_nodes",
    "group_cases",
    "natural_key",
    "node_identity",
    "read_node_labels",
    "read_patient_stages",
    "stage_cases",
    "submission_csv",
    "write_submission",
]

# at most 9 digits: int() of a hostile 5000-digit number raises (Python's 4300-digit limit)
_NODE_RE = re.compile(r"^patient_(\d{1,9})_node_(\d{1,9})(?:\.[^/\\]+)?$", re.IGNORECASE)
# Any patient row: ``analyze`` names the case of slides without CAMELYON17 names after their
# folder (``<folder>.zip``), and lists that case's nodes right after it.
_ANY_PATIENT_RE = re.compile(r"^(.+)\.zip$", re.IGNORECASE)
_CAMELYON_PATIENT_RE = re.compile(r"^patient_(\d{1,9})$", re.IGNORECASE)


def _patient_name(number: str) -> str:
    return f"patient_{int(number):03d}"  # CAMELYON17 writes patient_004: patient_4 is the same patient


def _patient_of_row(name: str, *, fold_case: bool = False) -> str:
    """The patient of a ``<patient>.zip`` row, CAMELYON17 names normalised; another name as
    written (``analyze`` names a case after its folder, ``MyCase``: staged again it stays
    ``MyCase``), or lower case with ``fold_case`` (to match two files' patients)."""
    stem = name[: -len(".zip")]
    m = _CAMELYON_PATIENT_RE.match(stem)
    if m:
        return _patient_name(m.group(1))
    return stem.lower() if fold_case else stem


def case_of(slide: str | os.PathLike[str]) -> tuple[str, int | None]:
    """(patient, node number) of a CAMELYON17 slide name; else (parent folder name, None)."""
    path = Path(slide)
    m = _NODE_RE.match(path.name)
    if m:
        return _patient_name(m.group(1)), int(m.group(2))
    return _folder_of(path).name or "case", None


def _folder_of(slide: str | os.PathLike[str]) -> Path:
    """The folder a slide was given in: absolute, ``..`` resolved by name, symlinks *not*
    followed (a link in the case's folder belongs to that case, not to its target's folder)."""
    return Path(os.path.abspath(slide)).parent


def _stem(name: str) -> str:
    return Path(name).stem.lower()  # slide.tif and slide.svs are one slide in one case


def node_identity(slide: str | os.PathLike[str]) -> tuple[str, int | str]:
    """(patient, node) identifying a slide's node: the node number of a CAMELYON17 name
    (extension and leading zeros ignored), else the file stem (lower case) in its case."""
    patient, node = case_of(slide)
    return patient, (node if node is not None else _stem(Path(slide).name))


def check_unique_nodes(patient: str, slides: Iterable[str | os.PathLike[str]]) -> None:
    """``StagingError`` naming both slides when two of ``slides`` are one node of ``patient``,
    or when slides without CAMELYON17 names come from two different folders of one name
    (``/p1/HE/a.svs`` and ``/p2/HE/b.svs``: two patients that ``case_of`` names alike, whose
    nodes staged together would give one wrong stage)."""
    slides = list(slides)
    folders: dict[Path, str] = {}
    for s in slides:
        if case_of(s)[1] is None:  # named after its folder: resolved as ``case_of`` does
            folders.setdefault(_folder_of(s), str(s))
    if len(folders) > 1:
        (first, a), (second, b) = list(folders.items())[:2]
        raise StagingError(f"{patient}: {a} and {b} lie in two different folders named {patient!r} "
                           f"({first} and {second}); staged as one case they would mix two patients' "
                           "nodes: analyse each patient's folder on its own, or name the slides "
                           "patient_<p>_node_<n>")
    seen: dict[tuple[str, int | str], str] = {}
    for s in slides:
        key = node_identity(s)
        if key in seen:
            raise StagingError(f"{patient}: {seen[key]} and {s} are the same node ({_node_text(key)}); "
                               "a node counted twice would change the stage: give each node once")
        seen[key] = str(s)


def _node_text(key: tuple[str, int | str]) -> str:
    patient, node = key
    return f"{patient} node {node}" if isinstance(node, int) else f"{patient}/{node}"


def group_cases(slides: Iterable[str | os.PathLike[str]]) -> dict[str, list[str]]:
    """Slides grouped by patient (``case_of``), in natural node order."""
    cases: dict[str, list[tuple[int, str, str]]] = {}
    for s in slides:
        patient, node = case_of(s)
        cases.setdefault(patient, []).append((node if node is not None else -1, Path(s).name, str(s)))
    return {p: [s for _n, _name, s in sorted(v)] for p, v in sorted(cases.items(), key=lambda kv: _natural(kv[0]))}


def natural_key(text: str) -> tuple:
    """Sort key for natural order (``node_2`` before ``node_10``). Digit runs compare by
    length then text, never through int(): a 5000-digit run or a lone ``²`` (isdigit, but
    no int) in a slide or folder name must not raise."""
    parts = re.split(r"(\d+)", text)  # odd indices: the digit runs
    return tuple((len(p.lstrip("0")), p.lstrip("0"), p) if i % 2 else p for i, p in enumerate(parts))


_natural = natural_key


def _rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(line number, cells) of the data rows, after checking the ``patient,stage`` header."""
    require_regular_file(path, "label file", StagingError)  # a FIFO would block for ever
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise StagingError(f"{path}: cannot read the label file: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    header_seen = False
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not header_seen:
            if [c.lower() for c in cells] != ["patient", "stage"]:
                raise StagingError(f"{path}:{line}: expected the header 'patient,stage', got {','.join(cells)!r}")
            header_seen = True
            continue
        if len(cells) != 2:
            raise StagingError(f"{path}:{line}: expected 2 columns (name,label), got {len(cells)}: {row!r}")
        yield line, cells
    if not header_seen:
        raise StagingError(f"{path}: empty label file (expected the header 'patient,stage')")


def read_node_labels(path: str | os.PathLike[str],
                     warn: Callable[[str], None] | None = None) -> dict[str, list[NodeResult]]:
    """Node labels per patient from a CAMELYON17 CSV; patient rows are ignored.

    Raises ``StagingError`` naming the file and line for a bad header, a name that is not
    ``patient_<p>_node_<n>.<ext>`` or ``patient_<p>.zip``, an unknown label, or a node given
    twice with different labels (naming both rows; ``node_identity``). The same label given
    twice counts once, with a warning through ``warn`` (the log when None). ``unknown`` is an
    unresolved node.
    """
    path = Path(path)
    warn = warn or log.warning
    out: dict[str, list[tuple[int, NodeResult]]] = {}
    seen: dict[tuple[str, int | str], tuple[int, str, NodeLabel]] = {}
    current: str | None = None  # the patient of the last patient row: its nodes follow it
    for line, (name, value) in _rows(path):
        if _ANY_PATIENT_RE.match(name):
            current = _patient_of_row(name)
            continue
        m = _NODE_RE.match(name)
        if m:
            patient, order = _patient_name(m.group(1)), int(m.group(2))
            key: tuple[str, int | str] = (patient, order)
        elif current is not None:  # a node without a CAMELYON17 name, under its case's row
            patient, order = current, line
            key = (patient, _stem(name))
        else:
            raise StagingError(f"{path}:{line}: {name!r} is neither a node (patient_<p>_node_<n>.tif) "
                               "nor a patient (patient_<p>.zip), and no <patient>.zip row comes before it")
        try:
            label = NodeLabel.parse(value)
        except ValueError as exc:
            raise StagingError(f"{path}:{line}: {exc}") from None
        if key in seen:
            first_line, first_name, first_label = seen[key]
            if first_label is not label:
                raise StagingError(
                    f"{path}:{line}: node {name} ({label.value}) is {first_name} of {path}:{first_line} "
                    f"({first_label.value}) again, with a different label ({_node_text(key)}); "
                    "give each node once")
            warn(f"{path}:{line}: node {name} repeats {first_name} of line {first_line} "
                 f"({_node_text(key)}, same label {label.value}); counted once")
            continue
        seen[key] = (line, name, label)
        reason = f"given as unknown in {path.name}:{line}" if label is NodeLabel.UNKNOWN else None
        out.setdefault(patient, []).append((order, NodeResult(name, label, reason=reason)))
    if not out:
        raise StagingError(f"{path}: no node rows (patient_<p>_node_<n>.tif,<label>) found")
    return {p: [n for _k, n in sorted(v, key=lambda t: t[0])] for p, v in sorted(out.items(), key=lambda kv: _natural(kv[0]))}


def read_patient_stages(path: str | os.PathLike[str]) -> dict[str, PNStage]:
    """pN stage per patient from the ``patient_<p>.zip,<stage>`` rows; node rows are ignored."""
    path = Path(path)
    out: dict[str, PNStage] = {}
    lines: dict[str, int] = {}
    for line, (name, value) in _rows(path):
        m = _ANY_PATIENT_RE.match(name)
        if not m:
            continue  # a node row
        try:
            stage = PNStage.parse(value)
        except ValueError as exc:
            raise StagingError(f"{path}:{line}: {exc}") from None
        patient = _patient_of_row(name, fold_case=True)  # a reference's and a submission's rows match
        if patient in out:
            raise StagingError(f"{path}:{line}: patient {name} already given on line {lines[patient]}")
        out[patient], lines[patient] = stage, line
    if not out:
        raise StagingError(f"{path}: no patient rows (patient_<p>.zip,<pN stage>) found")
    return out


def stage_cases(cases: dict[str, Sequence[NodeResult]]) -> list[StageResult]:
    """``stage_patient`` for every patient, in the given order."""
    return [stage_patient(p, nodes) for p, nodes in cases.items()]


def submission_csv(results: Sequence[StageResult]) -> str:
    """The CAMELYON17 submission text: header, then per patient its stage row and node rows."""
    rows: list[tuple[str, str]] = []
    for r in results:
        rows.append((f"{r.patient}.zip", r.stage.value))
        rows += [(n.node, n.label.value) for n in r.nodes]
    return csv_text(["patient", "stage"], rows)  # the one CSV writer: names never become formulas


def write_submission(path: str | os.PathLike[str], results: Sequence[StageResult]) -> Path:
    """Write ``submission_csv`` atomically; returns the path."""
    atomic_write_text(path, submission_csv(results))
    return Path(path)
