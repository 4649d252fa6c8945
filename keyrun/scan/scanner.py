"""Scanning: the readers' texts through the rules and the profile's values, into findings.

Findings are masked from the start (``preview``); a finding keeps only the SHA-256 of its
secret, for fingerprints (``keyrun.scan.baseline``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from keyrun.config import ScanSpec
from keyrun.scan.blob import Blob, Skipped
from keyrun.scan.engine import ALLOW_MARKER, Text, find_hits
from keyrun.scan.rules import RuleSet, ruleset
from keyrun.scan.walk import Skip, read_history, read_staged, read_tree

Mode = Literal["tree", "staged", "history"]
Values = Mapping[str, str] | Callable[[], Mapping[str, str]] | None


@dataclass(frozen=True)
class Finding:
    """One leaked credential: where it is, which rule (or profile key) found it, a masked preview.

    ``line`` and ``column`` are 1-based (``column`` counts characters of the line's text);
    ``commit`` is set by ``--history``; ``key`` names the profile key whose value this is."""

    path: str
    line: int
    rule: str
    preview: str
    key: str | None = None
    commit: str | None = None
    column: int = 1
    digest: bytes = field(default=b"", repr=False, compare=False)  # SHA-256 of the secret

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "rule": self.rule, "key": self.key,
                "commit": self.commit, "preview": self.preview}


@dataclass
class ScanResult:
    """The findings (sorted by path and line; for history, newest commit first); the files
    skipped or only partly scanned, each with the reason (for a warning on stderr); how many
    texts were scanned."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    scanned: int = 0


def scan(paths: Sequence[Path] = (), *, root: Path, mode: Mode = "tree",
         values: Values = None, settings: ScanSpec | None = None,
         skip: Skip | None = None) -> ScanResult:
    """Scan ``paths`` (default: all of ``root``) in one mode.

    ``tree``: the work tree (git's tracked and untracked, non-ignored files; every file when
    not in a repository). ``staged``: the index's copy of each file the next commit adds or
    changes. ``history``: the lines every commit of every ref added, with the commit id.
    ``values`` maps key names to the profile's values to look for, or is a callable that
    returns them: called once, before the first text is searched, never when there is none.
    ``settings`` is keyrun.toml's ``[scan]`` table (its rules added and disabled); ``skip``
    says which paths (relative to ``root``, as findings show them) to leave out. Raises
    ``ScanError`` when the scan cannot run.
    """
    readers = {"tree": read_tree, "staged": read_staged, "history": read_history}
    rules: RuleSet | None = None
    encoded: dict[str, bytes] | None = None
    result = ScanResult()
    for item in readers[mode](list(paths), root, skip):
        if isinstance(item, Skipped):
            result.skipped.append(item)
            continue
        if rules is None or encoded is None:  # the first text: only now is anything loaded
            rules = ruleset(settings)
            encoded = _encoded(values() if callable(values) else values)
        result.scanned += 1
        findings, stopped = scan_blob(item, encoded, rules)
        result.findings.extend(findings)
        if stopped:
            result.skipped.append(Skipped(item.path, stopped))
    if mode != "history":
        result.findings.sort(key=lambda f: (f.path, f.line, f.column))
    return result


def scan_bytes(data: bytes, path: str = "-", values: Mapping[str, str] | None = None
               ) -> list[Finding]:
    """Findings in one text (a file's bytes, stdin), by the built-in rules."""
    return scan_blob(Blob(path, data), _encoded(values), ruleset())[0]


def _encoded(values: Mapping[str, str] | None) -> dict[str, bytes]:
    return {key: value.encode("utf-8") for key, value in (values or {}).items()}


def _stopped(text: Text) -> str:
    return (f"partly scanned: matching stopped after {text.budget:.1f} s (an unusual number "
            "of key-shaped strings); the findings so far are reported")


def scan_blob(blob: Blob, values: Mapping[str, bytes], rules: RuleSet
              ) -> tuple[list[Finding], str]:
    """The findings in one blob, and why it was not scanned to its end ("" when it was)."""
    text = Text(blob.data)
    hits = find_hits(text, rules, values)
    stopped = _stopped(text) if text.stopped else ""
    if not hits:
        return [], stopped
    allowed = _allowed_lines(blob.data)
    cursor = _LineCursor(blob.data)
    findings = []
    for hit in sorted(hits, key=lambda h: h.start):
        index, column = cursor.locate(hit.start)
        if index in allowed:
            continue
        line = blob.lines[index - 1] if blob.lines is not None else index
        findings.append(Finding(path=blob.path, line=line, rule=hit.rule, preview=hit.preview,
                                key=hit.key, commit=blob.commit, column=column,
                                digest=hit.digest))
    return findings, stopped


def _allowed_lines(data: bytes) -> set[int]:
    if ALLOW_MARKER not in data:
        return set()
    cursor = _LineCursor(data)
    allowed = set()
    at = data.find(ALLOW_MARKER)
    while at != -1:
        allowed.add(cursor.locate(at)[0])
        at = data.find(ALLOW_MARKER, at + 1)
    return allowed


class _LineCursor:
    """Line and column of increasing byte offsets, counting newlines only once (a 5 MB
    one-line file with many findings stays linear)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0
        self.line = 1
        self.column = 1

    def locate(self, offset: int) -> tuple[int, int]:
        start = self.offset
        newlines = self.data.count(b"\n", start, offset)
        if newlines:
            self.line += newlines
            start = self.data.rfind(b"\n", start, offset) + 1
            self.column = 1
        self.column += _characters(self.data[start:offset])
        self.offset = offset
        return self.line, self.column


def _characters(data: bytes) -> int:
    return len(data.decode("utf-8", "replace"))
