"""``histoviewer``: one entry point with subcommands. Qt is imported only for the GUI."""

from __future__ import annotations

import argparse
import sys

from histoviewer import __version__
from histoviewer.core.errors import HistoViewerError

SUBCOMMANDS = (
    "view", "demo", "info", "phantom", "train", "eval-patches", "predict-patches", "models", "add-domain",
    "import-weights",
    "analyze", "lesions", "stage", "evaluate", "convert-annotations", "export-heatmap",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    from histoviewer.cli import (
        analyze, convert_annotations, evaluate, export_heatmap, info, lesions, models, phantom, stage, view,
    )
    from histoviewer.cli import report

    parser = argparse.ArgumentParser(
        prog="histoviewer",
        description="Whole-slide image viewer with an AI tumour overlay for sentinel lymph nodes.",
    )
    parser.add_argument("--version", action="version", version=f"histoviewer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    view.register(sub)
    info.register(sub)
    phantom.register(sub)
    models.register(sub)
    analyze.register(sub)
    lesions.register(sub)
    stage.register(sub)
    evaluate.register(sub)
    convert_annotations.register(sub)
    export_heatmap.register(sub)
    report.register(sub)
    return parser


# Core errors name the setting that would fix them (``HistoViewerError.setting``), not a
# flag: the CLI adds its own. Settings not listed here are the flag of the same name.
SETTING_FLAGS = {
    "device": "--device cpu",
    "size": "--width/--height",
    "stride_px": "--stride",
    "output_mpp": "--um-per-px",
    "l0_region": "--region",
}


def flag_hint(setting: str | None) -> str:
    """``--patch-mpp``, ``--device cpu``...: the flag that sets ``setting``, or "" for none."""
    if not setting:
        return ""
    return SETTING_FLAGS.get(setting, "--" + setting.replace("_", "-"))


def with_flag(message: str, setting: str | None) -> str:
    """``message`` and, when it names a setting, the flag that sets it."""
    hint = flag_hint(setting)
    return message + (f" (use {hint})" if hint else "")


def error_text(exc: HistoViewerError) -> str:
    """The error line the CLI prints: the core's message and, when it names a setting, the flag."""
    return with_flag(f"histoviewer: error: {exc}", exc.setting)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `histoviewer SLIDE` and a bare `histoviewer` open the viewer.
    if not argv or (argv[0] not in SUBCOMMANDS and not argv[0].startswith("-")):
        argv.insert(0, "view")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HistoViewerError as exc:
        print(error_text(exc), file=sys.stderr)
        return 2
    except OSError as exc:  # a file error no writer or reader turned into one of ours: still no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"histoviewer: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("histoviewer: interrupted", file=sys.stderr)
        return 130
