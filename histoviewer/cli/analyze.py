"""``histoviewer analyze``: classify all tissue of slides and write grids, heatmaps, summaries.

The work is ``core.jobs.analyze_case`` (the case view runs the same): one slide at a time
by default; ``--workers N`` runs slides in N local processes, ``--scheduler ADDRESS`` on a
Dask distributed cluster. Progress bars on a terminal; ``--json`` prints only a JSON list
of the per-slide summaries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from histoviewer.core.strict_json import strict_dumps

if TYPE_CHECKING:  # the subcommand modules load at start-up: the core only when run
    from histoviewer.core.analysis.summary import SlideOutcome

__all__ = ["EXIT_SLIDES_FAILED", "register", "run_analyze"]

EXIT_SLIDES_FAILED = 1  # some slides (or --report) failed to be analysed or written; the rest is complete
EXIT_STATUS_HELP = ("exit status: 0 every slide analysed and written; 1 some slides failed (analysis or "
                    "writing; each says why, the other slides' folders are complete) or the --report "
                    "could not be written; 2 nothing usable was written (bad options, the model cannot "
                    "load, OUT or the case files cannot be written); 3 everything was written but a "
                    "node has no final label (failed patches, no scale, tissue unlike the model's "
                    "training data): its case's stage is not final")


def register(sub) -> None:
    p = sub.add_parser("analyze", help="classify all tissue of slides (headless)",
                       description="Classify all tissue of each slide; write DIR/<slide stem>/"
                                   "{probability.tiff,probability.json,heatmap.png,lesions.geojson,summary.json} "
                                   "and, for the cases the slides form (patient_<p>_node_<n> names, "
                                   "else folders), DIR/stages.csv (CAMELYON17 pN) and DIR/cases.json. "
                                   "A slide whose name is taken (two slides with one name, a name of "
                                   "DIR's own files, an unsafe name) gets a unique safe folder name "
                                   "(<name>-2, ...; printed); each folder appears only when complete.",
                       epilog=EXIT_STATUS_HELP)
    p.add_argument("slides", nargs="+", type=Path, metavar="SLIDE")
    p.add_argument("--model", default="cnn",
                   help="cnn, handcrafted, cnn-resnet (for a GPU) or a model file (default: cnn)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    p.add_argument("--stride", type=int, default=None, metavar="PX",
                   help="grid step in model pixels; must divide the patch size (default: the patch "
                        "size, no overlap; half of it: overlapping, smoother maps, 4x the work)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="slides in parallel processes")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask distributed cluster (tcp://host:8786); its workers must "
                        "see the slides, the model file and DIR at the same paths")
    p.add_argument("--read-threads", type=int, default=1, help="reader threads per slide")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="lesion threshold on the probability map (default: the model's operating "
                        "point, 0.5 for a model file that states none; see histoviewer lesions --help)")
    p.add_argument("--mpp", type=float, default=None, metavar="UM_PER_PX",
                   help="pixel size (microns per level-0 pixel) for slides that do not state one; "
                        "sizes from it are marked user-set (mpp_source: user) in every output")
    p.add_argument("--force-mpp", action="store_true",
                   help="let --mpp replace the pixel size a slide states itself")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write uncertainty.tiff: how much each patch's P(tumour) changes over its 8 "
                        "rotations and mirrors (standard deviation, 0..0.5; 8x the model work), and "
                        "each lesion's mean and max uncertainty in summary.json and the reports")
    p.add_argument("--strategy", default="exhaustive", choices=("exhaustive", "screened"),
                   help="exhaustive (default): the model classifies every tissue patch; screened: a "
                        "small model screens the slide at 2.5x first and the model classifies only "
                        "where tumour is possible (plus a margin and an audit sample); the rest is "
                        "'screened negative', counted apart, never called classified. Faster; can "
                        "miss what the screen cannot see (README: How screening fails)")
    p.add_argument("--screen-model", default="screen", metavar="FILE",
                   help="with --strategy screened: the screening model (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="print a JSON list of summaries, no progress bars")
    p.add_argument("--report", action="store_true",
                   help="also write DIR/report.pdf, DIR/report.json and DIR/{lesions,slides,cases}.csv "
                        "(see histoviewer report)")
    p.add_argument("--node-classifier", default="default", metavar="FILE",
                   help="learned node classifier whose label is shown beside the rule-based one (which "
                        "decides pN): default (the shipped one, trained on phantoms only), none, or a "
                        "file from histoviewer train-node-classifier")
    p.set_defaults(func=run_analyze)


def _print_summary(s: SlideOutcome) -> None:
    from histoviewer.cli import with_flag
    from histoviewer.cli.hints import caution_line
    from histoviewer.core.analysis.summary import SlideFailure
    from histoviewer.core.analysis.threshold import describe_threshold

    if isinstance(s, SlideFailure):
        print(with_flag(f"{s.slide}: FAILED: {s.error}", s.setting), file=sys.stderr)
        return
    t, g = s.timing, s.geometry
    print(f"{s.slide}: {s.classified_patches}/{s.tissue_patches} tissue patches classified"
          f" ({s.failed_patches} failed), grid {g.rows}x{g.cols} at {g.l0_stride:.0f} level-0 px,"
          f" {t.total_s:.1f} s (read {t.read_decode_s:.1f} s, model {t.model_s:.1f} s)"
          f" -> {s.out_dir}")
    largest = (f", largest {s.largest_lesion} {s.largest_diameter_mm:.3f} mm"
               if s.largest_diameter_mm is not None else "")
    if s.failures:  # why cells failed (damaged tiles, read errors, the model), not just how many
        more = f" (and {len(s.failures) - 1} more in summary.json)" if len(s.failures) > 1 else ""
        print(f"  failed: {s.failures[0]}{more}")
    if g.slide_mpp_source == "user":
        print(f"  pixel size {g.slide_mpp:g} um/px: user-set (the slide states none); sizes rest on it")
    so_far = s.resolution.label_so_far
    label = s.node_label.value if s.unknown_reason is None else "unknown (" + (
        "" if so_far is so_far.UNKNOWN else f"{so_far.value} so far, ") + f"not final: {s.unknown_reason})"
    print(f"  node label: {label}, {len(s.lesions)} lesion(s){largest}")
    if s.learned is not None:  # a second opinion; the rule-based label above decides pN
        flag = "  <- CHECK: the labels differ" if s.learned.disagrees else ""
        print(f"  learned label ({s.learned.classifier}, {s.learned.caution or 'no caution stated'}): "
              f"{s.learned.describe()}{flag}")
    if s.screening is not None:  # screened-negative tissue is not classified: say so beside coverage
        print(f"  {s.screening.get('description', '')}")
    p, m = s.lesion_params, s.model
    print(f"  {describe_threshold(p.threshold, p.threshold_source, m.operating_point)}")
    print(f"  model: {m.name}: {caution_line(m.caution, m.demonstration)}")
    print(f"  {s.domain.describe()}")  # out of domain: says why the label is unknown


def _checked_node_classifier(spec: str) -> str:
    """``spec`` once a named file loads (a bad file stops here, not once per slide)."""
    from histoviewer.core.analysis.learned_label import resolve_node_classifier

    if spec not in ("default", "none"):
        resolve_node_classifier(spec)  # ModelLoadError naming the file
    return spec


def _launch_model_child(args: argparse.Namespace):
    """The model's child process (``core.inference.model_process``), started before anything
    heavy is imported, for a run in this process (one slide, or no --workers/--scheduler) of
    the exhaustive strategy without --uncertainty; None: the model loads as before."""
    # start-up: stdlib only
    from histoviewer.core.model_child import (
        launch_model_child,
        model_process_allowed,
        model_process_forced,
    )
    from histoviewer.core.models.engine_hint import loading_imports_torch

    in_process = not args.scheduler and (args.workers <= 1 or len(args.slides) <= 1)
    if not in_process or args.strategy != "exhaustive" or args.uncertainty or not model_process_allowed():
        return None
    if not model_process_forced() and not loading_imports_torch(args.model, args.device):
        return None  # onnxruntime loads here in ~0.1 s, and runs faster here than behind a socket
    try:
        return launch_model_child(args.model, args.device)
    except OSError:
        return None  # the model loads in this process instead


def _model_from_child(child, args: argparse.Namespace):
    """The ``PendingModel`` of ``child``, or None (the run loads the model itself, which
    reports what is wrong with it)."""
    from histoviewer.core.errors import ModelLoadError
    from histoviewer.core.inference.model_process import start_model_process

    if child is None:
        return None
    try:
        return start_model_process(args.model, args.device, child=child)
    except ModelLoadError:
        return None  # stopped; the run's own loading reports what is wrong with the model


def run_analyze(args: argparse.Namespace) -> int:
    child = _launch_model_child(args)  # first: its torch import overlaps everything below
    model = None
    try:
        model = _model_from_child(child, args)
        return _run_analyze(args, model)
    except BaseException:
        if model is not None:
            model.close()  # safe twice: a run that got as far as the model closed it already
        elif child is not None:
            child.process.kill()
            child.process.wait()
        raise


def _run_analyze(args: argparse.Namespace, model) -> int:
    from histoviewer.cli.hints import demo_warning
    from histoviewer.cli.progress import cli_control, close_bars
    from histoviewer.cli.stage import EXIT_UNRESOLVED
    from histoviewer.core.analysis.lesions import LesionParams
    from histoviewer.core.analysis.summary import SlideFailure, SlideSummary
    from histoviewer.core.errors import InferenceError
    from histoviewer.core.inference.analyze import AnalyzeOptions
    from histoviewer.core.jobs import analyze_case
    from histoviewer.core.jobs.slide_folders import slide_folders
    from histoviewer.core.units import mpp_problem

    if args.threshold is not None:  # None: the model's operating point
        try:
            LesionParams(threshold=args.threshold)
        except ValueError as exc:
            raise InferenceError(f"--threshold: {exc}") from None
    if args.force_mpp and args.mpp is None:
        raise InferenceError("--force-mpp needs --mpp")
    if args.mpp is not None and (problem := mpp_problem(args.mpp)) is not None:
        raise InferenceError(f"--mpp: {problem}")
    options = AnalyzeOptions(model=args.model, device=args.device, stride_px=args.stride,
                             read_threads=max(1, args.read_threads), lesion_threshold=args.threshold,
                             user_mpp=args.mpp, force_mpp=args.force_mpp,
                             node_classifier=_checked_node_classifier(args.node_classifier),
                             uncertainty=args.uncertainty,
                             strategy=args.strategy, screen_model=args.screen_model)
    folders = slide_folders(args.out, list(args.slides))
    for folder in folders:
        if folder.note:
            print(f"note: {folder.note}", file=sys.stderr)
    # the slides form one or more cases (CAMELYON17 patients, else folders): their pN stages
    control = cli_control(args.json)
    try:
        run = analyze_case(list(args.slides), args.out, options, workers=max(1, args.workers),
                           scheduler=args.scheduler, control=control, folders=folders, model=model,
                           on_done=None if args.json else lambda _i, summary: _print_summary(summary))
    finally:
        close_bars(control)
    results, cases = list(run.summaries), run.outputs
    report, report_error = None, ""
    if args.report and results:  # every node in the report, failed ones too (one staging result)
        from histoviewer.cli import error_text
        from histoviewer.cli.report import write_report
        from histoviewer.core.errors import HistoViewerError

        done = [Path(r.out_dir) for r in results if isinstance(r, SlideSummary)]
        try:  # the slides' folders are complete: a report that cannot be written fails alone
            report = write_report(done, args.out / "report.pdf", args.out / "report.json", args.out,
                                  failures=[r for r in results if isinstance(r, SlideFailure)])
        except HistoViewerError as exc:
            report_error = error_text(exc)
            print(report_error, file=sys.stderr)
    if args.json:
        print(strict_dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in cases.results:
            print(f"{r.patient}: {r.stage_text} - {r.reason}")
            if r.border_warning:  # a border lesion decides the stage
                print(f"  caution: {r.border_warning}")
        for patient, error in cases.errors.items():
            print(f"{patient}: no stage: {error}", file=sys.stderr)
        print(f"stages: {cases.stages_csv}")
        if report is not None:
            print(f"report: {report.pdf} ({report.pages} pages), {report.json}")
        demo = any(isinstance(r, SlideSummary) and r.model.demonstration for r in results)
        if demo:
            print(f"WARNING: {demo_warning()}")
    failed = [r for r in results if isinstance(r, SlideFailure)]
    if failed:
        print(f"{len(failed)} of {len(results)} slides failed: " + ", ".join(r.slide for r in failed),
              file=sys.stderr)
    if report_error:
        print("the report was not written (see above)", file=sys.stderr)
    if failed or report_error:
        return EXIT_SLIDES_FAILED
    return EXIT_UNRESOLVED if cases.unresolved else 0  # a node without a final label: not complete
