"""``keyrun run``: resolve, check, build the environment, start the command."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from keyrun import accesslog
from keyrun.environ import ChildEnvironment, build_environment, check_exec_values, secrets_in_argv
from keyrun.errors import KeyrunError, ResolutionError, Terminated
from keyrun.profile import Profile, open_profile
from keyrun.resolve import Resolution, fetch_profile, release_all

if TYPE_CHECKING:
    from keyrun.mask import MaskSet


class Selection(NamedTuple):
    """Which profile: the global options every command shares."""

    env: str | None = None
    project: str | None = None
    config: str | None = None
    quiet: bool = False
    verbose: bool = False


class RunOptions(NamedTuple):
    only: tuple[str, ...] = ()
    allow_missing: bool = False
    preserve_env: bool = False
    clean_env: bool = False
    allow_argv_secrets: bool = False
    mask: bool = False


class Reporter:
    """keyrun's own messages on stderr (the command owns stdout)."""

    def __init__(self, selection: Selection) -> None:
        self.quiet = selection.quiet
        self.verbose = selection.verbose
        self.masks: MaskSet | None = None  # set when the run is masked: so are these lines

    def _print(self, line: str) -> None:
        if self.masks is not None:
            data = self.masks.mask(f"{line}\n".encode())
            sys.stderr.buffer.write(data)
            sys.stderr.flush()
            return
        print(line, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._print(f"keyrun: warning: {message}")

    def note(self, message: str) -> None:
        if not self.quiet:
            self._print(f"keyrun: {message}")

    def always(self, message: str) -> None:
        """What even -q must not hide (SPEC §5: a nested switch says so)."""
        self._print(f"keyrun: {message}")

    def detail(self, message: str) -> None:
        if self.verbose:
            self._print(f"keyrun: {message}")


def resolve_for_command(
    selection: Selection,
    options: RunOptions,
    environ: Mapping[str, str],
    report: Reporter,
    *,
    action: str,
    command: str | None = None,
) -> Resolution:
    """Resolve and fetch the profile, fail closed; a refusal is written to the access log
    here, a resolution that goes on by the caller (once it has decided to run)."""
    profile = open_profile(selection.env, config=selection.config, project=selection.project,
                           only=options.only, environ=environ,
                           interactive=sys.stdin.isatty(), warn=report.warn)
    _note_nesting(profile, environ, report)
    resolution = _fetch(profile, report)
    with releasing_on_failure(resolution, report):
        with refusal_logged(resolution, environ, action=action, command=command,
                            report=report, reason="keys missing or unreadable"):
            resolution.check(allow_missing=options.allow_missing)
        for result in resolution.results.values():
            if result.status == "optional":
                report.warn(f"{result.key} is optional and missing; running without it")
            elif result.status == "missing":
                report.warn(f"{result.key} is missing; running without it (--allow-missing)")
        with refusal_logged(resolution, environ, action=action, command=command,
                            report=report, reason="a value the environment cannot carry"):
            check_exec_values(resolution.values())
    return resolution


@contextlib.contextmanager
def refusal_logged(resolution: Resolution, environ: Mapping[str, str], *, action: str,
                   command: str | None, report: Reporter, reason: str) -> Iterator[None]:
    """A run refused after the keys were resolved is logged too: who tried, which keys,
    and why it did not go on (``<action>-refused``)."""
    try:
        yield
    except KeyrunError:
        accesslog_record(resolution, environ, action=f"{action}-refused", command=command,
                         report=report, reason=reason)
        raise


def _fetch(profile: Profile, report: Reporter) -> Resolution:
    """Fetch, with a spinner for remote sources; if keyrun is told to stop meanwhile,
    revoke whatever the sources leased before dying of the signal."""
    import signal

    def stop(number: int, frame: object) -> None:
        raise Terminated(number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        remote = [name for name, source in profile.sources.items() if source.remote]
        if not remote or report.quiet:
            return fetch_profile(profile)
        from keyrun.progress import Spinner

        with Spinner(f"fetching {len(profile.bindings)} keys from {', '.join(remote)}…"):
            return fetch_profile(profile)
    except BaseException:
        for warning in release_all(profile):
            report.warn(warning)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def releasing_on_failure(resolution: Resolution, report: Reporter) -> Iterator[None]:
    """Revoke what was leased if the command will not start after all."""
    try:
        yield
    except BaseException:
        for warning in resolution.release():
            report.warn(warning)
        raise


def accesslog_record(resolution: Resolution, environ: Mapping[str, str], *, action: str,
                     command: str | None, report: Reporter, reason: str | None = None) -> None:
    try:
        accesslog.record_resolution(resolution, environ, action=action, command=command,
                                    reason=reason)
    except OSError as exc:
        report.warn(f"cannot write the access log ({exc.strerror}); "
                    "set KEYRUN_ACCESS_LOG to a writable path, or to off")


def _note_nesting(profile: Profile, environ: Mapping[str, str], report: Reporter) -> None:
    outer = environ.get("KEYRUN_PROFILE")
    if outer and outer != profile.label:
        report.always(f"nested inside keyrun profile {outer}; this command gets {profile.label}")


def prepare(
    argv: Sequence[str],
    selection: Selection,
    options: RunOptions,
    environ: Mapping[str, str],
    report: Reporter,
) -> tuple[Resolution, ChildEnvironment]:
    resolution = resolve_for_command(selection, options, environ, report, action="run",
                                     command=argv[0])
    with releasing_on_failure(resolution, report):
        with refusal_logged(resolution, environ, action="run", command=argv[0], report=report,
                            reason="a secret in the command's arguments"):
            child = _child_environment(argv, resolution, options, environ, report)
        accesslog_record(resolution, environ, action="run", command=argv[0], report=report)
        return resolution, child


def _child_environment(argv: Sequence[str], resolution: Resolution, options: RunOptions,
                       environ: Mapping[str, str], report: Reporter) -> ChildEnvironment:
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
    child = build_environment(environ, values, profile_label=profile.label,
                              preserve_env=options.preserve_env, clean_env=options.clean_env,
                              strip=profile.tokens())
    _explain(resolution, child, report)
    return child


def _explain(resolution: Resolution, child: ChildEnvironment, report: Reporter) -> None:
    for name in child.replaced:
        report.detail(f"{name}: the profile's value replaces the inherited one")
    for name in child.preserved:
        report.detail(f"{name}: kept the inherited value (--preserve-env)")
    for name in child.removed:
        report.detail(f"{name}: removed from the command's environment (a secret-manager "
                      "token; list it in pass_env to let it through)")
    if report.verbose:
        for key, (source, item) in resolution.items().items():
            version = f" version {item.version}" if item.version else ""
            report.detail(f"{key} from {source}{version}")


def run_command(argv: Sequence[str], selection: Selection, options: RunOptions,
                environ: Mapping[str, str] | None = None) -> int:
    """Start the command with the profile's keys. Exec never returns; an error raises.

    keyrun steps aside (exec) unless something must happen while or after the command
    runs: masking its output, or revoking leased credentials at exit."""
    from keyrun import launch

    environ = os.environ if environ is None else environ
    report = Reporter(selection)
    resolution, child = prepare(argv, selection, options, environ, report)
    sys.stdout.flush()
    sys.stderr.flush()
    keeper = LeaseKeeper(resolution, report) if resolution.leased else None
    if keeper is None:
        for warning in resolution.release():  # nothing leased; a login token is done with
            report.warn(warning)
    if options.mask or resolution.profile.env.mask:
        from keyrun.mask import MaskSet
        from keyrun.relay import relay

        with releasing_on_failure(resolution, report):
            report.masks = MaskSet(resolution.values())
        for key in report.masks.skipped:
            report.warn(f"{key} is too short to be masked reliably; it is not masked")
        relay(argv, child.values, report.masks, keeper)
    if keeper is not None:
        launch.supervise(argv, child.values, keeper)
    launch.exec_command(argv, child.values)


RENEW_RETRY = 5.0  # seconds before a failed renewal is tried again


class LeaseKeeper:
    """Renews the leases of the sources that made them, and revokes them all at exit."""

    def __init__(self, resolution: Resolution, report: Reporter) -> None:
        self.resolution = resolution
        self.sources = [resolution.profile.sources[n] for n in resolution.leasing_sources()]
        self.report = report

    def first_renewal(self) -> float | None:
        """Half the shortest lease's TTL, the usual time to renew."""
        ttls = [item.lease.ttl for _, item in self.resolution.items().values()
                if item.lease and item.lease.renewable and item.lease.ttl]
        return min(ttls) / 2 if ttls else None

    def renew(self) -> float | None:
        delays = []
        for source in self.sources:
            try:
                delay = source.renew_leases()
            except KeyrunError as exc:
                self.report.warn(f"cannot renew leases of {source.name}: {exc.message}; "
                                 f"trying again in {RENEW_RETRY:g}s")
                delay = RENEW_RETRY
            if delay is not None:
                delays.append(delay)
        return min(delays, default=None)

    def release(self) -> None:
        for warning in self.resolution.release():
            self.report.warn(warning)


__all__ = ["KeyrunError", "Reporter", "RunOptions", "Selection", "prepare", "run_command"]
