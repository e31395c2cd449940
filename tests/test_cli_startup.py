"""Start-up of the CLI (issue 15): a command imports its own module only, yet every command
is still registered, listed by --help and suggested for a typo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from histoviewer.cli import COMMAND_MODULES, SUBCOMMANDS, build_parser


def test_every_command_has_its_module():
    assert set(COMMAND_MODULES) == set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_command_parses_with_its_module_alone(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser(command).parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: histoviewer {command}" in capsys.readouterr().out


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(
        f"\n    {command} " in out or f"\n    {command}\n" in out
        for command in SUBCOMMANDS
    )


def test_analyze_imports_neither_other_commands_nor_the_phantom_writer():
    code = (
        "import sys\n"
        "from histoviewer.cli import build_parser\n"
        "build_parser('analyze')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('histoviewer.cli.', 'histoviewer.core.phantom', "
        "'scipy.stats', 'torch'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['histoviewer.cli.analyze']"
