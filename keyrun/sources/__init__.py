"""The source protocol: what every backend implements.

A source is one configured backend (a ``.env`` file, a keyring service, a Vault mount,
an AWS account…). The core hands it a batch of :class:`Request` and gets back, for
each key, an :class:`Item` (the value and what the backend knows about it) or a
:class:`Problem`. Sources declare their own options; the core never knows a cloud's
option names.

Third-party sources register a :class:`Source` subclass under the entry-point group
``keyrun.sources``; ``keyrun.testing`` holds a contract suite they can reuse.
"""

# Annotations are evaluated (no `from __future__ import annotations`): under it each
# NamedTuple field's string is compiled at every start (benchmarks/RESULTS.md, startup).

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from keyrun.errors import ConfigError, MissingSdkError, SourceError
from keyrun.secret import Secret
from keyrun.template import Template

if TYPE_CHECKING:
    from keyrun.trust import Endpoint


class Option(NamedTuple):
    """One option a source accepts in its ``[sources.NAME]`` table."""

    name: str
    help: str
    kind: type = str
    default: object = None
    required: bool = False
    template: bool = False
    choices: tuple[str, ...] = ()
    example: str | None = None


class Context(NamedTuple):
    """What a source may know about the run it serves.

    ``warn`` prints a warning the way keyrun's own are printed (honouring ``-q`` and
    masking); sources call it instead of writing to stderr. ``always`` prints what even
    ``-q`` must not hide (the only trace of something left out); ``detail`` what ``-v``
    shows. ``config`` is the keyrun.toml the source was configured in (None: none)."""

    project: str
    env: str
    root: Path
    environ: Mapping[str, str]
    interactive: bool = False
    warn: Callable[[str], None] | None = None
    always: Callable[[str], None] | None = None
    detail: Callable[[str], None] | None = None
    config: Path | None = None


class Request(NamedTuple):
    """One key asked of a source.

    ``key`` is the environment variable; ``name`` is its name in the backend (after the
    key's ``name`` option and the source's own mapping, before location templates).
    """

    key: str
    name: str
    field: str | None = None
    version: str | None = None


class Lease(NamedTuple):
    """A credential made on demand that must be revoked when the command ends."""

    id: str
    ttl: float | None = None
    renewable: bool = False


class Item(NamedTuple):
    """A value and what the backend knows about it."""

    value: Secret
    version: str | None = None
    updated: datetime | None = None
    expires: datetime | None = None
    lease: Lease | None = None


class Meta(NamedTuple):
    """Value-free facts about one key, for ``doctor`` and ``list``; ``None`` is unknown."""

    exists: bool | None = None
    version: str | None = None
    updated: datetime | None = None
    expires: datetime | None = None
    next_rotation: datetime | None = None
    deleted: datetime | None = None
    note: str | None = None


ProblemKind = Literal["missing", "denied", "error"]


class Problem(NamedTuple):
    """Why one key could not be read from one source (never holds a value). The message
    is about the item: the core shows the key and the source's name beside it."""

    kind: ProblemKind
    message: str

    @classmethod
    def missing(cls, message: str = "not found") -> "Problem":
        return cls("missing", message)


Outcome = Item | Problem


class Deadline:
    """One total deadline shared by every source of a run."""

    __slots__ = ("expires_at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at


class Health(NamedTuple):
    """What ``check`` learned about a reachable source (never a credential)."""

    detail: str
    warnings: tuple[str, ...] = ()


class Source(ABC):
    """Base class of every backend.

    Subclasses set ``type_name``, ``summary`` and ``options``, and implement
    :meth:`fetch`. The optional hooks have safe defaults: :meth:`describe` knows
    nothing, :meth:`write` refuses, :meth:`check` trusts :meth:`fetch`.
    """

    type_name: ClassVar[str]
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    extra: ClassVar[str | None] = None  # the pip extra holding the SDK
    remote: ClassVar[bool] = True
    has_versions: ClassVar[bool] = False
    writable: ClassVar[bool] = False
    records_age: ClassVar[bool] = False  # whether Item.updated / Meta.updated can be known

    def __init__(self, name: str, settings: Mapping[str, Any], context: Context) -> None:
        self.name = name
        self.settings = settings
        self.context = context

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        """Checks beyond option types (which the core does); raise ConfigError."""

    @classmethod
    def unusable_reason(cls) -> str | None:
        """Why this type cannot work on this machine although its SDK is installed (no
        keychain behind the keyring library, …), with what would fix it; None when it
        can. Called by ``keyrun sources`` only after the SDK was found importable."""
        return None

    def template(self, option: str) -> Template:
        return Template(str(self.settings[option]), where=f"[sources.{self.name}] {option}")

    def render(self, option: str, key: str | None = None) -> str:
        return self.template(option).render(self.context.project, self.context.env, key)

    def backend_name(self, name: str) -> str:
        """Map a key's name to what the backend allows (e.g. ``_`` → ``-``)."""
        return name

    def locate(self, request: Request) -> str:
        """Where the key lives, for humans: ``.env``, ``support-bot/dev#OPENAI_API_KEY``…"""
        return request.name

    def identity(self, request: Request) -> str:
        """What the backend treats as the same item: two keys with one identity collide
        (``doctor``'s ``names`` check). ``locate`` unless the backend folds case."""
        return self.locate(request)

    @abstractmethod
    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> Mapping[str, Outcome]:
        """Read every requested key at once, keyed by ``Request.key``.

        Return an :class:`Item` or a :class:`Problem` per key (a key left out is
        missing). Raise :class:`~keyrun.errors.SourceError` when the whole source
        fails. Finish before ``deadline``.
        """

    def names(self, deadline: Deadline) -> list[str] | None:
        """Every key name the source holds, when it can list them (zero-config mode)."""
        return None

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> Mapping[str, Meta]:
        """Value-free metadata (age, version, expiry) for ``doctor`` and ``list``."""
        return {}

    def check(self, deadline: Deadline) -> Health:
        """Reachable and authenticated? Raise SourceError if not."""
        return Health("reachable")

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        """Store a new value; return where it went. Only when ``writable``."""
        raise self.read_only(request)

    def read_only(self, request: Request) -> SourceError:
        """Why ``keyrun set`` cannot write ``request`` here, and what to do instead."""
        return SourceError(self.name, f"source type {self.type_name!r} is read-only",
                           "choose a writable source with --source NAME")

    def endpoints(self) -> "Sequence[Endpoint]":
        """Every endpoint the source sends its credentials to, each passed through
        :meth:`keyrun.sources.runtime.Runtime.endpoint` (which raises
        :class:`~keyrun.trust.TrustError` for a host the user did not choose). The core asks
        before any source makes a request, so that a refusal stops the run before anything
        was sent anywhere."""
        return ()

    def local_files(self) -> tuple[Path, ...]:
        """Files on this machine that hold the source's secrets: ``doctor`` checks that git
        ignores them and that only their owner can read them."""
        return ()

    def token_env_vars(self) -> tuple[str, ...]:
        """Variables holding the credentials this source authenticates with; they are
        removed from the command's environment unless listed in ``pass_env``."""
        return ()

    def consumed_env_vars(self) -> tuple[str, ...]:
        """Variables of keyrun's own environment this source read keys from under another
        name (after :meth:`fetch`); removed from the command's environment unless listed in
        ``pass_env``, so the command gets each value once, under its key's name."""
        return ()

    def renew_leases(self) -> float | None:
        """Renew what was leased; return seconds until the next renewal, or None."""
        return None

    def release(self) -> list[str]:
        """Revoke what was leased; return warnings (the core adds the source's name). Called
        when the command ends."""
        return []

    def warn(self, message: str) -> None:
        """A warning about this source, through keyrun's reporter (``-q``, masking) when the
        core gave one; its name is added here, once."""
        from keyrun.reporter import default

        (self.context.warn or default().warn)(f"{self.name}: {message}")

    def detail(self, message: str) -> None:
        """What ``-v`` shows about this source (the hosts it contacts), named like ``warn``."""
        if self.context.detail is not None:
            self.context.detail(f"{self.name}: {message}")

    def close(self) -> None:
        """Free clients and connections."""


def import_sdk(module: str, source: Source) -> ModuleType:
    """Import an optional SDK, or fail with the exact pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_sdk(source, module) from None


def missing_sdk(source: Source, module: str) -> MissingSdkError:
    """The error of a source whose SDK ``module`` is not installed."""
    from keyrun.sources.installed import install_hint

    extra = source.extra or source.type_name
    return MissingSdkError(source.name, source.type_name, module,
                           install_hint(source.type_name, extra, module))


def check_settings(
    cls: type[Source], source_name: str, settings: Mapping[str, Any], where: str,
    option_where: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate a ``[sources.NAME]`` table against the options the source declares.
    ``option_where`` gives each option's own place (file, line) for its errors."""
    declared = {option.name: option for option in cls.options}

    def at(name: str) -> str:
        return (option_where or {}).get(name, where)

    for name in settings:
        if name not in declared:
            valid = ", ".join(["type", *declared]) or "type"
            raise ConfigError(
                f"{at(name)}: unknown option {name!r} for a {cls.type_name} source",
                f"valid options: {valid}",
            )
    result: dict[str, Any] = {}
    for option in cls.options:
        if option.name not in settings:
            if option.required:
                raise ConfigError(
                    f"{where}: option {option.name!r} is required for a {cls.type_name} source",
                    f"{option.name}: {option.help}",
                )
            result[option.name] = option.default
            continue
        value = settings[option.name]
        if not isinstance(value, option.kind) or (option.kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"{at(option.name)}: option {option.name!r} must be a {_kind_name(option.kind)}, "
                f"not {type(value).__name__}",
                f"{option.name}: {option.help}",
            )
        if option.choices and value not in option.choices:
            raise ConfigError(
                f"{at(option.name)}: option {option.name!r} is {value!r}",
                f"valid values: {', '.join(option.choices)}",
            )
        if option.template:
            Template(str(value), where=at(option.name))
        result[option.name] = value
    cls.validate(result, where)
    return result


def _kind_name(kind: type) -> str:
    return {str: "string", bool: "boolean", int: "integer", list: "list", dict: "table"}.get(
        kind, kind.__name__
    )
