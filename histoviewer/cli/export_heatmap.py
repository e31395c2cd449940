"""``histoviewer export-heatmap SLIDE --model M --out FILE``: heatmap images, slide overlays,
pyramidal overlay TIFFs and raw probabilities, each with ``FILE.provenance.json``.

What is written follows the flags and the extension: ``--raw`` -> float32 TIFF of the map;
``--overlay`` -> the slide with the heatmap blended over it; otherwise the heatmap alone.
``.png`` -> one image with a legend band; ``.tif``/``.tiff`` -> a tiled pyramidal TIFF that
OpenSlide opens (legend as ``FILE.legend.png``). The map comes from ``--probability`` (an
``analyze`` result), else the viewer's heatmap cache or an earlier export's analysis, else
the model is run on the slide (once; later exports reuse it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoviewer.core.strict_json import strict_dumps

__all__ = ["register", "run_export_heatmap"]


def _region(text: str) -> tuple[float, float, float, float]:
    """``--region``: ``core.export.requests.parse_region`` (commas, semicolons or spaces)."""
    from histoviewer.core.export.requests import parse_region

    try:
        return parse_region(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return value


def register(sub) -> None:
    from histoviewer.core.colormaps import COLORMAPS, DEFAULT_COLORMAP

    p = sub.add_parser(
        "export-heatmap", help="export heatmap images, overlays and raw probabilities",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("slide", type=Path, metavar="SLIDE")
    p.add_argument("--model", default="cnn",
                   help="cnn, handcrafted, cnn-resnet (for a GPU) or a model file (default: cnn)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help=".png, .tif or .tiff")
    p.add_argument("--overlay", action="store_true", help="blend the heatmap over the slide")
    p.add_argument("--raw", action="store_true", help="write the probabilities losslessly (float32 TIFF)")
    p.add_argument("--uncertainty", action="store_true",
                   help="export the uncertainty map instead (SD of P(tumour) over 8 rotations and mirrors "
                        "of each patch): FILE.tif/.tiff its values, FILE.png a picture with a legend; from "
                        "--probability's uncertainty.tiff (analyze --uncertainty), else computed for "
                        "--region (or the whole slide: 8x the work of the heatmap)")
    p.add_argument("--region", type=_region, default=None, metavar="X,Y,W,H",
                   help="level-0 pixel rectangle x,y,width,height (commas, semicolons or spaces; "
                        "default: the whole slide)")
    p.add_argument("--um-per-px", type=float, default=None, metavar="F",
                   help="output resolution in micrometres per pixel (default: fits 4096 px, "
                        "2048 px for the heatmap alone)")
    p.add_argument("--annotations", type=Path, default=None, metavar="FILE",
                   help="draw outlines from a GeoJSON or ASAP XML file; tumour polygons get "
                        "their largest diameter")
    p.add_argument("--colormap", default=DEFAULT_COLORMAP, choices=sorted(COLORMAPS))
    p.add_argument("--threshold", type=_fraction, default=None,
                   help="colour only probabilities at or above this (default for overlays: the model's operating point, 0.5 when it states none; "
                        "0 for the heatmap alone)")
    p.add_argument("--opacity", type=_fraction, default=0.5, help="heatmap opacity over the slide")
    p.add_argument("--no-legend", action="store_true", help="no legend band / legend file")
    p.add_argument("--no-scale-bar", action="store_true", help="no scale bar in the image")
    p.add_argument("--probability", type=Path, default=None, metavar="PATH",
                   help="use this analyze result (probability.tiff or its folder) instead of "
                        "running or looking up --model")
    p.add_argument("--stride", type=int, default=None, metavar="PX", help="grid step in model pixels")
    p.add_argument("--analysis-dir", type=Path, default=None, metavar="DIR",
                   help="where analyses made for exports are kept (default: the user data folder)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (when the model must run)")
    p.add_argument("--record-slide-path", action="store_true",
                   help="name the slide by its full path in the provenance (default: its file name "
                        "only, since folder names can identify a patient or a hospital)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace FILE (and its sidecar files) when they exist; the slide and the other "
                        "inputs are never replaced")
    p.add_argument("--mpp", type=float, default=None, metavar="UM_PER_PX",
                   help="pixel size (microns per level-0 pixel) for a slide that states none; marked "
                        "user-set in the export's provenance and scale bar")
    p.add_argument("--force-mpp", action="store_true", help="let --mpp replace the pixel size the slide states")
    p.add_argument("--json", action="store_true", help="print the result as JSON, no progress bar")
    p.set_defaults(func=run_export_heatmap)


def _export_uncertainty(args: argparse.Namespace) -> int:
    """``--uncertainty``: the uncertainty map, read from an analysis or computed here."""
    from histoviewer.cli.progress import cli_control, close_bars
    from histoviewer.core.atomic import check_output
    from histoviewer.core.errors import ExportError
    from histoviewer.core.export.uncertainty import (
        export_uncertainty_map,
        read_uncertainty_analysis,
        uncertainty_for_slide,
    )

    if args.overlay:
        raise ExportError("the uncertainty map is exported alone (--out .png or .tif); drop --overlay")
    if args.raw and args.out.suffix.lower() == ".png":
        raise ExportError("--raw writes values: give --out FILE.tif (or drop --raw for a picture)")
    probability = args.probability
    inputs = [args.slide, args.annotations, probability]
    if probability is not None and probability.is_dir():
        inputs += list(probability.iterdir())
    check_output(args.out, inputs=inputs, overwrite=args.overwrite)
    check_output(args.out.with_name(args.out.name + ".provenance.json"), inputs=inputs, overwrite=args.overwrite)
    if probability is not None:
        data = read_uncertainty_analysis(probability if probability.is_dir() else probability.parent)
    else:
        control = cli_control(args.json)
        try:
            data = uncertainty_for_slide(args.slide, args.model, region=args.region, stride_px=args.stride,
                                         device=args.device, control=control, user_mpp=args.mpp,
                                         force_mpp=args.force_mpp)
        finally:
            close_bars(control)
    result = export_uncertainty_map(args.out, data, slide_path=str(args.slide), region=args.region,
                                    legend=not args.no_legend, record_full_slide_path=args.record_slide_path)
    if args.json:
        print(strict_dumps(result.to_dict(), indent=2))
        return 0
    unit = "map cells" if result.kind == "uncertainty-raw" else "px"
    print(f"{result.path}: {result.kind}, {result.size[0]} x {result.size[1]} {unit}, {result.seconds:.1f} s "
          f"(uncertainty map from {data.origin})")
    for side in result.sidecars:
        print(f"  + {side}")
    print(f"model {data.model.name}: {data.model.caution}")
    return 0


def run_export_heatmap(args: argparse.Namespace) -> int:
    from histoviewer.cli.hints import demo_warning
    from histoviewer.cli.progress import cli_control, close_bars
    from histoviewer.core.errors import ExportError
    from histoviewer.core.export import heatmap_for_slide, read_analysis
    from histoviewer.core.jobs import ExportRequest, run_export
    from histoviewer.core.jobs.exports import check_export_targets

    if args.raw and args.overlay:
        raise ExportError("--raw writes the probabilities alone; drop --overlay or --raw")
    if args.uncertainty:
        return _export_uncertainty(args)
    if args.force_mpp and args.mpp is None:
        raise ExportError("--force-mpp needs --mpp")
    kind = "raw" if args.raw else "overlay" if args.overlay else "heatmap"
    # before the model runs (minutes): never over the slide or another input, nor over an existing file unasked
    probability = args.probability
    inputs = [args.slide, args.annotations, probability]
    if probability is not None and probability.is_dir():
        inputs += [p for p in probability.iterdir()]
    check_export_targets(kind, args.out, inputs, overwrite=args.overwrite, legend=not args.no_legend)
    if args.probability is not None:
        if args.mpp is not None:
            raise ExportError("--mpp applies when the slide is analysed here; a map from --probability "
                              "carries its own scale")
        heatmap = read_analysis(args.probability)
    else:
        heatmap = heatmap_for_slide(args.slide, args.model, stride_px=args.stride,
                                    analysis_root=args.analysis_dir, device=args.device,
                                    control=cli_control(args.json), user_mpp=args.mpp, force_mpp=args.force_mpp)
    request = ExportRequest(
        kind=kind, out_path=args.out, overwrite=args.overwrite,
        slide_path=str(args.slide), heatmap=heatmap, l0_region=args.region, output_mpp=args.um_per_px,
        colormap=args.colormap, opacity=args.opacity, threshold=args.threshold,
        annotations_file=args.annotations, scale_bar=False if args.no_scale_bar else None,
        legend=not args.no_legend, record_full_slide_path=args.record_slide_path)
    control = cli_control(args.json, unit="tile")
    try:
        result = run_export(request, control)
    finally:
        close_bars(control)
    if args.json:
        print(strict_dumps(result.to_dict(), indent=2))
        return 0
    prov = result.provenance
    scale = f" at {prov.output_mpp:.3g} um/px" if prov.output_mpp and not args.raw else ""
    print(f"{result.path}: {result.kind}, {result.size[0]} x {result.size[1]} px{scale}, "
          f"{result.seconds:.1f} s (heatmap from {heatmap.origin})")
    for side in result.sidecars:
        print(f"  + {side}")
    if heatmap.model.warning:
        print(f"WARNING: {demo_warning(heatmap.model.warning)}", file=sys.stderr)
    else:
        print(f"model {heatmap.model.name}: {heatmap.model.caution}")
    prov = result.provenance
    if prov.threshold_source:
        from histoviewer.core.analysis.threshold import describe_threshold

        point = heatmap.model.operating_point
        print(f"coloured from {describe_threshold(prov.threshold or 0.0, prov.threshold_source, point)}")
    return 0
