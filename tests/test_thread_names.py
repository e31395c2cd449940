"""Every thread and thread pool HistoViewer starts is named ``histoviewer-...``: the leak
check in conftest.py finds ours by that prefix, so an unnamed one would escape it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.leaks import THREAD_PREFIX

PRODUCT = Path(__file__).resolve().parents[1] / "histoviewer"
# constructor -> the keyword that names its threads
NAMED_BY = {"Thread": "name", "ThreadPoolExecutor": "thread_name_prefix"}


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _head(expr: ast.expr) -> ast.expr:
    """The first piece of an f-string; the expression itself otherwise."""
    return expr.values[0] if isinstance(expr, ast.JoinedStr) and expr.values else expr


def _literal_ok(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value.startswith(THREAD_PREFIX)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing(node: ast.AST, parents: dict, kind: type) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, kind):
            return node
    return None


def _default_of(func: ast.FunctionDef, param: str) -> ast.expr | None:
    args = func.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return next((d for a, d in pairs if a.arg == param), None)


def test_every_thread_and_pool_is_named_with_the_prefix():
    trees = {p: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for p in PRODUCT.rglob("*.py")}
    offenders, forwarded = [], []  # forwarded: (class, parameter) whose value names threads
    for path, tree in trees.items():
        parents = _parents(tree)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            keyword = NAMED_BY.get(_callee(call) or "")
            if keyword is None:
                continue
            where = f"{path.relative_to(PRODUCT.parent)}:{call.lineno}"
            value = _keyword(call, keyword)
            if value is None:
                offenders.append(f"{where}: no {keyword}=")
                continue
            head = _head(value)
            if isinstance(head, ast.FormattedValue) and isinstance(head.value, ast.Name):
                # a name passed in: its default, and every caller's value, must carry the prefix
                func = _enclosing(call, parents, ast.FunctionDef)
                cls = _enclosing(call, parents, ast.ClassDef)
                default = _default_of(func, head.value.id) if func is not None else None
                if default is None or not _literal_ok(default) or cls is None:
                    offenders.append(f"{where}: {keyword} from {head.value.id!r} without a {THREAD_PREFIX!r} default")
                else:
                    forwarded.append((cls.name, head.value.id))
            elif not _literal_ok(head):
                offenders.append(f"{where}: {keyword} does not start with {THREAD_PREFIX!r}")
    for path, tree in trees.items():
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            for cls, param in forwarded:
                value = _keyword(call, param) if _callee(call) == cls else None
                if value is not None and not _literal_ok(_head(value)):
                    offenders.append(f"{path.relative_to(PRODUCT.parent)}:{call.lineno}: {cls}({param}=...) "
                                     f"does not start with {THREAD_PREFIX!r}")
    assert not offenders, "\n".join(offenders)
    assert forwarded, "expected RegionPrefetcher to forward its thread name (the check above is stale)"
