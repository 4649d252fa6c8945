"""``keyrun run``: resolve, check, build the environment, start the command."""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from keyrun import keyfiles
from keyrun.environ import (
    ChildEnvironment,
    build_environment,
    secrets_in_argv,
    value_in_program,
)
from keyrun.errors import KeyrunError, LaunchError, ResolutionError
from keyrun.reporter import Reporter
from keyrun.session import LeaseKeeper, Selection, Session, open_session


class RunOptions(NamedTuple):
    only: tuple[str, ...] = ()
    allow_missing: bool = False
    preserve_env: bool = False
    clean_env: bool = False
    allow_argv_secrets: bool = False
    mask: bool = False


def _resolve(selection: Selection, options: RunOptions, environ: Mapping[str, str],
             report: Reporter, command: str) -> Session:
    """Open and fetch the profile, fail closed; a refusal is written to the access log
    here, a resolution that goes on by the caller (once it has decided to run)."""
    session = open_session(selection, action="run", command=command, only=options.only,
                           environ=environ, interactive=sys.stdin.isatty(), report=report,
                           progress=True, stoppable=True)
    outer = session.nested_in()
    if outer is not None:
        report.always(f"nested inside keyrun profile {outer}; this command gets "
                      f"{session.profile.label}")
    files = keyfiles.file_keys(session.profile)
    keyfiles.refuse_unless_possible(files)  # before anything is fetched
    resolution = session.fetch()
    with session.releasing_on_failure():
        with session.refusal_logged("keys missing or unreadable"):
            resolution.check(allow_missing=options.allow_missing)
        session.warn_unresolved()
        with session.refusal_logged("a value the environment cannot carry"):
            keyfiles.check_values(resolution.values(), files)
    return session


def prepare(
    argv: Sequence[str],
    selection: Selection,
    options: RunOptions,
    environ: Mapping[str, str],
    report: Reporter,
) -> tuple[Session, ChildEnvironment]:
    session = _resolve(selection, options, environ, report, argv[0])
    with session.releasing_on_failure():
        with session.refusal_logged("a secret in the command's arguments"):
            child = _child_environment(argv, session, options, environ, report)
        session.log()
        return session, child


def _child_environment(argv: Sequence[str], session: Session, options: RunOptions,
                       environ: Mapping[str, str], report: Reporter) -> ChildEnvironment:
    resolution = session.fetch()
    values = resolution.values()
    leaked = secrets_in_argv(argv, values)
    if leaked and not options.allow_argv_secrets:
        first = leaked[0]
        raise ResolutionError(
            f"the value of {', '.join(leaked)} appears in the command's arguments, where "
            "`ps` and shell history can see it (the shell expanded it before keyrun ran)",
            f"let the command's own shell expand it: keyrun -- sh -c 'tool --key \"${first}\"' "
            "(single quotes); or pass --allow-argv-secrets",
        )
    profile = resolution.profile
    # a key as a file: its path, held until keyrun ends (with the command, in exec mode)
    delivered = keyfiles.with_paths(values, profile, watched=os.getpid())
    child = build_environment(environ, delivered, profile_label=profile.label,
                              preserve_env=options.preserve_env, clean_env=options.clean_env,
                              strip=profile.stripped())
    _explain(session, child, report)
    return child


def _explain(session: Session, child: ChildEnvironment, report: Reporter) -> None:
    for name in child.replaced:
        report.detail(f"{name}: the profile's value replaces the inherited one")
    for name in child.preserved:
        report.detail(f"{name}: kept the inherited value (--preserve-env)")
    for name in child.removed:
        report.detail(f"{name}: removed from the command's environment (a secret-manager "
                      "token, or the variable an environ source read a key from under another "
                      "name; list it in pass_env to let it through)")
    if report.verbose:
        for key, (source, item) in session.fetch().items().items():
            version = f" version {item.version}" if item.version else ""
            report.detail(f"{key} from {source}{version}")


def run_command(argv: Sequence[str], selection: Selection, options: RunOptions,
                environ: Mapping[str, str] | None = None) -> int:
    """Start the command with the profile's keys. Exec never returns; an error raises.

    keyrun steps aside (exec) unless something must happen while or after the command
    runs: masking its output, or revoking leased credentials at exit."""
    from keyrun import launch

    environ = os.environ if environ is None else environ
    report = Reporter(selection.quiet, selection.verbose)
    session, child = prepare(argv, selection, options, environ, report)
    resolution = session.fetch()
    sys.stdout.flush()
    sys.stderr.flush()
    keeper = session.keeper() if resolution.leased else None
    if keeper is None:
        session.release()  # nothing leased; a login token is done with
    if options.mask or resolution.profile.env.mask:
        from keyrun.mask import MaskSet
        from keyrun.relay import relay

        with session.releasing_on_failure():
            report.masks = MaskSet(resolution.values())
        for key in report.masks.skipped:
            report.warn(f"{key} is too short to be masked reliably; it is not masked")
        relay(argv, child.values, report.masks, keeper)
    try:
        if keeper is not None:
            launch.supervise(argv, child.values, keeper)
        launch.exec_command(argv, child.values)
    except LaunchError as exc:
        raise _unquoted(exc, argv[0], resolution.values()) from None


def _unquoted(error: LaunchError, program: str, values: Mapping[str, str]) -> LaunchError:
    """The error, without the command's name when that holds a value (``keyrun
    --allow-argv-secrets -- $TOKEN``: "…: command not found" would print it)."""
    holder = value_in_program(program, values)
    if holder is None:
        return error
    return LaunchError(error.message.replace(program, f"<{holder}>"), error.exit_code,
                       error.hint and error.hint.replace(program, f"<{holder}>"))


__all__ = ["KeyrunError", "LeaseKeeper", "Reporter", "RunOptions", "Selection", "prepare",
           "run_command"]
