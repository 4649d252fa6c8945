"""The bodies of ``keyrun mcp scan`` and ``keyrun mcp protect``: call keyrun.mcp, render,
return a status. Everything printed that comes from the files is escaped (``one_line``)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from keyrun.cli import render
from keyrun.errors import EXIT_KEYRUN_FAILED
from keyrun.listing import one_line
from keyrun.mcp import carry_out, choose_store, clients, jsonc, keyrun_command, plan, scan_configs
from keyrun.mcp.clients import Server
from keyrun.mcp.protect import FilePlan, Protection, preview_change, shared_file_warning
from keyrun.mcp.scan import Finding, ScanResult
from keyrun.reporter import Reporter
from keyrun.session import Selection


def _scan(paths: Sequence[str]) -> ScanResult:
    cwd = Path.cwd()
    return scan_configs([Path(os.path.abspath(cwd / p)) for p in paths], cwd=cwd)


def _skipped(result: ScanResult, report: Reporter) -> None:
    for unreadable in result.unreadable:
        report.warn(f"skipped {one_line(str(unreadable.file.path))}: "
                    f"{one_line(unreadable.reason)}")


def _status(result: ScanResult) -> int | None:
    """125 when files were found but none could be read, else None."""
    if result.unreadable and not result.configs:
        return EXIT_KEYRUN_FAILED
    return None


def finding_line(finding: Finding, line: int) -> str:
    server = finding.server
    return (f"{one_line(str(server.file.path))}:{line}: {server.file.client} server "
            f"{one_line(server.label)}: {one_line(field_words(finding))}: "
            f"{one_line(finding.verdict.what)} ({one_line(finding.verdict.preview)})")


def field_words(finding: Finding) -> str:
    """Where in the entry: ``env NAME``, ``header NAME``, ``args[2]``, ``--api-key value``."""
    if finding.field == "args":
        return finding.variable if finding.variable.startswith("args[") else (
            f"{finding.variable} value")
    return f"{'header' if finding.field == 'headers' else 'env'} {finding.variable}"


def _line_of(result: ScanResult, finding: Finding) -> int:
    config = next(c for c in result.configs if c.file == finding.server.file)
    return config.line(finding.node.start)


def mcp_scan_command(selection: Selection, paths: Sequence[str], output: str) -> int:
    """Exit 1 with findings, 0 without, 125 when nothing could be read."""
    report = Reporter(selection.quiet, selection.verbose)
    result = _scan(paths)
    _skipped(result, report)
    if output == "json":
        render.print_json({"findings": [f.as_json() for f in result.findings]})
    else:
        for finding in result.findings:
            print(finding_line(finding, _line_of(result, finding)))
    failed = _status(result)
    if failed is not None:
        return failed
    if output == "text" and not selection.quiet:
        servers = sum(len(result.servers_of(c)) for c in result.configs)
        count = len(result.findings)
        print(f"keyrun: read {_count(len(result.configs), 'MCP configuration file')} "
              f"({_count(servers, 'server')}), {_count(count, 'finding')}", file=sys.stderr)
        if count and all(f.server.remote for f in result.findings):
            print("next: keyrun mcp protect --dry-run names, for each remote server, the "
                  "client's own way to keep the header out of the file (keyrun cannot start "
                  "a server the client connects to)", file=sys.stderr)
        elif count:
            print("next: keyrun mcp protect --dry-run (to see the change), then keyrun mcp "
                  "protect", file=sys.stderr)
    return 1 if result.findings else 0


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"


def mcp_protect_command(selection: Selection, paths: Sequence[str], to: str,
                        dry_run: bool) -> int:
    """Exit 0 when every finding moved (or none was found), 1 when some are left."""
    report = Reporter(selection.quiet, selection.verbose)
    result = _scan(paths)
    _skipped(result, report)
    failed = _status(result)
    if failed is not None:
        return failed
    if not result.findings:
        report.note("no literal credential in any MCP configuration; nothing to do")
        return 0
    store = choose_store(to, config=selection.config, project=selection.project,
                         environ=os.environ, cwd=Path.cwd())
    home = Path(os.environ.get("HOME") or Path.home())
    launcher = keyrun_command()
    protection = plan(result, store, launcher=launcher, environ=os.environ, home=home)
    for file_plan in protection.plans:
        if dry_run:
            _show_plan(file_plan, result, store.label)
            continue
        carry_out(file_plan, store, os.environ, protection)
        warning = shared_file_warning(file_plan)
        if warning:
            report.always(f"warning: {one_line(warning)}")
    if not dry_run:
        _show_done(protection)
    _show_left(protection)
    if protection.plans and not dry_run and not selection.quiet:
        clients = sorted({p.config.file.client for p in protection.plans})
        print(f"next: restart {', '.join(clients)} so that the servers start through keyrun; "
              "the values were in plain text, so if a file was ever synced, shared or "
              "committed, rotate them (keyrun set KEY -c PROFILE -e SERVER)", file=sys.stderr)
    return 1 if protection.left else 0


def _show_plan(file_plan: FilePlan, result: ScanResult, store: str) -> None:
    found = [f for f in result.findings if f.server.file == file_plan.config.file]
    sys.stdout.write(one_line_lines(preview_change(file_plan, found)))
    for move in file_plan.moves:
        print(f"would store {one_line(move.key)} ({one_line(move.finding.verdict.preview)}) "
              f"of {one_line(move.finding.server.label)} in {one_line(store)}")
    print(f"would write {file_plan.profile.path}:")
    sys.stdout.write(one_line_lines(file_plan.profile.text()))


def one_line_lines(text: str) -> str:
    """Each line of ``text`` escaped on its own, its line breaks and tabs kept (a diff of a
    file indented with tabs stays readable)."""
    return "".join("\t".join(map(one_line, line.split("\t"))) + "\n"
                   for line in text.splitlines())


def servers_after(file_plan: FilePlan) -> list[Server]:
    """The servers of ``file_plan`` as its new text has them."""
    changed = {(p.server.project, p.server.name) for p in file_plan.servers}
    document = jsonc.parse(file_plan.new_text, clients.wanted)
    return [server for server in clients.servers(document, file_plan.config.file)
            if (server.project, server.name) in changed]


def command_line(server: Server) -> list[str]:
    command, args = server.entry.get("command"), server.entry.get("args")
    return [str(node.value) for node in
            (*([command] if command else []), *(args.items if args else ()))]


def _show_done(protection: Protection) -> None:
    for stored in protection.stored:
        server = stored.move.finding.server
        origin = stored.move.finding.variable
        moved = (origin if origin == stored.move.key
                 else f"{origin} (as {stored.move.key})")
        verb = "moved to" if stored.written else "already in"
        print(f"{one_line(str(server.file.path))}: {one_line(server.label)}: "
              f"{one_line(moved)} {verb} {one_line(stored.where)}")
    for file_plan in protection.plans:
        for server in servers_after(file_plan):
            print(f"{one_line(str(file_plan.config.file.path))}: {one_line(server.label)} "
                  f"now starts as: {one_line(shlex.join(command_line(server)))}")


def _show_left(protection: Protection) -> None:
    for left in protection.left:
        finding = left.finding
        print(f"{one_line(str(finding.server.file.path))}: left "
              f"{one_line(field_words(finding))} of {one_line(finding.server.label)}: "
              f"{one_line(left.reason)}\n  instead: {one_line(left.advice)}")
