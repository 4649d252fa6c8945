"""``keyrun doctor``: everything that would stop ``run``, plus hygiene checks (SPEC §4)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from keyrun.config import EXAMPLE_NAME, Config, choose_env, load_config
from keyrun.dotenvfile import parse_dotenv
from keyrun.durations import format_age
from keyrun.errors import ConfigError, KeyrunError
from keyrun.profile import Profile, make_source, name_problems, resolve_profile
from keyrun.resolve import Resolution, fetch_profile
from keyrun.sources import Context, Deadline, Health
from keyrun.sources.dotenv import DotenvSource

CheckStatus = Literal["pass", "warn", "fail", "unknown"]
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
        return {"id": self.id, "status": self.status, "message": self.message,
                "fix": self.fix, "keys": list(self.keys)}


@dataclass
class Report:
    env: str
    project: str
    checks: list[Check] = field(default_factory=list)

    def ok(self, strict: bool = False) -> bool:
        bad = ("fail", "warn") if strict else ("fail",)
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
             cwd: Path | None = None) -> Report:
    """Run every check for one environment. Raises ConfigError (exit 125) only when
    doctor cannot run at all: keyrun.toml does not parse, or the environment is unknown."""
    environ = os.environ if environ is None else environ
    config = load_config(cwd, options.config, environ)
    env = choose_env(config, options.env, environ)
    return _Doctor(config, env, options, environ).run()


def known_envs(options: DoctorOptions, environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    return load_config(None, options.config, environ).env_names()


class _Doctor:
    def __init__(self, config: Config, env: str, options: DoctorOptions,
                 environ: Mapping[str, str]) -> None:
        self.config = config
        self.env = env
        self.options = options
        self.environ = environ
        self.report = Report(env, options.project or config.project)

    def add(self, check_id: str, status: CheckStatus, message: str, fix: str | None = None,
            keys: Sequence[str] = ()) -> None:
        self.report.checks.append(Check(check_id, status, message, fix, tuple(keys)))

    def run(self) -> Report:
        profile = self.check_config()
        if profile is None:
            return self.report
        healthy = self.check_sources(profile)
        resolution = fetch_profile(profile, exhaustive=True)
        try:
            self.check_missing(resolution, healthy)
            self.check_gitignore(profile)
            self.check_permissions(profile)
            self.check_example(resolution)
            self.check_shared(resolution)
            self.check_rotation(profile, resolution)
            self.check_shadowed(resolution)
            self.check_names(profile)
            self.check_short(resolution)
        finally:
            resolution.release()
        _record(resolution, self.environ)
        return self.report

    # 1. config
    def check_config(self) -> Profile | None:
        problems = []
        for spec in self.config.sources.values():
            try:
                make_source(spec.type, spec.name, spec.settings, spec.where,
                            Context(self.report.project, self.env, self.config.root,
                                    self.environ))
            except KeyrunError as exc:
                problems.append(exc.message if not exc.hint else f"{exc.message} ({exc.hint})")
        try:
            profile = resolve_profile(self.config, self.env, project=self.options.project,
                                      environ=self.environ, strict=False)
        except ConfigError as exc:
            self.add("config", "fail", exc.message, exc.hint)
            return None
        if problems:
            self.add("config", "fail", "; ".join(problems),
                     "fix the source options named above (every source is checked, "
                     "used by this environment or not)")
        else:
            self.add("config", "pass", _config_summary(self.config, profile))
        return profile

    # 3. sources
    def check_sources(self, profile: Profile) -> set[str]:
        deadline = Deadline(profile.env.timeout)
        checks = {name: (lambda s=source: s.check(deadline))
                  for name, source in profile.sources.items()}
        results = _parallel(checks, deadline)
        healthy: set[str] = set()
        lines, failed, warned = [], [], []
        for name, (outcome, elapsed) in results.items():
            took = f"{elapsed * 1000:.0f} ms"
            if isinstance(outcome, Health):
                healthy.add(name)
                lines.append(f"{name}: {outcome.detail} ({took})")
                warned += [f"{name}: {warning}" for warning in outcome.warnings]
            else:
                failed.append(outcome if outcome.startswith(f"{name}: ") else f"{name}: {outcome}")
        if not profile.sources:
            self.add("sources", "warn", "the environment has no sources",
                     "create a .env file, or run `keyrun init`")
        elif failed:
            self.add("sources", "fail", "; ".join(failed + lines),
                     "fix access to the failing source (the message says how)")
        elif warned:
            self.add("sources", "warn", "; ".join(warned + lines))
        else:
            self.add("sources", "pass", "; ".join(lines))
        return healthy

    # 2. missing-keys
    def check_missing(self, resolution: Resolution, healthy: set[str]) -> None:
        profile = resolution.profile
        bad = resolution.problems()
        optional = [r.key for r in resolution.results.values() if r.status == "optional"]
        if not bad:
            note = f"; optional and missing: {', '.join(optional)}" if optional else ""
            self.add("missing-keys", "pass",
                     f"all {len(resolution.results)} required keys resolve{note}")
            return
        from keyrun.resolve import describe_problems

        missing = [r.key for r in bad if r.status == "missing"]
        fix = (f"keyrun set {missing[0]} -e {profile.env.name}" if missing else
               "fix the failing source, then run keyrun doctor again")
        if len(missing) > 1:
            fix += " (then the same for " + ", ".join(missing[1:]) + ")"
        message = describe_problems(profile, bad).split("\n", 1)[1].replace("\n", ";")
        self.add("missing-keys", "fail", " ".join(message.split()), fix, [r.key for r in bad])

    # 4. gitignore
    def check_gitignore(self, profile: Profile) -> None:
        files = _dotenv_files(profile)
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
        for path in _dotenv_files(profile):
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
            entries = parse_dotenv(path.read_text(encoding="utf-8"), str(path))
        except (ConfigError, UnicodeDecodeError) as exc:
            self.add("example-placeholders", "fail", f"{EXAMPLE_NAME} cannot be read: {exc}",
                     f"fix {EXAMPLE_NAME}")
            return
        from keyrun.scan import scan_bytes

        data = path.read_bytes()
        flagged = {f.line for f in scan_bytes(data, EXAMPLE_NAME, resolution.values())}
        real = set(resolution.values().values())
        leaked = [e.key for e in entries if e.value and (
            e.line in flagged or e.value in real or looks_random(e.value))]
        if leaked:
            self.add("example-placeholders", "fail",
                     f"{EXAMPLE_NAME} holds what looks like a real value for: {', '.join(leaked)}",
                     f"replace them with placeholders (NAME=your-key-here) and rotate the keys "
                     f"if {EXAMPLE_NAME} was ever committed", leaked)
        else:
            self.add("example-placeholders", "pass",
                     f"{EXAMPLE_NAME} holds placeholders only ({len(entries)} names)")

    # 7. shared-values
    def check_shared(self, resolution: Resolution) -> None:
        mine = {k: v for k, v in resolution.values().items() if len(v) >= MIN_MASKABLE}
        others = [name for name in self.config.env_names() if name != self.env]
        shared: dict[str, list[str]] = {}
        unreadable: list[str] = []
        for other in others:
            try:
                theirs = _other_env_values(self.config, other, self.options.project,
                                           self.environ)
            except KeyrunError:
                unreadable.append(other)
                continue
            for key, value in mine.items():
                if theirs.get(key) == value:
                    shared.setdefault(key, []).append(other)
        note = f" (could not read {', '.join(unreadable)})" if unreadable else ""
        if shared:
            detail = "; ".join(f"{key} equals {', '.join(envs)}" for key, envs in shared.items())
            self.add("shared-values", "warn", f"same value in another environment: {detail}{note}",
                     "give each environment its own key, so one leak does not open them all",
                     list(shared))
        elif not others:
            self.add("shared-values", "pass", "no other environment to compare with")
        else:
            compared = ", ".join(o for o in others if o not in unreadable)
            self.add("shared-values", "pass",
                     f"no value shared with {compared or 'any readable environment'}{note}")

    # 8. rotation
    def check_rotation(self, profile: Profile, resolution: Resolution) -> None:
        now = datetime.now(UTC)
        limit = profile.env.rotate_after
        meta = resolution.metadata()
        expired, expiring, old, unknown, overdue = [], [], [], [], []
        for key, (source, item) in resolution.items().items():
            info = meta.get(key)
            if info is not None and info.deleted is not None:
                expired.append(f"{key} ({source}, scheduled for deletion on "
                               f"{info.deleted:%Y-%m-%d})")
            if info is not None and info.next_rotation is not None and info.next_rotation < now:
                overdue.append(f"{key} ({source}, due {info.next_rotation:%Y-%m-%d})")
            expires = item.expires or (info.expires if info else None)
            updated = item.updated or (info.updated if info else None)
            if expires is not None:
                left = (expires - now).total_seconds()
                if left <= 0:
                    expired.append(f"{key} ({source}, expired {format_age(-left)} ago)")
                elif left < EXPIRY_WARNING:
                    expiring.append(f"{key} ({source}, expires in {format_age(left)})")
            if limit is None:
                continue
            if updated is None:
                unknown.append(f"{key} ({source})")
            elif (now - updated).total_seconds() > limit:
                old.append(f"{key} ({source}, {format_age((now - updated).total_seconds())} old)")
        env = profile.env.name
        if expired:
            self.add("rotation", "fail", f"expired: {', '.join(expired)}",
                     f"rotate them: keyrun set KEY -e {env}", [k.split(" ")[0] for k in expired])
        elif expiring or old or overdue:
            parts = ([f"expiring soon: {', '.join(expiring)}"] if expiring else []) + (
                [f"older than rotate_after ({format_age(limit or 0)}): {', '.join(old)}"]
                if old else []) + ([f"rotation overdue: {', '.join(overdue)}"] if overdue else [])
            self.add("rotation", "warn", "; ".join(parts),
                     f"rotate them: keyrun set KEY -e {env}",
                     list(dict.fromkeys(k.split(" ")[0] for k in expiring + old + overdue)))
        elif unknown:
            self.add("rotation", "unknown",
                     "unknown: the source does not record when these changed: "
                     f"{', '.join(unknown)}",
                     "keep keys whose age matters in a source that records it (a file, or a "
                     "cloud secret store)", [k.split(" ")[0] for k in unknown])
        elif limit is None:
            self.add("rotation", "pass", f"no rotate_after set for {env}; nothing has expired")
        else:
            self.add("rotation", "pass", f"every key changed within {format_age(limit)}")

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
        if problems:
            self.add("names", "fail", "; ".join(p.message for p in problems), problems[0].hint,
                     list(dict.fromkeys(p.key for p in problems)))
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


def looks_random(value: str) -> bool:
    """A long, high-entropy value that is no placeholder: a key of a format no scan rule
    knows. (Known formats and the profile's own values are found by ``keyrun.scan``.)"""
    from keyrun.scan.rules import is_placeholder

    if len(value) < 20 or value.isalpha() or is_placeholder(value.encode(), loose=True):
        return False
    return _entropy(value) > 3.5


def _entropy(value: str) -> float:
    import math
    from collections import Counter

    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _config_summary(config: Config, profile: Profile) -> str:
    where = config.path or f"no keyrun.toml (zero-config: .env.{profile.env.name}, .env)"
    sources = ", ".join(profile.env.sources) or "none"
    return f"{where}: environment {profile.env.name} reads {sources}; {len(profile.bindings)} keys"


def _parallel(jobs: Mapping[str, Callable[[], Health]], deadline: Deadline
              ) -> dict[str, tuple[Health | str, float]]:
    results: dict[str, tuple[Health | str, float]] = {}

    def work(name: str, job: Callable[[], Health]) -> None:
        started = time.monotonic()
        try:
            outcome: Health | str = job()
        except KeyrunError as exc:
            outcome = exc.message + (f" — {exc.hint}" if exc.hint else "")
        except Exception as exc:
            # the type only: an unexpected exception's text may quote what it choked on
            outcome = f"unexpected {type(exc).__name__} (KEYRUN_DEBUG=1 shows it)"
        results[name] = (outcome, time.monotonic() - started)

    threads = [threading.Thread(target=work, args=(n, j), daemon=True) for n, j in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(deadline.remaining())
    for name in jobs:
        results.setdefault(name, (f"timed out after {deadline.seconds:g}s", deadline.seconds))
    return {name: results[name] for name in jobs}


def _dotenv_files(profile: Profile) -> list[Path]:
    root = profile.config.root
    files = {p for p in root.glob(".env*") if p.is_file() and p.name != EXAMPLE_NAME}
    for source in profile.sources.values():
        if isinstance(source, DotenvSource) and source.path.is_file():
            files.add(source.path)
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


def _other_env_values(config: Config, env: str, project: str | None,
                      environ: Mapping[str, str]) -> dict[str, str]:
    profile = resolve_profile(config, env, project=project, environ=environ, strict=False)
    resolution = fetch_profile(profile)
    try:
        return resolution.values()
    finally:
        resolution.release()


def _record(resolution: Resolution, environ: Mapping[str, str]) -> None:
    from keyrun.accesslog import record_resolution

    with contextlib.suppress(OSError):
        record_resolution(resolution, environ, action="doctor")


__all__ = ["Check", "DoctorOptions", "Report", "diagnose", "known_envs", "looks_random"]
