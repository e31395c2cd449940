"""``histoviewer view [SLIDE...]`` and ``histoviewer demo``: the GUI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoviewer.core.paths import user_data_dir

DEMO_SIZE = (40_000, 28_000)  # 10 x 7 mm at 0.25 um/px: the node has room for a 3 mm macrometastasis
DEMO_LESIONS = "macro:3.0,micro:0.8,itc:0.15"
DEMO_SEED = 7


def _gui_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-mb", type=int, default=512, help="tile cache size in MiB (default 512)")
    p.add_argument("--model", default=None,
                   help="AI overlay model: cnn, handcrafted (the default research models), a model file, or a "
                        "file name in the user models folder (default: the last one used, else cnn)")
    p.add_argument("--device", default=None,
                   help="auto (GPU if any), cpu, cuda or mps (default: the last one used, else auto)")
    p.add_argument("--no-ai", action="store_true", help="open without the AI overlay (turn it on in the AI menu)")


def register(sub) -> None:
    p = sub.add_parser("view", help="open the viewer (the default command)")
    p.add_argument("slides", nargs="*", help="slides to open in tabs")
    _gui_options(p)
    p.set_defaults(func=run_view)
    d = sub.add_parser("demo", help="open the viewer on the demo phantom slide (made on first use)")
    _gui_options(d)
    d.add_argument("--dir", type=Path, default=None, help="where the demo slide is kept")
    d.set_defaults(func=run_demo)


def _ai_settings(args: argparse.Namespace):
    """The AI panel's saved settings, with what the command line says on top."""
    from dataclasses import replace

    from histoviewer.qt.ai_panel import load_ai_settings

    settings = load_ai_settings()
    changes = {k: v for k, v in (("model", args.model), ("device", args.device)) if v is not None}
    if args.no_ai:
        changes["enabled"] = False
    return replace(settings, **changes)


def data_dir() -> Path:
    """The user data folder (see ``histoviewer.core.paths.user_data_dir``)."""
    return user_data_dir()


def demo_slide(folder: Path | None = None) -> Path:
    """The demo phantom, generated once (a synthetic lymph node with three metastases)."""
    folder = folder or data_dir() / "demo"
    path = folder / "demo-phantom.tiff"
    if not path.exists():
        from histoviewer.cli.progress import cli_control, close_bars
        from histoviewer.core.phantom import write_phantom

        folder.mkdir(parents=True, exist_ok=True)
        print(f"making the demo phantom slide {path} (once; a few minutes on 2 cores) ...", file=sys.stderr)
        # A progress bar (tiles written, rate, time left) on a terminal: the first run
        # renders 40000 x 28000 px and must not look stuck.
        control = cli_control(unit="tile")
        try:
            result = write_phantom(path, width=DEMO_SIZE[0], height=DEMO_SIZE[1], mpp=0.25,
                                   lesions=DEMO_LESIONS, seed=DEMO_SEED, control=control)
        finally:
            close_bars(control)
        print(f"demo slide made in {result.seconds:.0f} s", file=sys.stderr)
    return path


def run_view(args: argparse.Namespace) -> int:
    from histoviewer.qt.main_window import run_gui

    return run_gui(args.slides, cache_mb=args.cache_mb, ai=_ai_settings(args))


def run_demo(args: argparse.Namespace) -> int:
    from histoviewer.qt.main_window import run_gui

    return run_gui([str(demo_slide(args.dir))], cache_mb=args.cache_mb, ai=_ai_settings(args))
