"""The ``keyring`` source: the operating system's keychain, through the keyring library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
# keyrings.alt's other file and cloud-document backends: files too, not the OS keychain.
_UNSAFE_MODULES = ("keyrings.alt.file", "keyrings.alt.pyfs", "keyrings.alt.Google")
_BACKEND_HINT = (
    "keyrun needs the OS keychain: macOS Keychain, Windows Credential Locker, or on Linux a "
    "Secret Service daemon (gnome-keyring or KWallet) on a D-Bus session; "
    "`python -m keyring diagnose` shows what keyring sees"
)


class Keychain:
    """The secure part of keyring's backend: the backend itself, or, when keyring chains
    several (a Secret Service next to keyrings.alt's plaintext file), only its secure
    members, asked in the chain's order. The chain itself would read the plaintext file
    whenever the keychain lacks an item, and ``keyring.get_password`` goes through it."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        chained = getattr(backend, "backends", None)
        self.members: list[Any] = list(chained) if chained is not None else [backend]
        self.secure = [member for member in self.members if _unsafe(member) is None]

    @property
    def refusal(self) -> str | None:
        """Why keyrun will not use this backend at all; None when it has a secure member."""
        if self.secure:
            return None
        if len(self.members) == 1 and self.members[0] is self.backend:
            return f"the keyring backend {_name(self.backend)} {_unsafe(self.backend)}"
        if not self.members:
            return f"the keyring backend {_name(self.backend)} has no usable backend"
        return (f"the keyring backend {_name(self.backend)} chains only "
                + ", ".join(f"{_name(m)} (which {_unsafe(m)})" for m in self.members))

    @property
    def label(self) -> str:
        return " + ".join(_name(member) for member in self.secure)

    def get_password(self, service: str, username: str) -> str | None:
        for member in self.secure:
            value: str | None = member.get_password(service, username)
            if value is not None:
                return value
        return None

    def set_password(self, service: str, username: str, value: str) -> None:
        for member in self.secure:
            try:
                member.set_password(service, username, value)
                return
            except NotImplementedError:  # a read-only member: the chain tries the next
                continue
        raise NotImplementedError(f"no member of {_name(self.backend)} can store items")


def keychain() -> Keychain:
    """The OS keychain as keyring finds it, without its unsafe members."""
    import keyring

    return Keychain(keyring.get_keyring())


class KeyringSource(Source):
    """The OS keychain (macOS Keychain, Windows Credential Locker, Secret Service on Linux).

    Each key is one item: ``service`` (default ``keyrun/{project}/{env}``) and
    ``username`` (default the key's name). Plaintext and null backends are refused; where
    keyring chains several backends (a Secret Service next to keyrings.alt's file), only the
    secure members are used, and the plaintext file is never read or written.
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
        refusal = keychain().refusal
        if refusal is None:
            return None
        return (f"{refusal} (`python -m keyring diagnose` shows what keyring sees; a Secret "
                "Service daemon, the macOS Keychain or the Windows Credential Locker is needed)")

    def _item(self, request: Request) -> tuple[str, str]:
        return self.render("service", request.name), self.render("username", request.name)

    def locate(self, request: Request) -> str:
        service, username = self._item(request)
        return f"{service} / {username}"

    def _keychain(self) -> Keychain:
        found = keychain()
        if found.refusal is not None:
            raise SourceError(self.name, found.refusal, _BACKEND_HINT)
        return found

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        import keyring.errors

        found = self._keychain()
        results: dict[str, Outcome] = {}
        for request in requests:
            service, username = self._item(request)
            try:
                value = found.get_password(service, username)
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
        import keyring.errors

        found = self._keychain()
        try:
            found.get_password(self.render("service", "keyrun-check"), "keyrun-check")
        except keyring.errors.KeyringError as exc:
            raise self._failure(exc) from None
        return Health(f"backend {found.label}")

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        import keyring.errors

        found = self._keychain()
        service, username = self._item(request)
        try:
            found.set_password(service, username, value.reveal())
        except (keyring.errors.KeyringError, NotImplementedError) as exc:
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
    """Why one backend (not a chain) is no keychain; None when it is one."""
    name = _name(backend)
    if name in _UNSAFE_BACKENDS:
        return _UNSAFE_BACKENDS[name]
    if type(backend).__module__.startswith(_UNSAFE_MODULES):
        return "stores secrets outside the OS keychain"
    return None
