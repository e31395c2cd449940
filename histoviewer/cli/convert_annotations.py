"""``histoviewer convert-annotations IN OUT``: QuPath GeoJSON <-> ASAP (CAMELYON) XML.

Formats come from the extensions (``.geojson``/``.json``, ``.xml``); the CAMELYON16 lesion
JSON of ``shared/data`` is read as well. Input files are parsed safely (size and vertex
limits, no XML entities); what the output format cannot hold is listed as warnings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_convert"]


def register(sub) -> None:
    p = sub.add_parser(
        "convert-annotations", help="convert annotations between QuPath GeoJSON and ASAP XML",
        description="Convert an annotation file; formats from the extensions: .geojson/.json "
                    "(QuPath GeoJSON; CAMELYON16 lesion JSON is read too) and .xml (ASAP/CAMELYON). "
                    "Coordinates are level-0 pixels in both.")
    p.add_argument("input", type=Path, metavar="IN")
    p.add_argument("output", type=Path, metavar="OUT")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from histoviewer.core.annotations.files import format_for, load_annotations, save_annotations
    from histoviewer.core.errors import AnnotationFormatError

    src, dst = Path(args.input), Path(args.output)
    format_for(dst)  # an unknown output extension fails before any work
    if dst.exists() and not args.overwrite:
        raise AnnotationFormatError(f"{dst}: exists already; use --overwrite to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise AnnotationFormatError(f"{dst}: the output is the input file")
    result = load_annotations(src)
    losses = save_annotations(dst, result.annotation_set)
    warnings = [*result.warnings, *losses]
    summary = {"input": str(src), "output": str(dst), "input_format": result.format,
               "output_format": format_for(dst), "annotations": len(result.annotation_set.annotations),
               "classes": [c.name for c in result.annotation_set.classes], "warnings": warnings}
    if args.json:
        print(strict_dumps(summary, indent=1))
    else:
        print(f"{src} ({result.format}) -> {dst} ({summary['output_format']}): "
              f"{summary['annotations']} annotations")
        for w in warnings:
            print(f"warning: {w}")
    return 0
from histoviewer.core.strict_json import strict_dumps
