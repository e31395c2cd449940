"""Limits on untrusted annotation files, checked while they are parsed.

They are far above any real slide's annotations (a CAMELYON16 XML file is at most a few
megabytes, its largest polygon a few thousand vertices; QuPath exports of cell detections
reach tens of thousands of objects) and low enough that a hostile or broken file cannot
exhaust memory or freeze the viewer. The writers check the same limits before writing
(``safe_read.VertexBudget(writing=True)``, ``check_output_size``), so that a file we write
is never one we refuse to read.
"""

from __future__ import annotations

MAX_FILE_BYTES = 256 * 1024 * 1024
"""Largest annotation file read (bytes)."""

MAX_ANNOTATIONS = 500_000
"""Most annotations (features, ``Annotation`` elements) in one file."""

MAX_VERTICES_PER_ANNOTATION = 2_000_000
"""Most vertices in one annotation (all its rings together)."""

MAX_TOTAL_VERTICES = 20_000_000
"""Most vertices in one file."""

MAX_TEXT_CHARS = 100_000
"""Longest name, note or class name kept (longer text is refused, not truncated)."""

MAX_COORDINATE = 1e9
"""Largest absolute level-0 coordinate (px); slides are below 1e6 px a side."""
