"""One resolution session, whoever reads values: ``run``, ``keyrun.load``/``inject``,
``list``, ``doctor``, ``scan`` and the ``%keyrun`` magic.

A :class:`Session` opens a profile, fetches it (once, when first asked), writes the
access-log line SPEC §5 requires for every resolution, holds what the sources leased and
releases it; its :class:`~keyrun.reporter.Reporter` is where everything it has to say goes.

    session = open_session(Selection(env="staging"), action="list")
    try:
        values = session.values()      # fetched here, once
    finally:
        session.release()              # revoke leases; warnings go to the reporter
    session.log()                      # one access-log line
"""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from keyrun import accesslog
from keyrun.errors import KeyrunError, Terminated
from keyrun.profile import Profile, open_profile
from keyrun.reporter import Reporter
from keyrun.resolve import Resolution, fetch_profile, release_all
from keyrun.sources import Deadline

if TYPE_CHECKING:
    from keyrun.progress import Progress


class Selection(NamedTuple):
    """Which profile: the global options every command shares."""

    env: str | None = None
    project: str | None = None
    config: str | None = None
    quiet: bool = False
    verbose: bool = False


class Session:
    """One profile's resolution: fetched at most once, logged, its leases released.

    ``action`` names the access-log entry (``run``, ``load``, ``list``, ``scan`` …) and
    ``command`` the program it is for. ``progress`` shows a spinner on stderr while remote
    sources are fetched (on a terminal, unless quiet): True for one of its own, or the
    command's :class:`~keyrun.progress.Progress` that its other sessions share.
    ``stoppable`` turns SIGTERM and SIGHUP during the fetch into
    :class:`~keyrun.errors.Terminated` (main thread only). ``warn_unlogged`` says on stderr
    when the access log cannot be written. ``trust_first`` checks every source's endpoints
    before any source makes a request, so that a host the user did not choose stops the
    whole fetch (SPEC §5 "Trust"); without it (``doctor``) the refused source fails alone,
    still without contacting the host."""

    def __init__(self, profile: Profile, report: Reporter, *, action: str,
                 command: str | None = None, environ: Mapping[str, str] | None = None,
                 progress: "bool | Progress" = False, stoppable: bool = False,
                 warn_unlogged: bool = True, trust_first: bool = True) -> None:
        self.profile = profile
        self.report = report
        self.action = action
        self.command = command
        self.environ = os.environ if environ is None else environ
        self.progress = progress
        self.stoppable = stoppable
        self.warn_unlogged = warn_unlogged
        self.trust_first = trust_first
        self._resolution: Resolution | None = None

    @property
    def fetched(self) -> bool:
        return self._resolution is not None

    def fetch(self, deadline: Deadline | None = None, *, exhaustive: bool = False
              ) -> Resolution:
        """Read every key of the profile, the first time only (see ``fetch_profile``); if
        the fetch is interrupted, revoke whatever the sources leased before re-raising."""
        if self._resolution is None:
            self._resolution = self._fetch(deadline, exhaustive)
        return self._resolution

    def values(self) -> dict[str, str]:
        """Every value that resolved, fetching first if nothing was fetched yet."""
        return self.fetch().values()

    def _fetch(self, deadline: Deadline | None, exhaustive: bool) -> Resolution:
        with self._stop_on_signals():
            try:
                if self.trust_first:
                    for source in self.profile.sources.values():
                        source.endpoints()  # a TrustError here: nothing was sent anywhere
                remote = [n for n, source in self.profile.sources.items() if source.remote]
                shown = self.shown(remote=bool(remote))
                with shown.task(f"fetching {self.profile.label} from {', '.join(remote)}"):
                    return fetch_profile(self.profile, deadline, exhaustive=exhaustive)
            except BaseException:
                self._warn_all(release_all(self.profile))
                raise

    def shown(self, *, remote: bool = True) -> "Progress":
        """Where this session shows its progress (``keyrun.progress.shown``)."""
        from keyrun.progress import Progress, shown

        if self.progress is True:
            self.progress = Progress()
        return shown(self.progress, quiet=self.report.quiet, remote=remote)

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        if not self.stoppable:
            yield
            return
        import signal

        def stop(number: int, frame: object) -> None:
            raise Terminated(number)

        previous = {n: signal.signal(n, stop) for n in (signal.SIGTERM, signal.SIGHUP)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def nested_in(self) -> str | None:
        """The profile of an enclosing ``keyrun`` run when it is not this one."""
        outer = self.environ.get("KEYRUN_PROFILE")
        return outer if outer and outer != self.profile.label else None

    def warn_unresolved(self, *, doing: str = "running", spelling: str = "--allow-missing"
                        ) -> None:
        """Say which keys the caller goes on without: optional ones, and required ones
        let through by ``spelling`` (how the caller's user allows missing keys)."""
        for result in self.fetch().results.values():
            if result.status == "optional":
                self.report.warn(f"{result.key} is optional and missing; {doing} without it")
            elif result.status == "missing":
                self.report.warn(f"{result.key} is missing; {doing} without it ({spelling})")

    def log(self, *, reason: str | None = None, action: str | None = None) -> None:
        """Append this resolution's access-log line (``action`` overrides the session's)."""
        resolution = self.fetch()
        try:
            accesslog.record_resolution(resolution, self.environ,
                                        action=action or self.action, command=self.command,
                                        reason=reason)
        except OSError as exc:
            path = accesslog.log_path(self.environ, resolution.profile.config.access_log)
            if self.warn_unlogged and path and accesslog.first_failure(path, self.environ):
                self.report.warn(
                    f"cannot write the access log {path} ({exc.strerror}), so keyrun runs "
                    "without one; to say so and silence this: KEYRUN_ACCESS_LOG=off (or "
                    "access_log = false in keyrun.toml), or point KEYRUN_ACCESS_LOG at a "
                    "writable file (said once)")

    @contextlib.contextmanager
    def refusal_logged(self, reason: str) -> Iterator[None]:
        """A use refused after the keys were resolved is logged too: who tried, which
        keys, and why it did not go on (``<action>-refused``)."""
        try:
            yield
        except KeyrunError:
            self.log(action=f"{self.action}-refused", reason=reason)
            raise

    @contextlib.contextmanager
    def releasing_on_failure(self) -> Iterator[None]:
        """Revoke what was leased if the values will not be used after all."""
        try:
            yield
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Revoke every lease of the profile's sources (a login token is done with too);
        what could not be revoked is a warning, never an error."""
        self._warn_all(release_all(self.profile))

    def keeper(self) -> "LeaseKeeper":
        """What renews this session's leases while its values are in use, and revokes
        them at the end (``launch.Supervisor``)."""
        return LeaseKeeper(self.fetch(), self.report)

    def _warn_all(self, warnings: Sequence[str]) -> None:
        for warning in warnings:
            self.report.warn(warning)


def open_session(selection: Selection, *, action: str, command: str | None = None,
                 only: Sequence[str] = (), environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None, interactive: bool = False, strict: bool = True,
                 report: Reporter | None = None, progress: "bool | Progress" = False,
                 stoppable: bool = False, warn_unlogged: bool = True) -> Session:
    """Find keyrun.toml, choose the environment and open its profile (``open_profile``);
    nothing is fetched yet. Without ``report``, one from the selection's -q/-v."""
    environ = os.environ if environ is None else environ
    report = report or Reporter(selection.quiet, selection.verbose)
    profile = open_profile(selection.env, config=selection.config, project=selection.project,
                           only=only, environ=environ, cwd=cwd, interactive=interactive,
                           warn=report.warn, strict=strict, always=report.always,
                           detail=report.detail)
    report.detail(f"config: {profile.config.label} (profile {profile.label})")
    return Session(profile, report, action=action, command=command, environ=environ,
                   progress=progress, stoppable=stoppable, warn_unlogged=warn_unlogged)


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


__all__ = ["LeaseKeeper", "Selection", "Session", "open_session"]
