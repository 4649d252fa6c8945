"""``keyrun doctor``: everything that would stop ``run``, plus hygiene checks (SPEC §4)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

from keyrun import keyfiles
from keyrun.background import Background, run_all
from keyrun.config import EXAMPLE_NAME, Config, choose_env, load_config, read_example
from keyrun.dotenvfile import parse_dotenv
from keyrun.durations import format_age
from keyrun.environ import unfit_hint
from keyrun.errors import ConfigError, KeyrunError, SourceError
from keyrun.least_privilege import LocalView, local_view, same_item
from keyrun.ownership import read_trusted
from keyrun.profile import (
    Profile,
    make_source,
    name_problems,
    resolve_profile,
    undeclared_names,
)
from keyrun.reporter import Reporter
from keyrun.resolve import KeyResult, Resolution, fold_by_cause, unsettable
from keyrun.session import Session
from keyrun.sources import Context, Deadline, Item, Meta
from keyrun.trust import TrustError

if TYPE_CHECKING:
    from keyrun.progress import Progress

CheckStatus = Literal["pass", "warn", "fail", "unknown"]
T = TypeVar("T")
MIN_MASKABLE = 6  # SPEC §5: shorter values are not masked (keyrun.mask.MIN_LENGTH)
EXPIRY_WARNING = 7 * 86400


@dataclass(frozen=True)
class Check:
    id: str
    status: CheckStatus
    message: str
    fix: str | None = None
    keys: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """SPEC §4a allows pass, warn and fail: "unknown" (doctor could not tell) is a
        warning there, marked ``"unknown": true``."""
        found: dict[str, Any] = {"id": self.id, "status": self.status, "message": self.message,
                                 "fix": self.fix, "keys": list(self.keys)}
        if self.status == "unknown":
            found.update(status="warn", unknown=True)
        return found


@dataclass
class Report:
    env: str
    project: str
    checks: list[Check] = field(default_factory=list)

    def ok(self, strict: bool = False) -> bool:
        bad = ("fail", "warn", "unknown") if strict else ("fail",)
        return not any(check.status in bad for check in self.checks)

    def as_json(self, strict: bool = False) -> dict[str, Any]:
        return {"ok": self.ok(strict), "env": self.env, "project": self.project,
                "checks": [check.as_json() for check in self.checks]}


@dataclass(frozen=True)
class DoctorOptions:
    env: str | None = None
    project: str | None = None
    config: str | None = None
    history: bool = False


def diagnose(options: DoctorOptions, environ: Mapping[str, str] | None = None,
             cwd: Path | None = None, report: Reporter | None = None,
             progress: bool | Progress = False) -> Report:
    """Run every check for one environment, within the environment's ``timeout``: the
    sources check, this environment's fetch and the local look at every other one (for
    ``shared-values``, which reads no other environment's remote source: least privilege)
    run at once, under one deadline. Raises ConfigError (exit 125) only when doctor cannot
    run at all: keyrun.toml does not parse, or the environment is unknown. Warnings (a
    lease that could not be revoked, …) go to ``report``, each once; ``progress`` shows
    what doctor waits for (see ``Session``)."""
    environ = os.environ if environ is None else environ
    config = load_config(cwd, options.config, environ)
    env = choose_env(config, options.env, environ)
    fetches = _Fetches(config, options.project, environ, report or Reporter(once=True),
                       progress)
    fetches.report.detail(f"config: {config.label}")
    try:
        return _Doctor(config, env, options, environ, fetches).run()
    finally:
        fetches.close()


def diagnose_all(options: DoctorOptions, environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None, report: Reporter | None = None,
                 progress: bool | Progress = False) -> list[Report]:
    """Every environment, checked at once: each environment is fetched once, under its own
    deadline, and its values serve every other environment's ``shared-values`` check, so
    the whole run takes about the longest ``timeout``, not their sum."""
    environ = os.environ if environ is None else environ
    config = load_config(cwd, options.config, environ)
    fetches = _Fetches(config, options.project, environ, report or Reporter(once=True),
                       progress)
    fetches.report.detail(f"config: {config.label}")
    try:
        for env in config.env_names():
            fetches.start(env, None, exhaustive=True)
        doctors = [_Doctor(config, env, options, environ, fetches, all_envs=True)
                   for env in config.env_names()]
        return _run_all(doctors)
    finally:
        fetches.close()


class _Fetches:
    """Every environment doctor reads, each fetched once, all at once; logged (SPEC §5:
    every resolution appends a line) and released together at the end."""

    def __init__(self, config: Config, project: str | None, environ: Mapping[str, str],
                 report: Reporter, progress: bool | Progress = False) -> None:
        from keyrun.progress import Progress

        self.config = config
        self.project = project
        self.environ = environ
        self.report = report
        self.progress: bool | Progress = Progress() if progress is True else progress
        self._started: dict[str, Background[Session]] = {}  # each ends by its deadline
        self._views: dict[str, LocalView] = {}
        self._lock = threading.Lock()

    def start(self, env: str, deadline: Deadline | None, *, exhaustive: bool
              ) -> Background[Session]:
        """Start fetching ``env`` (under ``deadline``, else its own ``timeout``) unless
        it already is."""
        with self._lock:
            if env not in self._started:
                self._started[env] = Background(partial(self._fetch, env, deadline, exhaustive))
            return self._started[env]

    def start_local(self, env: str, keys: Sequence[str]) -> Background[Session]:
        """Start reading what ``env`` holds in local sources (``local_view``): no request
        reaches its remote ones. ``keys`` are bound if ``env`` declares none."""
        with self._lock:
            if f"local:{env}" not in self._started:
                self._started[f"local:{env}"] = Background(partial(self._fetch_local, env, keys))
            return self._started[f"local:{env}"]

    def view(self, env: str) -> LocalView:
        return self._views[env]

    def session(self, profile: Profile) -> Session:
        # a source whose host the user did not choose fails alone, uncontacted: the
        # sources check reports it with the `keyrun trust` that would allow it
        return Session(profile, self.report, action="doctor", environ=self.environ,
                       warn_unlogged=False, trust_first=False, progress=self.progress)

    def profile(self, env: str, undeclared: Sequence[str] | None = None) -> Profile:
        return resolve_profile(self.config, env, project=self.project, environ=self.environ,
                               strict=False, warn=self.report.warn, detail=self.report.detail,
                               undeclared=undeclared)

    def _fetch(self, env: str, deadline: Deadline | None, exhaustive: bool) -> Session:
        session = self.session(self.profile(env))
        session.fetch(deadline or Deadline(session.profile.env.timeout), exhaustive=exhaustive)
        return session

    def _fetch_local(self, env: str, keys: Sequence[str]) -> Session:
        view = local_view(self.profile(env, undeclared=keys))
        with self._lock:
            self._views[env] = view
        session = self.session(view.profile)
        session.fetch()
        return session

    def close(self) -> None:
        """Release what every fetch leased (a failed revocation is a warning, never a
        silent leftover credential) and log each resolution."""
        with self._lock:
            started = list(self._started.values())
        for fetch in started:
            if not fetch.failed:  # a failed fetch was reported to whoever waited for it
                session = fetch.result()
                session.release()
                if session.profile.bindings:  # not a local look that had nothing to read
                    session.log()


class _Doctor:
    def __init__(self, config: Config, env: str, options: DoctorOptions,
                 environ: Mapping[str, str], fetches: _Fetches, *,
                 all_envs: bool = False) -> None:
        self.config = config
        self.env = env
        self.options = options
        self.environ = environ
        self.fetches = fetches
        self.all_envs = all_envs  # read other environments' remote values (--all-envs)
        self.report = Report(env, options.project or config.project)

    def add(self, check_id: str, status: CheckStatus, message: str, fix: str | None = None,
            keys: Sequence[str] = ()) -> None:
        self.report.checks.append(Check(check_id, status, message, fix, tuple(keys)))

    def run(self) -> Report:
        profile = self.check_config()
        if profile is None:
            return self.report
        # one deadline for everything that waits on a backend, all started at once, so
        # that a dead endpoint costs the timeout once, not once per phase
        deadline = Deadline(profile.env.timeout)
        own = self.fetches.start(self.env, deadline, exhaustive=True)
        for other in self.other_envs():
            if self.all_envs:
                self.fetches.start(other, deadline, exhaustive=False)
            else:
                self.fetches.start_local(other, [b.key for b in profile.bindings])
        try:
            timed_out = self.check_sources(profile, deadline)
        finally:  # the checks' own connections: a login token made for them is done with
            self.fetches.session(profile).release()
        resolution = own.result().fetch()
        self.check_missing(resolution)
        self.check_gitignore(profile)
        self.check_permissions(profile)
        self.check_example(resolution)
        self.check_shared(resolution)
        self.check_rotation(resolution, deadline, timed_out)
        self.check_shadowed(resolution)
        self.check_names(profile)
        self.check_short(resolution)
        return self.report

    def progress(self, remote: Sequence[str]) -> Progress:
        """The command's progress line, for work that waits on ``remote`` sources."""
        from keyrun.progress import shown

        return shown(self.fetches.progress, quiet=self.fetches.report.quiet,
                     remote=bool(remote))

    def other_envs(self) -> list[str]:
        return [name for name in self.config.env_names() if name != self.env]

    def set_command(self, key: str) -> str:
        """``keyrun set`` for ``key`` with the -c and -p this doctor was given."""
        words = ["keyrun", "set", key, "-e", self.env]
        if self.options.config:
            words += ["-c", str(self.options.config)]
        if self.options.project:
            words += ["-p", self.options.project]
        return shlex.join(words)

    # 1. config
    def check_config(self) -> Profile | None:
        problems = []
        for spec in self.config.sources.values():
            try:
                make_source(spec.type, spec.name, spec.settings, spec.where,
                            Context(self.report.project, self.env, self.config.root,
                                    self.environ, warn=self.fetches.report.warn))
            except KeyrunError as exc:
                problems.append(exc.message if not exc.hint else f"{exc.message} ({exc.hint})")
        try:
            profile = self.fetches.profile(self.env)
        except ConfigError as exc:
            self.add("config", "fail", exc.message, exc.hint)
            return None
        except TrustError as exc:  # listing the keys of a source would have contacted it
            self.add("config", "pass", f"{self.config.label}: environment {self.env}")
            self.add("sources", "fail", exc.message, exc.hint)
            return None
        fixes = ["fix the source options named above (every source is checked, used by this "
                 "environment or not)"] if problems else []
        try:
            keyfiles.refuse_unless_possible(keyfiles.file_keys(profile))
        except KeyrunError as exc:
            problems.append(exc.message)
            fixes.append(exc.hint or "")
        if problems:
            self.add("config", "fail", "; ".join(problems), "; ".join(fixes))
        else:
            self.add("config", "pass", _config_summary(self.config, profile))
        return profile

    # 3. sources
    def check_sources(self, profile: Profile, deadline: Deadline) -> set[str]:
        """Return the sources that did not answer in time (later phases skip them)."""
        refused = _refusals(profile)
        checks = {name: partial(source.check, deadline)
                  for name, source in profile.sources.items() if name not in refused}
        remote = [name for name, source in profile.sources.items() if source.remote]
        with self.progress(remote).task(f"checking {', '.join(remote)}"):
            results = _parallel(checks, deadline)
        lines, warned = [], []
        failed = [exc.message for exc in refused.values()]
        for name, outcome in results.items():
            took = f"{outcome.elapsed * 1000:.0f} ms"
            if outcome.value is not None:
                lines.append(f"{name}: {outcome.value.detail} ({took})")
                warned += [f"{name}: {warning}" for warning in outcome.value.warnings]
            else:
                failed.append(f"{name}: {outcome.problem}")
        if not profile.sources:
            self.add("sources", "warn", "the environment has no sources",
                     "create a .env file, or run `keyrun init`")
        elif failed:
            fixes = [exc.hint for exc in refused.values() if exc.hint]
            if len(failed) > len(refused):
                fixes.append("fix access to the failing source (the message says how)")
            self.add("sources", "fail", "; ".join(failed + lines), "; ".join(fixes))
        elif warned:
            self.add("sources", "warn", "; ".join(warned + lines))
        else:
            self.add("sources", "pass", "; ".join(lines))
        return {name for name, outcome in results.items() if outcome.timed_out}

    # 2. missing-keys
    def check_missing(self, resolution: Resolution) -> None:
        profile = resolution.profile
        bad = resolution.problems()
        unfit = keyfiles.value_problems(resolution.values(),  # what run refuses before exec
                                        keyfiles.file_keys(profile))
        if not bad and not unfit:
            optional = [r.key for r in resolution.results.values() if r.status == "optional"]
            required = _all_resolve(sum(not b.optional for b in profile.bindings))
            if optional:  # SPEC §2: "missing is a warning, not an error"
                first = resolution.results[optional[0]].binding
                self.add("missing-keys", "warn",
                         f"{required}; optional and missing: {', '.join(optional)}",
                         f"{unsettable(profile, first) or self.set_command(optional[0])} if "
                         "the command needs it; run goes on without optional keys", optional)
            else:
                self.add("missing-keys", "pass", required)
            return
        from keyrun.resolve import describe_problems

        lines = describe_problems(profile, bad).split("\n")[1:] if bad else []
        lines += [f"cannot pass {problem.message}" for problem in unfit]
        fixes = (([self.missing_fix(profile, bad)] if bad else [])
                 + ([unfit_hint(unfit)] if unfit else []))
        self.add("missing-keys", "fail", " ".join("; ".join(lines).split()), "; ".join(fixes),
                 list(dict.fromkeys([r.key for r in bad] + [p.key for p in unfit])))

    def missing_fix(self, profile: Profile, bad: Sequence[KeyResult]) -> str:
        missing = [r for r in bad if r.status == "missing"]
        settable = [r for r in missing if r.binding.spec.field is None]
        fixes = []
        if settable:
            instead = unsettable(profile, settable[0].binding)
            fixes.append((instead or self.set_command(settable[0].key)) + (
                f" (then the same for {', '.join(r.key for r in settable[1:])})"
                if len(settable) > 1 else ""))
        for result in missing:
            if result.binding.spec.field is not None:
                fixes.append(_field_fix(result))
        if len(missing) < len(bad) or not fixes:
            fixes.append("fix the failing source, then run keyrun doctor again")
        return "; ".join(fixes)

    # 4. gitignore
    def check_gitignore(self, profile: Profile) -> None:
        files = _secret_files(profile)
        root = self.config.root
        if not _git(root, "rev-parse", "--is-inside-work-tree"):
            self.add("gitignore", "pass", f"{root} is not in a git work tree")
            return
        tracked = [f for f in files if _git(root, "ls-files", "--error-unmatch", "--", str(f))]
        exposed = [f for f in files if f not in tracked and not _git(root, "check-ignore", "-q",
                                                                      "--", str(f))]
        shown = [_rel(f, root) for f in tracked + exposed]
        if tracked:
            names = [_rel(f, root) for f in tracked]
            others = [_rel(f, root) for f in exposed]
            message = f"tracked by git: {', '.join(names)}"
            if others:
                message += f"; not ignored: {', '.join(others)}"
            self.add("gitignore", "fail", message,
                     f"git rm --cached {' '.join(names)} and add .env and .env.* to .gitignore "
                     "(keyrun init does); then rotate every key they held", shown)
        elif exposed:
            self.add("gitignore", "fail", f"not ignored by git: {', '.join(shown)}",
                     "add .env and .env.* (and !.env.example) to .gitignore, or run keyrun init")
        else:
            self.add("gitignore", "pass", f"{len(files)} .env files ignored and untracked"
                     if files else "no .env files here")
        if self.options.history:
            self._check_history(root)

    def _check_history(self, root: Path) -> None:
        output = _git_output(root, "log", "--all", "--format=%h", "--name-only", "--",
                             ".env", ".env.*", "**/.env", "**/.env.*")
        commits: list[str] = []
        current = ""
        for line in output.splitlines():
            if re.fullmatch(r"[0-9a-f]{7,40}", line.strip()):
                current = line.strip()
            elif line.strip() and not line.strip().endswith(EXAMPLE_NAME) and current:
                commits.append(f"{current}:{line.strip()}")
        if commits:
            self.add("gitignore", "fail", "a .env file is in git history: " + ", ".join(commits[:5])
                     + (" …" if len(commits) > 5 else ""),
                     "rotate every key those files held; rewriting history does not un-leak them")

    # 5. file-permissions
    def check_permissions(self, profile: Profile) -> None:
        loose = []
        for path in _secret_files(profile):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                loose.append(f"{_rel(path, self.config.root)} ({mode:o})")
        if loose:
            files = " ".join(item.split(" ")[0] for item in loose)
            self.add("file-permissions", "warn",
                     f"readable by group or others: {', '.join(loose)}", f"chmod 600 {files}")
        else:
            self.add("file-permissions", "pass", ".env files are private to their owner")

    # 6. example-placeholders
    def check_example(self, resolution: Resolution) -> None:
        path = self.config.root / EXAMPLE_NAME
        if not path.is_file():
            self.add("example-placeholders", "pass", f"no {EXAMPLE_NAME}")
            return
        try:
            data = (read_trusted(path, EXAMPLE_NAME) or (b"",))[0]
            entries = parse_dotenv(data.decode("utf-8"), str(path), names_only=True)
            stray = read_example(self.config.root).stray
        except (ConfigError, UnicodeDecodeError) as exc:
            self.add("example-placeholders", "fail", f"{EXAMPLE_NAME} cannot be read: {exc}",
                     f"fix {EXAMPLE_NAME}")
            return
        from keyrun.placeholders import looks_real
        from keyrun.scan import scan_bytes

        flagged = {f.line for f in scan_bytes(data, EXAMPLE_NAME, resolution.values())}
        real = set(resolution.values().values())
        leaked = [e.key for e in entries if e.value and (
            e.line in flagged or e.value in real or looks_real(e.value))]
        if leaked or stray:
            lines = [f"line {line} (a value on a line of its own)" for line in stray]
            self.add("example-placeholders", "fail",
                     f"{EXAMPLE_NAME} holds what looks like a real value for: "
                     f"{', '.join(leaked + lines)}",
                     f"replace them with placeholders (NAME=your-key-here) and rotate the keys "
                     f"if {EXAMPLE_NAME} was ever committed", leaked)
        else:
            self.add("example-placeholders", "pass",
                     f"{EXAMPLE_NAME} holds placeholders only ({len(entries)} names)")

    # 7. shared-values
    def check_shared(self, resolution: Resolution) -> None:
        """Values equal to another environment's. Without --all-envs another environment
        is read only where it is local (least privilege); a key both read from one backend
        item is found without reading it, and what could not be compared is said."""
        others = self.other_envs()
        found = _Sharing()
        for other in others:
            try:
                if self.all_envs:
                    self.compare_values(resolution, other, found)
                else:
                    self.compare_locally(resolution, other, found)
            except KeyrunError:
                found.unreadable.append(other)
        keys = list(dict.fromkeys([*found.shared, *found.same]))
        note = found.note()
        if keys:
            parts = [f"{key} equals {', '.join(envs)}" for key, envs in found.shared.items()]
            parts += [f"{key} is read from the same item in {', '.join(envs)} ({where})"
                      for key, items in found.same.items()
                      for where, envs in fold_by_cause(items.items()).items()]
            self.add("shared-values", "warn",
                     f"same value in another environment: {'; '.join(parts)}{note}",
                     "give each environment its own key, so one leak does not open them all",
                     keys)
        elif not others:
            self.add("shared-values", "pass", "no other environment to compare with")
        elif (unread := not _comparable(resolution) and bool(resolution.failures)) or (
                len(found.unreadable) == len(others)):
            # nothing was compared: say so, rather than pass
            whose = "this environment's values" if unread else "the other environments' values"
            self.add("shared-values", "unknown", f"could not compare: {whose} could not be "
                     f"read{note}", "fix the sources named above, then run keyrun doctor again")
        else:
            compared = found.compared(others)
            self.add("shared-values", "pass", (
                f"no value shared with {', '.join(compared)}" if compared
                else "nothing compared") + note)

    def compare_values(self, resolution: Resolution, other: str, found: _Sharing) -> None:
        """--all-envs: every value of ``other``, wherever it is kept."""
        theirs = self.fetches.start(other, None, exhaustive=False).result().fetch()
        values = theirs.values()
        if theirs.failures:
            (found.partly if values else found.unreadable).append(other)
        for key, value in _comparable(resolution).items():
            if values.get(key) == value:
                found.shared.setdefault(key, []).append(other)

    def compare_locally(self, resolution: Resolution, other: str, found: _Sharing) -> None:
        """Least privilege: ``other``'s local values, and for each key it would read from a
        remote source, only whether that is the very item this environment read."""
        theirs = self.fetches.start_local(other, [b.key for b in resolution.profile.bindings]
                                          ).result().fetch()
        view = self.fetches.view(other)
        if theirs.failures:
            found.partly.append(other)
        mine = _comparable(resolution)
        for key, result in resolution.results.items():
            their = theirs.results.get(key)  # None: no local source may hold it there
            if result.item is None or (their is not None and their.status == "error"):
                continue
            if their is not None and their.item is not None:
                found.local.add(other)
                if mine.get(key) == their.item.value.reveal():
                    found.shared.setdefault(key, []).append(other)
                continue
            remote = view.remote.get(key)
            if remote is None:
                continue  # missing there: nothing to share
            source = resolution.profile.sources[result.source or ""]
            if source.remote and same_item(resolution.profile, source.name, view.whole,
                                           remote, key):
                where = view.whole.sources[remote].locate(
                    view.whole.request(next(b for b in view.whole.bindings if b.key == key),
                                       remote))
                found.same.setdefault(key, {})[other] = f"{remote}: {where}"
            else:
                found.unasked.setdefault(other, {}).setdefault(remote, []).append(key)

    # 8. rotation
    def check_rotation(self, resolution: Resolution, deadline: Deadline,
                       skip: set[str]) -> None:
        """Every key is accounted for: a key whose age or expiry could not be learnt is
        reported as unknown (with why), never counted as rotated."""
        remote = [n for n, source in resolution.profile.sources.items() if source.remote]
        with self.progress(remote).task(f"reading when keys changed in {', '.join(remote)}"):
            meta, unread = _metadata(resolution, deadline, skip)
        found = _rotation_findings(resolution, meta, unread, datetime.now(UTC))
        limit = resolution.profile.env.rotate_after
        parts = [f"{title}: {', '.join(text for _, text in found[kind])}"
                 for kind, title in _rotation_titles(limit) if found[kind]]
        parts += [f"unknown: {text}" for text in dict.fromkeys(t for _, t in found["unread"])]
        if found["unchecked"]:
            total = sum(r.status != "optional" for r in resolution.results.values())
            unchecked = [key for key, _ in found["unchecked"]]
            parts.append(f"{len(unchecked)} of {total} keys not checked, since they did not "
                         f"resolve (see missing-keys): {', '.join(unchecked)}")
        keys = list(dict.fromkeys(key for kind in found for key, _ in found[kind]))
        env = resolution.profile.env.name
        if parts:
            status: CheckStatus = ("fail" if found["expired"] else "warn"
                                   if any(found[k] for k in _ROTATE) else "unknown")
            self.add("rotation", status, "; ".join(parts), self.rotation_fix(found), keys)
        elif limit is None:
            self.add("rotation", "pass", f"no rotate_after set for {env}; nothing has expired")
        else:
            self.add("rotation", "pass", f"every key changed within {format_age(limit)}")

    def rotation_fix(self, found: Mapping[str, Sequence[tuple[str, str]]]) -> str:
        fixes = []
        if any(found[kind] for kind in _ROTATE):
            fixes.append(f"rotate them: {self.set_command('KEY')}")
        if found["ageless"]:
            fixes.append("keep keys whose age matters in a source that records it (a file, "
                         "or a cloud secret store)")
        if found["unread"]:
            fixes.append("let keyrun read the secrets' metadata, not only their values (the "
                         "sources check names a missing permission)")
        if found["unchecked"]:
            fixes.append("fix what missing-keys reports, then run keyrun doctor again")
        return "; ".join(fixes)

    # 9. shadowed
    def check_shadowed(self, resolution: Resolution) -> None:
        shadowed, inherited = [], []
        for key, result in resolution.results.items():
            holders = result.holders
            if len(holders) > 1:
                shadowed.append(f"{key} is in {' and '.join(holders)} ({holders[0]} wins)")
            value = self.environ.get(key)
            if result.item and value is not None and value != result.item.value.reveal():
                inherited.append(key)
        parts = shadowed + ([f"already set in this shell, the profile's value replaces it: "
                             f"{', '.join(inherited)}"] if inherited else [])
        if parts:
            self.add("shadowed", "warn", "; ".join(parts),
                     "remove the copy you do not mean, or run with --preserve-env to keep the "
                     "shell's value", [p.split(" ")[0] for p in shadowed] + inherited)
        else:
            self.add("shadowed", "pass", "each key comes from exactly one place")

    # 10. names
    def check_names(self, profile: Profile) -> None:
        problems = name_problems(profile)
        undeclared = undeclared_names(profile)
        if problems:
            self.add("names", "fail", "; ".join(p.message for p in problems), problems[0].hint,
                     list(dict.fromkeys(p.key for p in problems)))
        elif undeclared:
            self.add("names", "warn", "; ".join(
                f"{where} holds {', '.join(names)}, which no key declares (not passed)"
                for where, names in undeclared.items()),
                "declare them in keyrun.toml's [keys] (or .env.example) to pass them, "
                "or remove them from the file",
                [name for names in undeclared.values() for name in names])
        else:
            self.add("names", "pass", f"{len(profile.bindings)} valid, distinct names")

    # 11. short-values
    def check_short(self, resolution: Resolution) -> None:
        short = [k for k, v in resolution.values().items() if len(v) < MIN_MASKABLE]
        if short:
            self.add("short-values", "warn",
                     f"shorter than {MIN_MASKABLE} characters, so --mask cannot hide them: "
                     f"{', '.join(short)}", "use longer secrets (or keep these out of logs)", short)
        else:
            self.add("short-values", "pass", f"every value is at least {MIN_MASKABLE} characters")


@dataclass
class _Sharing:
    """What ``shared-values`` found, environment by environment."""

    shared: dict[str, list[str]] = field(default_factory=dict)  # key → envs, same value
    same: dict[str, dict[str, str]] = field(default_factory=dict)  # key → env → its item
    unreadable: list[str] = field(default_factory=list)  # wholly
    partly: list[str] = field(default_factory=list)
    local: set[str] = field(default_factory=set)  # envs with a key compared by local value
    unasked: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # env → source → keys

    def compared(self, others: Sequence[str]) -> list[str]:
        """The environments something was compared with: all read, or some locally."""
        return [env for env in others if env in self.local or (
            env not in self.unreadable and env not in self.unasked)]

    def note(self) -> str:
        note = f" (could not read {', '.join(self.unreadable)})" if self.unreadable else ""
        if self.partly:
            note += f" (could not read every key of {', '.join(dict.fromkeys(self.partly))})"
        if self.unasked:
            skipped = "; ".join(f"{env}'s {', '.join(keys)} ({source})"
                                for env, by_source in self.unasked.items()
                                for source, keys in by_source.items())
            note += (f"; not compared, since doctor reads no other environment's remote "
                     f"values without --all-envs: {skipped}")
        return note


def _comparable(resolution: Resolution) -> dict[str, str]:
    """The values worth comparing: shorter ones are alike by chance (``true``, ``8080``)."""
    return {k: v for k, v in resolution.values().items() if len(v) >= MIN_MASKABLE}


def _config_summary(config: Config, profile: Profile) -> str:
    where = config.path or f"no keyrun.toml (zero-config: .env.{profile.env.name}, .env)"
    sources = ", ".join(profile.env.sources) or "none"
    files = keyfiles.file_keys(profile)
    as_files = f" ({', '.join(files)} as {'a file' if len(files) == 1 else 'files'})"
    return (f"{where}: environment {profile.env.name} reads {sources}; "
            f"{len(profile.bindings)} keys{as_files if files else ''}")


class _Outcome(NamedTuple):
    value: Any  # what the job returned; None when it failed
    problem: str
    elapsed: float
    timed_out: bool = False


def _refusals(profile: Profile) -> dict[str, TrustError]:
    """The sources that would send a credential to a host the user did not choose."""
    refused = {}
    for name, source in profile.sources.items():
        try:
            source.endpoints()
        except TrustError as exc:
            refused[name] = exc
    return refused


def _parallel(jobs: Mapping[str, Callable[[], T]], deadline: Deadline) -> dict[str, _Outcome]:
    """Run the jobs at once; a job still running at the deadline is reported as timed out
    (its daemon thread is left behind, not waited for)."""
    def work(job: Callable[[], T]) -> _Outcome:
        started = time.monotonic()
        value, problem = None, ""
        try:
            value = job()
        except KeyrunError as exc:  # the caller names the source (a SourceError's own name)
            reason = exc.reason if isinstance(exc, SourceError) else exc.message
            problem = reason + (f" — {exc.hint}" if exc.hint else "")
        except Exception as exc:
            # the type only: an unexpected exception's text may quote what it choked on
            problem = f"unexpected {type(exc).__name__} (KEYRUN_DEBUG=1 shows it)"
        return _Outcome(value, problem, time.monotonic() - started)

    late = _Outcome(None, f"timed out after {deadline.seconds:g}s", deadline.seconds,
                    timed_out=True)
    running = run_all({name: partial(work, job) for name, job in jobs.items()},
                      deadline.remaining)
    return {name: call.result() if call.wait(0) and not call.failed else late
            for name, call in running.items()}


def _run_all(doctors: Sequence[_Doctor]) -> list[Report]:
    """Each doctor in its own thread; each ends by its own deadline."""
    running = run_all({doctor.env: doctor.run for doctor in doctors})
    return [call.result() for call in running.values()]


def _metadata(resolution: Resolution, deadline: Deadline, skip: set[str]
              ) -> tuple[dict[str, Meta], dict[str, str]]:
    """Value-free metadata of every key a source answered for — read, or refused one by
    one (an expired or disabled secret) — under the doctor's deadline; sources that
    failed or did not answer in time are not asked again. Returns the metadata by key
    and, by source, why it could not be read."""
    profile = resolution.profile
    jobs: dict[str, Callable[[], Mapping[str, Meta]]] = {}
    for name, source in profile.sources.items():
        if name in skip or name in resolution.failures:
            continue
        bindings = [r.binding for r in resolution.results.values()
                    if r.source == name and r.status in ("ok", "error")]
        if bindings:
            jobs[name] = partial(source.describe, profile.requests_for(name, bindings), deadline)
    found: dict[str, Meta] = {}
    unread: dict[str, str] = {}
    for name, outcome in _parallel(jobs, deadline).items():
        if outcome.value is None:
            unread[name] = outcome.problem
        else:
            found.update(outcome.value)
    return found, unread


_ROTATE = ("expired", "expiring", "old", "overdue")


def _rotation_titles(limit: float | None) -> list[tuple[str, str]]:
    return [("expired", "expired"), ("expiring", "expiring soon"),
            ("old", f"older than rotate_after ({format_age(limit or 0)})"),
            ("overdue", "rotation overdue"),
            ("ageless", "unknown: the source does not record when these changed")]


def _rotation_findings(resolution: Resolution, meta: Mapping[str, Meta],
                       unread: Mapping[str, str], now: datetime
                       ) -> dict[str, list[tuple[str, str]]]:
    """By kind, (key, what to say) for every key that is not known to be fine."""
    found: dict[str, list[tuple[str, str]]] = {
        kind: [] for kind in (*_ROTATE, "ageless", "unread", "unchecked")}
    limit = resolution.profile.env.rotate_after
    cannot: dict[str, dict[str, str]] = {}  # source → key → why its age is unknown
    for key, result in resolution.results.items():
        source, info = result.source or "", meta.get(key)
        if result.item is None:
            gone = _gone(key, source, info, now) if info is not None else None
            if gone:
                found["expired"].append((key, gone))
            elif result.status != "optional":
                found["unchecked"].append((key, key))
            continue
        for kind, text in _item_findings(key, source, result.item, info, limit, now):
            found[kind].append((key, text))
        item_updated = result.item.updated or (info.updated if info else None)
        if limit is None or item_updated is not None:
            continue
        if not resolution.profile.sources[source].records_age:
            found["ageless"].append((key, f"{key} ({source})"))
        else:
            why = unread.get(source) or (info.note if info and info.note else
                                         "the source did not say")
            cannot.setdefault(source, {})[key] = why
    for source, whys in cannot.items():
        first, why = next(iter(whys.items()))
        # the reasons usually differ only by the item they name: say one
        text = f"the age of {', '.join(whys)} ({source}) could not be read" + (
            f": {why}" if len(set(whys.values())) == 1 else f"; for {first}: {why}")
        found["unread"] += [(key, text) for key in whys]
    return found


def _gone(key: str, source: str, info: Meta, now: datetime) -> str | None:
    """Why a key that did not resolve is past rotating, where its metadata says."""
    if info.deleted is not None:
        return _deleted(key, source, info.deleted)
    if info.expires is not None and info.expires <= now:
        return _expired(key, source, (now - info.expires).total_seconds())
    return None


def _deleted(key: str, source: str, when: datetime) -> str:
    done = when <= datetime.now(UTC)
    return f"{key} ({source}, {'deleted' if done else 'scheduled for deletion'} on {when:%Y-%m-%d})"


def _expired(key: str, source: str, ago: float) -> str:
    return f"{key} ({source}, expired {format_age(ago)} ago)"


def _item_findings(key: str, source: str, item: Item, info: Meta | None, limit: float | None,
                   now: datetime) -> list[tuple[str, str]]:
    found = []
    if info is not None and info.deleted is not None:
        found.append(("expired", _deleted(key, source, info.deleted)))
    if info is not None and info.next_rotation is not None and info.next_rotation < now:
        found.append(("overdue", f"{key} ({source}, due {info.next_rotation:%Y-%m-%d})"))
    expires = item.expires or (info.expires if info else None)
    if expires is not None:
        left = (expires - now).total_seconds()
        if left <= 0:
            found.append(("expired", _expired(key, source, -left)))
        elif left < EXPIRY_WARNING:
            found.append(("expiring", f"{key} ({source}, expires in {format_age(left)})"))
    updated = item.updated or (info.updated if info else None)
    age = (now - updated).total_seconds() if updated is not None else None
    if limit is not None and age is not None and age > limit:
        found.append(("old", f"{key} ({source}, {format_age(age)} old)"))
    return found


def _all_resolve(required: int) -> str:
    if required == 0:
        return "no key is required"
    return "the one required key resolves" if required == 1 else (
        f"all {required} required keys resolve")


def _field_fix(result: KeyResult) -> str:
    """``keyrun set`` writes whole values: a key read from one field of a JSON value is
    added to that value with the backend's own tools."""
    binding = result.binding
    where = binding.candidates[0] if binding.candidates else "its source"
    return (f"{binding.key} is the field {binding.spec.field!r} of a JSON value in {where}: "
            "add that field to the value with the backend's own tools (keyrun set writes "
            "whole values only)")


def _secret_files(profile: Profile) -> list[Path]:
    """The .env files beside keyrun.toml, and every file a source keeps secrets in."""
    root = profile.config.root
    files = {p for p in root.glob(".env*") if p.is_file() and p.name != EXAMPLE_NAME}
    for source in profile.sources.values():
        files.update(path for path in source.local_files() if path.is_file())
    return sorted(files)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _git(root: Path, *args: str) -> bool:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _git_output(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


__all__ = ["Check", "DoctorOptions", "Report", "diagnose", "diagnose_all"]
