"""``keyrun scan``: leaked credentials in files, the index or the history (SPEC §3, §4a).

    values = profile_values(Selection(env), Reporter())   # opened; nothing fetched yet
    result = scan([], root=Path.cwd(), mode="staged", values=values)
    print(render_text(result.findings))
    exit_code = 1 if result.findings else 0

Finds the key formats of ``keyrun/scan/rules.toml`` (plus a project's own ``[scan]`` rules)
and the exact values of the profile's keys (those at least 8 characters long), also inside
archives and base64. The values come from a callable that ``scan`` calls at most once, and
only when there is text to search: a commit that stages nothing (or only deletions and
binary files) touches no source at all. A line carrying ``keyrun:allow`` is skipped. A
finding's ``preview`` is masked by the one preview policy (``keyrun.preview``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from keyrun.scan.blob import Skipped
from keyrun.scan.engine import MIN_VALUE_LENGTH
from keyrun.scan.report import render_json, render_sarif, render_text
from keyrun.scan.scanner import Finding, Mode, ScanResult, Values, scan, scan_bytes
from keyrun.scan.walk import ScanError

if TYPE_CHECKING:
    from keyrun.reporter import Reporter
    from keyrun.session import Selection

__all__ = [
    "MIN_VALUE_LENGTH",
    "Finding",
    "Mode",
    "ScanError",
    "ScanResult",
    "Skipped",
    "Values",
    "profile_values",
    "render_json",
    "render_sarif",
    "render_text",
    "scan",
    "scan_bytes",
]


def profile_values(selection: Selection, report: Reporter) -> Callable[[], dict[str, str]]:
    """Open the profile now (an invalid keyrun.toml or an unknown environment raises: scan
    cannot do its whole job), and return what fetches its values, for ``scan`` to call when
    it has text to search; that fetch is one resolution session, logged as ``scan``. A
    profile that cannot be opened or read is a warning, not an error: scan still finds
    every known key format."""
    from keyrun.config import find_config, load_config
    from keyrun.errors import ConfigError, KeyrunError, MissingSdkError, UsageError
    from keyrun.session import open_session

    try:
        loaded = load_config(None, selection.config, os.environ)
        if (loaded.path is not None and not loaded.envs and not loaded.keys
                and selection.env is None):
            return dict  # a keyrun.toml that only configures [scan]: no profile to search
        session = open_session(selection, action="scan", report=report, progress=True)
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
