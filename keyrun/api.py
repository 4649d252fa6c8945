"""``keyrun.load``, ``keyrun.inject`` and ``keyrun.release``: the profile inside a Python
process (SPEC §6).

A profile whose sources lease credentials (Vault's dynamic secrets) keeps them alive
for as long as the process needs them, as ``keyrun run`` does for its command: a daemon
thread renews the leases at about half their TTL, and they are revoked when the
interpreter exits, or earlier by :func:`release`. A process killed by a signal it does
not handle (SIGKILL, or SIGTERM without a handler) cannot revoke them; they then expire
at their TTL.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from keyrun import keyfiles
from keyrun.environ import build_environment
from keyrun.errors import KeyrunError, ResolutionError
from keyrun.resolve import Resolution, unsettable
from keyrun.session import LeaseKeeper, Selection, Session, open_session
from keyrun.values import Values, handed_out

ALLOW_MISSING = "allow_missing=True"  # how a caller of load/inject spells --allow-missing
_JOIN_SECONDS = 10.0  # how long release waits for a renewal already under way


def load(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
) -> dict[str, str]:
    """Resolve the profile and return every key's value, as ``run`` would inject them."""
    with noting_hints():
        resolution = resolve(env, config=config, project=project, only=only,
                             allow_missing=allow_missing, action="load")
    return Values(resolution.values())


def inject(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
    preserve_env: bool = False,
) -> list[str]:
    """Resolve the profile and set its keys in ``os.environ``; return the names set.

    Profile values replace inherited ones, as in ``keyrun run``; ``preserve_env=True``
    keeps a variable that is already set.
    """
    with noting_hints():
        resolution = resolve(env, config=config, project=project, only=only,
                             allow_missing=allow_missing, action="inject", for_environ=True)
    return set_environ(resolution, preserve_env=preserve_env)


def release() -> None:
    """Revoke the leases of every profile this process loaded, now rather than at exit.
    Values loaded before stop working; warnings go to stderr as keyrun's own do."""
    with _LOCK:
        held = [h for h in _HELD if h.pid == os.getpid()]
        _HELD.clear()
        _LOADED.clear()
    for holding in held:
        holding.release()


def release_resolution(resolution: Resolution) -> None:
    """Revoke the leases of one resolution made by :func:`resolve` (the pytest plugin's,
    at the end of its session), leaving those of other callers alone."""
    with _LOCK:
        held = [h for h in _HELD if h.keeper.resolution is resolution]
        for holding in held:
            _HELD.remove(holding)
    for holding in held:
        if holding.pid == os.getpid():
            holding.release()


def resolve(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
    action: str,
    cwd: Path | None = None,
    for_environ: bool = False,
    allow_missing_spelling: str = ALLOW_MISSING,
) -> Resolution:
    """Resolve, fetch and check the profile, fail closed; write the access log; keep its
    leases alive until :func:`release` or exit. ``for_environ`` refuses what
    ``os.environ`` cannot carry and what would make every process it starts fail (E2BIG).
    ``allow_missing_spelling`` is how the caller's user spells ``--allow-missing``."""
    selection = Selection(env=env, project=project, config=None if config is None else str(config))
    session = open_session(selection, action=action, only=only, environ=os.environ, cwd=cwd,
                           interactive=sys.stdin is not None and sys.stdin.isatty())
    outer = session.nested_in()
    if outer is not None:
        session.report.note(f"inside keyrun profile {outer}; loading {session.profile.label}")
    files = keyfiles.file_keys(session.profile)
    if for_environ:
        keyfiles.refuse_unless_possible(files)
    resolution = session.fetch()  # interrupted (Ctrl-C in a notebook): leases revoked
    with session.releasing_on_failure():
        _check(resolution, allow_missing, allow_missing_spelling)
        session.warn_unresolved(doing="loading", spelling=allow_missing_spelling)
        if for_environ:
            keyfiles.check_values(resolution.values(), files)
    session.log()
    if resolution.leased:
        _hold(session)
    handed_out(resolution.values())
    return resolution


def set_environ(resolution: Resolution, *, preserve_env: bool) -> list[str]:
    """Put the resolved keys in ``os.environ`` with ``run``'s precedence; return the names
    set (those ``preserve_env`` kept are left out). A key ``as = "file"`` gets the path of
    an in-memory file that lasts as long as this process."""
    values = keyfiles.with_paths(resolution.values(), resolution.profile, watched=os.getpid())
    label = resolution.profile.label
    child = build_environment(os.environ, values, profile_label=label,
                              preserve_env=preserve_env)
    names = [name for name in values if name not in child.preserved]
    for name in names:
        os.environ[name] = values[name]
    os.environ["KEYRUN_PROFILE"] = label
    return names


def load_once(
    env: str | None = None,
    *,
    config: str | Path | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    allow_missing: bool = False,
) -> dict[str, str]:
    """:func:`load`, once per process for the same arguments (and the same directory and
    ``KEYRUN_ENV`` / ``KEYRUN_CONFIG``): for callers that run often, such as a settings
    class instantiated per request, which must not make a new lease each time."""
    key = (env, None if config is None else str(config), project, tuple(only), allow_missing,
           os.getcwd(), os.environ.get("KEYRUN_ENV"), os.environ.get("KEYRUN_CONFIG"))
    with _LOCK:
        cached = _LOADED.get(key)
    if cached is not None:
        return Values(cached)
    values = load(env, config=config, project=project, only=only, allow_missing=allow_missing)
    with _LOCK:
        _LOADED.setdefault(key, values)
    return Values(values)


@contextlib.contextmanager
def noting_hints() -> Iterator[None]:
    """A keyrun error raised to Python code shows its hint in the traceback too (the CLI
    prints hints itself; a script or a notebook shows only the traceback)."""
    try:
        yield
    except KeyrunError as exc:
        if exc.hint and f"hint: {exc.hint}" not in getattr(exc, "__notes__", ()):
            exc.add_note(f"hint: {exc.hint}")
        raise


def _check(resolution: Resolution, allow_missing: bool, spelling: str) -> None:
    """``Resolution.check``, its hint naming the caller's spelling of allow-missing."""
    try:
        resolution.check(allow_missing=allow_missing)
    except ResolutionError as exc:
        missing = [r.key for r in resolution.problems(allow_missing) if r.status == "missing"]
        if not missing:
            raise
        more = " (and the same for each key above)" if len(missing) > 1 else ""
        them = "them" if len(missing) > 1 else "it"
        profile = resolution.profile
        instead = unsettable(profile, resolution.results[missing[0]].binding)
        hint = (f"{instead or f'set it with: keyrun set {missing[0]} -e {profile.env.name}'}"
                f"{more}; or load without {them}: {spelling}")
        raise ResolutionError(exc.message, hint) from None


class _Holding:
    """One resolution's leases, renewed by a daemon thread until released."""

    def __init__(self, session: Session) -> None:
        self.keeper: LeaseKeeper = session.keeper()
        self.pid = os.getpid()  # a forked child must not revoke its parent's leases
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, name="keyrun:renew", daemon=True)
        self.thread.start()

    def _renew(self) -> None:
        delay = self.keeper.first_renewal()
        while delay is not None and not self.stopped.wait(delay):
            delay = self.keeper.renew()

    def release(self) -> None:
        self.stopped.set()
        self.thread.join(_JOIN_SECONDS)
        self.keeper.release()


_LOCK = threading.Lock()
_HELD: list[_Holding] = []
_LOADED: dict[tuple[object, ...], dict[str, str]] = {}
_registered = False


def _hold(session: Session) -> None:
    global _registered
    holding = _Holding(session)
    with _LOCK:
        _HELD.append(holding)
        if not _registered:
            atexit.register(release)
            _registered = True
