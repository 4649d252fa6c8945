"""The body of ``keyrun scan``, reached from either parser (``keyrun.cli.grammar.ScanCall``)
without Typer or rich: the pre-commit hook runs it on every commit."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from keyrun.printable import printable
from keyrun.reporter import Reporter

if TYPE_CHECKING:
    from keyrun.scan.scanner import Mode
    from keyrun.session import Selection


def scan_command(selection: Selection, paths: list[str], *, staged: bool = False,
                 history: bool = False, output: str = "text", baseline: str | None = None,
                 update_baseline: bool = False) -> int:
    """Leaked credentials: exit 0 clean, 1 findings, 125 when the scan cannot run."""
    from keyrun.scan.command import advice, run_scan
    from keyrun.scan.report import RENDERERS

    mode: Mode = "staged" if staged else "history" if history else "tree"
    report = Reporter(selection.quiet, selection.verbose)
    outcome = run_scan(paths, mode=mode, selection=selection, report=report,
                       baseline=baseline, update_baseline=update_baseline)
    result = outcome.result
    for skipped in result.skipped:
        report.warn(f"{skipped.path}: {skipped.reason}")
    text = RENDERERS[output](result.findings)
    if text:
        print(printable(text.rstrip("\n"), json=output != "text"))
    if output == "text" and not selection.quiet:
        found = len(result.findings)
        unit = "text" if mode == "history" else "file"
        print(f"keyrun: scanned {result.scanned} {unit}{'s' if result.scanned != 1 else ''}, "
              f"{found} finding{'s' if found != 1 else ''}", file=sys.stderr)
    if not selection.quiet:
        for line in advice(outcome, mode):
            print(printable(line), file=sys.stderr)
    return 1 if result.findings else 0
