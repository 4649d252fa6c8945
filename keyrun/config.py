"""keyrun.toml: discovery, parsing and validation (SPEC §2).

Parsing is pure and cheap: source options are validated by the source classes
themselves, and only when a profile uses them (``doctor`` validates every one).
"""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from keyrun.durations import parse_duration
from keyrun.errors import ConfigError
from keyrun.ownership import foreign_directory, read_trusted, refuse_foreign_directory

CONFIG_NAME = "keyrun.toml"
EXAMPLE_NAME = ".env.example"
DEFAULT_TIMEOUT = 30.0
DEFAULT_ZERO_CONFIG_ENV = "dev"

TOP_LEVEL = ("project", "default_env", "keys", "sources", "env", "scan", "access_log")
KEY_OPTIONS = ("name", "field", "version", "optional", "description", "source", "as")
DELIVERIES = ("env", "file")  # a key's ``as``: the value in the variable, or a path to it
ENV_OPTIONS = (
    "sources",
    "extends",
    "description",
    "rotate_after",
    "pass_env",
    "allow_reserved",
    "timeout",
    "mask",
    "keys",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class KeySpec(NamedTuple):
    """One key: the environment variable and how to find it in a backend."""

    name: str
    backend: str | None = None
    field: str | None = None
    version: str | None = None
    optional: bool = False
    description: str | None = None
    source: str | None = None
    delivery: str = "env"  # ``as``: "file" puts a path to an in-memory file in the variable

    @property
    def backend_name(self) -> str:
        return self.backend or self.name

    @property
    def as_file(self) -> bool:
        return self.delivery == "file"


class SourceSpec(NamedTuple):
    name: str
    type: str
    settings: Mapping[str, Any]
    where: str
    option_where: Mapping[str, str] = MappingProxyType({})  # each option's own line


class EnvSpec(NamedTuple):
    """An ``[env.NAME]`` table as written (``extends`` not yet applied)."""

    name: str
    where: str
    values: Mapping[str, Any]
    keys: Mapping[str, Mapping[str, Any]]


class Environment(NamedTuple):
    """An environment with ``extends`` applied and its keys merged."""

    name: str
    sources: tuple[str, ...]
    keys: tuple[KeySpec, ...]
    rotate_after: float | None = None
    pass_env: tuple[str, ...] = ()
    allow_reserved: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    description: str | None = None
    mask: bool = False


class ScanRuleSpec(NamedTuple):
    """One ``keyrun scan`` rule as written (keyrun.toml's ``[[scan.rules]]``, or the package's
    own rules file); ``where`` names its file and line for later errors."""

    id: str
    regex: str
    where: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    entropy: float = 0.0
    allow: tuple[str, ...] = ()
    mixed_case: bool = False
    generic: bool = False
    fallback: bool = False
    key_file: bool = False
    boundary: bool = True
    keyword_first: bool = False
    check: str | None = None
    near: str | None = None
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()


class ScanSpec(NamedTuple):
    """keyrun.toml's ``[scan]`` table: rules to add, built-in rules to disable (by id),
    paths to skip (glob patterns), fingerprints of accepted findings, a baseline file."""

    rules: tuple[ScanRuleSpec, ...] = ()
    disable: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()
    baseline: Path | None = None
    where: str = ""


class Config(NamedTuple):
    path: Path | None  # None: zero-config mode
    root: Path
    project: str
    default_env: str | None
    keys: Mapping[str, KeySpec]
    sources: Mapping[str, SourceSpec]
    envs: Mapping[str, EnvSpec]
    example_keys: tuple[str, ...] = ()
    text: str = ""
    scan: ScanSpec = ScanSpec()
    bases: frozenset[str] = frozenset()  # environments only extended, never run (is_base_only)
    access_log: bool = True  # false: no log, unless KEYRUN_ACCESS_LOG names a file

    @property
    def label(self) -> str:
        return str(self.path) if self.path else f"{self.root} (no {CONFIG_NAME})"

    def env_names(self) -> list[str]:
        """The environments one can run in (not a base meant only to be extended)."""
        if self.path is not None:
            return [name for name in self.envs if not is_base_only(self, name)]
        return zero_config_envs(self.root)


def find_config(cwd: Path, explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]
                ) -> Path | None:
    """``-c``, else ``$KEYRUN_CONFIG``, else keyrun.toml here or in the nearest parent."""
    named = explicit if explicit is not None else environ.get("KEYRUN_CONFIG") or None
    if named is not None:
        path = Path(named)
        path = Path(os.path.normpath(path if path.is_absolute() else cwd / path))
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            origin = "-c/--config" if explicit is not None else "KEYRUN_CONFIG"
            raise ConfigError(
                f"{path}: no such configuration file (named by {origin})",
                "check the path, or run `keyrun init` to create one",
            )
        return path
    for directory in (cwd, *cwd.parents):
        candidate = directory / CONFIG_NAME
        present = os.path.lexists(candidate) and not candidate.is_dir()
        stranger = foreign_directory(directory)
        if stranger is not None:  # as git: no further up than another user's directory
            if present:
                raise refuse_foreign_directory(directory, stranger, candidate)
            return None
        if present:
            return candidate
    return None


def load_config(
    cwd: Path | None = None,
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    cwd = cwd or current_directory()
    environ = os.environ if environ is None else environ
    path = find_config(cwd, explicit, environ)
    if path is None:
        return zero_config(cwd)
    read = read_trusted(path, CONFIG_NAME)
    if read is None:
        raise ConfigError(f"{path}: no such configuration file",
                          "check the path, or run `keyrun init` to create one")
    try:
        text = read[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: is not valid UTF-8 text (byte {exc.start})",
                          "save keyrun.toml as UTF-8") from None
    return parse_config(path, text)


def current_directory() -> Path:
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise ConfigError("the current directory no longer exists",
                          "cd to an existing directory and run keyrun again") from None


def parse_config(path: Path, text: str) -> Config:
    where = _Locator(str(path), text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ConfigError(
            f"invalid TOML: {str(exc).split(' (at line')[0]}",
            "see https://toml.io for the syntax",
            path=str(path),
            line=int(match.group(1)) if match else None,
        ) from None
    _unknown(data, TOP_LEVEL, where, ())
    root = path.parent
    project = _string(data, "project", where, ()) or root.name
    keys = _parse_keys(_table(data, "keys", where, ()), where)
    sources = _parse_sources(_table(data, "sources", where, ()), where)
    envs = _parse_envs(_table(data, "env", where, ()), where)
    _check_extends(envs, where)
    config = Config(
        path=path,
        root=root,
        project=project,
        default_env=_string(data, "default_env", where, ()),
        keys=keys,
        sources=sources,
        envs=envs,
        example_keys=tuple(read_example_keys(root)),
        text=text,
        scan=_parse_scan(_table(data, "scan", where, ()), where, root),
        bases=_bases(envs),
        access_log=_access_log(data, where),
    )
    _check_references(config, where)
    return config


class _Locator:
    """Finds the line a table or key was written on, for error messages."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")

    _ASSIGNMENT = re.compile(r"\s*(?:\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_.-]+))\s*=")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self._index: dict[tuple[tuple[str, ...], str | None], int] | None = None

    def __call__(self, table: tuple[str, ...], key: str | None = None) -> str:
        line = self.line(table, key)
        name = _dotted(table)
        subject = f"[{name}]" if name else "top level"
        if key is not None:
            subject = f"{subject} {key}" if name else key
        prefix = f"{self.path}:{line}" if line else self.path
        return f"{prefix}: {subject}"

    def line(self, table: tuple[str, ...], key: str | None) -> int | None:
        found = self.written().get((table, key))
        if found is not None:
            return found
        # An inline or dotted table: point at the line that names it in its parent.
        return self.line(table[:-1], table[-1]) if table else None

    def written(self) -> dict[tuple[tuple[str, ...], str | None], int]:
        """(table, key or None for its header) → the first line that writes it; read once,
        so that locating every environment of a long file stays linear."""
        if self._index is None:
            self._index = {}
            current: tuple[str, ...] = ()
            for number, text in enumerate(self.lines, start=1):
                header = self._HEADER.match(text)
                if header:
                    current = tuple(part.strip().strip("\"'")
                                    for part in header.group(1).split("."))
                    self._index.setdefault((current, None), number)
                elif assigned := self._ASSIGNMENT.match(text):
                    key = next(group for group in assigned.groups() if group is not None)
                    self._index.setdefault((current, key), number)
        return self._index


def _assigns(text: str, key: str) -> bool:
    stripped = text.lstrip()
    for candidate in (key, f'"{key}"', f"'{key}'"):
        if stripped.startswith(candidate) and stripped[len(candidate) :].lstrip().startswith("="):
            return True
    return False


def _dotted(table: tuple[str, ...]) -> str:
    return ".".join(part if _NAME.match(part) else f'"{part}"' for part in table)


def _unknown(data: Mapping[str, Any], valid: tuple[str, ...], where: _Locator,
             table: tuple[str, ...]) -> None:
    for key in data:
        if key not in valid:
            raise ConfigError(
                f"{where(table, key)}: unknown key {key!r}",
                f"valid keys here: {', '.join(valid)}",
            )


def _table(data: Mapping[str, Any], key: str, where: _Locator, table: tuple[str, ...]
           ) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where(table, key)}: must be a table, not {_kind(value)}",
                          f"write it as [{_dotted((*table, key))}] or {key} = {{ … }}")
    return value


def _string(data: Mapping[str, Any], key: str, where: _Locator, table: tuple[str, ...]
            ) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where(table, key)}: must be a string, not {_kind(value)}",
                          f'write it as {key} = "…"')
    return value


def _bool(data: Mapping[str, Any], key: str, where: _Locator, table: tuple[str, ...]) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where(table, key)}: must be true or false, not {_kind(value)}",
                          f"write it as {key} = true")
    return value


def _names(data: Mapping[str, Any], key: str, where: _Locator, table: tuple[str, ...]
           ) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where(table, key)}: must be a list of strings, not {_kind(value)}",
                          f'write it as {key} = ["…", "…"]')
    return tuple(value)


def _kind(value: object) -> str:
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _key_options(raw: object, where: _Locator, table: tuple[str, ...], key: str
                 ) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where(table, key)}: must be a table, not {_kind(raw)}",
            f"write it as {key} = {{}} (or {key} = {{ optional = true }})",
        )
    _unknown(raw, KEY_OPTIONS, _KeyLocator(where, table, key), ())
    for option in ("name", "field", "version", "description", "source"):
        _string(raw, option, _KeyLocator(where, table, key), ())
    _bool(raw, "optional", _KeyLocator(where, table, key), ())
    delivery = _string(raw, "as", _KeyLocator(where, table, key), ())
    if delivery is not None and delivery not in DELIVERIES:
        raise ConfigError(
            f"{_KeyLocator(where, table, key)((), 'as')}: must be \"env\" or \"file\", "
            f'not "{delivery}"',
            f'write {key} = {{ as = "file" }} to give the command a path to an in-memory file '
            "holding the value, or leave `as` out for the value itself in the variable")
    return raw


class _KeyLocator(_Locator):
    """Points errors about a key's inline options at the key's own line."""

    def __init__(self, parent: _Locator, table: tuple[str, ...], key: str) -> None:
        self.parent = parent
        self.table = table
        self.key = key

    def __call__(self, table: tuple[str, ...], key: str | None = None) -> str:
        base = self.parent(self.table, self.key)
        return f"{base} {key}" if key else base


def _parse_keys(raw: Mapping[str, Any], where: _Locator) -> dict[str, KeySpec]:
    keys: dict[str, KeySpec] = {}
    for name, options in raw.items():
        options = _key_options(options, where, ("keys",), name)
        keys[name] = KeySpec(name=name, **_spec_fields(options))
    return keys


def _spec_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    renamed = {"name": "backend", "as": "delivery"}
    return {renamed.get(key, key): value for key, value in options.items()}


def _parse_sources(raw: Mapping[str, Any], where: _Locator) -> dict[str, SourceSpec]:
    sources: dict[str, SourceSpec] = {}
    for name, table in raw.items():
        here = ("sources", name)
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where(('sources',), name)}: must be a table, not {_kind(table)}",
                f'write it as [sources.{name}] with type = "dotenv" (or another type)',
            )
        type_name = _string(table, "type", where, here)
        if not type_name:
            raise ConfigError(f"{where(here)}: a source needs a type",
                              'add type = "dotenv" (or keyring, aws-secrets-manager, aws-ssm, '
                              "vault, gcp-secret-manager, azure-key-vault, doppler)")
        settings = {key: value for key, value in table.items() if key != "type"}
        sources[name] = SourceSpec(name, type_name, settings, where(here),
                                   {key: where(here, key) for key in settings})
    return sources


def _parse_envs(raw: Mapping[str, Any], where: _Locator) -> dict[str, EnvSpec]:
    envs: dict[str, EnvSpec] = {}
    for name, table in raw.items():
        here = ("env", name)
        if not isinstance(table, dict):
            raise ConfigError(f"{where(('env',), name)}: must be a table, not {_kind(table)}",
                              f'write it as [env.{name}] with sources = ["…"]')
        _unknown(table, ENV_OPTIONS, where, here)
        _names(table, "sources", where, here)
        _names(table, "pass_env", where, here)
        _names(table, "allow_reserved", where, here)
        _string(table, "extends", where, here)
        _string(table, "description", where, here)
        _bool(table, "mask", where, here)
        for option in ("rotate_after", "timeout"):
            _duration(table, option, where, here)
        keys = {
            key: _key_options(options, where, (*here, "keys"), key)
            for key, options in _table(table, "keys", where, here).items()
        }
        values = {key: value for key, value in table.items() if key != "keys"}
        envs[name] = EnvSpec(name, where(here), values, keys)
    return envs


def _duration(data: Mapping[str, Any], key: str, where: _Locator, table: tuple[str, ...]
              ) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"{where(table, key)}: {value!r} must be longer than zero",
                          f'write it as {key} = "30s" (units: s, m, h, d, w)')
    if seconds is None:
        raise ConfigError(f"{where(table, key)}: {value!r} is not a duration",
                          f'write it as {key} = "30s" (units: s, m, h, d, w)')
    return seconds


def _check_extends(envs: Mapping[str, EnvSpec], where: _Locator) -> None:
    """Every ``extends`` names an environment, and no chain comes back on itself; each
    environment is walked once (a chain of thousands is checked in linear time)."""
    for env in envs.values():
        parent = env.values.get("extends")
        if parent is not None and parent not in envs:
            raise ConfigError(
                f"{where(('env', env.name), 'extends')}: unknown environment {parent!r}",
                f"environments: {', '.join(envs)}",
            )
    done: set[str] = set()
    for start in envs:
        path: dict[str, None] = {}  # this walk, in order
        current: str | None = start
        while current is not None and current not in done:
            if current in path:
                loop = " → ".join([*path, current][list(path).index(current):])
                raise ConfigError(f"{envs[current].where}: extends forms a cycle: {loop}",
                                  "remove one of the extends in that loop")
            path[current] = None
            current = envs[current].values.get("extends")
        done.update(path)


def _bases(envs: Mapping[str, EnvSpec]) -> frozenset[str]:
    """The environments that others extend and that have no sources up their chain."""
    sourced = _sourced(envs)
    extended = {env.values.get("extends") for env in envs.values()}
    return frozenset(name for name in envs if name in extended and not sourced[name])


def _sourced(envs: Mapping[str, EnvSpec]) -> dict[str, bool]:
    """Whether each environment, or one up its chain, names sources; each walked once."""
    sourced: dict[str, bool] = {}
    for start in envs:
        path: list[str] = []
        current: str | None = start
        while current is not None and current not in sourced:
            path.append(current)
            current = envs[current].values.get("extends")
        known = sourced.get(current, False) if current is not None else False
        for name in reversed(path):
            known = known or bool(envs[name].values.get("sources"))
            sourced[name] = known
    return sourced


def _access_log(data: Mapping[str, Any], where: _Locator) -> bool:
    value = data.get("access_log", True)
    if not isinstance(value, bool):
        raise ConfigError(f"{where((), 'access_log')}: must be true or false, not "
                          f"{_kind(value)}", "write access_log = false to keep no access log "
                          "(for images that are read-only by design)")
    return value


def _check_references(config: Config, where: _Locator) -> None:
    sourced = _sourced(config.envs)
    for env in config.envs.values():
        for name in env.values.get("sources", ()):
            _known_source(config, name, where(("env", env.name), "sources"))
        for key, options in env.keys.items():
            if "source" in options:
                _known_source(config, options["source"],
                              where(("env", env.name, "keys"), key))
        if env.name not in config.bases and not sourced[env.name]:
            raise ConfigError(f"{env.where}: environment {env.name!r} has no sources",
                              'add sources = ["…"] naming [sources.*] tables, or extends = "…"')
    for spec in config.keys.values():
        if spec.source is not None:
            _known_source(config, spec.source, where(("keys",), spec.name))
    if config.default_env is not None and config.envs and config.default_env not in config.envs:
        raise ConfigError(
            f"{where((), 'default_env')}: unknown environment {config.default_env!r}",
            f"environments: {', '.join(config.envs)}",
        )


def _known_source(config: Config, name: str, where: str) -> None:
    if name not in config.sources:
        valid = ", ".join(config.sources) or "none are defined"
        raise ConfigError(f"{where}: unknown source {name!r}",
                          f"sources: {valid} (define one as [sources.{name}])")


def choose_env(config: Config, requested: str | None, environ: Mapping[str, str]) -> str:
    """``-e``, else ``$KEYRUN_ENV``, else ``default_env`` (else the only environment)."""
    name = requested or environ.get("KEYRUN_ENV") or config.default_env
    if config.path is None:
        return _zero_config_env(config, name)
    if name is None:
        if len(config.envs) == 1:
            return next(iter(config.envs))
        raise ConfigError(
            f"{config.path}: no environment chosen",
            f"pass -e ENV, set KEYRUN_ENV, or set default_env; environments: "
            f"{', '.join(config.envs) or 'none (add an [env.NAME] table)'}",
        )
    if name not in config.envs:
        raise ConfigError(f"{config.path}: unknown environment {name!r}",
                          _env_hint(name, config.env_names()))
    if is_base_only(config, name):
        children = [env.name for env in config.envs.values()
                    if env.values.get("extends") == name]
        raise ConfigError(f"{config.envs[name].where}: environment {name!r} is a base for "
                          f"{', '.join(children)}, with no sources of its own",
                          f"choose one of them: -e {children[0]}")
    return name


def _env_hint(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    listing = ", ".join(known) or "none (add an [env.NAME] table)"
    return f"did you mean {close[0]!r}? environments: {listing}" if close else (
        f"environments: {listing}")


def environment(config: Config, name: str) -> Environment:
    """The environment with ``extends`` applied and its keys merged."""
    if config.path is None:
        return _zero_config_environment(config, name)
    chain = _extends_chain(config, name)
    values: dict[str, Any] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for spec in reversed(chain):
        values.update(spec.values)
        for key, options in spec.keys.items():
            overrides.setdefault(key, {}).update(options)
    spec = config.envs[name]
    sources = values.get("sources")
    if not sources:
        raise ConfigError(f"{spec.where}: environment {name!r} has no sources",
                          'add sources = ["…"] naming [sources.*] tables, or extends = "…"')
    return Environment(
        name=name,
        sources=tuple(sources),
        keys=tuple(_merge_keys(config, overrides)),
        rotate_after=_seconds(values.get("rotate_after")),
        pass_env=tuple(values.get("pass_env", ())),
        allow_reserved=tuple(values.get("allow_reserved", ())),
        timeout=_seconds(values.get("timeout")) or DEFAULT_TIMEOUT,
        description=values.get("description"),
        mask=bool(values.get("mask", False)),
    )


def is_base_only(config: Config, name: str) -> bool:
    """An environment without sources anywhere up its extends chain that others extend:
    a base holding shared settings (``rotate_after``, keys), not one to run in."""
    return name in config.bases


def _seconds(value: str | None) -> float | None:
    return parse_duration(value) if value else None


def _extends_chain(config: Config, name: str) -> list[EnvSpec]:
    """The environment and its ancestors, nearest first (parse_config refused cycles)."""
    chain: list[EnvSpec] = []
    current: str | None = name
    while current is not None:
        spec = config.envs[current]
        chain.append(spec)
        current = spec.values.get("extends")
    return chain


def _merge_keys(config: Config, overrides: Mapping[str, Mapping[str, Any]]) -> list[KeySpec]:
    merged: dict[str, KeySpec] = dict(config.keys)
    for name in config.example_keys:
        merged.setdefault(name, KeySpec(name=name))
    for name, options in overrides.items():
        base = merged.get(name, KeySpec(name=name))
        fields = {**_spec_fields(_asdict(base)), **_spec_fields(options)}
        merged[name] = KeySpec(name=name, **{k: v for k, v in fields.items() if k != "name"})
    return list(merged.values())


def _asdict(spec: KeySpec) -> dict[str, Any]:
    return {
        "backend": spec.backend, "field": spec.field, "version": spec.version,
        "optional": spec.optional, "description": spec.description, "source": spec.source,
        "delivery": spec.delivery,
    }


# Zero-config mode: no keyrun.toml anywhere up the tree.

def zero_config(cwd: Path) -> Config:
    return Config(
        path=None,
        root=cwd,
        project=cwd.name or "project",
        default_env=None,
        keys={},
        sources={},
        envs={},
        example_keys=tuple(read_example_keys(cwd)),
    )


_NOT_ENVS = {"example", "sample", "template", "dist", "defaults", "bak", "backup", "old",
             "orig", "save", "swp", "tmp", "local"}


def zero_config_envs(root: Path) -> list[str]:
    names = {
        path.name[len(".env."):]
        for path in root.glob(".env.*")
        if path.is_file() and path.name[len(".env."):] not in _NOT_ENVS
        and "." not in path.name[len(".env."):]  # .env.production.local, .env.dev.bak
    }
    return sorted(names | {DEFAULT_ZERO_CONFIG_ENV})


def key_location(config: Config, key: str, env: str | None = None) -> str:
    """Where a key is declared, as ``file:line: [table] KEY`` for error messages: the
    environment's own ``[env.ENV.keys]``, else ``[keys]``, else ``.env.example``."""
    if config.path is not None:
        try:
            where = _Locator(str(config.path), config.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return config.label
        for table in ((("env", env, "keys"),) if env else ()) + (("keys",),):
            if where.line(table, key) is not None:
                return where(table, key)
    if key in config.example_keys:
        return str(config.root / EXAMPLE_NAME)
    return config.label


def _zero_config_env(config: Config, name: str | None) -> str:
    """Without keyrun.toml an environment is a ``.env.<env>`` file; only the default one
    may rest on ``.env`` alone, so a mistyped ``-e prodution`` fails instead of quietly
    running with the development values."""
    if name is None or name == DEFAULT_ZERO_CONFIG_ENV:
        return DEFAULT_ZERO_CONFIG_ENV
    known = zero_config_envs(config.root)
    if name in known:
        return name
    why = (f"{EXAMPLE_NAME} holds placeholders, not an environment" if name in _NOT_ENVS
           else f"there is no keyrun.toml and no .env.{name} in {config.root}")
    raise ConfigError(f"unknown environment {name!r}: {why}", _env_hint(name, known))


def zero_config_sources(root: Path, env: str) -> dict[str, SourceSpec]:
    """``.env.<env>`` then ``.env``, those that exist."""
    found: dict[str, SourceSpec] = {}
    for name in (f".env.{env}", ".env"):
        if (root / name).is_file():
            found[name] = SourceSpec(name, "dotenv", {"path": name}, f"{root / name}")
    return found


def _zero_config_environment(config: Config, name: str) -> Environment:
    sources = zero_config_sources(config.root, name)
    return Environment(
        name=name,
        sources=tuple(sources),
        keys=tuple(KeySpec(name=key) for key in config.example_keys),
    )


def source_specs(config: Config, env: str) -> Mapping[str, SourceSpec]:
    return config.sources if config.path is not None else zero_config_sources(config.root, env)


def read_example_keys(root: Path) -> list[str]:
    """The names declared in ``.env.example`` (their values are placeholders, never used)."""
    return list(read_example(root).names)


class Example(NamedTuple):
    """What ``.env.example`` declares: its names (each with its line), and the lines that
    are not a name although they have no ``=`` (``stray``)."""

    names: dict[str, int]
    stray: tuple[int, ...] = ()


def read_example(root: Path) -> Example:
    """The names of ``.env.example``. A line without ``=`` is a name only in a file of such
    lines, and only when it does not look like a credential: beside ``NAME=`` lines it is a
    value that lost its name (a key pasted on the line after ``NAME=``), which must become
    neither a key's name nor a message."""
    path = root / EXAMPLE_NAME
    read = read_trusted(path, EXAMPLE_NAME)
    if read is None:
        return Example({})
    try:
        text = read[0].decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("is not valid UTF-8 text", path=str(path)) from None
    from keyrun.dotenvfile import parse_dotenv
    from keyrun.environ import looks_secret

    entries = parse_dotenv(text, str(path), names_only=True)
    assigned = any(entry.value is not None for entry in entries)
    names: dict[str, int] = {}
    stray: list[int] = []
    for entry in entries:
        if entry.value is None and (assigned or looks_secret("", entry.key)):
            stray.append(entry.line)
        else:
            names.setdefault(entry.key, entry.line)
    return Example(names, tuple(stray))


# -- [scan] ------------------------------------------------------------------------------------

SCAN_OPTIONS = ("rules", "disable", "skip", "accepted", "baseline")
RULE_OPTIONS = ("id", "description", "regex", "keywords", "entropy", "allow", "mixed_case",
                "generic", "fallback", "key_file", "boundary", "keyword_first", "check", "near",
                "examples", "counterexamples")
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


def _parse_scan(raw: Mapping[str, Any], where: _Locator, root: Path) -> ScanSpec:
    if not raw:
        return ScanSpec()
    here = ("scan",)
    _unknown(raw, SCAN_OPTIONS, where, here)
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise ConfigError(f"{where(here, 'rules')}: must be a list of tables, not "
                          f"{_kind(rules)}", "write each rule as a [[scan.rules]] table")
    baseline = _string(raw, "baseline", where, here)
    return ScanSpec(
        rules=scan_rule_specs(rules, where, ("scan", "rules")),
        disable=_names(raw, "disable", where, here) or (),
        skip=_names(raw, "skip", where, here) or (),
        accepted=_names(raw, "accepted", where, here) or (),
        baseline=root / baseline if baseline else None,
        where=where(here),
    )


def scan_rule_specs(raw: list[Any], where: _Locator, array: tuple[str, ...], *,
                    check_regexes: bool = True) -> tuple[ScanRuleSpec, ...]:
    """The rules of an array of tables (``[[scan.rules]]``, or ``[[rules]]`` in the package's
    own rules file), each checked: known options of the right types, regexes that compile
    (unless ``check_regexes`` is false: the package's own, which its tests compile)."""
    specs: list[ScanRuleSpec] = []
    wanted = f"[[{'.'.join(array)}]]"
    headers = [number for number, text in enumerate(where.lines, start=1)
               if text.startswith("[[") and text.replace(" ", "").startswith(wanted)]
    for index, table in enumerate(raw):
        at = _ItemLocator(where, array, index, headers[index] if index < len(headers) else None)
        if not isinstance(table, dict):
            raise ConfigError(f"{at(())}: must be a table, not {_kind(table)}",
                              f"write each rule as a [[{_dotted(array)}]] table")
        spec = _scan_rule(table, at, check_regexes)
        if any(seen.id == spec.id for seen in specs):
            raise ConfigError(f"{spec.where}: a second rule with id {spec.id!r}",
                              "give each rule its own id")
        specs.append(spec)
    return tuple(specs)


def _scan_rule(table: Mapping[str, Any], at: _Locator, check_regexes: bool) -> ScanRuleSpec:
    _unknown(table, RULE_OPTIONS, at, ())
    rule_id = _string(table, "id", at, ())
    regex = _string(table, "regex", at, ())
    if not rule_id or not _RULE_ID.match(rule_id):
        raise ConfigError(f"{at((), 'id')}: a rule needs an id of lower-case letters, digits "
                          "and dashes", 'write it as id = "acme-api-token"')
    if not regex:
        raise ConfigError(f"{at((), 'regex')}: rule {rule_id!r} needs a regex",
                          'write it as regex = "acme_[A-Za-z0-9]{32}"')
    allow = _names(table, "allow", at, ()) or ()
    for option, pattern in [("regex", regex), *(("allow", item) for item in allow)]:
        if check_regexes:
            _compiles(pattern, at((), option))
    return ScanRuleSpec(
        id=rule_id, regex=regex, where=at(()),
        description=_string(table, "description", at, ()) or rule_id,
        keywords=_names(table, "keywords", at, ()) or (),
        entropy=_bits(table, at), allow=allow,
        mixed_case=_bool(table, "mixed_case", at, ()),
        generic=_bool(table, "generic", at, ()),
        fallback=_bool(table, "fallback", at, ()),
        key_file=_bool(table, "key_file", at, ()),
        boundary=_bool({"boundary": True, **table}, "boundary", at, ()),
        keyword_first=_bool(table, "keyword_first", at, ()),
        check=_string(table, "check", at, ()), near=_string(table, "near", at, ()),
        examples=_names(table, "examples", at, ()) or (),
        counterexamples=_names(table, "counterexamples", at, ()) or ())


def _bits(table: Mapping[str, Any], at: _Locator) -> float:
    value = table.get("entropy", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 8:
        raise ConfigError(f"{at((), 'entropy')}: must be a number of bits per character from "
                          "0 to 8", "write it as entropy = 3.5")
    return float(value)


def _compiles(pattern: str, where: str) -> None:
    try:
        compiled = re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise ConfigError(f"{where}: not a valid regular expression ({exc})",
                          "see https://docs.python.org/3/library/re.html for the syntax"
                          ) from None
    if compiled.match(b"") is not None:
        raise ConfigError(f"{where}: matches the empty string, so it would match everywhere",
                          "make it require at least one character")


class _ItemLocator(_Locator):
    """Points errors at one table of an array of tables (``[[scan.rules]]``): its header,
    or the line of one of its keys."""

    def __init__(self, parent: _Locator, array: tuple[str, ...], index: int,
                 header: int | None) -> None:
        super().__init__(parent.path, "")
        self.lines = parent.lines
        self.parent = parent
        self.array = array
        self.index = index
        self.header = header  # the line of the table's [[…]] header; None: an inline array

    def __call__(self, table: tuple[str, ...], key: str | None = None) -> str:
        subject = f"[[{_dotted(self.array)}]] #{self.index + 1}"
        subject += f" {key}" if key is not None else ""
        if self.header is None:
            return f"{self.parent(self.array[:-1], self.array[-1])} {subject}"
        line = self._key_line(self.header, key) if key is not None else self.header
        return f"{self.path}:{line}: {subject}"

    def _key_line(self, header: int, key: str) -> int:
        for number in range(header + 1, len(self.lines) + 1):
            text = self.lines[number - 1]
            if text.lstrip().startswith("["):
                break
            if _assigns(text, key):
                return number
        return header


def parse_rules_file(path: Path, text: str, *, check_regexes: bool = True
                     ) -> tuple[ScanRuleSpec, ...]:
    """The ``[[rules]]`` of a rules file (the package's own), checked as keyrun.toml's
    ``[[scan.rules]]`` are (the regexes only with ``check_regexes``)."""
    where = _Locator(str(path), text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=str(path)) from None
    _unknown(data, ("rules",), where, ())
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise ConfigError(f"{where((), 'rules')}: must be a list of tables",
                          "write each rule as a [[rules]] table")
    return scan_rule_specs(rules, where, ("rules",), check_regexes=check_regexes)
