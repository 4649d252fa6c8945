"""``keyrun scan``: leaked credentials in files, the index or the history (SPEC §3, §4a).

    values = profile_values(Selection(env), Reporter())   # opened; nothing fetched yet
    result = scan([], root=Path.cwd(), mode="staged", values=values)
    print(render_text(result.findings))
    exit_code = 1 if result.findings else 0

Finds the key formats in ``keyrun.scan.rules`` and the exact values of the profile's keys
(those at least 8 characters long). The values come from a callable that ``scan`` calls at
most once, and only when there is text to search: a commit that stages nothing (or only
deletions and binary files) touches no source at all. A line carrying ``keyrun:allow`` is
skipped. A finding's ``preview`` is masked: at least half of a secret (and at least 8
characters) is never shown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from keyrun.scan.report import render_json, render_sarif, render_text
from keyrun.scan.rules import (
    ALLOW_MARKER,
    MIN_VALUE_LENGTH,
    RULE_TITLES,
    Text,
    find_hits,
)
from keyrun.scan.walk import Blob, ScanError, Skipped, read_history, read_staged, read_tree

if TYPE_CHECKING:
    from keyrun.reporter import Reporter
    from keyrun.session import Selection

Mode = Literal["tree", "staged", "history"]
Values = Mapping[str, str] | Callable[[], Mapping[str, str]] | None

__all__ = [
    "MIN_VALUE_LENGTH",
    "RULE_TITLES",
    "Finding",
    "Mode",
    "ScanError",
    "ScanResult",
    "Skipped",
    "profile_values",
    "render_json",
    "render_sarif",
    "render_text",
    "scan",
    "scan_bytes",
]


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
         values: Values = None) -> ScanResult:
    """Scan ``paths`` (default: all of ``root``) in one mode.

    ``tree``: the work tree (git's tracked and untracked, non-ignored files; every file when
    not in a repository). ``staged``: the index's copy of each file the next commit adds or
    changes. ``history``: the lines every commit of every ref added, with the commit id.
    ``values`` maps key names to the profile's values to look for, or is a callable that
    returns them: called once, before the first text is searched, never when there is none.
    Paths in findings are relative to ``root``. Raises ``ScanError`` when the scan cannot run.
    """
    readers = {"tree": read_tree, "staged": read_staged, "history": read_history}
    encoded: dict[str, bytes] | None = None
    result = ScanResult()
    for item in readers[mode](list(paths), root):
        if isinstance(item, Skipped):
            result.skipped.append(item)
            continue
        if encoded is None:
            encoded = _encoded(values() if callable(values) else values)
        result.scanned += 1
        findings, stopped = scan_blob(item, encoded)
        result.findings.extend(findings)
        if stopped:
            result.skipped.append(Skipped(item.path, stopped))
    if mode != "history":
        result.findings.sort(key=lambda f: (f.path, f.line, f.column))
    return result


def scan_bytes(data: bytes, path: str = "-", values: Mapping[str, str] | None = None
               ) -> list[Finding]:
    """Findings in one text (a file's bytes, stdin)."""
    return scan_blob(Blob(path, data), _encoded(values))[0]


def _encoded(values: Mapping[str, str] | None) -> dict[str, bytes]:
    return {key: value.encode("utf-8") for key, value in (values or {}).items()}


def profile_values(selection: Selection, report: Reporter) -> Callable[[], dict[str, str]]:
    """Open the profile now (an invalid keyrun.toml or an unknown environment raises: scan
    cannot do its whole job), and return what fetches its values, for ``scan`` to call when
    it has text to search; that fetch is one resolution session, logged as ``scan``. A
    profile that cannot be opened or read is a warning, not an error: scan still finds
    every known key format."""
    from keyrun.config import find_config
    from keyrun.errors import ConfigError, KeyrunError, MissingSdkError, UsageError
    from keyrun.session import open_session

    try:
        session = open_session(selection, action="scan", report=report)
    except MissingSdkError as exc:  # pre-commit's own venv has no cloud extras
        return _noting(report, f"not searching for the profile's values: {exc.message}")
    except (ConfigError, UsageError):
        # Without any keyrun.toml there is simply no profile to search for.
        if selection.config is None and find_config(Path.cwd(), None, os.environ) is None:
            return dict
        raise
    except KeyrunError as exc:
        return _noting(report, f"not searching for the profile's values: {exc.message}")

    def fetch() -> dict[str, str]:
        try:
            resolution = session.fetch()
        except KeyrunError as exc:
            report.warn(f"not searching for the profile's values: {exc.message}")
            return {}
        try:
            unread = [key for key, result in resolution.results.items()
                      if result.status == "error"]
            if unread:
                report.warn(f"could not read {', '.join(unread)}, so their values are not "
                            "searched for (keyrun list says why)")
            return resolution.values()
        finally:
            session.release()
            session.log()

    return fetch


def _noting(report: Reporter, message: str) -> Callable[[], dict[str, str]]:
    report.warn(message)
    return dict



def _stopped(text: Text) -> str:
    return (f"partly scanned: matching stopped after {text.budget:.1f} s (an unusual number "
            "of key-shaped strings); the findings so far are reported")


def scan_blob(blob: Blob, values: Mapping[str, bytes]) -> tuple[list[Finding], str]:
    """The findings in one blob, and why it was not scanned to its end ("" when it was)."""
    text = Text(blob.data)
    hits = find_hits(text, values)
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
                                key=hit.key, commit=blob.commit, column=column))
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
