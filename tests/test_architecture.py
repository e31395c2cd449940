"""The architecture, enforced: the import contracts in ``pyproject.toml`` (no Qt in the core,
the front ends above the core, the core's layers) and no function-level imports in the core
but the few that keep start-up fast."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from histoviewer.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "histoviewer" / "core"
QT = ROOT / "histoviewer" / "qt"
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6")

# Third-party packages the core may import inside a function, and why: each costs a large
# share of the start-up of every command and of the viewer, and few paths need it.
LAZY_PACKAGES = {
    "torch": "seconds to import; the viewer and most commands never run a CNN",
    "sklearn": "~0.5 s to import; only fitting the handcrafted model and evaluation use it",
    "onnx": "~0.6 s to import; only building a CNN's ONNX graph (once per model, then cached) uses it",
    "dask": "optional (the --scheduler extra); only a run on a Dask cluster uses it",
    "distributed": "optional (the --scheduler extra); only a run on a Dask cluster uses it",
}
LINT_IMPORTS = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))\n"
)


def test_import_contracts_are_kept():
    # lint-imports reads [tool.importlinter] and analyses the package found from its working
    # directory, so it checks this tree (not an installed copy). Its report names every
    # import that breaks a contract, with file and line.
    result = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_importing_every_core_module_loads_no_qt():
    # The forbidden contract reads the sources; this catches what only happens at run time
    # (a dependency of ours that pulls Qt in by itself).
    modules = sorted(
        ".".join(p.relative_to(CORE.parents[1]).with_suffix("").parts).removesuffix(".__init__")
        for p in CORE.rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _module_path(name: str) -> Path | None:
    """The source file of ``histoviewer.x.y`` in this tree, if it is one of ours."""
    parts = name.split(".")
    if parts[0] != "histoviewer":
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports_torch_at_top(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def _function_level_imports(tree: ast.AST):
    """(import node, module names) for every import inside a function or method."""

    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import):
                yield child, [a.name for a in child.names]
            elif in_function and isinstance(child, ast.ImportFrom):
                yield child, ["." * child.level + (child.module or "")]
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    yield from walk(tree, False)


# A lazy import's comment must say it is one for start-up cost; any other comment nearby
# (about the code after it, say) does not count.
_WHY_WORDS = ("lazy", "lazily", "start-up", "startup")


def _gives_the_reason(comment: str) -> bool:
    return any(word in comment.lower() for word in _WHY_WORDS)


def _says_why(lines: list[str], node: ast.stmt) -> bool:
    """A comment saying "lazy" or "start-up" on the import's line or in the comment/import
    lines right above it."""
    line = lines[node.lineno - 1]
    if "#" in line and _gives_the_reason(line[line.index("#"):]):
        return True
    i = node.lineno - 2
    while i >= 0:
        text = lines[i].strip()
        if text.startswith("#"):
            if _gives_the_reason(text):
                return True
        elif not text.startswith(("import ", "from ")):
            return False
        i -= 1
    return False


def _lazy_reason(name: str) -> str | None:
    """Why ``name`` may be imported inside a function, or None when it must be at the top."""
    if name.split(".")[0] in LAZY_PACKAGES:
        return LAZY_PACKAGES[name.split(".")[0]]
    path = _module_path(name)
    if path is not None and _imports_torch_at_top(path):
        return "one of ours that imports torch"
    return None


@pytest.mark.parametrize("package", [CORE, QT], ids=["core", "qt"])
def test_imports_at_module_level_except_for_start_up_cost(package):
    # Function-level imports hide the real dependency graph from the contracts (and cycles
    # from a reader). Only start-up cost justifies one, and the line says so in a comment.
    # (The CLI is the exception by design: each subcommand imports its core when it runs,
    # so that building the parser stays cheap.)
    offenders = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        where = path.relative_to(ROOT)
        for node, names in _function_level_imports(ast.parse(source, filename=str(path))):
            for name in names:
                if _lazy_reason(name) is None:
                    offenders.append(f"{where}:{node.lineno} imports {name} inside a function: import it at the top")
                elif not _says_why(lines, node):
                    offenders.append(f"{where}:{node.lineno} imports {name} lazily without a comment saying why")
    assert not offenders, "\n".join(offenders)


def test_starting_the_cli_or_the_viewer_loads_no_lazy_package():
    # What the lazy imports above buy: `histoviewer info` (the CLI builds every subcommand's
    # parser) and the viewer's window start without torch or scikit-learn.
    code = (
        "import sys\n"
        "import histoviewer.cli\n"
        "histoviewer.cli.build_parser()\n"
        "import histoviewer.qt.main_window\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {set(LAZY_PACKAGES)!r})\n"
        "print(loaded); sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lazy_import_rule_sees_what_it_must():
    # The scan above passes on an empty list too; make sure it finds what it must judge.
    tree = ast.parse(
        "import os\n"
        "def f():\n"
        "    import numpy\n"
        "    class C:\n"
        "        def g(self):\n"
        "            from histoviewer.core.models.cnn import CnnClassifier  # torch\n"
        "    import torch\n"
    )
    found = [(node.lineno, names) for node, names in _function_level_imports(tree)]
    assert found == [(3, ["numpy"]), (6, ["histoviewer.core.models.cnn"]), (7, ["torch"])]
    assert _lazy_reason("numpy") is None
    assert _lazy_reason("histoviewer.core.geometry") is None
    assert _lazy_reason("sklearn.metrics") and _lazy_reason("torch")
    assert _lazy_reason("histoviewer.core.models.cnn") == "one of ours that imports torch"
    lines = ["def f():", "    # lazy: heavy", "    import torch", "    x = 1", "    import sklearn",
             "    # the model below is small", "    import torch", "    import torch  # start-up cost",
             "    import torch  # Startup time", "    # tuple of arrays", "    import torch  # it is big"]
    nodes = [node for node, _ in _function_level_imports(ast.parse("\n".join(lines)))]
    assert [_says_why(lines, node) for node in nodes] == [True, False, False, True, True, False]


# Core text reaches the GUI (errors, PDFs, legends, provenance), where nobody has a command
# line: it names no ``histoviewer`` subcommand and no ``--flag``; the CLI adds those. Strings
# allowed anyway, each with its reason: {(module path relative to core, start of string): why}.
_CLI_SPEAK_ALLOWED: dict[tuple[str, str], str] = {
    ("phantom/ground_truth.py", "histoviewer phantom"):
        "the truth file's 'generator' value (file format, not advice): which program wrote it",
}
_SUBCOMMAND = re.compile(r"\bhistoviewer\s+(?:" + "|".join(re.escape(c) for c in SUBCOMMANDS) + r")\b")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*\b")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _cli_speak(source: str, filename: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each string literal (f-string parts included) that names a
    ``histoviewer`` subcommand or a ``--flag``; docstrings and comments are not literals."""
    tree = ast.parse(source, filename=filename)
    docstrings = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if _SUBCOMMAND.search(node.value) or _FLAG.search(node.value):
                found.append((node.lineno, node.value))
    return found


def test_core_strings_name_no_cli_command_or_flag():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        where = path.relative_to(CORE).as_posix()
        for lineno, text in _cli_speak(path.read_text(encoding="utf-8"), str(path)):
            if not any(where == m and text.startswith(start) for m, start in _CLI_SPEAK_ALLOWED):
                offenders.append(f"histoviewer/core/{where}:{lineno}: {text!r}")
    assert not offenders, "core text that speaks of the CLI (say it in words; the CLI adds the command):\n" + "\n".join(offenders)


def test_the_cli_speak_scan_sees_what_it_must():
    source = (
        '"""Module doc: run histoviewer analyze --out DIR."""\n'
        "# histoviewer train --data in a comment\n"
        "def f(x):\n"
        '    """histoviewer report --json in a docstring."""\n'
        '    a = "use --patch-mpp 0.5"\n'
        "    b = f\"{x}: run histoviewer analyze first\"\n"
        '    c = "a well-known - dash, an arrow -> and x--y"\n'
        '    d = "histoviewer is a viewer"\n'
        "    return a, b, c, d\n"
    )
    assert [line for line, _ in _cli_speak(source, "x.py")] == [5, 6]


def test_grid_geometry_has_one_import_path():
    # GridGeometry lives in the leaf core.grid_geometry; a re-export elsewhere would make two
    # names for one class and hide the leaf from the layer contracts.
    import histoviewer.core.inference as inference
    import histoviewer.core.inference.grid as grid

    assert "GridGeometry" not in inference.__all__ and "GridGeometry" not in grid.__all__
    offenders = []
    for path in sorted([*(ROOT / "histoviewer").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
                        *(ROOT / "benchmarks").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if (isinstance(node, ast.ImportFrom) and node.module != "histoviewer.core.grid_geometry"
                    and any(a.name == "GridGeometry" for a in node.names)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports GridGeometry from {node.module}")
    assert not offenders, "\n".join(offenders)
