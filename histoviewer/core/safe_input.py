"""Reading files we did not write ourselves: one place for the checks every reader needs.

- ``require_regular_file``: a FIFO, device, socket or directory given where a file is
  expected is refused by ``os.stat`` before anything opens it (opening a FIFO for reading
  blocks until some writer appears: for ever, in practice).
- ``read_bytes_limited``: the file's bytes, refused above a stated size without reading more.
- ``parse_json`` / ``read_json``: JSON with bounded size and nesting depth, integers of at
  most ``MAX_INT_DIGITS`` digits (Python refuses 4300+ digits with a bare ValueError; long
  ones overflow ``float``), and only finite numbers (``NaN``, ``Infinity`` and ``1e999``,
  which Python reads as inf, are refused).
- ``JsonFields``: typed access to one JSON object; a wrong type names the file and the
  field (``summary.json: 'lesions[3].diameter_mm' must be a number, got a string``).

Every function takes the error class to raise (``ModelLoadError``, ``SummaryFormatError``...),
so each reader keeps its own place in the error hierarchy, and every message names the file.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from typing import Any

from histoviewer.core.errors import HistoViewerError

__all__ = [
    "MAX_INT_DIGITS",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "JsonFields",
    "parse_json",
    "read_bytes_limited",
    "read_json",
    "require_regular_file",
]

# Our JSON files (summaries, model descriptions, map metadata, settings) are kilobytes to a
# few megabytes; a lesion list of 10^5 lesions is ~20 MB.
MAX_JSON_BYTES = 64 * 1024 * 1024
# Our deepest file nests about 6 levels; 64 leaves room and keeps every recursive walk safe.
MAX_JSON_DEPTH = 64
# 40 digits hold any 128-bit integer (pixel counts, byte sizes, seeds of any width); more is
# not a number of ours (and beyond ~308 digits a float cannot hold it).
MAX_INT_DIGITS = 40

def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def require_regular_file(path: str | os.PathLike[str], what: str,
                         error: type[HistoViewerError]) -> os.stat_result:
    """``os.stat`` of ``path`` (symlinks followed) when it is a regular file; else ``error``
    naming it and what it is. Never opens the file, so a FIFO cannot block."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: cannot read {what}: file not found") from None
    except PermissionError:
        raise error(f"{path}: cannot read {what}: permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL in the name
        raise error(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: cannot read {what}: it is {_kind_of(st.st_mode)}, not a regular file")
    return st


def read_bytes_limited(path: str | os.PathLike[str], what: str, error: type[HistoViewerError],
                       max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``; ``error`` naming it when it is not a regular
    file, unreadable, or larger than ``max_bytes`` (never reading more than that + 1)."""
    require_regular_file(path, what, error)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise error(f"{path}: cannot read {what}: larger than {_size_text(max_bytes)}; refused")
    return data


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1024**2:g} MiB" if n_bytes >= 1024**2 else f"{n_bytes} bytes"


class _BadNumber(ValueError):
    """A number JSON allows but we refuse (raised inside the parser's hooks)."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _BadNumber(f"an integer of {digits} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)  # never raises for JSON's number grammar; overflow gives inf
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text[:20]}{'...' if len(text) > 20 else ''} (too large for a float)")
    return value


def _parse_constant(text: str) -> float:
    raise _BadNumber(f"{text} (not a JSON number)")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json(text: str | bytes, source: str | os.PathLike[str], what: str,
               error: type[HistoViewerError], *, max_bytes: int = MAX_JSON_BYTES,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON ``text`` parsed with our limits (module docstring); ``error`` naming ``source``
    (the file, or the file and the place in it) and the problem otherwise."""
    if len(text) > max_bytes:
        raise error(f"{source}: cannot read {what}: larger than {_size_text(max_bytes)}; refused")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except _BadNumber as exc:
        raise error(f"{source}: cannot read {what}: it holds {exc}; refused") from None
    except RecursionError:
        raise error(f"{source}: cannot read {what}: nested too deeply (more than {max_depth} levels); refused") from None
    except UnicodeDecodeError as exc:
        raise error(f"{source}: cannot read {what}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{source}: cannot read {what}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                    f"column {exc.colno})") from None
    except ValueError as exc:  # any other refusal by the parser
        raise error(f"{source}: cannot read {what}: not valid JSON ({exc})") from None
    if _depth(value) > max_depth:
        raise error(f"{source}: cannot read {what}: nested too deeply (more than {max_depth} levels); refused")
    return value


def read_json(path: str | os.PathLike[str], what: str, error: type[HistoViewerError], *,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON in the regular file ``path`` (``read_bytes_limited`` then ``parse_json``)."""
    data = read_bytes_limited(path, what, error, max_bytes)
    return parse_json(data, path, what, error, max_bytes=max_bytes, max_depth=max_depth)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class JsonFields:
    """Typed access to one JSON object read from ``source``; ``where`` is its place in the
    file ("" for the top level, "input", "lesions[3]"). Every accessor raises ``error``
    naming the file and the field when the value is missing (and no default is given) or of
    the wrong type; numbers are finite (``parse_json`` saw to that) and checked against
    the bounds given."""

    _MISSING = object()

    def __init__(self, data: Any, source: str | os.PathLike[str], error: type[HistoViewerError],
                 where: str = "") -> None:
        if not isinstance(data, Mapping):
            place = f"'{where}'" if where else "the file"
            raise error(f"{source}: {place} must be a JSON object, got {_type_name(data)}")
        self.data = data
        self.source = source
        self.error = error
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _fail(self, key: str, expected: str, value: Any) -> HistoViewerError:
        return self.error(f"{self.source}: '{self._name(key)}' must be {expected}, got {_type_name(value)}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, None)
        if value is None:
            if default is self._MISSING:
                raise self.error(f"{self.source}: '{self._name(key)}' is missing")
            return default
        return value

    def str(self, key: str, default: Any = _MISSING, *, max_len: int = 100_000) -> Any:
        value = self._get(key, default)
        if value is default and default is not self._MISSING:
            return value
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        if len(value) > max_len:
            raise self.error(f"{self.source}: '{self._name(key)}' is longer than {max_len} characters")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default and default is not self._MISSING:
            return value
        if not isinstance(value, bool):  # "false" is a string, and truthy: refuse it
            raise self._fail(key, "true or false", value)
        return value

    def float(self, key: str, default: Any = _MISSING, *, low: float | None = None,
              high: float | None = None) -> Any:
        value = self._get(key, default)
        if value is default and default is not self._MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, "a number", value)
        value = float(value)
        self._check_range(key, value, low, high)
        return value

    def int(self, key: str, default: Any = _MISSING, *, low: int | None = None,
            high: int | None = None) -> Any:
        value = self._get(key, default)
        if value is default and default is not self._MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "a whole number", value)
        self._check_range(key, value, low, high)
        return value

    def _check_range(self, key: str, value: float, low: float | None, high: float | None) -> None:
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
            raise self.error(f"{self.source}: '{self._name(key)}' = {value:g} lies outside {bounds}")

    def obj(self, key: str, default: Any = _MISSING) -> Any:
        """The nested object ``key`` as ``JsonFields`` (``default`` when absent and given)."""
        value = self._get(key, default)
        if value is default and default is not self._MISSING:
            return value
        if not isinstance(value, Mapping):
            raise self._fail(key, "a JSON object", value)
        return JsonFields(value, self.source, self.error, self._name(key))

    def list(self, key: str, default: Any = _MISSING, *, max_len: int = 10_000_000) -> Any:
        value = self._get(key, default)
        if value is default and default is not self._MISSING:
            return value
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        if len(value) > max_len:
            raise self.error(f"{self.source}: '{self._name(key)}' has more than {max_len} entries")
        return value

    def int_list(self, key: str, default: Any = _MISSING, *, low: int | None = None,
                 high: int | None = None, max_len: int = 10_000) -> Any:
        """A list of whole numbers, each within ``low``..``high``."""
        values = self.list(key, default, max_len=max_len)
        if values is default and default is not self._MISSING:
            return values
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(f"{self.source}: '{self._name(key)}[{i}]' must be a whole number, "
                                 f"got {_type_name(value)}")
            self._check_range(f"{key}[{i}]", value, low, high)
        return values
