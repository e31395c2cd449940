"""``histoviewer phantom OUT.tiff --width W --height H [...]``: write a synthetic lymph-node
slide with known metastases, and its ground truth (GeoJSON, ASAP XML, lesions JSON)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from histoviewer.cli import error_text
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.phantom import DEFAULT_LESIONS, write_phantom
from histoviewer.core.strict_json import strict_dumps
from histoviewer.core.units import l0_px_to_mm


def register(sub: Any) -> None:
    p = sub.add_parser(
        "phantom",
        help="write a synthetic H&E lymph-node slide with lesions of known size",
        description=(
            "Write a pyramidal JPEG TIFF of a synthetic H&E lymph node with metastases of "
            "exactly known size, plus OUT.geojson (QuPath), OUT.xml (ASAP/CAMELYON) and "
            "OUT.lesions.json beside it. Same seed, same files."
        ),
    )
    p.add_argument("out", metavar="OUT.tiff", help="slide file to write")
    p.add_argument("--width", type=int, required=True, help="level-0 width in pixels")
    p.add_argument("--height", type=int, required=True, help="level-0 height in pixels")
    p.add_argument("--mpp", type=float, default=0.25,
                   help="microns per pixel (default 0.25, a 40x scan)")
    p.add_argument(
        "--lesions", default=DEFAULT_LESIONS, metavar="SPEC",
        help=(
            "comma-separated kind:diameter_mm with kind itc (<= 0.2 mm), micro (<= 2 mm) or "
            f"macro (> 2 mm), or bare diameters; '' for a negative node (default {DEFAULT_LESIONS})"
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--morphology", default="ductal", choices=("ductal", "lobular"),
                   help="how the metastases look: ductal (default; large cells, pink cytoplasm) or "
                        "lobular (small crowded cells with scant cytoplasm, like the lymphocytes around them)")
    p.add_argument("--tile-size", type=int, default=512, help="TIFF tile size (default 512)")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality 1-100 (default 85)")
    p.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: one per CPU for large slides)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT.tiff and its ground-truth files when they exist (default: refuse)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    p.set_defaults(func=run)


def check_targets(out: str, overwrite: bool) -> None:
    """Refuse (before any work) a slide name whose ground-truth files would be the slide
    itself, and existing files unless ``overwrite``."""
    from pathlib import Path

    from histoviewer.core.atomic import check_output, same_file
    from histoviewer.core.errors import OverwriteRefused
    from histoviewer.core.phantom.ground_truth import ground_truth_paths

    slide = Path(out)
    truth = ground_truth_paths(slide)
    targets = [slide, truth.geojson, truth.xml, truth.lesions_json]
    for other in targets[1:]:
        if same_file(slide, other) or str(slide).casefold() == str(other).casefold():
            raise OverwriteRefused(f"{slide}: its ground truth would be written to the same file ({other}); "
                                   "give the slide a .tiff name")
    for target in targets:
        check_output(target, overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    from histoviewer.cli.progress import cli_control, close_bars

    try:
        check_targets(args.out, args.overwrite)
    except HistoViewerError as exc:
        print(error_text(exc), file=sys.stderr)
        return 2
    # A bar on a terminal's stderr, as before (stdout keeps the --json output clean).
    control = cli_control(unit="tile")
    try:
        result = write_phantom(
            args.out, width=args.width, height=args.height, mpp=args.mpp,
            lesions=args.lesions, seed=args.seed, tile_size=args.tile_size,
            jpeg_quality=args.quality, control=control, workers=args.workers,
            tumour_morphology=args.morphology,
        )
    except HistoViewerError as exc:
        print(error_text(exc), file=sys.stderr)
        return 2
    finally:
        close_bars(control)
    if args.json:
        print(strict_dumps(result.to_dict(), indent=2))
        return 0
    mm_w = l0_px_to_mm(result.width, result.mpp)
    mm_h = l0_px_to_mm(result.height, result.mpp)
    lines = [
        f"slide:       {result.slide_path} ({result.file_bytes / 2**20:.1f} MiB)",
        f"size:        {result.width} x {result.height} px at {result.mpp:g} um/px "
        f"({mm_w:.2f} x {mm_h:.2f} mm), {len(result.level_dimensions)} levels",
        f"truth:       {result.geojson_path}",
        f"             {result.xml_path}",
        f"             {result.lesions_json_path}",
    ]
    if result.lesions:
        lines.append(f"lesions:     {len(result.lesions)}")
        for les in result.lesions:
            cx, cy = les.l0_centroid
            lines.append(
                f"  {les.name:<10} {les.size_class.value:<6} {les.diameter_mm:.3f} mm "
                f"(asked {les.requested_diameter_mm:g}), area {les.area_mm2:.4f} mm2, "
                f"centre ({cx:.0f}, {cy:.0f}) px"
            )
    else:
        lines.append("lesions:     none (negative node)")
    lines.append(f"time:        {result.seconds:.1f} s")
    print("\n".join(lines))
    return 0
