"""Fetching a profile: every source at once, under one total deadline.

Precedence is "first source that has a key wins". Remote sources are asked for all
their keys at once, concurrently, as soon as the fetch starts; a local source is asked
only for the keys no earlier source had, so ``.env`` alone never pays for the keychain.
A source that fails decides every key it could have held: keyrun never falls through
to a lower source and runs with a value the user did not mean (fail closed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar

from keyrun.background import Background
from keyrun.errors import KeyrunError, ResolutionError, SourceError
from keyrun.profile import Binding, Profile
from keyrun.sources import (
    Deadline,
    Item,
    Meta,
    Outcome,
    Problem,
    Request,
    Source,
    missing_sdk,
)

Status = Literal["ok", "missing", "optional", "error"]
Cause = TypeVar("Cause", bound=Hashable)


class KeyResult:
    """How one key resolved: its status, the source it came from, and why not elsewhere."""

    __slots__ = ("binding", "holders", "item", "reasons", "source", "status")

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.status: Status = "missing"
        self.source: str | None = None  # where the value came from, or the source that failed
        self.item: Item | None = None
        self.reasons: list[tuple[str, Problem]] = []
        self.holders: list[str] = []  # every source holding the key (exhaustive fetches)

    @property
    def key(self) -> str:
        return self.binding.key


class Resolution:
    """Every key of a profile, fetched."""

    def __init__(self, profile: Profile, results: dict[str, KeyResult],
                 failures: dict[str, KeyrunError], elapsed: dict[str, float],
                 leased: frozenset[str] = frozenset()) -> None:
        self.profile = profile
        self.results = results
        self.failures = failures
        self.elapsed = elapsed
        self.leased = leased

    def values(self) -> dict[str, str]:
        return {key: r.item.value.reveal() for key, r in self.results.items() if r.item}

    def items(self) -> dict[str, tuple[str, Item]]:
        return {key: (r.source or "", r.item) for key, r in self.results.items() if r.item}

    def leasing_sources(self) -> list[str]:
        """Sources that leased a credential for this run, used or not: each lease must be
        revoked when the command ends."""
        return [name for name in self.profile.sources if name in self.leased]

    def release(self) -> list[str]:
        """Revoke every lease made for this resolution; return warnings, never raise."""
        return release_all(self.profile)

    def metadata(self, *, missing_age_only: bool = False) -> dict[str, Meta]:
        """Value-free metadata (``Source.describe``) of every key that resolved, by key.
        ``missing_age_only`` asks only where the fetch itself did not say when a key changed."""
        profile = self.profile
        deadline = Deadline(profile.env.timeout)
        found: dict[str, Meta] = {}
        for name, source in profile.sources.items():
            bindings = [r.binding for r in self.results.values()
                        if r.source == name and r.item is not None
                        and not (missing_age_only and r.item.updated is not None)]
            if not bindings or (missing_age_only and not source.records_age):
                continue
            try:
                found.update(source.describe(profile.requests_for(name, bindings), deadline))
            except KeyrunError:
                continue
        return found

    def problems(self, allow_missing: bool = False) -> list[KeyResult]:
        bad: tuple[Status, ...] = ("error",) if allow_missing else ("error", "missing")
        return [r for r in self.results.values() if r.status in bad]

    def check(self, allow_missing: bool = False) -> None:
        """Raise unless every required key was read (fail closed)."""
        problems = self.problems(allow_missing)
        if not problems:
            return
        from keyrun.trust import TrustError

        for result in problems:
            failure = self.failures.get(result.source or "")
            if failure is not None and (not isinstance(failure, SourceError)
                                        or isinstance(failure, TrustError)):
                raise failure  # a configuration error, or a refusal, says it best itself
        message = describe_problems(self.profile, problems)
        hint = _hint(self.profile, problems, self.failures)
        if hint in message:  # a source's own hint, already quoted with its error
            hint = f"then check everything with: keyrun doctor -e {self.profile.env.name}"
        raise ResolutionError(message, hint)


def release_all(profile: Profile) -> list[str]:
    """Ask every source to revoke what it leased. All of them, not only those known to
    have leased: a fetch that timed out may still have made a lease."""
    warnings: list[str] = []
    for source in profile.sources.values():
        try:
            warnings += [f"{source.name}: {warning}" for warning in source.release()]
        except KeyrunError as exc:
            warnings.append(exc.message)
    return warnings


def describe_problems(profile: Profile, problems: Sequence[KeyResult]) -> str:
    """One line per cause, naming every key it concerns: a whole source down is one line,
    not one per key."""
    causes = fold_by_cause((result.key, _reason(profile, result)) for result in problems)
    lines = [f"cannot run with {profile.label}:"]
    lines += [f"  {', '.join(keys)}: {cause}" for cause, keys in causes.items()]
    return "\n".join(lines)


def fold_by_cause(problems: Iterable[tuple[str, Cause]]) -> dict[Cause, list[str]]:
    """(key, cause) pairs as cause → its keys, in the order first seen (run, list, doctor)."""
    folded: dict[Cause, list[str]] = {}
    for key, cause in problems:
        folded.setdefault(cause, []).append(key)
    return folded


def _reason(profile: Profile, result: KeyResult) -> str:
    if result.status == "error":
        if not result.reasons:
            return "error"
        source, failed = result.reasons[-1]
        return f"{source}: {failed.message}"
    why = dict(result.reasons)
    looked = []
    for name in result.binding.candidates:
        problem = why.get(name)
        detail = problem.message if problem else "not asked"
        looked.append(f"{name} ({detail})")
    return f"missing from {', '.join(looked) or 'every source (the environment has none)'}"


def _hint(profile: Profile, problems: Sequence[KeyResult],
          failures: Mapping[str, KeyrunError]) -> str:
    missing = [r.key for r in problems if r.status == "missing"]
    env = profile.env.name
    if not missing:
        hints = [failure.hint for r in problems
                 if (failure := failures.get(r.source or "")) is not None and failure.hint]
        return hints[0] if hints else (
            "fix the source named above, then run `keyrun doctor -e " + env + "`")
    pinned = [r.key for r in problems if r.status == "missing" and r.binding.spec.version]
    if pinned:
        return (f"{', '.join(pinned)} pin{'s' if len(pinned) == 1 else ''} a version the "
                "backend does not have: check its version = \"…\" in keyrun.toml "
                "(keyrun set writes a new current version, not that one)")
    settable = [r for r in problems if r.status == "missing" and not r.binding.spec.field]
    if not settable:
        first = next(r for r in problems if r.status == "missing")
        return (f"add the field {first.binding.spec.field!r} to the JSON value that "
                f"{first.key} is read from, with the backend's own tools; or run with "
                "--allow-missing")
    instead = unsettable(profile, settable[0].binding)
    return ((instead or f"set it with: keyrun set {settable[0].key}{_selection_flags(profile)}")
            + (" (and the same for each key above)" if len(missing) > 1 else "")
            + "; or run with --allow-missing")


def unsettable(profile: Profile, binding: Binding) -> str | None:
    """What to do instead of ``keyrun set`` when no source the key is read from can be
    written (an ``environ`` source: set the variable where keyrun starts); None when set
    can write one of them."""
    sources = [profile.sources[name] for name in binding.candidates if name in profile.sources]
    if not sources or any(source.writable for source in sources):
        return None
    return sources[0].read_only(profile.request(binding, sources[0].name)).hint


def _selection_flags(profile: Profile) -> str:
    """``-e ENV``, plus ``-c``/``-p`` where this profile is not what a plain ``keyrun``
    run here would find, so the suggested command writes where the run reads."""
    import shlex
    from pathlib import Path

    from keyrun.config import find_config

    flags = f" -e {shlex.quote(profile.env.name)}"
    config = profile.config
    if config.path is not None:
        try:
            found = find_config(Path.cwd(), None, {})
        except (KeyrunError, OSError):
            found = None
        if found != config.path:
            flags += f" -c {shlex.quote(str(config.path))}"
    if profile.project != config.project:
        flags += f" -p {shlex.quote(profile.project)}"
    return flags


class _Job:
    """One source's fetch, in a daemon thread so a hung backend cannot hold up exit."""

    def __init__(self, source: Source, requests: list[Request], deadline: Deadline) -> None:
        self.source = source
        self.requests = requests
        self.deadline = deadline
        self.outcomes: Mapping[str, Outcome] = {}
        self.error: KeyrunError | None = None
        self.elapsed = 0.0
        self._call = Background(self._run, name=f"keyrun:{source.name}")

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.outcomes = self.source.fetch(self.requests, self.deadline)
        except KeyrunError as exc:
            self.error = exc
        except ModuleNotFoundError as exc:  # a source importing its SDK inside fetch
            self.error = missing_sdk(self.source, exc.name or "?")
        except Exception as exc:  # a bug or an SDK surprise: its type only, since its text
            # may quote what it choked on (a value); KEYRUN_DEBUG=1 shows the traceback
            self.error = SourceError(self.source.name, f"unexpected {type(exc).__name__}",
                                     "run with KEYRUN_DEBUG=1 for a traceback and report it")
            if os.environ.get("KEYRUN_DEBUG") == "1":
                import traceback

                traceback.print_exception(exc)
        finally:
            self.elapsed = time.monotonic() - started

    def wait(self) -> None:
        if not self._call.wait(self.deadline.remaining()) and self.error is None:
            from keyrun.sources.runtime import timed_out

            self.elapsed = self.deadline.seconds
            self.error = timed_out(self.source.name, self.deadline)

    def outcome(self, key: str) -> Outcome:
        if self.error is not None:
            error = self.error
            hint = f" — {error.hint}" if error.hint else ""
            reason = error.reason if isinstance(error, SourceError) else error.message
            return Problem("error", f"{reason}{hint}")
        return self.outcomes.get(key) or Problem.missing()


def fetch_profile(profile: Profile, deadline: Deadline | None = None, *,
                  exhaustive: bool = False) -> Resolution:
    """Read every key of the profile. ``exhaustive`` asks every source for every key it
    could hold (for ``doctor``'s shadowing check); otherwise local sources are asked
    only for what earlier sources lacked."""
    deadline = deadline or Deadline(profile.env.timeout)
    results = {b.key: KeyResult(b) for b in profile.bindings}
    jobs: dict[str, _Job] = {}
    for name, source in profile.sources.items():
        requests = profile.requests_for(name)
        if requests and (exhaustive or source.remote):
            jobs[name] = _Job(source, requests, deadline)
    for name, source in profile.sources.items():
        undecided = [b for b in profile.bindings
                     if name in b.candidates and results[b.key].status == "missing"]
        if not undecided:
            continue
        job = jobs.get(name)
        if job is None:
            job = jobs[name] = _Job(source, profile.requests_for(name, undecided), deadline)
        job.wait()
        for binding in undecided:
            _decide(results[binding.key], name, job.outcome(binding.key))
    for job in jobs.values():
        job.wait()
    if exhaustive:
        _record_holders(results, jobs)
    _refuse_tokens(results, _withheld_tokens(profile))
    for result in results.values():
        if result.status == "missing" and result.binding.optional:
            result.status = "optional"
    failures = {name: job.error for name, job in jobs.items() if job.error is not None}
    elapsed = {name: job.elapsed for name, job in jobs.items()}
    leased = frozenset(name for name, job in jobs.items()
                       if any(isinstance(o, Item) and o.lease for o in job.outcomes.values()))
    return Resolution(profile, results, failures, elapsed, leased)


# The tokens keyrun authenticates with, whichever sources the profile uses (SPEC §5 "Tokens
# stay with keyrun"): no value may carry one to the command, e.g. through ${BAO_TOKEN} in a
# .env file, even under --clean-env.
KNOWN_TOKENS = ("VAULT_TOKEN", "BAO_TOKEN", "DOPPLER_TOKEN")
SHORTEST_CONTAINED = 8  # a shorter token (a dev server's "root") only as a whole value


def _withheld_tokens(profile: Profile) -> dict[str, str]:
    """The value of every token keyrun keeps from the command, by name: the known ones and
    those the profile's auth settings name, unless ``pass_env`` lets them through."""
    environ = next((s.context.environ for s in profile.sources.values()), {})
    names = ({*KNOWN_TOKENS, *profile.tokens()}) - set(profile.env.pass_env)
    return {name: token for name in sorted(names)
            if (token := environ.get(name, "").strip())}


def _refuse_tokens(results: Mapping[str, KeyResult], withheld: Mapping[str, str]) -> None:
    for result in results.values():
        value = result.item.value.reveal() if result.item else None
        name = next((name for name, token in withheld.items() if value is not None and (
            value.strip() == token or (len(token) >= SHORTEST_CONTAINED and token in value))),
            None)
        if name is None:
            continue
        result.status, result.item = "error", None
        result.reasons.append((result.source or "", Problem("error", (
            f"holds the value of {name}, a secret-manager token that keyrun keeps from the "
            f"command — remove what copies it (a ${{{name}}} in a .env file), or list {name} "
            "in pass_env to let it through"))))


def _decide(result: KeyResult, source: str, outcome: Outcome) -> None:
    if isinstance(outcome, Item):
        result.status, result.source, result.item = "ok", source, outcome
        return
    result.reasons.append((source, outcome))
    if outcome.kind != "missing":
        result.status, result.source = "error", source


def _record_holders(results: Mapping[str, KeyResult], jobs: Mapping[str, _Job]) -> None:
    for result in results.values():
        result.holders = [name for name in result.binding.candidates
                          if name in jobs and isinstance(jobs[name].outcome(result.key), Item)]
