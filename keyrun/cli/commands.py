"""The bodies of ``list``, ``doctor`` and ``set``: call the core, render, return a status."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keyrun.cli import render
from keyrun.durations import format_age
from keyrun.errors import ConfigError, KeyrunError, UsageError
from keyrun.listing import Row, folded_problems
from keyrun.printable import printable
from keyrun.reporter import Reporter
from keyrun.run import Selection
from keyrun.secret import Secret

if TYPE_CHECKING:
    from keyrun.trust import TrustFile

_STYLE = {"ok": "green", "pass": "green", "warn": "yellow", "optional": "yellow",
          "unknown": "cyan", "missing": "red", "error": "red", "fail": "red"}


def _list_env(selection: Selection, env: str | None, details: bool) -> tuple[str, str, list[Row]]:
    from keyrun.listing import list_env

    return list_env(env, config=selection.config, project=selection.project,
                    report=_reporter(selection), details=details, progress=True)


def _reporter(selection: Selection) -> Reporter:
    """Warnings of a command that may resolve more than one profile: each said once."""
    return Reporter(selection.quiet, selection.verbose, once=True)


def _env_names(selection: Selection) -> list[str]:
    from keyrun.config import load_config

    return load_config(None, selection.config, os.environ).env_names()


def list_command(selection: Selection, *, all_envs: bool, as_json: bool) -> int:
    if not all_envs:
        details = selection.verbose  # every key's metadata, for its note
        project, env, rows = _list_env(selection, selection.env, details)
        if as_json:
            render.print_json({"project": project, "env": env,
                               "keys": [row.as_json() for row in rows]})
        else:
            _print_rows(project, env, rows)
            notes = [(f"{row.name}: ", None, row.note) for row in rows if row.note]
            if selection.verbose and notes:
                print()
                render.print_marked(notes)
        return 0
    from keyrun.listing import list_all_envs

    listed = list_all_envs(config=selection.config, project=selection.project,
                           report=_reporter(selection), progress=True)
    project = next(iter(listed.values()))[0] if listed else ""
    if as_json:
        render.print_json({"project": project, "envs": {
            env: [row.as_json() for row in rows] for env, (_, _, rows) in listed.items()}})
        return 0
    keys = list(dict.fromkeys(row.name for _, _, rows in listed.values() for row in rows))
    table = []
    for key in keys:
        cells = [key]
        for _, _, rows in listed.values():
            row = next((r for r in rows if r.name == key), None)
            cells.append("-" if row is None else f"{row.status} ({row.source or '-'})")
        table.append(cells)
    render.table(["KEY", *listed], table, title=f"project {project}: every environment")
    return 0


def _print_rows(project: str, env: str, rows: list[Row]) -> None:
    now = datetime.now(UTC)
    table = [[
        f"{row.name} (as file)" if row.delivery == "file" else row.name, row.source or "-",
        row.location or "-", row.status, row.preview or "",
        row.version or "", format_age((now - row.updated).total_seconds()) if row.updated else "",
    ] for row in rows]
    render.table(["KEY", "SOURCE", "LOCATION", "STATUS", "PREVIEW", "VERSION", "AGE"], table,
                 title=f"project {project}, environment {env}",
                 folding=("LOCATION", "VERSION"), optional=("PREVIEW", "VERSION", "AGE"),
                 breakable=("KEY",))
    problems = folded_problems(rows)
    if problems:
        print()
        render.print_marked([(f"{', '.join(keys)}: ", _STYLE.get(status), error)
                             for status, keys, error in problems])


def doctor_command(selection: Selection, *, all_envs: bool, as_json: bool, strict: bool,
                   history: bool) -> int:
    from keyrun.doctor import DoctorOptions, diagnose, diagnose_all

    options = DoctorOptions(env=selection.env, project=selection.project,
                            config=selection.config, history=history)
    sink = _reporter(selection)
    try:
        reports = (diagnose_all(options, report=sink, progress=True) if all_envs
                   else [diagnose(options, report=sink, progress=True)])
    except ConfigError as exc:
        if as_json:  # what stopped doctor is its failing config check (exit 125 still)
            render.print_json({"ok": False, "env": selection.env, "project": selection.project,
                               "checks": [{"id": "config", "status": "fail",
                                           "message": exc.message, "fix": exc.hint,
                                           "keys": []}]})
        raise
    ok = all(report.ok(strict) for report in reports)
    if as_json:
        if all_envs:
            render.print_json({"ok": ok, "envs": [r.as_json(strict) for r in reports]})
        else:
            render.print_json(reports[0].as_json(strict))
        return 0 if ok else 1
    for report in reports:
        _print_report(report, strict)
    return 0 if ok else 1


def _print_report(report: object, strict: bool) -> None:
    from keyrun.doctor import Report

    assert isinstance(report, Report)
    render.print_marked([("", None, f"keyrun doctor: {report.project}/{report.env}")])
    lines: list[tuple[str, str | None, str, str]] = []
    for check in report.checks:
        lines.append((check.status, _STYLE.get(check.status), check.id, check.message))
        if check.fix and check.status != "pass":
            lines.append(("", None, "", f"fix: {check.fix}"))
    render.print_hanging(lines, widths=(7, 20))
    counts = {s: sum(c.status == s for c in report.checks) for s in ("fail", "warn", "unknown")}
    verdict = "ok" if report.ok(strict) else "problems found"
    render.print_marked([("", None, f"{verdict}: {counts['fail']} failing, {counts['warn']} "
                                    f"warnings, {counts['unknown']} unknown")])


def set_command(selection: Selection, key: str, source: str | None) -> int:
    from keyrun.setkey import set_key

    value = read_value(key)
    done = set_key(key, value, env=selection.env, source=source, project=selection.project,
                   config=selection.config, progress=not selection.quiet)
    report = Reporter(selection.quiet, selection.verbose)
    report.note(f"set {done.key} in {done.source} ({done.location}) for {done.env}")
    if not done.declared:
        report.warn(f"{done.key} is not one of {done.env}'s keys, so run does not pass it "
                    "yet: declare it in keyrun.toml's [keys] (or in .env.example)")
    if done.unseen:  # even with -q: the value written is not the one run will use
        report.always(f"warning: {done.unseen}")
    return 0


def read_value(key: str) -> Secret:
    """The new value from stdin, or from a hidden prompt (twice) on a terminal."""
    if sys.stdin is None:
        raise UsageError("no value: stdin is closed", f"printf '%s' VALUE | keyrun set {key}")
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"new value for {key} (hidden): ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two values differ; nothing was written")
        value = first
    else:
        data = sys.stdin.buffer.read()
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the value on stdin is not UTF-8 text") from None
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    if value == "":
        raise UsageError("empty value; nothing was written",
                         f"pipe the value in: printf '%s' \"$VALUE\" | keyrun set {key}")
    return Secret(value)


def sources_command(*, as_json: bool) -> int:
    """Every installed source type, the extra it needs, and whether it is usable here."""
    from keyrun.sources.registry import installed_types, source_class, unusable_reason

    rows: list[dict[str, object]] = []
    for source_type in installed_types():
        try:
            cls = source_class(source_type.name, where="installed source")
        except KeyrunError as exc:
            rows.append({"type": source_type.name, "provider": source_type.distribution,
                         "extra": None, "usable": False, "reason": exc.message,
                         "summary": ""})
            continue
        reason = unusable_reason(source_type, cls)
        rows.append({"type": source_type.name,
                     "provider": "keyrun" if source_type.builtin else source_type.distribution,
                     "extra": cls.extra, "usable": reason is None, "reason": reason,
                     "summary": cls.summary})
    if as_json:
        render.print_json({"sources": rows})
        return 0
    render.table(["TYPE", "PROVIDER", "EXTRA", "USABLE", "NOTE"], [
        [str(row["type"]), str(row["provider"] or "-"), str(row["extra"] or "-"),
         "yes" if row["usable"] else "no", str(row["summary"] if row["usable"] else row["reason"])]
        for row in rows], folding=("NOTE",))
    return 0


def complete_envs(incomplete: str, config: str | None = None) -> list[str]:
    """Environment names of the keyrun.toml in reach, or the one -c names (completion)."""
    try:
        return [name for name in _env_names(Selection(config=config))
                if name.startswith(incomplete)]
    except (KeyrunError, OSError):
        return []


def complete_keys(incomplete: str, env: str | None = None, config: str | None = None
                  ) -> list[str]:
    """Key names of the environment typed so far, else the default one (completion)."""
    from keyrun.config import choose_env, environment, load_config

    try:
        loaded = load_config(None, config, os.environ)
        chosen = environment(loaded, choose_env(loaded, env, os.environ))
    except (KeyrunError, OSError):
        return []
    return [key.name for key in chosen.keys if key.name.startswith(incomplete)]


def trust_command(selection: Selection, hosts: list[str], *, listing: bool,
                  remove: list[str]) -> int:
    """Add, list or remove trusted hosts; without a host, trust every host the config names
    that needs it (exit 1 when one of them cannot be trusted: plain http)."""
    from keyrun import trust

    if listing and (hosts or remove):
        raise UsageError("--list takes no HOST and no --remove", "keyrun trust --list")
    if hosts and remove:
        raise UsageError("give hosts to trust or --remove HOST, not both")
    report = Reporter(selection.quiet, selection.verbose)
    store = trust.TrustFile.of(os.environ)
    if listing:
        return _list_trusted(store, report)
    if remove:
        for host in trust.parse_hosts(remove):
            if not store.remove(host):
                raise _not_trusted(host, store)
            report.note(f"no longer trusted: {host}")
        return 0
    if hosts:
        _trust_hosts(store, trust.parse_hosts(hosts), report)
        return 0
    return _trust_config(selection, store, report)


def _trust_hosts(store: TrustFile, hosts: list[str], report: Reporter,
                 why: dict[str, str] | None = None) -> None:
    from keyrun.trust import is_loopback

    for host in hosts:
        if is_loopback(host):
            report.note(f"{host} is loopback: it needs no trust")
    wanted = [host for host in hosts if not is_loopback(host)]
    added = store.add(wanted)
    for host in dict.fromkeys(wanted):
        reason = f" for {why[host]}" if why and host in why else ""
        report.note(f"trusted {host}{reason} (kept in {store.path})" if host in added
                    else f"{host} was already trusted")


def _trust_config(selection: Selection, store: TrustFile, report: Reporter) -> int:
    from keyrun.config import choose_env, load_config
    from keyrun.trust import refusals

    config = load_config(None, selection.config, os.environ)
    envs = ([choose_env(config, selection.env, os.environ)] if selection.env
            else config.env_names())
    refused = refusals(config, envs, os.environ, project=selection.project)
    if not refused:
        report.note(f"nothing to trust: every host {config.label} names is loopback, a "
                    "service's own endpoint, named by your environment, or trusted already")
        return 0
    why: dict[str, str] = {}
    for exc in refused:
        if exc.trustable:
            sources = why.get(exc.host)
            why[exc.host] = f"{sources}, {exc.source}" if sources else f"source {exc.source}"
    for message in dict.fromkeys(f"{e.message} — {e.hint}" for e in refused if not e.trustable):
        report.always(f"warning: not trusted: {message}")
    _trust_hosts(store, list(why), report, why)
    return 0 if all(exc.trustable for exc in refused) else 1


def _list_trusted(store: TrustFile, report: Reporter) -> int:
    from keyrun.trust import HOST_VARIABLES, TRUSTED_VARIABLE, hosts_in

    lines = list(store.hosts())
    for variable in (TRUSTED_VARIABLE, *HOST_VARIABLES):
        lines += [f"{host} ({variable})" for host in hosts_in(os.environ.get(variable, ""))]
    if not lines:
        report.note("no trusted hosts; trust one with: keyrun trust HOST")
    for line in dict.fromkeys(lines):
        print(printable(line))
    return 0


def _not_trusted(host: str, store: TrustFile) -> UsageError:
    from keyrun.trust import TRUSTED_VARIABLE, hosts_in

    if host in hosts_in(os.environ.get(TRUSTED_VARIABLE, "")):
        return UsageError(f"{host} is trusted by ${TRUSTED_VARIABLE}, not by {store.path}",
                          f"remove it from {TRUSTED_VARIABLE}")
    return UsageError(f"{host} is not a trusted host", "keyrun trust --list shows them")
