"""A profile: project × environment resolved into, for every key, where it is read from."""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from keyrun.config import (
    CONFIG_NAME,
    EXAMPLE_NAME,
    Config,
    Environment,
    KeySpec,
    choose_env,
    environment,
    key_location,
    load_config,
    source_specs,
)
from keyrun.environ import NAME, is_reserved
from keyrun.errors import ConfigError, KeyrunError, UsageError
from keyrun.reporter import default
from keyrun.sources import Context, Deadline, Request, Source, check_settings
from keyrun.sources.registry import source_class


class Binding(NamedTuple):
    """One key of the profile and the sources it may come from, first wins."""

    spec: KeySpec
    candidates: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.spec.name

    @property
    def optional(self) -> bool:
        return self.spec.optional


class Profile(NamedTuple):
    config: Config
    project: str
    env: Environment
    bindings: tuple[Binding, ...]
    sources: Mapping[str, Source]

    @property
    def label(self) -> str:
        return f"{self.project}/{self.env.name}"

    def request(self, binding: Binding, source: str) -> Request:
        spec = binding.spec
        backend = self.sources[source].backend_name(spec.backend_name)
        return Request(spec.name, backend, spec.field, spec.version)

    def requests_for(self, source: str, bindings: Sequence[Binding] | None = None
                     ) -> list[Request]:
        chosen = self.bindings if bindings is None else bindings
        return [self.request(b, source) for b in chosen if source in b.candidates]

    def spec(self, key: str) -> KeySpec:
        return next(b.spec for b in self.bindings if b.key == key)

    def tokens(self) -> tuple[str, ...]:
        names = {name for source in self.sources.values() for name in source.token_env_vars()}
        return tuple(sorted(name for name in names if name not in self.env.pass_env))

    def stripped(self) -> tuple[str, ...]:
        """What leaves the command's environment: the tokens, and the variables a source
        read keys from under another name (both unless ``pass_env`` lists them)."""
        names = {name for source in self.sources.values()
                 for name in source.consumed_env_vars()} - set(self.env.pass_env)
        return tuple(sorted({*self.tokens(), *names}))


def open_profile(
    env: str | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    project: str | None = None,
    only: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    interactive: bool = False,
    warn: Callable[[str], None] | None = None,
    strict: bool = True,
    always: Callable[[str], None] | None = None,
    detail: Callable[[str], None] | None = None,
) -> Profile:
    """Find and parse keyrun.toml, choose the environment and resolve its profile."""
    environ = os.environ if environ is None else environ
    loaded = load_config(cwd, config, environ)
    name = choose_env(loaded, env, environ)
    return resolve_profile(loaded, name, project=project, only=only, environ=environ,
                           interactive=interactive, warn=warn, strict=strict, always=always,
                           detail=detail)


def resolve_profile(
    config: Config,
    env_name: str,
    *,
    project: str | None = None,
    only: Sequence[str] = (),
    environ: Mapping[str, str],
    interactive: bool = False,
    strict: bool = True,
    warn: Callable[[str], None] | None = None,
    always: Callable[[str], None] | None = None,
    detail: Callable[[str], None] | None = None,
    undeclared: Sequence[str] | None = None,
) -> Profile:
    """Bind every key of the environment to its sources. ``strict`` refuses invalid,
    reserved and colliding names (``doctor`` reports them instead). ``always`` hears
    what even ``-q`` must not hide, ``detail`` what ``-v`` shows. ``undeclared``: the keys
    to bind if the environment declares none, instead of asking its sources which they
    hold (doctor's look at another environment asks no remote source)."""
    env = environment(config, env_name)
    project_name = project or config.project
    context = Context(project_name, env.name, config.root, environ, interactive, warn, always,
                      detail, config.path)
    sources = make_sources(config, env, context)
    keys = _usable_example_keys(config, env, context) or (
        [KeySpec(name=name) for name in undeclared] if undeclared is not None
        else _discovered_keys(sources, env, context))
    if config.path is None and not sources and not keys:
        raise ConfigError(
            f"nothing to load: no {CONFIG_NAME} in {config.root} or its parents, "
            f"and no .env or .env.{env.name} file here",
            "run `keyrun init` to create keyrun.toml, or create a .env file",
        )
    bindings = tuple(Binding(k, (k.source,) if k.source else env.sources) for k in keys)
    bindings = _select(bindings, only, env.name)
    profile = Profile(config, project_name, env, bindings, sources)
    if strict:
        _check_bindings(profile)
    return profile


def make_sources(config: Config, env: Environment, context: Context) -> dict[str, Source]:
    """Every source the environment reads, by name: its ``sources`` and those its keys name."""
    used = dict.fromkeys([*env.sources, *(k.source for k in env.keys if k.source)])
    specs = source_specs(config, env.name)
    return {name: make_source(specs[name].type, name, specs[name].settings, specs[name].where,
                              context, specs[name].option_where) for name in used}


def make_source(type_name: str, name: str, settings: Mapping[str, object], where: str,
                context: Context, option_where: Mapping[str, str] | None = None) -> Source:
    cls = source_class(type_name, where=where)
    return cls(name, check_settings(cls, name, settings, where, option_where), context)


def _usable_example_keys(config: Config, env: Environment, context: Context) -> list[KeySpec]:
    """The environment's keys. A name that only ``.env.example`` gives (keyrun.toml does
    not declare it) and that no variable can have, or a reserved one, is left out with a
    warning: the file is a convention shared with other tools, not keyrun's own."""
    warn = context.warn or default().warn
    keys = []
    for spec in env.keys:
        from_example_only = spec.name in config.example_keys and spec.name not in config.keys
        if from_example_only and not NAME.match(spec.name):
            warn(f"{spec.name!r} in {EXAMPLE_NAME} is not a valid environment variable name; "
                 "left out")
        elif (from_example_only and is_reserved(spec.name)
              and spec.name not in env.allow_reserved):
            warn(f"{spec.name} in {EXAMPLE_NAME} is a reserved name; left out")
        else:
            keys.append(spec)
    return keys


def _discovered_keys(sources: Mapping[str, Source], env: Environment,
                     context: Context) -> list[KeySpec]:
    """No keys declared (no ``[keys]``, no ``.env.example``): whatever the sources hold,
    for those that can list their names. Nothing declared them, so a reserved or invalid
    name among them is left out with a warning rather than stopping everything."""
    for source in sources.values():
        source.endpoints()  # a host the user did not choose stops this before any request
    deadline = Deadline(env.timeout)
    names: dict[str, None] = {}
    unlisted = []
    for source in sources.values():
        listed = source.names(deadline)
        if listed is None:
            unlisted.append(f"{source.name} ({source.type_name})")
        names.update(dict.fromkeys(listed or ()))
    if unlisted and not names:  # fail closed: running with no keys at all is no run
        raise ConfigError(
            f"environment {env.name!r} declares no keys, and {', '.join(unlisted)} cannot "
            "list the keys it holds",
            "declare the keys the command needs in keyrun.toml's [keys] (or in .env.example)")
    keys = []
    warn = context.warn or default().warn
    for source_name in unlisted:
        warn(f"{source_name} cannot list its keys, so nothing is read from it until the "
             "keys are declared in [keys]")
    loud = context.always or default().always  # the warning is the only trace: even under -q
    for name in names:
        if not NAME.match(name):
            loud(f"warning: {name!r} is not a valid environment variable name; left out")
        elif is_reserved(name) and name not in env.allow_reserved:
            warn(f"{name} is a reserved name; left out (to pass it, declare it in "
                 "keyrun.toml's [keys] and list it in allow_reserved)")
        else:
            keys.append(KeySpec(name=name))
    return keys


def undeclared_names(profile: Profile) -> dict[str, list[str]]:
    """For each local file of the profile's sources (a ``.env`` file, by its path from
    keyrun.toml), the names it holds that no key declares (so they are not passed): a key
    added to ``.env`` and forgotten in keyrun.toml. Empty when no keys are declared, since
    then every name is passed."""
    if not profile.env.keys:
        return {}
    declared = {b.key for b in profile.bindings} | {b.spec.backend_name for b in profile.bindings}
    found: dict[str, list[str]] = {}
    for source in profile.sources.values():
        files = source.local_files()
        if len(files) != 1:  # the names of one file, or of none
            continue
        try:
            names = source.names(Deadline(profile.env.timeout)) or []
        except KeyrunError:  # a file that cannot be read is reported where it is read
            continue
        if extra := [name for name in names if name not in declared]:
            found[os.path.relpath(files[0], profile.config.root)] = extra
    return found


def _select(bindings: tuple[Binding, ...], only: Sequence[str], env: str) -> tuple[Binding, ...]:
    if not only:
        return bindings
    known = {b.key for b in bindings}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise UsageError(f"--only {', '.join(unknown)}: not a key of environment {env!r}",
                         f"keys: {', '.join(sorted(known)) or 'none'}")
    return tuple(b for b in bindings if b.key in only)


class NameProblem(NamedTuple):
    key: str
    message: str
    hint: str
    blocking: bool = True  # run refuses it; doctor reports every problem


def name_problems(profile: Profile) -> list[NameProblem]:
    """Invalid or reserved names, versions pinned where a source has none, and two keys
    that one source would read from the same backend name."""
    problems = []
    env = profile.env.name
    for binding in profile.bindings:
        key = binding.key
        if not NAME.match(key):
            problems.append(NameProblem(
                key, f"{key!r} is not a valid environment variable name",
                "use letters, digits and underscores, not starting with a digit; "
                "give the backend's own name with name = \"…\""))
        elif is_reserved(key) and key not in profile.env.allow_reserved:
            problems.append(NameProblem(
                key, f"{key} is a reserved name; a secret source may not set it",
                f"if this is intended, add allow_reserved = [\"{key}\"] to [env.{env}]"))
        for name in binding.candidates if binding.spec.version is not None else ():
            source = profile.sources[name]
            if not source.has_versions:
                problems.append(NameProblem(
                    key, f"{key} pins version {binding.spec.version!r} but source {name} "
                    f"({source.type_name}) has no versions",
                    f"pin it only for a versioned source, in [env.{env}.keys] with source = \"…\""))
    return problems + _collisions(profile)


def _collisions(profile: Profile) -> list[NameProblem]:
    """Two keys read from one item. Written that way (``name = …`` twice) it may be an
    alias; made so by a source's name mapping (Azure's ``_`` → ``-``) it never is."""
    problems = []
    for name, source in profile.sources.items():
        seen: dict[tuple[str, str | None, str | None], Request] = {}
        for request in profile.requests_for(name):
            where = source.locate(request)
            # Different fields or versions of one item are different values.
            identity = (source.identity(request), request.field, request.version)
            first = seen.setdefault(identity, request)
            if first is request:
                continue
            mapped = any(r.name != profile.spec(r.key).backend_name for r in (first, request))
            problems.append(NameProblem(
                request.key, f"{first.key} and {request.key} both map to {where} in {name}",
                "give one of them its own backend name with name = \"…\"", blocking=mapped))
    return problems


def _check_bindings(profile: Profile) -> None:
    problems = [problem for problem in name_problems(profile) if problem.blocking]
    if problems:
        first = problems[0]
        where = key_location(profile.config, first.key, profile.env.name)
        raise ConfigError(f"{where}: {first.message}", first.hint)
