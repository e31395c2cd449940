"""``histoviewer convert-annotations IN OUT``: QuPath GeoJSON <-> ASAP (CAMELYON) XML.

Formats come from the extensions (``.geojson``/``.json``, ``.xml``; ``.geojson.gz`` is read);
the CAMELYON16 lesion JSON of ``shared/data`` is read as well. QuPath detections (cells)
stay detections in GeoJSON and are left out of ASAP XML (a warning says so). Input files are parsed safely (size and vertex
limits, no XML entities); what the output format cannot hold is listed as warnings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from histoviewer.core.strict_json import strict_dumps

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
    from histoviewer.core.annotations.files import (
        format_for,
        load_annotations,
        save_annotations,
    )
    from histoviewer.core.atomic import check_output

    src, dst = Path(args.input), Path(args.output)
    format_for(dst, writing=True)  # an unknown output extension fails before any work
    # never over the input (by path, link or inode), over an existing file only with --overwrite
    check_output(dst, inputs=[src], overwrite=args.overwrite)
    result = load_annotations(src)
    losses = save_annotations(dst, result.annotation_set)
    warnings = [*result.warnings, *losses]
    summary = {"input": str(src), "output": str(dst), "input_format": result.format,
               "output_format": format_for(dst), "annotations": len(result.annotation_set.annotations),
               "detections": sum(1 for a in result.annotation_set.annotations if not a.is_region),
               "classes": [c.name for c in result.annotation_set.classes], "warnings": warnings}
    if args.json:
        print(strict_dumps(summary, indent=1))
    else:
        detections = summary["detections"]
        print(f"{src} ({result.format}) -> {dst} ({summary['output_format']}): "
              f"{summary['annotations'] - detections} annotations"
              + (f", {detections} detections" if detections else ""))
        for w in warnings:
            print(f"warning: {w}")
    return 0
