"""``histoviewer``: one entry point with subcommands. Qt is imported only for the GUI.

Dispatch: no arguments, or a first argument that is an existing file or folder, opens the
viewer (``histoviewer SLIDE`` is ``histoviewer view SLIDE``); anything else must be a
command, and a mistyped one is an error with the nearest command suggested (exit 2), never a
silent GUI.

Logging: warnings and errors by default; ``-v`` (info), ``-vv`` (debug) or
``--log-level LEVEL`` raise or lower it, anywhere on the line; without them the environment
variable ``HISTOVIEWER_LOG_LEVEL`` (debug, info, warning, error, critical) sets it.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from pathlib import Path

from histoviewer import __version__
from histoviewer.core.errors import HistoViewerError

SUBCOMMANDS = (
    "view", "demo", "info", "phantom", "train", "eval-patches", "predict-patches", "models", "add-domain",
    "import-weights",
    "analyze", "lesions", "stage", "evaluate", "convert-annotations", "export-heatmap",
    "report", "review-status", "compare", "train-node-classifier",
)


# The module that registers each command. Building the parser for a command imports only
# that command's module (start-up: importing all of them costs ~0.8 s, the phantom writer's
# scipy.stats and the slide readers among them); help, no command or a command missing here
# builds every one, in ``_MODULE_ORDER`` (the order ``--help`` lists them).
COMMAND_MODULES = {
    "view": "view", "demo": "view", "info": "info", "phantom": "phantom",
    "train": "train", "eval-patches": "models", "predict-patches": "models", "models": "models",
    "add-domain": "models", "import-weights": "models",
    "analyze": "analyze", "lesions": "lesions", "stage": "stage", "evaluate": "evaluate",
    "convert-annotations": "convert_annotations", "export-heatmap": "export_heatmap", "report": "report",
    "review-status": "review_status", "compare": "compare",
    "train-node-classifier": "node_classifier",
}
_MODULE_ORDER = ("view", "info", "phantom", "train", "models", "analyze", "lesions", "stage", "evaluate",
                 "convert_annotations", "export_heatmap", "report", "review_status",
                 "compare", "node_classifier")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or (``command`` given and in ``COMMAND_MODULES``) of that
    command alone, importing only its module."""
    module = COMMAND_MODULES.get(command) if command else None
    parser = argparse.ArgumentParser(
        prog="histoviewer",
        description="Whole-slide image viewer with an AI tumour overlay for sentinel lymph nodes.",
    )
    parser.add_argument("--version", action="version", version=f"histoviewer {__version__}")
    _add_log_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (module,) if module else _MODULE_ORDER:
        importlib.import_module(f"histoviewer.cli.{name}").register(sub)
    return parser


# Core errors name the setting that would fix them (``HistoViewerError.setting``), not a
# flag: the CLI adds its own. Settings not listed here are the flag of the same name.
SETTING_FLAGS = {
    "device": "--device cpu",
    "size": "--width/--height",
    "stride_px": "--stride",
    "output_mpp": "--um-per-px",
    "l0_region": "--region",
    "restamp": "histoviewer models --restamp FILE",
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


LOG_LEVEL_ENV = "HISTOVIEWER_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log messages on stderr: -v info, -vv debug")
    parser.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=None,
                        help=f"log level (default: ${LOG_LEVEL_ENV}, else warning)")


def _log_options_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="histoviewer", add_help=False)
    _add_log_options(parser)
    return parser


def log_level(verbose: int, flag: str | None, env: str | None) -> int:
    """The logging level: ``--log-level``, else ``-v``/``-vv``, else ``env``
    (``HISTOVIEWER_LOG_LEVEL``), else WARNING. ``ValueError`` for an unknown ``env`` value."""
    if flag:
        return getattr(logging, flag.upper())
    if verbose:
        return logging.INFO if verbose == 1 else logging.DEBUG
    if env and env.strip():
        name = env.strip().lower()
        if name not in LOG_LEVELS:
            raise ValueError(f"{LOG_LEVEL_ENV}={env!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return getattr(logging, name.upper())
    return logging.WARNING


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the stream of
    the moment it was made), like logging's last-resort handler."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int) -> None:
    """Log our records (the ``histoviewer`` logger tree) at ``level`` and above to stderr, with
    time, level and origin. Other libraries keep Python's default (their warnings only):
    their debug output would bury ours. Safe to call again (one handler, replaced)."""
    ours = logging.getLogger("histoviewer")
    for handler in [h for h in ours.handlers if isinstance(h, _StderrHandler)]:
        ours.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours.addHandler(handler)
    # the default (WARNING) is left to the logging tree, so an embedding program decides
    ours.setLevel(logging.NOTSET if level == logging.WARNING else level)


def _dispatch(argv: list[str]) -> list[str] | str:
    """``argv`` with ``view`` put in front where the viewer is meant, or an error message
    for a first word that is neither a command nor an existing path."""
    # The first word that is not a log option is the command (or a slide).
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--log-level":
            if i + 1 >= len(argv):
                return argv  # argparse says the level is missing
            i += 2
        elif word.startswith("--log-level=") or word in ("-v", "--verbose") or (
                word.startswith("-v") and set(word[1:]) == {"v"}):
            i += 1
        else:
            break
    if i >= len(argv):
        return argv + ["view"]
    first = argv[i]
    if first in SUBCOMMANDS or first.startswith("-"):
        return argv
    if Path(first).exists():
        return argv[:i] + ["view"] + argv[i:]
    near = difflib.get_close_matches(first, SUBCOMMANDS, n=1, cutoff=0.6)
    if near:
        return f"histoviewer: error: {first!r} is not a command; did you mean {near[0]}?"
    if "/" in first or os.sep in first or Path(first).suffix:
        return f"histoviewer: error: {first}: no such file (nor a command)"
    return (f"histoviewer: error: {first!r} is neither a command nor an existing file; the commands are: "
            f"{', '.join(SUBCOMMANDS)}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    dispatched = _dispatch(argv)
    if isinstance(dispatched, str):
        print(dispatched, file=sys.stderr)
        return 2
    # Log options may come anywhere (after the command too); take them out first.
    log_args, rest = _log_options_parser().parse_known_args(dispatched)
    try:
        configure_logging(log_level(log_args.verbose, log_args.log_level, os.environ.get(LOG_LEVEL_ENV)))
    except ValueError as exc:
        print(f"histoviewer: error: {exc}", file=sys.stderr)
        return 2
    # only the chosen command's module is imported (start-up); help or none: every command
    command = next((word for word in rest if not word.startswith("-")), None)
    args = build_parser(command if command in SUBCOMMANDS else None).parse_args(rest)
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
