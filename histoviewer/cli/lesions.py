"""``histoviewer lesions PROBABILITY_MAP [--mpp UM_PER_CELL]``: the lesions of a probability
map and the node label, by the same code ``analyze`` runs (so lesion logic can be checked
without a model)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from histoviewer.core.strict_json import strict_dumps

if TYPE_CHECKING:  # the subcommand modules load at start-up: the core only when run
    from histoviewer.core.grid_geometry import GridGeometry

__all__ = ["register", "run_lesions"]


def register(sub) -> None:
    p = sub.add_parser(
        "lesions", help="lesions, sizes, classes and the node label of a probability map",
        description="Threshold a probability map, find its lesions (connected regions), measure "
                    "each (largest diameter = maximum Feret diameter, area, centroid, probabilities) "
                    "and classify it (ITC <= 0.2 mm < micro <= 2.0 mm < macro); the node label is "
                    "the class of the largest. The map is a single-channel image or array (.tiff, "
                    ".npy, .png; floats 0..1 or 8/16-bit grey) whose cells are UM_PER_CELL wide, or "
                    "analyze's probability.tiff, which carries its own geometry.")
    p.add_argument("map", type=Path, metavar="PROBABILITY_MAP")
    p.add_argument("--mpp", type=float, default=None, metavar="UM_PER_CELL",
                   help="width of one map cell in micrometres (required unless the map carries "
                        "analyze's geometry; without a scale, sizes and classes are unknown)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="probability threshold (default: the operating point of the model that made "
                        "analyze's map, else 0.5)")
    p.add_argument("--window-um", type=float, default=None, metavar="UM",
                   help="label window of the model that made a bare map, removed from every size "
                        "(default 0 for a bare map; for analyze's maps one third of the patch, the "
                        "PatchCamelyon centre)")
    p.add_argument("--min-cells", type=int, default=1, metavar="N", help="drop smaller regions (default 1)")
    p.add_argument("--geojson", type=Path, default=None, metavar="FILE",
                   help="also write the lesions as QuPath GeoJSON (in map cells for a bare map)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the --geojson FILE when it exists (never the map or its analysis)")
    p.add_argument("--uncertainty-map", type=Path, default=None, metavar="FILE",
                   help="the TTA uncertainty map on the same grid (default: uncertainty.tiff beside "
                        "analyze's probability.tiff, when analyze --uncertainty wrote one): each lesion "
                        "gets the mean and max uncertainty of its cells")
    p.add_argument("--json", action="store_true", help="print JSON (with outlines) instead of a table")
    p.add_argument("--node-classifier", default="default", metavar="FILE",
                   help="learned node classifier shown beside the rule-based label: default (trained on "
                        "phantoms only), none, or a file from histoviewer train-node-classifier")
    p.set_defaults(func=run_lesions)


def _learned(args: argparse.Namespace, values, found, domain):
    """The learned classifier's label beside the rules' (None: none asked for or shipped)."""
    from histoviewer.core.analysis.learned_label import default_node_classifier, learned_label, resolve_node_classifier

    spec = args.node_classifier
    classifier = default_node_classifier() if spec == "default" else resolve_node_classifier(spec)
    if classifier is None:
        return None
    resolution = found.resolved(domain.describe() if domain is not None and domain.out_of_domain else None)
    return learned_label(classifier, values, found, resolution)


MAX_CELL_PX = 4096  # largest patch side (px) a map cell may stand for


def _frame(args: argparse.Namespace, geo: GridGeometry | None):
    from histoviewer.core.analysis.lesions import PCAM_WINDOW_FRACTION, MapFrame
    from histoviewer.core.errors import InferenceError
    from histoviewer.core.units import MPP_MAX, MPP_MIN, l0_px_to_um, um_to_l0_px

    # um per map CELL (a whole patch): a plausible pixel size (units.MPP_MIN..MPP_MAX) times
    # at most MAX_CELL_PX pixels; 1e-300 or 1e9 would size every lesion absurdly
    if args.mpp is not None and not (MPP_MIN <= args.mpp <= MPP_MAX * MAX_CELL_PX):
        raise InferenceError(f"--mpp must be micrometres per map cell, {MPP_MIN:g}..{MPP_MAX * MAX_CELL_PX:g}, "
                             f"got {args.mpp}")
    if args.window_um is not None and not (args.window_um >= 0 and math.isfinite(args.window_um)):
        raise InferenceError(f"--window-um must be >= 0, got {args.window_um}")
    if geo is not None:
        um_per_cell = l0_px_to_um(geo.l0_stride, geo.slide_mpp)
        if args.mpp is not None and abs(args.mpp - um_per_cell) > 0.01 * um_per_cell:
            raise InferenceError(f"{args.map}: --mpp {args.mpp} um per cell disagrees with the map's own "
                                 f"geometry ({um_per_cell:.3f} um per cell); leave --mpp out")
        if args.window_um is None:
            return MapFrame.from_geometry(geo, PCAM_WINDOW_FRACTION)
        return MapFrame.from_geometry(geo, um_to_l0_px(args.window_um, geo.slide_mpp) / geo.l0_patch)
    try:
        return MapFrame.for_cells(args.mpp, args.window_um or 0.0)
    except ValueError as exc:
        raise InferenceError(f"{args.map}: {exc}") from None


def _print_table(args: argparse.Namespace, found, domain) -> None:
    from histoviewer.core.analysis.lesions import describe_size

    res = found.resolution  # the one rule for a final label (failed / unclassified cells: none)
    label = res.label.value if res.resolved else f"unknown ({res.label_so_far.value} so far, not final: {res.reason})"
    if domain is not None and domain.out_of_domain:
        label = f"unknown ({domain.describe()})"
    scale = "" if found.frame.mpp is not None else " (no scale: sizes and classes unknown)"
    print(f"{args.map}: {len(found.lesions)} lesion(s), node label {label}{scale}")
    if not found.lesions:
        return
    unc = any(les.tta_uncertainty_computed is not None for les in found.lesions)
    print(f"  {'lesion':<10} {'class':<8} {'diam mm':>8} {'area mm2':>9} {'p max':>6} {'p mean':>6}  "
          + ("unc mean/max  " if unc else "") + "centroid (level-0 px)")
    for les in found.lesions:
        d = "-" if les.diameter_mm is None else f"{les.diameter_mm:.3f}"
        a = "-" if les.area_mm2 is None else f"{les.area_mm2:.4f}"
        # a class-border case says so, with its interval (lesions.describe_size)
        border = f"  border: {describe_size(les)}" if les.border else ""
        u = ""
        if unc:  # TTA uncertainty (std of P over 8 views): "-" where none was computed
            u = ("    -      " if les.tta_uncertainty_max is None
                 else f"{les.tta_uncertainty_mean:.3f}/{les.tta_uncertainty_max:.3f}") + "  "
        print(f"  {les.name:<10} {les.size_class.value:<8} {d:>8} {a:>9} {les.max_probability:>6.3f} "
              f"{les.mean_probability:>6.3f}  {u}({les.l0_centroid[0]:.1f}, {les.l0_centroid[1]:.1f}){border}")


def _with_uncertainty(args: argparse.Namespace, found, values):
    """``found`` with each lesion's TTA uncertainty, from ``--uncertainty-map`` or analyze's
    uncertainty.tiff beside the map; unchanged when there is none."""
    import dataclasses

    from histoviewer.core.analysis.lesion_uncertainty import (
        lesion_uncertainties,
        with_uncertainty,
    )
    from histoviewer.core.analysis.map_io import read_probability_map
    from histoviewer.core.errors import InferenceError

    path = args.uncertainty_map
    if path is None:
        beside = args.map.parent / "uncertainty.tiff"
        if args.map.name != "probability.tiff" or not beside.is_file():
            return found
        path = beside
    uncertainty, _geometry = read_probability_map(path)
    if uncertainty.shape != values.shape:
        raise InferenceError(f"{path}: the uncertainty map ({uncertainty.shape[0]} x {uncertainty.shape[1]} "
                             f"cells) is not on the probability map's grid ({values.shape[0]} x {values.shape[1]})")
    per_lesion = lesion_uncertainties(values, uncertainty, found.frame, found.params.threshold, found.lesions)
    return dataclasses.replace(found, lesions=with_uncertainty(found.lesions, per_lesion))


def run_lesions(args: argparse.Namespace) -> int:
    from histoviewer.core.analysis.lesion_io import write_lesions_geojson
    from histoviewer.core.analysis.map_io import map_model_of, read_probability_map
    from histoviewer.core.analysis.node_label import analyse_map
    from histoviewer.core.analysis.summary import analysis_domain
    from histoviewer.core.analysis.threshold import (
        choose_lesion_params,
        describe_threshold,
    )
    from histoviewer.core.errors import InferenceError

    if args.geojson is not None:  # before any work: never over the map (or its analysis), nor a file unasked
        from histoviewer.core.atomic import check_output

        sources = [args.map, *(args.map.parent / n for n in ("probability.json", "summary.json", "domain.tiff"))]
        check_output(args.geojson, inputs=sources, overwrite=args.overwrite)
    values, geometry = read_probability_map(args.map)
    if geometry is None and args.mpp is None:
        raise InferenceError(f"{args.map}: the map carries no geometry; give the width of one cell "
                             "with --mpp UM_PER_CELL")
    frame = _frame(args, geometry)
    model = map_model_of(args.map)
    point = None if model is None else model.operating_point
    try:
        params = choose_lesion_params(args.threshold, point, min_cells=args.min_cells)
    except ValueError as exc:
        raise InferenceError(str(exc)) from None
    found = analyse_map(values, frame, params)
    found = _with_uncertainty(args, found, values)
    # an analysis judged out of domain has no node label, whatever its lesions
    domain = analysis_domain(args.map.parent)  # of the analysis the map comes from, if any
    learned = _learned(args, values, found, domain)
    if args.geojson is not None:
        unreliable = domain.describe() if domain is not None and domain.out_of_domain else None
        write_lesions_geojson(args.geojson, found.lesions, unreliable=unreliable)
    if args.json:
        doc = {"map": str(args.map), **found.to_dict()}
        if domain is not None:
            doc["domain"] = domain.to_dict()
            if domain.out_of_domain:
                doc["node_label"] = "unknown"
                doc["unknown_reason"] = domain.describe()
        doc["learned_label"] = None if learned is None else learned.to_dict()
        print(strict_dumps(doc, indent=2))
    else:
        _print_table(args, found, domain)
        print(f"  {describe_threshold(params.threshold, params.threshold_source, point)}")
        if learned is not None:  # a second opinion; the rule-based label above decides pN
            flag = "  <- CHECK: the labels differ" if learned.disagrees else ""
            print(f"  learned label ({learned.classifier}, {learned.caution or 'no caution stated'}): "
                  f"{learned.describe()}{flag}")
    return 0
