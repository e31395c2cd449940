"""Reading untrusted annotation files: a regular file, size limit first, then counting as we
parse; and the same limits for what the writers produce (what we write, we read back).

Limits are read from ``limits`` at each call (not copied at import), so one place sets them."""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

import numpy as np

from histoviewer.core.annotations import limits
from histoviewer.core.errors import AnnotationFormatError
from histoviewer.core.safe_input import require_regular_file

__all__ = ["MAX_XML_SPAN_BYTES", "VertexBudget", "check_output_size", "check_xml_spans", "read_limited"]

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB"


def read_limited(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of ``path`` (gunzipped when it is gzip: ``.geojson.gz``), at most
    ``limits.MAX_FILE_BYTES`` of them; ``AnnotationFormatError`` naming it when missing,
    not a regular file (a FIFO or device would block or never end), or too large."""
    path = Path(path)
    require_regular_file(path, what, AnnotationFormatError)  # a FIFO would block open() for ever
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once instead of hanging;
        # the type check below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise AnnotationFormatError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AnnotationFormatError(f"{path}: not a regular file (a pipe, device or folder); refused as {what}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # closed by the file object
            data = handle.read(limits.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AnnotationFormatError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limits.MAX_FILE_BYTES:
        raise AnnotationFormatError(
            f"{path}: larger than {_mib(limits.MAX_FILE_BYTES)}; refused as {what} (limits.MAX_FILE_BYTES)")
    if data[:2] == GZIP_MAGIC:
        data = _gunzip_limited(data, path, what)
    return data


def _gunzip_limited(data: bytes, path: Path, what: str) -> bytes:
    """Decompress gzip ``data`` chunk by chunk, refusing output beyond the size limit (a
    small file can expand a thousandfold)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    total = 0
    try:
        pending = data
        while pending:
            piece = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            total += len(piece)
            out.append(piece)
            if total > limits.MAX_FILE_BYTES:
                raise AnnotationFormatError(
                    f"{path}: decompresses to more than {_mib(limits.MAX_FILE_BYTES)}; refused as {what}")
            if inflater.eof:
                break
    except zlib.error as exc:
        raise AnnotationFormatError(f"{path}: damaged gzip data: {exc}") from exc
    if not inflater.eof:
        raise AnnotationFormatError(f"{path}: gzip data ends early (truncated file)")
    return b"".join(out)


MAX_XML_SPAN_BYTES = 16 * 1024 * 1024
"""Longest stretch of an XML file between two ``<`` (a start tag with its attributes, or the
text after it). expat (2.5, as bundled with Python 3.11) gets its input from Python in 1 MiB
pieces and rescans an unfinished token from its start at each piece, so one 200 MiB
attribute took 20 s (quadratic); the largest tag we write (four attributes of at most
``MAX_TEXT_CHARS`` characters, escaped) is a few MiB."""
_SPAN_BLOCK = 16 * 1024 * 1024
MAX_XML_MARKUP_COUNT = 10_000  # comments or processing instructions in one annotation file


def check_xml_spans(data: bytes, source: str) -> None:
    """Refuse XML with a stretch longer than ``MAX_XML_SPAN_BYTES`` between two ``<``
    before parsing it (linear, in blocks: no copy of the whole file)."""
    if len(data) > MAX_XML_SPAN_BYTES:
        _check_spans(data, source)
    # Comments and processing instructions may hold "<" but are single tokens to expat (also
    # rescanned at every piece); annotation files have a handful at most.
    for opener, closer, what in ((b"<!--", b"-->", "comments"), (b"<?", b"?>", "processing instructions")):
        if data.count(opener) > MAX_XML_MARKUP_COUNT:
            raise AnnotationFormatError(f"{source}: more than {MAX_XML_MARKUP_COUNT} XML {what}; refused")
        at = data.find(opener)
        while at >= 0:
            end = data.find(closer, at + len(opener), at + MAX_XML_SPAN_BYTES + len(closer))
            if end < 0:
                if len(data) - at <= MAX_XML_SPAN_BYTES:
                    break  # never closed: expat says where
                _span_error(source, at)
            at = data.find(opener, end + len(closer))


def _check_spans(data: bytes, source: str) -> None:
    view = np.frombuffer(data, np.uint8)
    last = 0  # the previous "<" (the start of the file counts as one)
    for start in range(0, len(view), _SPAN_BLOCK):
        found = np.flatnonzero(view[start:start + _SPAN_BLOCK] == ord("<")) + start
        if len(found):
            gaps = np.diff(found, prepend=last)
            worst = int(np.argmax(gaps))
            if gaps[worst] > MAX_XML_SPAN_BYTES:
                _span_error(source, int(found[worst] - gaps[worst]))
            last = int(found[-1])
        elif min(start + _SPAN_BLOCK, len(view)) - last > MAX_XML_SPAN_BYTES:
            _span_error(source, last)
    if len(view) - last > MAX_XML_SPAN_BYTES:
        _span_error(source, last)


def _span_error(source: str, offset: int) -> None:
    raise AnnotationFormatError(
        f"{source}: a single tag or text of more than {_mib(MAX_XML_SPAN_BYTES)} from byte {offset}; refused "
        f"(annotation names and attributes are at most {limits.MAX_TEXT_CHARS} characters)")


def check_output_size(target: str, n_bytes: int) -> None:
    """Refuse (before anything is written) an annotation file our own reader would refuse."""
    if n_bytes > limits.MAX_FILE_BYTES:
        raise AnnotationFormatError(
            f"{target}: the annotations would make a file of at least {n_bytes / (1024 * 1024):.1f} MiB, more "
            f"than the {_mib(limits.MAX_FILE_BYTES)} annotation files are read back at; not written "
            "(split the annotations, or use GeoJSON when writing XML: it is smaller)")


class VertexBudget:
    """Counts annotations and vertices of one file against the limits in ``limits``.

    Readers count what they parse; writers count what they are about to write
    (``writing=True``), so a file we write is never one our reader refuses."""

    def __init__(self, source: str, *, writing: bool = False) -> None:
        self.source = source
        self.annotations = 0
        self.vertices = 0
        self._refused = ("; not written: our reader would refuse the file" if writing else "; refused")

    def annotation(self, where: str, n_vertices: int) -> None:
        self.annotations += 1
        self.vertices += n_vertices
        if self.annotations > limits.MAX_ANNOTATIONS:
            raise AnnotationFormatError(
                f"{self.source}: more than {limits.MAX_ANNOTATIONS} annotations (at {where}){self._refused}")
        if n_vertices > limits.MAX_VERTICES_PER_ANNOTATION:
            raise AnnotationFormatError(
                f"{self.source}: {where} has {n_vertices} vertices, more than "
                f"{limits.MAX_VERTICES_PER_ANNOTATION}{self._refused}")
        if self.vertices > limits.MAX_TOTAL_VERTICES:
            raise AnnotationFormatError(
                f"{self.source}: more than {limits.MAX_TOTAL_VERTICES} vertices in all (at {where}){self._refused}")
