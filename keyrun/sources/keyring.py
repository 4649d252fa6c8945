"""The ``keyring`` source: the operating system's keychain, through the keyring library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Option, Outcome, Problem, Request, Source
from keyrun.sources._values import pick_field
from keyrun.template import Template

# Backends that do not keep secrets safe: keyrings.alt's files, and the stand-ins keyring
# uses when no real keychain is reachable.
_UNSAFE_BACKENDS = {
    "keyrings.alt.file.PlaintextKeyring": "stores secrets in a plaintext file",
    "keyrings.alt.file.EncryptedKeyring": "stores secrets in a file (not the OS keychain)",
    "keyring.backends.null.Keyring": "is the null backend, which stores nothing",
    "keyring.backends.fail.Keyring": "means no keychain was found",
}
_BACKEND_HINT = (
    "keyrun needs the OS keychain: macOS Keychain, Windows Credential Locker, or on Linux a "
    "Secret Service daemon (gnome-keyring or KWallet) on a D-Bus session; "
    "`python -m keyring diagnose` shows what keyring sees"
)


class KeyringSource(Source):
    """The OS keychain (macOS Keychain, Windows Credential Locker, Secret Service on Linux).

    Each key is one item: ``service`` (default ``keyrun/{project}/{env}``) and
    ``username`` (default the key's name). Plaintext and null backends are refused.
    The keychain does not record when an item changed, so ages are unknown.

    .. code-block:: toml

        [sources.keychain]
        type = "keyring"
        service = "keyrun/{project}/{env}"
    """

    type_name = "keyring"
    summary = "the OS keychain via the keyring library (writable)"
    remote = False
    writable = True
    options = (
        Option("service", "the item's service name", default="keyrun/{project}/{env}",
               template=True),
        Option("username", "the item's user name", default="{key}", template=True),
    )

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        service = Template(settings["service"], where=where)
        username = Template(settings["username"], where=where)
        if not (service.has_key or username.has_key):
            raise ConfigError(f"{where}: service or username must contain {{key}}",
                              "each key is its own keychain item; the default username is {key}")

    @classmethod
    def unusable_reason(cls) -> str | None:
        """The keyring library imports fine with no keychain behind it: its fail and null
        backends, or a plaintext file, would make every keyring source fail or be unsafe."""
        import keyring

        backend = keyring.get_keyring()
        problem = _unsafe(backend)
        if problem is None:
            return None
        return (f"the keyring backend {_name(backend)} {problem} (`python -m keyring "
                "diagnose` shows what keyring sees; a Secret Service daemon, the macOS "
                "Keychain or the Windows Credential Locker is needed)")

    def _item(self, request: Request) -> tuple[str, str]:
        return self.render("service", request.name), self.render("username", request.name)

    def locate(self, request: Request) -> str:
        service, username = self._item(request)
        return f"{service} / {username}"

    def _keyring(self) -> ModuleType:
        import keyring

        backend = keyring.get_keyring()
        problem = _unsafe(backend)
        if problem:
            raise SourceError(self.name, f"the keyring backend {_name(backend)} {problem}",
                              _BACKEND_HINT)
        return keyring

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        keyring = self._keyring()
        results: dict[str, Outcome] = {}
        for request in requests:
            service, username = self._item(request)
            try:
                value = keyring.get_password(service, username)
            except keyring.errors.KeyringError as exc:
                raise self._failure(exc) from None
            if value is None:
                results[request.key] = Problem.missing(f"no item {service} / {username}")
                continue
            if request.field is not None:
                picked = pick_field(value, request.field, self.locate(request))
                if isinstance(picked, Problem):
                    results[request.key] = picked
                    continue
                value = picked
            results[request.key] = Item(Secret(value))
        return results

    def check(self, deadline: Deadline) -> Health:
        keyring = self._keyring()
        try:
            keyring.get_password(self.render("service", "keyrun-check"), "keyrun-check")
        except keyring.errors.KeyringError as exc:
            raise self._failure(exc) from None
        return Health(f"backend {_name(keyring.get_keyring())}")

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        keyring = self._keyring()
        service, username = self._item(request)
        try:
            keyring.set_password(service, username, value.reveal())
        except keyring.errors.KeyringError as exc:
            raise self._failure(exc) from None
        return f"{service} / {username}"

    def _failure(self, exc: Exception) -> SourceError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return SourceError(self.name, f"the keychain refused: {reason}",
                           "unlock the keychain (on Linux: the login keyring of your "
                           "Secret Service daemon) and try again")


def _name(backend: object) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _unsafe(backend: object) -> str | None:
    backends = getattr(backend, "backends", None)
    if backends is not None:  # the chainer reads from every backend it chains
        if not backends:
            return "has no usable backend"
        problems = [problem for problem in map(_unsafe, backends) if problem]
        return problems[0] if problems else None
    return _UNSAFE_BACKENDS.get(_name(backend))
