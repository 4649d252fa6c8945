"""What the readers of ``keyrun scan`` yield: texts to search, and what they left out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

BINARY_SNIFF = 8000  # git's own heuristic: a NUL in the first 8000 bytes means binary


class Blob(NamedTuple):
    """A text to search: its path (``archive!member`` inside an archive), its bytes, and for
    history the commit and the real line number of each line (a commit's added lines)."""

    path: str
    data: bytes
    commit: str | None = None
    lines: Sequence[int] | None = None


class Skipped(NamedTuple):
    """A file left out or only partly searched, and why (a warning on stderr)."""

    path: str
    reason: str


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF]
