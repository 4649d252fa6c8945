"""The ``doppler`` source: one Doppler config, through Doppler's REST API (httpx)."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Meta, Option, Outcome, Problem, Request, Source
from keyrun.sources._values import entry_value
from keyrun.sources.runtime import Busy, Endpoint, Runtime, Verdict, gave_up, timed_out
from keyrun.template import Template

PUBLIC_HOST = "api.doppler.com"
DEFAULT_API_HOST = f"https://{PUBLIC_HOST}"
TOKEN_VARIABLE = "DOPPLER_TOKEN"  # noqa: S105 (a variable name, not a secret)
HOST_VARIABLE = "DOPPLER_API_HOST"
KEYRING_SERVICE = "keyrun/doppler"
KEYRING_DEFAULT_USER = "default"
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_CONNECT_TIMEOUT = 5.0
_CONNECT_ATTEMPTS = 3
_MARGIN = 0.25  # seconds kept back so that a timeout is reported by the source, not the core
# Doppler's "not found" messages name what is missing: "Could not find requested config
# 'dev'", "Could not find requested project 'bot'." (a 404, or a 400 on some endpoints)
_NOT_FOUND = re.compile(r"^could not find requested (project|config|environment)\b",
                        re.IGNORECASE)


class DopplerSource(Source):
    """A Doppler config: every key by name, read with one request per run.

    keyrun downloads the config (``GET /v3/configs/config/secrets/download``,
    ``format=json``) and picks the keys it needs; ``doctor`` lists names only
    (``/v3/configs/config/secrets/names``), never values; ``keyrun set`` updates one
    secret (``POST /v3/configs/config/secrets``). HTTP 429 and 5xx answers are retried
    with backoff (honouring ``Retry-After``) until the run's deadline.

    The token (a service token for one config, or a personal token) comes from
    ``DOPPLER_TOKEN``; else from the OS keyring, service ``keyrun/doppler``, user name
    ``PROJECT/CONFIG`` (e.g. ``support-bot/prd``) and then ``default``; store one with
    ``python -m keyring set keyrun/doppler default``. ``DOPPLER_TOKEN`` is removed from
    the command's environment unless the environment lists it in ``pass_env``.
    The API host is ``api_host``, else ``DOPPLER_API_HOST``, else
    https://api.doppler.com; plain http is refused except on loopback.

    .. code-block:: toml

        [sources.doppler]
        type = "doppler"
        project = "{project}"
        config = "{env}"
    """

    type_name = "doppler"
    summary = "a Doppler config via Doppler's API (one request per run; writable)"
    extra = "doppler"
    writable = True
    options = (
        Option("project", "the Doppler project; may use {project} and {env}",
               default="{project}", template=True, example="support-bot"),
        Option("config", "the Doppler config (dev, stg, prd…); may use {project} and {env}",
               default="{env}", template=True, example="prd"),
        Option("api_host", "the API's base URL (default $DOPPLER_API_HOST, else "
               "https://api.doppler.com)", example="https://api.doppler.com"),
    )

    def __init__(self, name: str, settings: Mapping[str, Any], context: Any) -> None:
        super().__init__(name, settings, context)
        self._lock = threading.Lock()
        self._client: Any = None
        self._token: tuple[str, str] | None = None  # (token, where it came from)
        self.runtime = Runtime(self, self._timed_out, margin=_MARGIN, spare=_MARGIN,
                               credential="your Doppler token", public=(PUBLIC_HOST,))

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        for option in ("project", "config"):
            if Template(str(settings[option]), where=where).has_key:
                raise ConfigError(f"{where}: {option} cannot contain {{key}}",
                                  "a Doppler config holds every key by name")
        if settings["api_host"] is not None:
            _check_host(str(settings["api_host"]), f"{where}: api_host")

    # names and places

    @property
    def project(self) -> str:
        return self.render("project")

    @property
    def config(self) -> str:
        return self.render("config")

    @property
    def label(self) -> str:
        return f"{self.project}/{self.config}"

    @functools.cached_property
    def endpoint(self) -> Endpoint:
        configured = self.settings.get("api_host")
        if configured:
            return self.runtime.endpoint(str(configured), f"[sources.{self.name}] api_host")
        from_env = self.context.environ.get(HOST_VARIABLE)
        if from_env:
            return self.runtime.endpoint(_check_host(from_env, HOST_VARIABLE), HOST_VARIABLE)
        return self.runtime.endpoint(DEFAULT_API_HOST, "default")

    def endpoints(self) -> tuple[Endpoint, ...]:
        return (self.endpoint,)

    @property
    def api_host(self) -> str:
        return self.endpoint.url

    def locate(self, request: Request) -> str:
        return f"doppler:{self.label}#{request.name}"

    def token_env_vars(self) -> tuple[str, ...]:
        return (TOKEN_VARIABLE,)

    # reading

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        secrets = self._download(deadline)
        results: dict[str, Outcome] = {}
        for request in requests:
            if request.name not in secrets:
                results[request.key] = Problem.missing(
                    f"no secret {request.name} in Doppler config {self.label}")
                continue
            value = entry_value(secrets[request.name], request.field, self.locate(request))
            results[request.key] = value if isinstance(value, Problem) else Item(Secret(value))
        return results

    def _download(self, deadline: Deadline) -> dict[str, str]:
        response = self._call("GET", "/v3/configs/config/secrets/download", deadline,
                              params={"format": "json"}, action="read")
        data = _json(response)
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise SourceError(self.name, f"Doppler's answer for {self.label} is not a JSON "
                              "object of names to text values",
                              f"check api_host ({self.api_host}) points at Doppler's API")
        return data

    def names(self, deadline: Deadline) -> list[str]:
        response = self._call("GET", "/v3/configs/config/secrets/names", deadline,
                              action="list")
        data = _json(response)
        names = data.get("names") if isinstance(data, dict) else None
        if not isinstance(names, list):
            raise SourceError(self.name, f"Doppler's list of names for {self.label} is not "
                              "a JSON list", f"check api_host ({self.api_host})")
        return [str(name) for name in names]

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        held = set(self.names(deadline))
        return {request.key: Meta(exists=request.name in held) for request in requests}

    def check(self, deadline: Deadline) -> Health:
        count = len(self.names(deadline))
        _, origin = self._credentials()
        return Health(f"{self.label}: {count} secrets (token from {origin})")

    # writing

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        if request.field is not None:
            raise SourceError(self.name, f"{request.key} is field {request.field!r} of a JSON "
                              f"value at {self.locate(request)}; keyrun set would replace "
                              "the whole value",
                              "update that field in Doppler itself (doppler secrets set)")
        body = {"project": self.project, "config": self.config,
                "secrets": {request.name: value.reveal()}}
        self._call("POST", "/v3/configs/config/secrets", deadline, json_body=body,
                   action="write")
        return self.locate(request)

    # the API

    def _call(self, method: str, path: str, deadline: Deadline, *, action: str,
              params: Mapping[str, str] | None = None,
              json_body: Mapping[str, Any] | None = None) -> Any:
        """One API request, retried on 429/5xx and refused connections within the deadline."""
        url = f"{self.endpoint.url}{path}"  # a host the user did not choose stops here
        httpx = self.runtime.sdk("httpx")
        client = self._http()
        token, origin = self._credentials()
        query = {"project": self.project, "config": self.config, **(params or {})}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        def attempt(seconds: float) -> Any:
            response = client.request(
                method, url, params=query, json=json_body, headers=headers,
                timeout=httpx.Timeout(seconds, connect=min(_CONNECT_TIMEOUT, seconds)))
            if response.status_code == 429 or response.status_code >= 500:
                raise Busy(response)
            return response

        def judge(exc: Exception, tries: int) -> Verdict:
            if isinstance(exc, httpx.TimeoutException):
                return Verdict(self._timed_out(deadline))
            if isinstance(exc, httpx.TransportError):
                return Verdict(SourceError(self.name, f"cannot reach {self.api_host}: "
                                           f"{_reason(exc)}",
                                           f"check api_host / {HOST_VARIABLE}, your network "
                                           "and any proxy (HTTPS_PROXY)"),
                               again=tries < _CONNECT_ATTEMPTS)
            if isinstance(exc, Busy):
                after = exc.response.headers.get("Retry-After")
                return Verdict(SourceError(
                    self.name, f"Doppler answered HTTP {exc.response.status_code} for "
                    f"{self.label} ({_message(exc.response)}), {gave_up(tries, deadline, after)}",
                    "try again later; https://status.doppler.com shows outages"),
                    again=True, retry_after=after)
            return Verdict(exc)

        response = self.runtime.retry(deadline, attempt, judge)
        if response.status_code >= 400:
            raise self._refused(response, origin, action)
        return response

    def _refused(self, response: Any, origin: str, action: str) -> SourceError:
        status = response.status_code
        detail = _message(response)
        if status == 401:
            return SourceError(self.name, f"Doppler refused the token from {origin} "
                               f"(HTTP 401: {detail})",
                               "create a new token in the Doppler dashboard (a service token "
                               f"for {self.label}) and export {TOKEN_VARIABLE}")
        if status == 403:
            return SourceError(self.name, f"the token from {origin} may not {action} "
                               f"{self.label} (HTTP 403: {detail})",
                               f"use a token with access to {self.label}: a service token "
                               "reads only the config it was made for, and needs read/write "
                               "access for keyrun set")
        missing = _not_found(response) if status in (400, 404) else None
        if missing == "config":
            return SourceError(self.name, f"Doppler project {self.project} has no config "
                               f"{self.config} (HTTP {status}: {detail})",
                               f"check config = … in [sources.{self.name}] (default \"{{env}}\"); "
                               "`doppler configs` lists them")
        if missing == "project":
            return SourceError(self.name, f"Doppler has no project {self.project} "
                               f"(HTTP {status}: {detail})",
                               f"check project = … in [sources.{self.name}] (default "
                               "\"{project}\"); `doppler projects` lists them")
        if missing == "environment":
            return SourceError(self.name, f"Doppler project {self.project} has no environment "
                               f"for config {self.config} (HTTP {status}: {detail})",
                               f"check config = … in [sources.{self.name}]; `doppler "
                               "environments` lists them")
        return SourceError(self.name, f"Doppler refused to {action} {self.label} "
                           f"(HTTP {status}: {detail})",
                           f"check [sources.{self.name}] and the token from {origin}")

    def _timed_out(self, deadline: Deadline) -> SourceError:
        return timed_out(self.name, deadline, f"{self.api_host} for {self.label}",
                         "the API host")

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                httpx = self.runtime.sdk("httpx")
                self._client = httpx.Client(
                    headers={"User-Agent": "keyrun", "client-sdk": "keyrun"},
                    follow_redirects=False)
            return self._client

    def _credentials(self) -> tuple[str, str]:
        with self._lock:
            if self._token is None:
                self._token = self._find_token()
            return self._token

    def _find_token(self) -> tuple[str, str]:
        token = self.context.environ.get(TOKEN_VARIABLE)
        if token:
            return token, TOKEN_VARIABLE
        users = (self.label, KEYRING_DEFAULT_USER)
        for user in users:
            stored = _keyring_password(KEYRING_SERVICE, user)
            if stored:
                return stored, f"the keyring ({KEYRING_SERVICE} / {user})"
        tried = ", ".join(f"keyring {KEYRING_SERVICE} / {user}" for user in users)
        raise SourceError(self.name, f"no Doppler token for {self.label} (looked in "
                          f"{TOKEN_VARIABLE}, {tried})",
                          f"export {TOKEN_VARIABLE}=dp.st.… (a service token for "
                          f"{self.label}), or store one with: python -m keyring set "
                          f"{KEYRING_SERVICE} {KEYRING_DEFAULT_USER}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _keyring_password(service: str, user: str) -> str | None:
    """A token from the OS keyring (never from keyrings.alt's plaintext file); None when
    keyring or a keychain is unavailable."""
    try:
        import keyring.errors

        from keyrun.sources.keyring import keychain
    except ImportError:
        return None
    try:
        return keychain().get_password(service, user)
    except (keyring.errors.KeyringError, RuntimeError, OSError):
        return None


def _check_host(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url
    raise ConfigError(f"{where}: {url!r} is not an https:// URL",
                      "the token travels with every request, so keyrun sends it over TLS "
                      "only (plain http is allowed for 127.0.0.1 and localhost)")


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: Any) -> str:
    """Doppler's error text: ``{"messages": [...], "success": false}``."""
    messages = _messages(response)
    if messages:
        return "; ".join(messages)[:300]
    return str(response.reason_phrase or f"HTTP {response.status_code}")


def _messages(response: Any) -> list[str]:
    data = _json(response)
    messages = data.get("messages") if isinstance(data, dict) else None
    return [str(m) for m in messages] if isinstance(messages, list) else []


def _not_found(response: Any) -> str | None:
    """What Doppler says it could not find ("project", "config", "environment"), read from
    the start of one of its messages, never from a name that happens to hold the word."""
    for message in _messages(response):
        found = _NOT_FOUND.match(message.strip())
        if found:
            return found.group(1).lower()
    return None


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["DopplerSource"]
