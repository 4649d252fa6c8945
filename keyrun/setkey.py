"""``keyrun set``: write a new value for a key (how a key is rotated)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keyrun import keyfiles
from keyrun.accesslog import record
from keyrun.config import Config, KeySpec, SourceSpec, choose_env, load_config
from keyrun.environ import NAME, is_reserved
from keyrun.errors import ConfigError, SourceError, UsageError
from keyrun.profile import Binding, Profile, make_source, resolve_profile
from keyrun.secret import Secret
from keyrun.sources import Context, Deadline, Item, Request, Source

if TYPE_CHECKING:
    from keyrun.progress import Progress


@dataclass(frozen=True)
class Written:
    key: str
    source: str
    location: str
    declared: bool  # whether the profile already declares the key
    env: str
    unseen: str | None = None  # why `run` will not read what was written, if it will not


def set_key(
    key: str,
    value: Secret,
    *,
    env: str | None = None,
    source: str | None = None,
    project: str | None = None,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
    progress: bool | Progress = False,
) -> Written:
    """Write ``value`` to the environment's first writable source (or ``source``);
    ``progress`` shows on stderr while a remote source is written or asked."""
    from keyrun.progress import shown

    environ = os.environ if environ is None else environ
    _check_name(key)
    loaded = load_config(None, config, environ)
    env_name = choose_env(loaded, env, environ)
    profile = resolve_profile(loaded, env_name, project=project, environ=environ, strict=False)
    binding = next((b for b in profile.bindings if b.key == key), None)
    target = _target(loaded, profile, binding, source, environ)
    spec = binding.spec if binding else KeySpec(key)
    keyfiles.check_values({key: value.reveal()}, (key,) if spec.as_file else ())
    request = Request(key, target.backend_name(spec.backend_name), spec.field, None)
    if not target.writable:
        raise target.read_only(request)
    deadline = Deadline(profile.env.timeout)
    with shown(progress, quiet=False, remote=target.remote).task(
            f"writing {key} to {target.name}"):
        where = target.write(request, value, deadline)
    with contextlib.suppress(OSError):
        record(environ, action="set", project=profile.project, env=env_name,
               keys=[{"name": key, "source": target.name, "version": None}])
    earlier = binding.candidates[: binding.candidates.index(target.name)] if (
        binding and target.name in binding.candidates) else ()
    remote = [name for name in earlier if profile.sources[name].remote]
    with shown(progress, quiet=False, remote=bool(remote)).task(
            f"checking {', '.join(remote)} for {key}"):
        unseen = _unseen(profile, binding, target, deadline) if binding else None
    # With no keys declared anywhere, run takes whatever the sources hold: this one too.
    declared = binding is not None or not profile.env.keys
    return Written(key, target.name, where, declared, env_name, unseen)


def _unseen(profile: Profile, binding: Binding, target: Source, deadline: Deadline
            ) -> str | None:
    """A write `run` will not see: the key is read from other sources, or an earlier
    source of the environment holds it too and wins (a rotation that did not happen)."""
    candidates = list(binding.candidates)
    if target.name not in candidates:
        return (f"run reads {binding.key} from {', '.join(candidates)} in {profile.env.name}, "
                f"not from {target.name}")
    for name in candidates[: candidates.index(target.name)]:
        source = profile.sources[name]
        spec = binding.spec
        request = Request(binding.key, source.backend_name(spec.backend_name), spec.field,
                          spec.version)
        try:
            outcome = source.fetch([request], deadline).get(binding.key)
        except (SourceError, ConfigError):
            continue
        if isinstance(outcome, Item):
            return (f"{name} comes first in {profile.env.name} and also holds {binding.key}, "
                    f"so run keeps its value; remove it from {name}, or set it there "
                    f"(--source {name})")
    return None


def _check_name(key: str) -> None:
    if not NAME.match(key):
        raise UsageError(f"{key!r} is not a valid environment variable name",
                         "use letters, digits and underscores, not starting with a digit")
    if is_reserved(key):
        raise UsageError(f"{key} is a reserved name; keyrun will not store it",
                         "reserved names change how programs start (PATH, LD_PRELOAD, …)")


def _target(config: Config, profile: Profile, binding: Binding | None, chosen: str | None,
            environ: Mapping[str, str]) -> Source:
    if chosen is not None:
        if chosen in profile.sources:
            return profile.sources[chosen]
        if chosen not in config.sources:
            valid = ", ".join(config.sources) or "none"
            raise UsageError(f"--source {chosen}: no such source", f"sources: {valid}")
        return _make(config.sources[chosen], profile, environ)
    candidates = binding.candidates if binding else profile.env.sources
    for name in candidates:
        if profile.sources[name].writable:
            return profile.sources[name]
    if len(candidates) == 1:  # its own words say what to do instead
        return profile.sources[candidates[0]]
    if config.path is None:  # zero-config with no .env yet: create one
        return _make(SourceSpec(".env", "dotenv", {"path": ".env"}, str(config.root / ".env")),
                     profile, environ)
    raise ConfigError(
        f"{config.label}: no writable source for {binding.key if binding else 'this key'} in "
        f"environment {profile.env.name} (sources: {', '.join(candidates) or 'none'})",
        "choose one with --source NAME",
    )


def _make(spec: SourceSpec, profile: Profile, environ: Mapping[str, str]) -> Source:
    context = Context(profile.project, profile.env.name, profile.config.root, environ,
                      config=profile.config.path)
    return make_source(spec.type, spec.name, spec.settings, spec.where, context)
