"""Reaching Vault / OpenBao for the ``vault`` source: the address's TLS settings, and hvac
clients whose every request is retried inside the run's deadline.

hvac reads ``VAULT_ADDR``, ``VAULT_TOKEN`` and ``~/.vault-token`` by itself but none of
``VAULT_NAMESPACE``, ``VAULT_SKIP_VERIFY``, ``VAULT_CACERT`` or token helpers, so keyrun
reads them all from the run's environment and hands hvac explicit values. OpenBao's
``BAO_*`` spellings are read where the ``VAULT_*`` one is unset.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from keyrun.errors import ConfigError, SourceError
from keyrun.ownership import read_trusted
from keyrun.secret import Secret
from keyrun.sources import Deadline
from keyrun.sources.runtime import RAISE_DEADLINE, Busy, Runtime, Verdict

DEFAULT_ADDR = "https://127.0.0.1:8200"  # the Vault CLI's default
_RETRIED = frozenset({412, 429, 500, 502, 503, 504})
_CONNECT_TIMEOUT = 5.0
_CONNECT_ATTEMPTS = 3
_SERVER_ERROR_ATTEMPTS = 4
_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool, as the CLI parses
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def env_value(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(variable, value)`` of ``VAULT_<name>``, else ``BAO_<name>``, when set and not empty."""
    for variable in (f"VAULT_{name}", f"BAO_{name}"):
        value = environ.get(variable)
        if value:
            return variable, value
    return None


# TLS


class Tls(NamedTuple):
    """What requests needs: ``verify`` (True, False, a CA file or directory) and a client cert."""

    verify: bool | str
    cert: tuple[str, str] | None
    skip_verify: bool
    skip_variable: str | None = None


def tls_settings(environ: Mapping[str, str], ca_cert: str | None, root: Path) -> Tls:
    """TLS from ``VAULT_CACERT``/``VAULT_CAPATH``/``VAULT_CLIENT_CERT``/``VAULT_CLIENT_KEY``/
    ``VAULT_SKIP_VERIFY`` (and the ``ca_cert`` option, which wins over ``VAULT_CACERT``)."""
    skip = env_value(environ, "SKIP_VERIFY")
    skipping = skip is not None and _parse_bool(*skip)
    verify: bool | str = True
    ca = str(root / ca_cert) if ca_cert else None
    if ca is not None:  # named by keyrun.toml: whoever may write it may read the traffic
        read_trusted(Path(ca), "the CA certificate ca_cert names")
    if ca is None:
        found = env_value(environ, "CACERT") or env_value(environ, "CAPATH")
        ca = _existing(*found) if found else None
    if ca is not None:
        verify = ca
    if skipping:
        verify = False
    return Tls(verify, _client_cert(environ), skipping, skip[0] if skip else None)


def _parse_bool(variable: str, text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{variable}={text!r} is not a boolean",
                      f"set {variable} to true or false (or 1 or 0), or unset it")


def _existing(variable: str, path: str) -> str:
    if not Path(path).exists():
        raise ConfigError(f"{variable} names {path}, which does not exist",
                          f"point {variable} at the PEM file (or directory) of the CA that "
                          "signed the Vault server's certificate")
    return path


def _client_cert(environ: Mapping[str, str]) -> tuple[str, str] | None:
    cert = env_value(environ, "CLIENT_CERT")
    key = env_value(environ, "CLIENT_KEY")
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        have, lacking = (cert[0], "VAULT_CLIENT_KEY") if cert else (key[0] if key else "",
                                                                      "VAULT_CLIENT_CERT")
        raise ConfigError(f"{have} is set but {lacking} is not",
                          "a TLS client certificate needs both VAULT_CLIENT_CERT and "
                          "VAULT_CLIENT_KEY")
    return _existing(*cert), _existing(*key)


# HTTP


class VaultHttpError(Exception):
    """An answer Vault gave that is about this request alone (4xx other than 429)."""

    def __init__(self, status: int, errors: list[str], body: Mapping[str, Any] | None) -> None:
        errors = [line for error in errors for line in _error_lines(error)]
        super().__init__(f"HTTP {status}: {'; '.join(errors) or 'no detail'}")
        self.status = status
        self.errors = errors
        self.body = body or {}

    @classmethod
    def of(cls, response: Any) -> VaultHttpError:
        decoded = _json(response)
        return cls(response.status_code, [str(e) for e in decoded.get("errors") or []], decoded)

    @property
    def detail(self) -> str:
        return "; ".join(self.errors) or f"HTTP {self.status}"


class VaultApi:
    """One Vault server: a requests session, and hvac clients on it (:meth:`client`).

    Every request is retried: 429 answers with backoff while the deadline allows, and 412,
    5xx and failed connections a few times within it; a sealed server, an unreachable one
    and a TLS failure each raise a SourceError of their own. Other errors raise
    :class:`VaultHttpError` for the caller to judge, key by key."""

    def __init__(self, runtime: Runtime, url: str, namespace: str | None, tls: Tls) -> None:
        import requests

        self.runtime = runtime
        self.source = runtime.source.name
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.tls = tls
        self.session = requests.Session()
        self.session.cert, self.session.verify = tls.cert, tls.verify
        # requests follows a redirect with X-Vault-Token still set (it drops only
        # Authorization): its target must be a host the user chose, as the url is
        self.session.hooks["response"].append(self._check_redirect)
        if tls.skip_verify:
            _quiet_insecure_warning()

    def client(self, token: Secret | None, deadline: Deadline) -> Any:
        """An ``hvac.Client`` for one token whose requests go through :meth:`call` within
        ``deadline``: its methods return decoded answers (``{}`` for 204) or raise."""
        import hvac

        return hvac.Client(self.url, token=token.reveal() if token is not None else "",
                           adapter=_adapter_type(), api=self, deadline=deadline)

    def _check_redirect(self, response: Any, **_: Any) -> Any:
        if response.is_redirect:
            from urllib.parse import urljoin

            target = urljoin(response.url, response.headers["location"])
            self.runtime.endpoint(target, f"a redirect from {self.url}")
        return response

    def call(self, method: str, path: str, deadline: Deadline,
             send: Callable[[tuple[float, float]], Any]) -> dict[str, Any]:
        """``send(timeout)``, through the source's runtime, until it gives an answer to keep,
        decoded."""

        def attempt(seconds: float) -> dict[str, Any]:
            response = send((min(_CONNECT_TIMEOUT, seconds), seconds))
            if response.status_code in (200, 204):
                return _json(response) if response.status_code == 200 else {}
            failure = VaultHttpError.of(response)
            if failure.status == 503 and any("sealed" in e.lower() for e in failure.errors):
                raise SourceError(self.source, f"the Vault server at {self.url} is sealed",
                                  "unseal it (vault operator unseal, or bao operator unseal), "
                                  "then run again")
            if failure.status in _RETRIED:
                raise Busy(response)
            raise failure

        def judge(exc: Exception, tries: int) -> Verdict:
            if isinstance(exc, VaultHttpError):
                return Verdict(exc)
            if not isinstance(exc, Busy):
                return Verdict(self._transport_failure(exc, deadline),
                               again=tries < _CONNECT_ATTEMPTS)
            # A rate limit passes: wait for it while the deadline allows. A server error often
            # does not (a plugin that cannot reach its database): a few tries, then it is this
            # path's error.
            after = exc.response.headers.get("Retry-After")
            if exc.response.status_code != 429:
                return Verdict(VaultHttpError.of(exc.response),
                               again=tries < _SERVER_ERROR_ATTEMPTS, retry_after=after)
            return Verdict(SourceError(
                self.source, f"{self.url} answered HTTP 429 (rate limited) to {method} {path} "
                "until the deadline", f"try again later, or {RAISE_DEADLINE}"),
                again=True, retry_after=after)

        return self.runtime.retry(deadline, attempt, judge)

    def _transport_failure(self, exc: Exception, deadline: Deadline) -> BaseException:
        import requests

        reason = _reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return SourceError(
                self.source, f"TLS failure talking to {self.url}: {reason}",
                "point VAULT_CACERT at the CA that signed the server's certificate (keyrun never "
                "falls back to an unverified connection)")
        if isinstance(exc, requests.exceptions.Timeout):
            return self.runtime.timed_out(deadline)
        if isinstance(exc, requests.exceptions.RequestException):
            return SourceError(self.source, f"cannot reach the Vault server at {self.url}: "
                               f"{reason}",
                               "check url (or VAULT_ADDR), that the server runs, and any proxy")
        return SourceError(self.source, f"request to {self.url} failed: "
                           f"{type(exc).__name__}: {reason}")

    def close(self) -> None:
        self.session.close()


@functools.cache
def _adapter_type() -> type[Any]:
    """hvac's RawAdapter, sending through :meth:`VaultApi.call` (made once hvac is
    imported: keyrun imports an SDK only when its source is used)."""
    from hvac.adapters import RawAdapter

    class DeadlineAdapter(RawAdapter):  # type: ignore[misc]  # hvac has no type hints
        def __init__(self, *, api: VaultApi, deadline: Deadline, token: str, **_: Any) -> None:
            # hvac.Client's other arguments stay unused: TLS and the namespace come from
            # the run's environment, not hvac's reading of the process's.
            super().__init__(base_uri=api.url, token=token or None, cert=api.tls.cert,
                             verify=api.tls.verify, session=api.session,
                             namespace=api.namespace)
            self.api, self.deadline = api, deadline

        def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                    raise_exception: bool = True, **kwargs: Any) -> dict[str, Any]:
            def send(timeout: tuple[float, float]) -> Any:
                return super(DeadlineAdapter, self).request(
                    method, url, headers=dict(headers or {}), raise_exception=False,
                    **{**kwargs, "timeout": timeout})

            return self.api.call(method.upper(), url.removeprefix("/v1/"), self.deadline, send)

        def get_login_token(self, response: Mapping[str, Any]) -> str:
            return str(response["auth"]["client_token"])

    return DeadlineAdapter


def _error_lines(error: str) -> list[str]:
    """Vault's errors, without go-multierror's "1 error occurred:" and bullets."""
    lines = [line.strip().removeprefix("* ").strip() for line in error.splitlines()]
    return [line for line in lines
            if line and not re.fullmatch(r"\d+ errors? occurred:", line)]


def _json(response: Any) -> dict[str, Any]:
    try:
        decoded = response.json()
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _reason(exc: Exception) -> str:
    text = str(exc)
    for pattern in (r"\[SSL[^\]]*\] ([^(')\"]+)", r"\[Errno -?\d+\] ([^'\")]+)",
                    r"(Read timed out|Connection refused|Name or service not known)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip().rstrip(".")
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _quiet_insecure_warning() -> None:
    # keyrun prints its own warning for VAULT_SKIP_VERIFY; urllib3's would repeat per request.
    import warnings

    import urllib3

    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
