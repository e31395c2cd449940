"""``histoviewer info SLIDE [--json]``: slide metadata."""

from __future__ import annotations

import argparse

from histoviewer.core.slide import open_slide
from histoviewer.core.strict_json import strict_dumps
from histoviewer.core.units import l0_px_to_mm


def register(sub) -> None:
    p = sub.add_parser("info", help="print a slide's dimensions, levels, scale and vendor")
    p.add_argument("slide", help="slide file (any format OpenSlide reads, or a flat image)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--properties", action="store_true", help="include every property of the file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_slide(args.slide) as reader:
        info = reader.info
        if args.json:
            print(strict_dumps(info.to_dict(include_properties=args.properties), indent=2))
            return 0
        mpp = f"{info.mpp_x:.4f} x {info.mpp_y:.4f} um/px" if info.mpp is not None else f"unknown ({info.mpp_note}; physical sizes cannot be measured)"
        w, h = info.dimensions
        lines = [
            f"file:              {info.path}",
            f"reader:            {info.backend}",
            f"vendor:            {info.vendor or 'unknown'}",
            f"dimensions:        {w} x {h} px",
            f"microns per pixel: {mpp}",
            f"objective power:   {f'{info.objective_power:g}x' if info.objective_power else 'not stated'}"
            + (f" (magnifications use {info.base_magnification:.3g}x, from 10 um/px / mpp)"
               if not info.objective_power and info.base_magnification else ""),
            f"levels:            {info.level_count}",
        ]
        lines += [f"  level {i}: {lw} x {lh} px, downsample {ds:.4g}" for i, ((lw, lh), ds) in enumerate(zip(info.level_dimensions, info.level_downsamples))]
        lines.append(f"associated images: {', '.join(info.associated_images) or 'none'} (not shown; may carry patient identifiers)")
        if info.mpp is not None:
            lines.append(f"physical size:     {l0_px_to_mm(w, info.mpp_x):.2f} x {l0_px_to_mm(h, info.mpp_y):.2f} mm")
        if args.properties:
            lines += ["properties:"] + [f"  {k} = {v}" for k, v in sorted(info.properties.items())]
        print("\n".join(lines))
    return 0
