"""Text from outside, made safe to print (SPEC §5 "What keyrun writes is its own").

keyrun prints what it did not write: directory and file names, a keyrun.toml's project and
source names, scanned paths, access-log entries. A name holding an escape sequence could
recolour or clear the terminal, move the cursor over keyrun's own words or set the window's
title; a bidirectional control could reorder what follows it. Every printer passes its text
through :func:`printable`, which writes each such character as an escape instead.
"""

from __future__ import annotations

import functools
import re

# C0 controls but tab and newline, DEL, C1 controls (U+009B is a CSI on its own), and the
# bidirectional marks, embeddings, overrides and isolates (Trojan Source, CVE-2021-42574).
_UNSAFE = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"


@functools.cache
def _unsafe() -> re.Pattern[str]:
    return re.compile(_UNSAFE)  # when first needed: a run that prints nothing never compiles it


def printable(text: str, *, json: bool = False) -> str:
    """``text`` with every control character but tab and newline escaped: ``\\x1b`` (or
    ``\\u001b`` with ``json``, which keeps a JSON document valid and its meaning the same,
    since such characters can only stand inside its strings), ``\\u202e``."""
    if not _unsafe().search(text):
        return text

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\u{code:04x}" if json or code > 0xFF else f"\\x{code:02x}"

    return _unsafe().sub(escape, text)
