"""Reading untrusted annotation files: size limit first, then counting as we parse.

Limits are read from ``limits`` at each call (not copied at import), so one place sets them."""

from __future__ import annotations

import os
from pathlib import Path

from histoviewer.core.annotations import limits
from histoviewer.core.errors import AnnotationFormatError
from histoviewer.core.safe_input import require_regular_file

__all__ = ["VertexBudget", "read_limited"]


def read_limited(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of ``path``; ``AnnotationFormatError`` naming it when missing or too large."""
    path = Path(path)
    require_regular_file(path, what, AnnotationFormatError)  # a FIFO would block open() for ever
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AnnotationFormatError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    if len(data) > limits.MAX_FILE_BYTES:
        raise AnnotationFormatError(
            f"{path}: larger than {limits.MAX_FILE_BYTES // (1024 * 1024)} MiB; refused as {what} "
            "(limits.limits.MAX_FILE_BYTES)")
    return data


class VertexBudget:
    """Counts annotations and vertices of one file against the limits in ``limits``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.annotations = 0
        self.vertices = 0

    def annotation(self, where: str, n_vertices: int) -> None:
        self.annotations += 1
        self.vertices += n_vertices
        if self.annotations > limits.MAX_ANNOTATIONS:
            raise AnnotationFormatError(
                f"{self.source}: more than {limits.MAX_ANNOTATIONS} annotations (at {where}); refused")
        if n_vertices > limits.MAX_VERTICES_PER_ANNOTATION:
            raise AnnotationFormatError(
                f"{self.source}: {where} has {n_vertices} vertices, more than "
                f"{limits.MAX_VERTICES_PER_ANNOTATION}; refused")
        if self.vertices > limits.MAX_TOTAL_VERTICES:
            raise AnnotationFormatError(
                f"{self.source}: more than {limits.MAX_TOTAL_VERTICES} vertices in all (at {where}); refused")
