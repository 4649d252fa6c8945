"""Which hosts keyrun may send the user's credentials to (SPEC §5 "Trust").

A checkout's keyrun.toml is not trusted because keyrun found it: a ``url``, ``api_host``,
``endpoint`` or ``vault_url`` in it could otherwise carry the Vault token, the Doppler token
or a cloud access token anywhere. Every remote source passes each endpoint through
:meth:`keyrun.sources.runtime.Runtime.endpoint`, which calls :func:`check` before the first
request; a host is allowed when it is

- loopback (``127.0.0.0/8``, ``::1``, ``localhost``);
- one of the service's own public endpoints (``api.doppler.com``, ``*.googleapis.com``,
  ``*.vault.azure.net`` …), which each source declares;
- named by the user's own environment (``VAULT_ADDR``, ``BAO_ADDR``, ``DOPPLER_API_HOST``);
- trusted with ``keyrun trust HOST`` (``$XDG_CONFIG_HOME/keyrun/trust.toml``) or listed in
  ``$KEYRUN_TRUSTED_HOSTS``.

Plain ``http://`` carrying a credential is refused off loopback whoever chose the host.
Trust is per host: its ports, schemes and paths alike.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from keyrun.errors import ConfigError, SourceError, UsageError

if TYPE_CHECKING:
    from keyrun.config import Config
    from keyrun.sources import Source

TRUSTED_VARIABLE = "KEYRUN_TRUSTED_HOSTS"
# Variables in which the user names a host of their own; a host named there needs no trust.
HOST_VARIABLES = ("VAULT_ADDR", "BAO_ADDR", "DOPPLER_API_HOST")
FILE_NAME = "trust.toml"
_NETLOC = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]@:/\\\s]+)(?::(?P<port>\d{1,5}))?$")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class Endpoint(NamedTuple):
    """Where a source sends its requests, and with them its credentials."""

    url: str  # as the client is given it: https://host[:port], or HOST[:PORT] for gRPC
    origin: str  # who chose it: an option ("[sources.NAME] url"), a variable, or "default"

    @property
    def host(self) -> str:
        """``host[:port]``, as messages name it."""
        return urlsplit(self.url).netloc if "://" in self.url else self.url

    @property
    def scheme(self) -> str:
        """``https``, ``http``, or ``""`` for a gRPC ``HOST:PORT`` (always TLS)."""
        return self.url.split("://", 1)[0].lower() if "://" in self.url else ""


class TrustError(SourceError):
    """A source would send a credential to a host the user did not choose, or over plain
    http off loopback: refused before any request (exit 125). ``trustable``: whether
    ``keyrun trust host`` would allow it."""

    def __init__(self, source: str, message: str, hint: str, host: str, *,
                 trustable: bool = False) -> None:
        super().__init__(source, message, hint)
        self.host = host
        self.trustable = trustable


def normalize_host(text: str) -> str:
    """The host of ``text`` — a host name, an IP address, ``HOST:PORT`` or a URL — as trust
    compares it (lower case, no trailing dot, an IP address in its canonical form); raises
    ValueError when ``text`` names no host unambiguously."""
    text = text.strip()
    try:
        netloc = urlsplit(text).netloc if "://" in text else text
    except ValueError:  # "Invalid IPv6 URL"
        netloc = ""
    if "://" not in text and netloc.count(":") > 1 and not netloc.startswith("["):
        netloc = f"[{netloc}]"  # a bare IPv6 address
    match = _NETLOC.match(netloc)
    if match is None:
        raise ValueError(f"{text!r} is not a host name, an IP address or an http(s) URL")
    host = match.group("host").strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host.isascii():
        host = _ascii_host(text, host)
    if not _HOSTNAME.match(host):
        raise ValueError(f"{text!r} is not a valid host name")
    return host


def _ascii_host(text: str, host: str) -> str:
    """A host name written with other than ASCII, as requests and httpx send it: UTS #46
    (IDNA 2008), through the idna package they depend on. Python's own codec is IDNA 2003,
    which maps some names to another domain (``straße`` to ``strasse``, where the clients
    ask DNS for ``xn--strae-oqa``), so trust would judge one host and the token go to
    another."""
    try:
        import idna
    except ImportError:
        raise ValueError(f"{text!r}: write the host name in its ASCII form (xn--…)") from None
    try:
        return str(idna.encode(host, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError):
        raise ValueError(f"{text!r} is not a valid host name") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def matches(host: str, pattern: str) -> bool:
    """``pattern`` is a host, or ``*.domain`` for every host under ``domain``."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def check(endpoint: Endpoint, source: Source, *, credential: str,
          public: Iterable[str] = ()) -> str:
    """Why ``source`` may send ``credential`` ("your Vault token") to ``endpoint`` — a few
    words for ``-v`` — or a :class:`TrustError` naming the config file, the source, the
    host and the ``keyrun trust`` command that would allow it."""
    try:
        host = normalize_host(endpoint.url)
    except ValueError:
        raise TrustError(source.name, f"cannot tell which host {endpoint.url!r} "
                         f"({_where(endpoint, source)}) names, so {credential} is not sent "
                         "there", "write it as https://HOST[:PORT]", endpoint.url) from None
    if is_loopback(host):
        return "loopback"
    if endpoint.scheme not in ("https", ""):
        secure = "https://" + endpoint.url.split("://", 1)[1]
        raise TrustError(
            source.name, f"refused to send {credential} to {host} over plain "
            f"{endpoint.scheme}: {_where(endpoint, source)} names {endpoint.url}, and anyone on "
            "the network between could read it",
            f"use {secure}; plain http is allowed only on loopback, trusted host or not", host)
    if any(matches(host, pattern) for pattern in public):
        return "the service's own endpoint"
    reason = trusted_by(host, source.context.environ)
    if reason is None:
        raise TrustError(
            source.name, f"refused to send {credential} to {host}: "
            f"{_where(endpoint, source)} names it, and you have not trusted that host",
            f"if you trust {host} with it, run: keyrun trust {host}", host, trustable=True)
    return reason


def trusted_by(host: str, environ: Mapping[str, str]) -> str | None:
    """Who trusted ``host`` (not loopback, not a public endpoint): a variable, trust.toml,
    or nobody (None)."""
    for variable in (*HOST_VARIABLES, TRUSTED_VARIABLE):
        if host in hosts_in(environ.get(variable, "")):
            return f"named by {variable}"
    if host in TrustFile.of(environ).hosts():
        return "trusted with keyrun trust"
    return None


def hosts_in(text: str) -> list[str]:
    """The hosts of a list separated by commas or white space; a word that names no host
    is skipped (it can match none)."""
    found = []
    for word in re.split(r"[,\s]+", text):
        try:
            found.append(normalize_host(word))
        except ValueError:
            continue
    return found


def _where(endpoint: Endpoint, source: Source) -> str:
    """Who named the endpoint: ``/path/keyrun.toml ([sources.vault] url)``, or a variable."""
    config = source.context.config
    if endpoint.origin.startswith("[") and config is not None:
        return f"{config} ({endpoint.origin})"
    return endpoint.origin


def refusals(config: Config, envs: Iterable[str], environ: Mapping[str, str], *,
             project: str | None = None) -> list[TrustError]:
    """What the sources of ``envs`` would be refused (``keyrun trust`` without a host), found
    without contacting anything: sources are made and asked for their endpoints only."""
    from keyrun.config import environment
    from keyrun.profile import make_sources
    from keyrun.sources import Context

    found = []
    for env in envs:
        context = Context(project or config.project, env, config.root, environ,
                          config=config.path)
        for source in make_sources(config, environment(config, env), context).values():
            try:
                source.endpoints()
            except TrustError as exc:
                found.append(exc)
    return found


# trust.toml


class TrustFile(NamedTuple):
    """``$XDG_CONFIG_HOME/keyrun/trust.toml``: the hosts the user trusted. Read only when it
    is theirs (:func:`keyrun.ownership.read_trusted`); written 0600 by replacing it, never
    through a symlink."""

    path: Path

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> TrustFile:
        base = environ.get("XDG_CONFIG_HOME", "")
        root = Path(base) if os.path.isabs(base) else Path(environ.get("HOME") or
                                                            Path.home()) / ".config"
        return cls(root / "keyrun" / FILE_NAME)

    def hosts(self) -> list[str]:
        from keyrun.ownership import read_trusted

        found = read_trusted(self.path, "the trust list", limit=1 << 20)
        if found is None:
            return []
        import tomllib

        try:
            data = tomllib.loads(found[0].decode("utf-8", errors="replace"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.path}: {exc}", "fix it, or remove it and trust the "
                              "hosts again with keyrun trust HOST") from None
        hosts = data.get("hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ConfigError(f"{self.path}: hosts must be a list of strings",
                              'e.g. hosts = ["vault.example.com"]')
        return list(dict.fromkeys(hosts_in(" ".join(hosts))))

    def add(self, hosts: Iterable[str]) -> list[str]:
        """Trust ``hosts`` (normalized); returns those that were not trusted yet."""
        current = self.hosts()
        added = [host for host in dict.fromkeys(hosts) if host not in current]
        if added:
            self._write([*current, *added])
        return added

    def remove(self, host: str) -> bool:
        current = self.hosts()
        if host not in current:
            return False
        self._write([h for h in current if h != host])
        return True

    def _write(self, hosts: list[str]) -> None:
        from keyrun.files import private_directory, replace_file

        if self.path.is_symlink():
            raise ConfigError(f"{self.path}: is a symlink; keyrun writes its trust list only "
                              "as a file of its own, never through a link",
                              f"replace the link with the file: rm {self.path}, then keyrun "
                              "trust HOST")
        private_directory(self.path.parent)
        lines = ["# Hosts keyrun may send your credentials to (keyrun trust HOST;",
                 "# keyrun trust --remove HOST). Loopback, the services' own endpoints and",
                 "# the hosts named by VAULT_ADDR or DOPPLER_API_HOST need no entry.",
                 "hosts = [", *(f'    "{host}",' for host in hosts), "]", ""]
        replace_file(self.path, "\n".join(lines).encode("utf-8"), 0o600)


def parse_hosts(words: Iterable[str]) -> list[str]:
    """Hosts typed on the command line, normalized; a usage error for one that is not."""
    hosts = []
    for word in words:
        try:
            hosts.append(normalize_host(word))
        except ValueError as exc:
            raise UsageError(str(exc), "e.g. keyrun trust vault.example.com") from None
    return hosts
