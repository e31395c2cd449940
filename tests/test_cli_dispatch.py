"""What a new user found on the command line (issue 14): a mistyped command opened the GUI
in silence, the log level could not be raised, and the first demo run showed one line for
minutes. Dispatch, log options and the demo's progress bar."""

from __future__ import annotations

import io
import logging

import pytest

from histoviewer import cli
from histoviewer.cli import _dispatch, log_level, main
from histoviewer.cli import view as view_cli

TINY = "tests/data/tiny.svs"


@pytest.fixture
def no_gui(monkeypatch):
    """Records what would open the viewer instead of opening it."""
    opened: list[list[str]] = []

    def fake_run_view(args):
        opened.append(list(args.slides))
        return 0

    monkeypatch.setattr(view_cli, "run_view", fake_run_view)
    return opened


@pytest.mark.parametrize(
    ("word", "suggestion"),
    [
        ("anlyze", "analyze"),
        ("infoo", "info"),
        ("export-heatmp", "export-heatmap"),
        ("stgae", "stage"),
    ],
)
def test_a_mistyped_command_is_an_error_with_the_nearest_command(
    word, suggestion, capsys, no_gui
):
    assert main([word, "x.tif"]) == 2
    err = capsys.readouterr().err
    assert f"'{word}' is not a command; did you mean {suggestion}?" in err
    assert no_gui == []  # the GUI never opened


def test_an_unknown_word_or_missing_file_is_an_error_not_the_gui(capsys, no_gui):
    assert main(["xyzzy"]) == 2
    assert (
        "neither a command nor an existing file; the commands are: view, demo"
        in capsys.readouterr().err
    )
    assert main(["missing-slide.svs"]) == 2
    assert "missing-slide.svs: no such file" in capsys.readouterr().err
    assert no_gui == []


def test_no_arguments_or_an_existing_slide_opens_the_viewer(no_gui):
    assert main([]) == 0
    assert main([TINY]) == 0
    assert main(["-v", TINY]) == 0
    assert no_gui == [[], [TINY], [TINY]]


def test_dispatch_skips_log_options_to_find_the_command():
    assert _dispatch(["--log-level", "debug", "info", TINY]) == [
        "--log-level",
        "debug",
        "info",
        TINY,
    ]
    assert _dispatch(["-vv", TINY]) == ["-vv", "view", TINY]
    assert _dispatch(["--log-level=info"]) == ["--log-level=info", "view"]
    assert "did you mean analyze" in _dispatch(["-v", "anlyze"])
    assert _dispatch(["--log-level"]) == [
        "--log-level"
    ]  # argparse: expected one argument


def test_log_level_from_flags_then_environment():
    assert log_level(0, None, None) == logging.WARNING
    assert log_level(1, None, None) == logging.INFO
    assert log_level(2, None, "error") == logging.DEBUG  # a flag beats the environment
    assert log_level(0, "error", None) == logging.ERROR
    assert log_level(0, None, " Debug ") == logging.DEBUG
    with pytest.raises(
        ValueError, match="HISTOVIEWER_LOG_LEVEL='loud' is not a log level"
    ):
        log_level(0, None, "loud")


def test_log_options_reach_our_loggers(capsys, monkeypatch):
    seen: list[int] = []
    monkeypatch.setattr(cli, "configure_logging", lambda level: seen.append(level))
    assert main(["info", TINY, "--log-level", "debug"]) == 0  # after the command, too
    monkeypatch.setenv("HISTOVIEWER_LOG_LEVEL", "info")
    assert main(["info", TINY]) == 0
    monkeypatch.setenv("HISTOVIEWER_LOG_LEVEL", "loud")
    assert main(["info", TINY]) == 2
    assert "is not a log level" in capsys.readouterr().err
    assert seen == [logging.DEBUG, logging.INFO]


def test_configure_logging_shows_our_debug_records_only(capsys):
    ours = logging.getLogger("histoviewer")
    saved = ours.handlers[:], ours.level
    try:
        cli.configure_logging(logging.DEBUG)
        cli.configure_logging(logging.DEBUG)  # again: still one handler
        logging.getLogger("histoviewer.test").debug("ours")
        logging.getLogger("somelib").debug("theirs")
        err = capsys.readouterr().err
        assert err.count("DEBUG histoviewer.test: ours") == 1 and "theirs" not in err
        cli.configure_logging(logging.WARNING)
        logging.getLogger("histoviewer.test").info("quiet")
        assert "quiet" not in capsys.readouterr().err
    finally:
        ours.handlers[:] = saved[0]
        ours.setLevel(saved[1])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_first_demo_run_shows_a_progress_bar(tmp_path, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setattr(view_cli, "DEMO_SIZE", (3072, 2048))
    monkeypatch.setattr(view_cli, "DEMO_LESIONS", "itc:0.1")
    path = view_cli.demo_slide(tmp_path)
    out = term.getvalue()
    assert path.is_file() and "making the demo phantom slide" in out
    assert (
        "Writing phantom tiles" in out and "tile" in out
    )  # the bar: stage, counts, unit
    assert "demo slide made in" in out
    term.truncate(0)
    assert (
        view_cli.demo_slide(tmp_path) == path and term.getvalue().strip("\x00") == ""
    )  # made once
