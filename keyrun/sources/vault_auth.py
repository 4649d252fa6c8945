"""Talking to Vault / OpenBao for the ``vault`` source: TLS settings, one HTTP call with
retries inside the run's deadline, and where the token comes from.

hvac reads ``VAULT_ADDR``, ``VAULT_TOKEN`` and ``~/.vault-token`` by itself but none of
``VAULT_NAMESPACE``, ``VAULT_SKIP_VERIFY``, ``VAULT_CACERT`` or token helpers, so keyrun
reads them all here from the run's environment and hands hvac's adapter explicit values.
OpenBao's ``BAO_*`` spellings are read where the ``VAULT_*`` one is unset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline
from keyrun.sources._retry import pause_before_retry

DEFAULT_ADDR = "https://127.0.0.1:8200"  # the Vault CLI's default
KUBERNETES_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 (a path)
TOKEN_VARIABLES = ("VAULT_TOKEN", "BAO_TOKEN")
_RETRIED = frozenset({412, 429, 500, 502, 503, 504})
_CONNECT_TIMEOUT = 5.0
_CONNECT_ATTEMPTS = 3
_SERVER_ERROR_ATTEMPTS = 4
_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool, as the CLI parses
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

# auth = { method = …, … }: the settings each method takes (besides method and mount).
AUTH_METHODS: dict[str, tuple[str, ...]] = {
    "token": ("token_env", "token_file"),
    "approle": ("role_id", "role_id_env", "role_id_file", "secret_id_env", "secret_id_file"),
    "jwt": ("role", "token_env", "token_file"),
    "kubernetes": ("role", "token_file"),
    "userpass": ("username", "password_env"),
}
_REQUIRED = {"jwt": ("role",), "kubernetes": ("role",), "userpass": ("username",)}


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

    @property
    def detail(self) -> str:
        return "; ".join(self.errors) or f"HTTP {self.status}"


class VaultApi:
    """One Vault server, reached through hvac's adapter (a requests session).

    ``call`` retries 429 answers with backoff while the deadline allows, and 412, 5xx and
    failed connections a few times within it; a sealed server, an unreachable one and a TLS
    failure each raise a SourceError of their own. Other errors raise
    :class:`VaultHttpError` for the caller to judge, key by key."""

    def __init__(self, source: str, url: str, namespace: str | None, tls: Tls) -> None:
        import hvac.adapters

        self.source = source
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.tls = tls
        self.adapter = hvac.adapters.RawAdapter(
            base_uri=self.url, token=None, cert=tls.cert, verify=tls.verify,
            namespace=namespace or None, allow_redirects=True)
        if tls.skip_verify:
            _quiet_insecure_warning()

    def call(self, method: str, path: str, deadline: Deadline, *, token: Secret | None,
             body: Mapping[str, Any] | None = None,
             params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The decoded answer (``{}`` for 204); raises VaultHttpError or SourceError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, path, deadline, token, body, params)
            except SourceError:
                raise
            except Exception as exc:
                failure = self._transport_failure(exc, deadline)
                if attempt >= _CONNECT_ATTEMPTS or not _backoff(attempt, deadline):
                    raise failure from None
                continue
            status = response.status_code
            if status in (200, 204):
                return _json(response) if status == 200 else {}
            decoded = _json(response)
            errors = [str(e) for e in decoded.get("errors") or []]
            if status == 503 and any("sealed" in e.lower() for e in errors):
                raise SourceError(self.source, f"the Vault server at {self.url} is sealed",
                                  "unseal it (vault operator unseal, or bao operator unseal), "
                                  "then run again")
            if status in _RETRIED:
                # A rate limit passes: wait for it while the deadline allows. A server error
                # often does not (a plugin that cannot reach its database): a few tries, then
                # it is this path's error.
                failing = status != 429
                if (not failing or attempt < _SERVER_ERROR_ATTEMPTS) and _backoff(
                        attempt, deadline, response.headers.get("Retry-After")):
                    continue
                if not failing:
                    raise SourceError(
                        self.source, f"{self.url} answered HTTP 429 (rate limited) to {method} "
                        f"{path} until the deadline",
                        "try again later, or raise the deadline with timeout = \"60s\" in "
                        "the environment's table")
            raise VaultHttpError(status, errors, decoded)

    def _send(self, method: str, path: str, deadline: Deadline, token: Secret | None,
              body: Mapping[str, Any] | None, params: Mapping[str, str] | None) -> Any:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise SourceError(self.source, f"timed out: no answer from {self.url} within the "
                              f"total deadline of {deadline.seconds:g}s",
                              "check that the server is reachable; raise the deadline with "
                              "timeout = \"60s\" in the environment's table")
        headers = {"X-Vault-Token": token.reveal()} if token is not None else {}
        extra: dict[str, Any] = {}
        if body is not None:
            extra["json"] = dict(body)
        if params:
            extra["params"] = dict(params)
        return self.adapter.request(method, f"/v1/{path.lstrip('/')}", headers=headers,
                                    raise_exception=False,
                                    timeout=(min(_CONNECT_TIMEOUT, remaining), remaining),
                                    **extra)

    def _transport_failure(self, exc: Exception, deadline: Deadline) -> SourceError:
        import requests

        reason = _reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return SourceError(
                self.source, f"TLS failure talking to {self.url}: {reason}",
                "point VAULT_CACERT at the CA that signed the server's certificate (keyrun never "
                "falls back to an unverified connection)")
        if isinstance(exc, requests.exceptions.Timeout):
            return SourceError(self.source, f"timed out: no answer from {self.url} within the "
                               f"total deadline of {deadline.seconds:g}s",
                               "check that the server is reachable; raise the deadline with "
                               "timeout = \"60s\" in the environment's table")
        if isinstance(exc, requests.exceptions.RequestException):
            return SourceError(self.source, f"cannot reach the Vault server at {self.url}: "
                               f"{reason}",
                               "check url (or VAULT_ADDR), that the server runs, and any proxy")
        return SourceError(self.source, f"request to {self.url} failed: "
                           f"{type(exc).__name__}: {reason}")

    def close(self) -> None:
        self.adapter.close()


def _error_lines(error: str) -> list[str]:
    """Vault's errors, without go-multierror's "1 error occurred:" and bullets."""
    lines = [line.strip().removeprefix("* ").strip() for line in error.splitlines()]
    return [line for line in lines
            if line and not re.fullmatch(r"\d+ errors? occurred:", line)]


def _backoff(attempt: int, deadline: Deadline, retry_after: str | None = None) -> bool:
    """Sleep before the next attempt; False when the deadline does not leave room for it."""
    return pause_before_retry(attempt, deadline, retry_after=retry_after, margin=0.2)


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


# Tokens


class Credential(NamedTuple):
    """A token and where it came from (for messages: never the token itself)."""

    token: Secret
    origin: str
    owned: bool = False  # keyrun logged in for it, so it may revoke it when done


def check_auth(auth: Mapping[str, Any], where: str) -> None:
    """Validate ``auth = { method = …, … }``: a known method and only its own settings."""
    method = auth.get("method")
    if method not in AUTH_METHODS:
        raise ConfigError(f"{where}: auth method {method!r} is not supported",
                          f"valid methods: {', '.join(AUTH_METHODS)}")
    allowed = ("method", "mount", *AUTH_METHODS[method])
    for name, value in auth.items():
        if name not in allowed:
            raise ConfigError(f"{where}: unknown auth setting {name!r} for method {method!r}",
                              f"valid settings: {', '.join(allowed)}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: auth setting {name!r} must be a non-empty string",
                              f"valid settings: {', '.join(allowed)}")
    for name in _REQUIRED.get(method, ()):
        if name not in auth:
            raise ConfigError(f"{where}: auth method {method!r} needs {name!r}",
                              f"e.g. auth = {{ method = \"{method}\", {name} = \"…\" }}")
    if method == "approle":
        _one_of(auth, where, ("role_id", "role_id_env", "role_id_file"), "the role id")
        _one_of(auth, where, ("secret_id_env", "secret_id_file"), "the secret id", optional=True)
    if method == "jwt":
        _one_of(auth, where, ("token_env", "token_file"), "the JWT")


def _one_of(auth: Mapping[str, Any], where: str, names: tuple[str, ...], what: str,
            optional: bool = False) -> None:
    given = [name for name in names if name in auth]
    if len(given) > 1 or (not given and not optional):
        raise ConfigError(f"{where}: give {what} with exactly one of {', '.join(names)}",
                          f"e.g. auth = {{ method = \"{auth['method']}\", {names[-2]} = \"…\" }}")


def auth_env_vars(auth: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The environment variables the auth settings name (they hold credentials)."""
    if not auth:
        return ()
    return tuple(str(v) for k, v in auth.items() if k.endswith("_env"))


class TokenFinder:
    """Finds the token, in order: the ``auth`` settings (a login), ``VAULT_TOKEN``, the
    ``token_helper`` named in ``~/.vault``, ``~/.vault-token``. Never writes a token file."""

    def __init__(self, api: VaultApi, auth: Mapping[str, Any] | None,
                 environ: Mapping[str, str], root: Path, interactive: bool) -> None:
        self.api = api
        self.auth = auth
        self.environ = environ
        self.root = root
        self.interactive = interactive

    @property
    def source(self) -> str:
        return self.api.source

    def find(self, deadline: Deadline) -> Credential:
        if self.auth:
            return self._login(deadline)
        found = env_value(self.environ, "TOKEN")
        if found is not None:
            return Credential(Secret(found[1].strip()), found[0])
        helped = self._from_helper(deadline)
        if helped is not None:
            return helped
        stored = self._home() / ".vault-token"
        text = _read(stored)
        if text:
            return Credential(Secret(text), "~/.vault-token")
        raise SourceError(self.source, f"no Vault token for {self.api.url}: VAULT_TOKEN is "
                          "unset, no token_helper is configured in ~/.vault and there is no "
                          "~/.vault-token",
                          "log in with `vault login` (or `bao login`), export VAULT_TOKEN, or "
                          "configure auth = { method = \"approle\", … } for this source")

    def _home(self) -> Path:
        home = self.environ.get("HOME")
        return Path(home) if home else Path.home()

    def _from_helper(self, deadline: Deadline) -> Credential | None:
        config = self.environ.get("VAULT_CONFIG_PATH") or str(self._home() / ".vault")
        text = _read(Path(config))
        match = re.search(r'(?m)^\s*token_helper\s*=\s*"((?:[^"\\]|\\.)*)"', text or "")
        if match is None:
            return None
        import subprocess

        helper = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
        if helper.startswith("~/"):
            helper = str(self._home() / helper[2:])
        try:  # as the Vault CLI runs it: through sh, so the helper may carry arguments
            done = subprocess.run(["/bin/sh", "-c", f"{helper} get"], capture_output=True,
                                  env=dict(self.environ), check=False,
                                  timeout=max(0.1, deadline.remaining()))
        except subprocess.TimeoutExpired:
            raise SourceError(self.source, f"the token helper {helper} (from {config}) did not "
                              "answer in time", "check the helper program") from None
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SourceError(self.source, f"the token helper {helper} (from {config}) failed "
                              f"with status {done.returncode}"
                              + (f": {reason[-1][:200]}" if reason else ""),
                              "log in again so the helper stores a token (vault login)")
        token = done.stdout.decode("utf-8", "replace").strip()
        return Credential(Secret(token), f"the token helper {helper}") if token else None

    # logins

    def _login(self, deadline: Deadline) -> Credential:
        auth = self.auth or {}
        method = str(auth["method"])
        mount = str(auth.get("mount") or method)
        if method == "token":
            return self._token_setting(auth)
        if method == "approle":
            body = {"role_id": self._secret(auth, "role_id", "the AppRole role id")}
            if "secret_id_env" in auth or "secret_id_file" in auth:
                body["secret_id"] = self._secret(auth, "secret_id", "the AppRole secret id")
            return self._post_login(f"auth/{mount}/login", body, f"approle login at "
                                    f"auth/{mount}", deadline)
        if method == "jwt":
            jwt = self._secret(auth, "token", "the JWT")
            return self._post_login(f"auth/{mount}/login", {"role": auth["role"], "jwt": jwt},
                                    f"jwt login at auth/{mount} as role {auth['role']}",
                                    deadline)
        if method == "kubernetes":
            path = str(auth.get("token_file") or KUBERNETES_TOKEN)
            account = _read(self._path(path))
            if not account:
                raise SourceError(self.source, f"kubernetes login: no service account token "
                                  f"in {path}", "run inside a pod with a service account "
                                  "token mounted, or set auth.token_file")
            return self._post_login(f"auth/{mount}/login",
                                    {"role": auth["role"], "jwt": account},
                                    f"kubernetes login at auth/{mount} as role {auth['role']}",
                                    deadline)
        username = str(auth["username"])
        password = self._password(auth, username)
        return self._post_login(f"auth/{mount}/login/{username}", {"password": password},
                                f"userpass login at auth/{mount} as {username}", deadline)

    def _token_setting(self, auth: Mapping[str, Any]) -> Credential:
        if "token_env" in auth or "token_file" in auth:
            token = self._secret(auth, "token", "the token")
            origin = auth.get("token_env") or auth.get("token_file")
            return Credential(Secret(token), str(origin))
        found = env_value(self.environ, "TOKEN")
        if found is None:
            raise SourceError(self.source, "auth method 'token' but VAULT_TOKEN is unset",
                              "export VAULT_TOKEN, or name the variable with auth.token_env")
        return Credential(Secret(found[1].strip()), found[0])

    def _path(self, path: str) -> Path:
        if path.startswith("~/"):
            return self._home() / path[2:]
        return Path(path) if Path(path).is_absolute() else self.root / path

    def _secret(self, auth: Mapping[str, Any], stem: str, what: str) -> str:
        """A credential from ``<stem>``, ``<stem>_env`` or ``<stem>_file``."""
        if stem in auth:
            return str(auth[stem])
        variable = auth.get(f"{stem}_env")
        if variable is not None:
            value = self.environ.get(str(variable), "").strip()
            if not value:
                raise SourceError(self.source, f"{what} is read from ${variable}, which is "
                                  "unset or empty", f"export {variable}")
            return value
        path = str(auth[f"{stem}_file"])
        value = (_read(self._path(path)) or "").strip()
        if not value:
            raise SourceError(self.source, f"{what} is read from {path}, which is missing or "
                              "empty", f"write {what} to {path}")
        return value

    def _password(self, auth: Mapping[str, Any], username: str) -> str:
        variable = auth.get("password_env")
        if variable is not None:
            value = self.environ.get(str(variable), "")
            if value:
                return value
        if not self.interactive:
            named = f"${variable} is unset and " if variable else ""
            raise SourceError(self.source, f"userpass login as {username}: {named}there is no "
                              "terminal to ask for the password",
                              "set auth.password_env to a variable holding the password")
        import getpass

        return getpass.getpass(f"Vault password for {username} ({self.api.url}): ")

    def _post_login(self, path: str, body: Mapping[str, str], what: str,
                    deadline: Deadline) -> Credential:
        try:
            answer = self.api.call("POST", path, deadline, token=None, body=body)
        except VaultHttpError as exc:
            raise SourceError(self.source, f"{what} failed: {exc.detail}",
                              "check the auth settings and the credentials they name") from None
        token = (answer.get("auth") or {}).get("client_token")
        if not token:
            raise SourceError(self.source, f"{what} returned no token",
                              "check the auth method's role configuration")
        return Credential(Secret(str(token)), what, owned=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
