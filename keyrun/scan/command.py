"""The core of ``keyrun scan``: keyrun.toml's ``[scan]`` settings, the profile's values
(fetched lazily), the scan, the paths to skip, and the findings a baseline accepts.

    outcome = run_scan([], mode="staged", selection=Selection(), report=Reporter())
    print(render_text(outcome.result.findings))
    for line in advice(outcome, "staged"): print(line, file=sys.stderr)

Fingerprints (``keyrun.scan.baseline``) name paths relative to the project: the directory of
keyrun.toml, else the git work tree, else the directory scanned from; so a baseline written
from one directory holds when the scan runs from another.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyrun.config import ScanSpec, load_config
from keyrun.errors import ConfigError, UsageError
from keyrun.scan import profile_values
from keyrun.scan.baseline import fingerprint, read_baseline, write_baseline
from keyrun.scan.rules import ruleset
from keyrun.scan.scanner import Finding, Mode, ScanResult, scan
from keyrun.scan.walk import Skip, toplevel

if TYPE_CHECKING:
    from keyrun.reporter import Reporter
    from keyrun.session import Selection


@dataclass
class Outcome:
    """What ``keyrun scan`` found (findings a baseline accepts left out), how many were
    accepted, and how many entries it wrote to the baseline file (None: it wrote none)."""

    result: ScanResult
    accepted: int = 0
    recorded: int | None = None
    baseline: Path | None = None
    settings: ScanSpec = field(default_factory=ScanSpec)


def run_scan(paths: Sequence[str], *, mode: Mode, selection: Selection, report: Reporter,
             baseline: str | None = None, update_baseline: bool = False,
             cwd: Path | None = None) -> Outcome:
    """Scan as ``keyrun scan`` does. ``baseline`` names a baseline file: its fingerprints are
    skipped; a scan of the work tree creates it with every finding when it does not exist
    yet (a commit or the history never does: that would accept what it should stop); with
    ``update_baseline`` the findings are added to it. Raises ``ConfigError`` for an invalid
    keyrun.toml, ``ScanError`` when the scan cannot run."""
    cwd = cwd or Path.cwd()
    loaded = load_config(cwd, selection.config, os.environ)
    settings = loaded.scan
    top = toplevel(cwd)
    anchor = loaded.root if loaded.path is not None else (top or cwd)
    target = Path(baseline) if baseline is not None else settings.baseline
    if update_baseline and target is None:
        raise UsageError("--update-baseline needs a baseline file",
                         "name it: keyrun scan --baseline FILE --update-baseline")
    values = profile_values(selection, report)
    skip = _skipper(settings.skip, anchor, cwd) if settings.skip else None
    result = scan([Path(p) for p in paths], root=cwd, mode=mode, values=values,
                  settings=settings, skip=skip)
    if mode == "tree" and not paths and top is None:
        # Outside git nothing marks .env files as private: they are where secrets belong
        # (doctor checks their permissions), not leaks.
        result.findings = [f for f in result.findings if not _is_env_file(f.path)]
    outcome = Outcome(result, baseline=target, settings=settings)

    def mark(finding: Finding) -> str:
        return fingerprint(finding.rule, project_path(finding.path, cwd, anchor), finding.digest)

    if target is not None and (update_baseline or (
            baseline is not None and mode == "tree" and not target.exists())):
        _record(outcome, target, mark, cwd, anchor)
        return outcome
    accepted = set(settings.accepted)
    if target is not None:
        if not target.exists():
            named = f"{settings.where} baseline" if baseline is None else "--baseline"
            raise ConfigError(f"{named}: {target} does not exist",
                              f"create it from the whole work tree: keyrun scan --baseline "
                              f"{target}")
        accepted |= {entry["fingerprint"] for entry in read_baseline(target)}
    if accepted and result.findings:
        kept = [f for f in result.findings if mark(f) not in accepted]
        outcome.accepted = len(result.findings) - len(kept)
        result.findings = kept
    return outcome


def _record(outcome: Outcome, target: Path, mark: Callable[[Finding], str], cwd: Path,
            anchor: Path) -> None:
    earlier = read_baseline(target) if target.exists() else []
    entries: list[dict[str, Any]] = [*earlier, *(
        {"fingerprint": mark(f), "rule": f.rule, "path": project_path(f.path, cwd, anchor)}
        for f in outcome.result.findings)]
    outcome.recorded = write_baseline(target, entries)
    outcome.accepted = len(outcome.result.findings)
    outcome.result.findings = []


def project_path(shown: str, cwd: Path, anchor: Path) -> str:
    """A finding's path (relative to ``cwd``, ``archive!member`` inside archives) relative
    to the project's ``anchor`` directory instead."""
    head, bang, member = shown.partition("!")
    relative = os.path.relpath(os.path.join(cwd, head), anchor)
    return relative.replace(os.sep, "/") + bang + member


def _skipper(patterns: Sequence[str], anchor: Path, cwd: Path) -> Skip:
    """Whether a path (relative to ``cwd``) matches one of ``[scan] skip``'s patterns, which
    are relative to the project: a pattern without ``/`` matches a file or directory name at
    any depth (``*.min.js``, ``fixtures``), one with ``/`` the path from the project's root
    (``tests/data/**``)."""
    cleaned = [p.strip().strip("/").removesuffix("/**") for p in patterns if p.strip()]

    def skip(shown: str) -> bool:
        path = project_path(shown.partition("!")[0], cwd, anchor)
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(
            any(fnmatchcase(prefix, pattern) for prefix in prefixes) if "/" in pattern
            else any(fnmatchcase(part, pattern) for part in parts)
            for pattern in cleaned)

    return skip


def _is_env_file(path: str) -> bool:
    name = posixpath.basename(path)
    return (name == ".env" or name.startswith(".env.")) and name != ".env.example"


def advice(outcome: Outcome, mode: Mode) -> list[str]:
    """What to tell the user under the findings: which rules, and how to fix or accept."""
    findings = outcome.result.findings
    lines = []
    if outcome.recorded is not None:
        lines.append(f"keyrun: {outcome.baseline}: recorded {outcome.accepted} finding"
                     f"{_s(outcome.accepted)} ({outcome.recorded} in all); later scans with "
                     "this baseline skip them")
    elif outcome.accepted:
        lines.append(f"keyrun: {outcome.accepted} accepted finding{_s(outcome.accepted)} "
                     "skipped (baseline)")
    if not findings:
        return lines
    titles = ruleset(outcome.settings).titles()
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    rules = ", ".join(f"{rule} ({titles.get(rule, rule)})" if n == 1 else
                      f"{rule} ×{n} ({titles.get(rule, rule)})" for rule, n in counts.items())
    what = "the commit is stopped: " if mode == "staged" else ""
    lines += [
        f"keyrun: {what}{len(findings)} leaked credential{_s(len(findings))}: {rules}",
        "  fix: remove it, load it at run time with keyrun instead "
        "(`keyrun set KEY`, then `keyrun -- CMD`), and rotate it at its provider if it was "
        "ever pushed" + ("; then `git add` the file again" if mode == "staged" else ""),
        "  accept a deliberate example: put `keyrun:allow` in a comment on its line, or "
        f"record it: keyrun scan {'--staged ' if mode == 'staged' else ''}"
        f"--baseline {outcome.baseline or '.keyrun-baseline.json'} --update-baseline",
    ]
    return lines


def _s(count: int) -> str:
    return "" if count == 1 else "s"
