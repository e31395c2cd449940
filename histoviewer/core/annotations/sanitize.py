"""Values that every annotation writer can write and every reader reads back.

Python strings and floats hold things the file formats cannot: lone UTF-16 surrogates
(``"\\ud800"``, from a JSON ``\\u`` escape of a broken file) cannot be encoded as UTF-8,
XML 1.0 has no representation at all for most control characters (not even ``&#1;``),
and JSON has no NaN or infinity (Python's ``json`` writes ``NaN``, which strict readers,
ours included when asked, refuse). Writers must never fail on such a value, nor drop the
whole file for it: each bad value is replaced (U+FFFD for a character, ``None`` for a
non-finite number) and counted, and the writer reports what it replaced.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["REPLACEMENT", "Replacements", "has_bad_text", "xml_text"]

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MAX_JSON_DEPTH = 64  # deeper property values are written as text (json would recurse)


def has_bad_text(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (not encodable as UTF-8)."""
    return _SURROGATE.search(text) is not None


def xml_text(text: str) -> tuple[str, int]:
    """``text`` with every character XML 1.0 cannot hold replaced by U+FFFD, and how many."""
    return _NOT_XML_CHAR.subn(REPLACEMENT, text)


class Replacements:
    """Counts what was replaced, by kind, to report once per file instead of per value."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def text(self, value: str, what: str) -> str:
        """``value`` without lone surrogates (each replaced by U+FFFD)."""
        cleaned, n = _SURROGATE.subn(REPLACEMENT, value)
        if n:
            self.counts[f"{what} with invalid characters (lone surrogates) replaced by U+FFFD"] += 1
        return cleaned

    def xml(self, value: str, what: str) -> str:
        """``value`` fit for an XML 1.0 attribute (control characters, surrogates replaced)."""
        cleaned, n = xml_text(value)
        if n:
            self.counts[f"{what} with characters XML cannot hold (control characters) replaced by U+FFFD"] += 1
        return cleaned

    def json_value(self, value: Any, depth: int = 0) -> Any:
        """``value`` as strict JSON can hold it: non-finite numbers become None, text loses
        lone surrogates, tuples become lists, anything else becomes its text."""
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            self.counts["non-finite property values (NaN/Infinity) written as null"] += 1
            return None
        if isinstance(value, str):
            return self.text(value, "property texts")
        if depth >= MAX_JSON_DEPTH:
            self.counts[f"property values nested deeper than {MAX_JSON_DEPTH} levels replaced by a text"] += 1
            return "<value nested too deeply>"
        if isinstance(value, Mapping):
            return {self.text(str(k), "property names"): self.json_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.json_value(v, depth + 1) for v in value]
        self.counts[f"property values of type {type(value).__name__} written as text"] += 1
        return self.text(str(value), "property texts")

    def messages(self) -> list[str]:
        return [f"{n} {what}" for what, n in self.counts.items()]
