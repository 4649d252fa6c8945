"""The ``gcp-secret-manager`` source: Google Secret Manager, through google-cloud-secret-manager."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from types import ModuleType
from typing import Any, NamedTuple

from keyrun.errors import ConfigError, KeyrunError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Meta, Option, Outcome, Problem, Request, Source
from keyrun.sources._values import aware, bundle_entry, entry_value, json_object
from keyrun.sources.runtime import (
    Api,
    Endpoint,
    Failure,
    Runtime,
    check_reachable,
    no_answer,
    short,
)
from keyrun.template import PLACEHOLDERS

SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")
_VERSION = re.compile(r"^(?:latest|[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]{0,62})$")
_RESOURCE = re.compile(r"^projects/([^/]+)/secrets/([^/]+)$")
_ENDPOINT = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_DEFAULT_ENDPOINT = "secretmanager.googleapis.com"
_PARALLEL = 16  # concurrent RPCs per fetch, multiplexed over one HTTP/2 connection
_MARGIN = 0.25  # seconds kept back so that a timeout is reported by the source, not the core
_MAX_ATTEMPTS = {"unavailable": 4, "exhausted": 8, "internal": 3}
_WHOLE_SOURCE = {"no-credentials", "unauthenticated", "token", "unreachable", "timeout",
                 "api-disabled"}
_ADC_HINT = ("run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
             "to a service-account key file, or run where a service account is attached")


def gcp_name(name: str) -> str:
    """Secret ids allow letters, digits, ``-`` and ``_``: every other character becomes ``_``."""
    return _NOT_IN_ID.sub("_", name)


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``: google-crc32c's C code when installed, else a table."""
    fast = _fast_crc32c()
    if fast is not None:
        return int(fast(data))
    table = _crc_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@functools.cache
def _fast_crc32c() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    value: Callable[[bytes], int] = google_crc32c.value
    return value


@functools.cache
def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


class GcpFailure(Failure):
    """One failed call, classified; ``detail`` is Google's own message (never a value)."""

    whole_source_kinds = frozenset(_WHOLE_SOURCE)
    state: str | None = None  # of a version that is not enabled, when known
    number: str | None = None  # the version "latest" resolved to, when known


_KINDS = {
    "NotFound": "missing", "PermissionDenied": "denied", "FailedPrecondition": "disabled",
    "Unauthenticated": "unauthenticated", "ServiceUnavailable": "unavailable",
    "DeadlineExceeded": "timeout", "ResourceExhausted": "exhausted",
    "InternalServerError": "internal", "Unknown": "internal", "InvalidArgument": "invalid",
    "AlreadyExists": "exists", "DataLoss": "corrupt", "Aborted": "unavailable",
    "DefaultCredentialsError": "no-credentials", "RefreshError": "token",
    "TransportError": "unreachable", "MutualTLSChannelError": "unreachable",
}


def classify(exc: BaseException) -> GcpFailure:
    """Sort a google-api-core / google-auth exception into what keyrun does about it."""
    cause = getattr(exc, "cause", None)
    if type(exc).__name__ == "RetryError" and isinstance(cause, BaseException):
        return classify(cause)
    names = [cls.__name__ for cls in type(exc).__mro__]
    name = next((n for n in names if n in _KINDS), names[0])
    detail = _short(str(getattr(exc, "message", None) or exc))
    kind = _KINDS.get(name, "error")
    lowered = detail.lower()
    if kind == "unavailable" and "getting metadata from plugin failed" in lowered:
        kind = "token"  # the credentials could not make a token: retrying will not help
    elif kind == "denied" and ("has not been used" in lowered or "service_disabled" in lowered
                               or "it is disabled" in lowered):
        kind = "api-disabled"
    elif kind == "unavailable" and _UNREACHABLE.search(lowered):
        kind = "unreachable"
    return GcpFailure(kind, name, detail)


_UNREACHABLE = re.compile(r"failed to connect|connection refused|dns resolution failed|"
                          r"ssl_error|handshake failed|certificate verify failed|"
                          r"name resolution|no route to host|errors resolving|lookup failed|"
                          r"network is unreachable")


def _short(message: str) -> str:
    """Google's message on one line, bounded, without the HTTP status api-core puts first."""
    return short(re.sub(r"^\d{3} ", "", " ".join(message.split())))


class Target(NamedTuple):
    """One secret version to read: the project, the secret id and the version."""

    project: str
    secret: str
    version: str

    @property
    def path(self) -> str:
        return f"projects/{self.project}/secrets/{self.secret}"

    @property
    def version_path(self) -> str:
        return f"{self.path}/versions/{self.version}"

    def __str__(self) -> str:
        pinned = "" if self.version == "latest" else f" version {self.version}"
        return f"secret {self.secret!r}{pinned} in project {self.project!r}"


class GcpSecretManagerSource(Source):
    """Google Secret Manager.

    ``secret`` with ``{key}`` names one secret per key; without ``{key}`` it names ONE
    secret whose payload holds every key by name, as a JSON object or as dotenv text
    (``KEY=value`` lines), told apart by the payload's first character. Secret ids allow
    only letters, digits, ``-`` and ``_``, so any other character of a key's name becomes
    ``_`` the same way for ``run``, ``list``, ``doctor`` and ``set``. A key's ``version``
    pins a version number (or an alias); the default is ``latest``, which Secret Manager
    resolves to the newest version even when that one is disabled (an error that says
    so). Secrets are read in parallel and each payload's CRC32C is checked.

    Authenticates with Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS,
    ``gcloud auth application-default login``, or the attached service account on Google
    Cloud. The project is ``gcp_project``, else GOOGLE_CLOUD_PROJECT, else the one the
    credentials name. Calls get keyrun's own deadline and retry (the client's default
    retry would wait up to a minute for a server that does not answer). ``doctor`` and
    ``list`` read metadata only (creation, expiry, next rotation, version state);
    ``keyrun set`` adds a version, creating the secret (automatic replication) when absent.

    .. code-block:: toml

        [sources.gcp]
        type = "gcp-secret-manager"
        gcp_project = "acme-prod"
        secret = "{env}-{key}"             # or "{project}-{env}": one secret holding every key
    """

    type_name = "gcp-secret-manager"
    summary = "Google Secret Manager: a secret per key, or one JSON/dotenv secret (writable)"
    extra = "gcp"
    has_versions = True
    writable = True
    records_age = True
    options = (
        Option("secret", "the secret id: with {key}, one secret per key; without, one secret "
                         "whose payload holds every key as a JSON object or dotenv text; may "
                         "also be a full name, projects/PROJECT/secrets/ID",
               default="{env}-{key}", template=True, example="{project}-{env}"),
        Option("gcp_project", "the Google Cloud project id (or number) holding the secrets; "
                              "default GOOGLE_CLOUD_PROJECT, then the project of the "
                              "Application Default Credentials",
               template=True, example="acme-prod"),
        Option("endpoint", "the API endpoint, HOST or HOST:PORT: a regional endpoint, a "
                           "Private Service Connect endpoint, or a test server",
               example="secretmanager.europe-west1.rep.googleapis.com"),
    )

    def __init__(self, name: str, settings: Mapping[str, Any], context: Any) -> None:
        super().__init__(name, settings, context)
        self._lock = threading.Lock()
        self._client: Any = None
        self._credentials: Any = None
        self._authorizing = threading.Lock()  # see GcpApi._rpc
        self._authorized = False
        self._found_project: str | None = None
        self.runtime = Runtime(self, self._timed_out, margin=_MARGIN, workers=_PARALLEL,
                               credential="your Google access token",
                               public=("*.googleapis.com",))

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        endpoint = settings.get("endpoint")
        if endpoint is not None and not _ENDPOINT.match(_bare_endpoint(endpoint)):
            raise ConfigError(f"{where}: endpoint {endpoint!r} is not HOST or HOST:PORT",
                              "write it like secretmanager.europe-west1.rep.googleapis.com")
        literal = str(settings["secret"])
        for placeholder in PLACEHOLDERS:
            literal = literal.replace("{" + placeholder + "}", "")
        full = _RESOURCE.match(literal)
        if not SECRET_ID.match(full.group(2) if full else literal or "x"):
            raise ConfigError(f"{where}: secret {settings['secret']!r} holds characters a "
                              "secret id cannot have",
                              "use letters, digits, \"-\" and \"_\" around {project}, {env} and "
                              "{key}, or a full name projects/PROJECT/secrets/ID")

    # names and places

    @property
    def per_key(self) -> bool:
        return self.template("secret").has_key

    def backend_name(self, name: str) -> str:
        return gcp_name(name) if self.per_key else name

    def _secret(self, request: Request) -> tuple[str | None, str]:
        """(the project a full name gives, or None; the secret id)."""
        rendered = self.render("secret", request.name if self.per_key else None)
        full = _RESOURCE.match(rendered)
        return (full.group(1), full.group(2)) if full else (None, rendered)

    def _project_hint(self) -> str | None:
        configured = self.settings.get("gcp_project")
        if configured:
            return self.render("gcp_project")
        return self.context.environ.get("GOOGLE_CLOUD_PROJECT") or self._found_project

    def locate(self, request: Request) -> str:
        named, secret = self._secret(request)
        project = named or self._project_hint()
        where = f"projects/{project}/secrets/{secret}" if project else secret
        if not self.per_key:
            where += f"#{request.name}" + (f".{request.field}" if request.field else "")
        elif request.field:
            where += f"#{request.field}"
        return where + (f"@{request.version}" if request.version else "")

    def _target(self, request: Request, project: str) -> Target | Problem:
        named, secret = self._secret(request)
        version = request.version or "latest"
        if not SECRET_ID.match(secret):
            return Problem("error", f"{secret!r} is not a valid secret id "
                                    "(letters, digits, \"-\" and \"_\", at most 255) — check "
                                    "the secret option, or give the key another name with "
                                    "name = \"…\"")
        if not _VERSION.match(version):
            return Problem("error", f"version {version!r} of secret {secret!r} is "
                                    "neither a version number, \"latest\" nor an alias")
        return Target(named or project, secret, version)

    # reading

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        if not requests:
            return {}
        api = self._api(deadline)
        results: dict[str, Outcome] = {}
        wanted: dict[Target, list[Request]] = {}
        for request in requests:
            target = self._target(request, api.project)
            if isinstance(target, Problem):
                results[request.key] = target
            else:
                wanted.setdefault(target, []).append(request)
        targets = list(wanted)
        read = api.parallel([partial(self._access, api, t) for t in targets])
        for target, got in zip(targets, read, strict=True):
            results.update(self._outcomes(target, wanted[target], got))
        return results

    def _access(self, api: GcpApi, target: Target) -> Any:
        """The AccessSecretVersion response, or a GcpFailure of this secret alone."""
        try:
            return api.call("access_secret_version", name=target.version_path)
        except GcpFailure as failure:
            if failure.kind == "disabled":
                _learn_state(api, target, failure)
            return failure

    def _outcomes(self, target: Target, requests: list[Request], got: Any
                  ) -> dict[str, Outcome]:
        """What one secret version gives each key read from it (checked, decoded and
        parsed once)."""
        if isinstance(got, GcpFailure):
            problem = self._problem(got, target, "secretmanager.versions.access")
            return {r.key: problem for r in requests}
        data = bytes(got.payload.data)
        if "data_crc32c" in got.payload and crc32c(data) != got.payload.data_crc32c:
            return {r.key: Problem("error", f"the payload of {target} failed its CRC32C "
                                            "check (damaged on the way) — run keyrun again")
                    for r in requests}
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return {r.key: Problem("error", f"{target} holds binary data, not UTF-8 text, so "
                                            f"{r.key} cannot be set from it") for r in requests}
        version = _number(got) or target.version
        bundle = None if self.per_key else parse_bundle(text, str(target))
        results: dict[str, Outcome] = {}
        for request in requests:
            value = (entry_value(text, request.field, str(target)) if bundle is None
                     else _from_bundle(request, target, bundle))
            results[request.key] = value if isinstance(value, Problem) else Item(
                Secret(value), version=version)
        return results

    def _problem(self, failure: GcpFailure, target: Target, permission: str,
                 verb: str = "reading") -> Problem:
        kind = failure.kind
        if kind == "missing":
            return Problem.missing(f"no {target}")
        if kind == "denied":
            return Problem("denied", f"permission denied on {target} "
                                     f"({failure.detail}) — grant {permission} on it "
                                     f"(roles/secretmanager.secretAccessor) to "
                                     f"{self._principal()}")
        if kind == "disabled":
            return Problem("error", _unusable(target, failure))
        if kind in _MAX_ATTEMPTS:
            tries = "1 attempt" if failure.attempts == 1 else f"{failure.attempts} attempts"
            return Problem("error", f"Secret Manager kept answering "
                                    f"{failure.reason} while {verb} {target} "
                                    f"({tries}) — try again")
        if kind == "corrupt":
            return Problem("error", f"{verb} {target} failed its checksum "
                                    f"({failure.detail}) — try again")
        return Problem("error", f"{verb} {target} failed ({failure.reason})")

    def _principal(self) -> str:
        email = getattr(self._credentials, "service_account_email", None)
        if isinstance(email, str) and "@" in email:
            return email
        return "the account in use (gcloud auth list shows it)"

    # metadata, never values

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        if not requests:
            return {}
        api = self._api(deadline)
        targets = {r.key: self._target(r, api.project) for r in requests}
        valid = [t for t in targets.values() if isinstance(t, Target)]
        secrets = list(dict.fromkeys(t.path for t in valid))
        versions = list(dict.fromkeys(valid))
        tasks: list[Callable[[], Any]] = [partial(api.outcome, "get_secret", name=p)
                                          for p in secrets]
        tasks += [partial(api.outcome, "get_secret_version", name=t.version_path)
                  for t in versions]
        answers = api.parallel(tasks)
        by_secret = dict(zip(secrets, answers[: len(secrets)], strict=True))
        by_version = dict(zip(versions, answers[len(secrets):], strict=True))
        return {key: self._meta(t, by_secret[t.path], by_version[t]) if isinstance(t, Target)
                else Meta(note=t.message) for key, t in targets.items()}

    def _meta(self, target: Target, secret: Any, version: Any) -> Meta:
        if isinstance(secret, GcpFailure):
            exists = False if secret.kind == "missing" else None
            return Meta(exists=exists, note=self._meta_note(secret, "GetSecret",
                                                            "secretmanager.secrets.get"))
        expires, due = _secret_times(secret)
        if isinstance(version, GcpFailure):
            exists = False if version.kind == "missing" else None
            return Meta(exists=exists, expires=expires, next_rotation=due,
                        note=self._meta_note(version, "GetSecretVersion",
                                             "secretmanager.versions.get"))
        state = _state_name(version)
        enabled = state == "ENABLED"
        notes = [] if enabled else [f"version {_number(version)} is {state}"]
        if due is not None and due < datetime.now(UTC):
            notes.append(f"rotation was due on {due:%Y-%m-%d}")
        return Meta(
            # a bundle's version tells nothing of whether it holds this key
            exists=enabled if self.per_key else (None if enabled else False),
            version=_number(version),
            updated=_time(version, "create_time"),
            expires=expires,
            next_rotation=due,
            deleted=_time(version, "destroy_time"),
            note="; ".join(notes) or None,
        )

    def _meta_note(self, failure: GcpFailure, call: str, permission: str) -> str:
        """Why metadata is unknown. An identity that may read values (secretAccessor) but
        not metadata is common: that says "denied" and the role to grant, for doctor."""
        if failure.kind == "denied":
            return (f"metadata calls were denied ({permission}: {failure.detail}) — grant "
                    f"roles/secretmanager.viewer to {self._principal()}")
        return f"{call} failed: {failure.reason}"

    def check(self, deadline: Deadline) -> Health:
        api = self._api(deadline)
        if self.per_key:
            return self._check_listing(api)
        target = self._target(Request("", ""), api.project)
        if isinstance(target, Problem):
            raise SourceError(self.name, target.message)
        secret = api.outcome("get_secret", name=target.path)
        if isinstance(secret, GcpFailure):
            return self._health_after(secret, str(target), "secretmanager.secrets.get", api)
        _, due = _secret_times(secret)
        warnings = []
        if due is not None and due < datetime.now(UTC):
            warnings.append(f"{target} was due for rotation on {due:%Y-%m-%d} — rotate it "
                            "with keyrun set")
        return Health(f"{target}: reachable", tuple(warnings))

    def _check_listing(self, api: GcpApi) -> Health:
        try:
            api.call("list_secrets", parent=f"projects/{api.project}", page_size=1)
        except GcpFailure as failure:
            return self._health_after(failure, f"project {api.project!r}",
                                      "secretmanager.secrets.list", api)
        return Health(f"project {api.project!r}: reachable and authenticated")

    def _health_after(self, failure: GcpFailure, what: str, permission: str,
                      api: GcpApi) -> Health:
        """``check`` reached Secret Manager and was authenticated, but could not look."""
        reached = f"project {api.project!r}: reachable"
        if failure.kind == "missing":
            return Health(reached, (f"{what} does not exist (keyrun set creates it)",))
        if failure.kind == "denied":
            return Health(f"{reached} and authenticated",
                          (f"{permission} is denied on {what} ({failure.detail}), so doctor "
                           "cannot see ages without reading values — grant "
                           "roles/secretmanager.viewer",))
        return Health(reached, (f"looking at {what} failed: {failure.reason}",))

    # writing

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        api = self._api(deadline)
        target = self._target(Request(request.key, request.name, request.field), api.project)
        if isinstance(target, Problem):
            raise SourceError(self.name, target.message)
        if not self.per_key and request.field is not None:
            raise SourceError(self.name, f"{request.key} is read from field "
                              f"{request.field!r} of a value in {target}; keyrun set cannot "
                              "rewrite one field of it — edit the secret by hand")
        current = None
        if not self.per_key or request.field is not None:
            current = self._access(api, target)
            if isinstance(current, GcpFailure) and current.kind != "missing":
                raise self._write_error(current, target)
        text = self._new_payload(request, target, value, current)
        number = self._add_version(api, target, text.encode(),
                                   known_missing=isinstance(current, GcpFailure))
        self._check_race(target, current, number)
        where = self.locate(Request(request.key, request.name, request.field))
        return f"{where} (version {number})"

    def _new_payload(self, request: Request, target: Target, value: Secret,
                     current: Any) -> str:
        if self.per_key and request.field is None:
            if not value.reveal():
                raise SourceError(self.name, f"Secret Manager cannot hold an empty value "
                                  f"({target}) — store a non-empty value")
            return value.reveal()
        name = request.field if self.per_key and request.field else request.name
        if current is None or isinstance(current, GcpFailure):
            return json.dumps({name: value.reveal()}, ensure_ascii=False)
        try:
            text = bytes(current.payload.data).decode("utf-8")
        except UnicodeDecodeError:
            raise SourceError(self.name, f"{target} holds binary data, not UTF-8 text, so "
                              f"{request.key} cannot be written into it") from None
        updated = update_bundle(text, name, value.reveal(), str(target),
                                json_only=self.per_key)
        if updated is None:
            shape = "not a JSON object" if self.per_key else "neither a JSON object nor dotenv text"
            raise SourceError(self.name, f"{target} is {shape}, so {request.key} "
                              "cannot be written into it — keyrun set will not replace it; "
                              "fix the secret by hand")
        return updated

    def _add_version(self, api: GcpApi, target: Target, data: bytes, *,
                     known_missing: bool) -> str:
        """Add a version, creating the secret first when it does not exist; its number."""
        payload = {"data": data, "data_crc32c": crc32c(data)}
        if not known_missing:
            try:
                return _number(api.call("add_secret_version", parent=target.path,
                                        payload=payload))
            except GcpFailure as failure:
                if failure.kind != "missing":
                    raise self._write_error(failure, target) from None
        self._create(api, target)
        try:
            return _number(api.call("add_secret_version", parent=target.path, payload=payload))
        except GcpFailure as failure:
            raise self._write_error(failure, target) from None

    def _create(self, api: GcpApi, target: Target) -> None:
        try:
            api.call("create_secret", parent=f"projects/{target.project}",
                     secret_id=target.secret, secret={"replication": {"automatic": {}}})
        except GcpFailure as failure:
            if failure.kind != "exists":  # created meanwhile: adding a version is right
                permission = "secretmanager.secrets.create"
                raise self._write_error(failure, target, permission) from None

    def _check_race(self, target: Target, current: Any, number: str) -> None:
        """Secret Manager cannot add a version only if the latest is still the one read:
        say so when another version slipped in between the read and the write."""
        if current is None or isinstance(current, GcpFailure):
            return
        read = str(current.name).rsplit("/", 1)[-1]
        if read.isdigit() and number.isdigit() and int(number) != int(read) + 1:
            raise SourceError(self.name, f"{target} changed while keyrun was writing it: "
                              f"keyrun read version {read} and added version {number}, so the "
                              "versions in between were written by someone else and the new "
                              "latest may lack their change",
                              f"compare them: gcloud secrets versions list {target.secret} "
                              f"--project={target.project}")

    def _write_error(self, failure: GcpFailure, target: Target,
                     permission: str = "secretmanager.versions.add") -> SourceError:
        if failure.whole_source:
            return self._source_error(failure)
        if failure.kind == "disabled" and not self.per_key:
            return SourceError(self.name, f"keyrun set adds a version of {target} holding every "
                               f"key, but cannot read the latest one: "
                               f"{_unusable(target, failure).split(' — ')[0]}",
                               _bundle_fix(target, failure))
        if failure.kind == "denied":
            return SourceError(self.name, f"permission denied on {target} ({failure.detail})",
                               f"grant {permission} (roles/secretmanager.secretVersionAdder, "
                               f"or secretmanager.admin to create secrets) to "
                               f"{self._principal()}")
        problem = self._problem(failure, target, permission, verb="writing")
        return SourceError(self.name, problem.message)

    # the client

    def _api(self, deadline: Deadline) -> GcpApi:
        with self._lock:
            if self._client is None:
                self._connect(deadline)
            return GcpApi(self._client, self._project(), deadline, self)

    def _connect(self, deadline: Deadline) -> None:
        configured = self.settings.get("endpoint")
        endpoint = self._endpoint(configured)  # a host the user did not choose stops here
        auth = self.runtime.sdk("google.auth")
        secretmanager = _import_quietly("google.cloud.secretmanager_v1", self.runtime)
        try:
            credentials, found = auth.default(default_scopes=[_SCOPE])
        except Exception as exc:
            raise self._source_error(classify(exc)) from None
        options = {"api_endpoint": endpoint.url} if configured else None
        try:
            self._client = secretmanager.SecretManagerServiceClient(
                credentials=credentials, client_options=options)
        except Exception as exc:
            raise self._source_error(classify(exc)) from None
        self._credentials, self._found_project = credentials, found

    def endpoints(self) -> tuple[Endpoint, ...]:
        return (self._endpoint(self.settings.get("endpoint")),)

    def _endpoint(self, configured: str | None) -> Endpoint:
        if configured:
            return self.runtime.endpoint(_bare_endpoint(configured),
                                         f"[sources.{self.name}] endpoint")
        return self.runtime.endpoint(_DEFAULT_ENDPOINT, "default")

    def _project(self) -> str:
        if self.settings.get("gcp_project"):
            return self.render("gcp_project")
        if self._found_project:
            return str(self._found_project)
        raise SourceError(self.name, "no Google Cloud project: gcp_project is not set and "
                          "neither GOOGLE_CLOUD_PROJECT nor the credentials name one — set "
                          f"gcp_project = \"…\" in [sources.{self.name}]")

    def _timed_out(self, deadline: Deadline) -> SourceError:
        return self._source_error(GcpFailure("timeout", "DeadlineExceeded"), deadline)

    def _source_error(self, failure: Failure, deadline: Deadline | None = None) -> SourceError:
        endpoint = self.settings.get("endpoint") or _DEFAULT_ENDPOINT
        reason = failure.reason
        messages = {
            "no-credentials": (f"no Google credentials found ({reason})", _ADC_HINT),
            "unauthenticated": (f"Secret Manager at {endpoint} rejected the credentials "
                                f"({reason})",
                                "check the account: gcloud auth application-default "
                                "print-access-token; " + _ADC_HINT),
            "token": (f"the Google credentials could not make an access token ({reason})",
                      "sign in again: gcloud auth application-default login"),
            "unreachable": (f"cannot reach Secret Manager at {endpoint} ({reason})",
                            "check the network, proxy settings and the endpoint option"),
            "timeout": (f"timed out: {no_answer(deadline, f'Secret Manager at {endpoint}')}",
                        check_reachable("the endpoint")),
            "api-disabled": (f"the Secret Manager API is not enabled for the project "
                             f"({reason})",
                             "enable it: gcloud services enable secretmanager.googleapis.com"),
        }
        message, fix = messages.get(failure.kind, (f"Secret Manager call failed ({reason})",
                                                   ""))
        # the fix goes in the message: a failed run shows messages, not a source's hint
        return SourceError(self.name, f"{message} — {fix}" if fix else message)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.transport.close()


class GcpApi(Api):
    """The client bound to one deadline: every call's timeout and retries end before it.
    The client's own retry is turned off (``retry=None``): its default waits up to 60 s;
    keyrun's retries UNAVAILABLE, RESOURCE_EXHAUSTED and INTERNAL. ``call`` raises
    :class:`GcpFailure`, or SourceError for a failure of the whole source."""

    max_attempts = _MAX_ATTEMPTS

    def __init__(self, client: Any, project: str, deadline: Deadline,
                 source: GcpSecretManagerSource) -> None:
        super().__init__(source.runtime, deadline)
        self.client = client
        self.project = project
        self.source = source

    def call(self, name: str, /, **params: Any) -> Any:
        return self.retry(lambda seconds: self._rpc(name, params, seconds))

    def classify(self, exc: Exception) -> GcpFailure:
        return classify(exc)

    def source_error(self, failure: Failure) -> SourceError:
        return self.source._source_error(failure, self.deadline)

    def _rpc(self, method: str, request: Mapping[str, Any], timeout: float) -> Any:
        """The RPC itself. The first one runs alone: google-auth refreshes a credential
        without a lock, and two first calls at once can both make a token, one reading the
        other's half-made one ('NoneType' object has no attribute 'decode')."""
        source = self.source
        if not source._authorized:
            with source._authorizing:
                if not source._authorized:
                    try:
                        return getattr(self.client, method)(request=request, retry=None,
                                                            timeout=timeout)
                    finally:
                        source._authorized = True
            timeout = max(0.05, min(timeout, self.deadline.remaining() - _MARGIN))
        return getattr(self.client, method)(request=request, retry=None, timeout=timeout)


def _import_quietly(module: str, runtime: Runtime) -> ModuleType:
    """Import the client with gRPC's C core logging errors only: by default it writes INFO
    lines (a failed TLS handshake…) to stderr, which belongs to the command. gRPC reads
    GRPC_VERBOSITY once, when it is first imported; the variable is removed again so
    that it never reaches the command's environment."""
    if "grpc" in sys.modules or "GRPC_VERBOSITY" in os.environ:
        return runtime.sdk(module)
    os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        return runtime.sdk(module)
    finally:
        os.environ.pop("GRPC_VERBOSITY", None)


# payloads


def parse_bundle(text: str, where: str) -> dict[str, Any] | str:
    """A bundle's keys: a JSON object, or dotenv text (``${VAR}`` expands from earlier lines
    of the payload only). A string says why it is neither, without quoting it."""
    from keyrun.dotenvfile import parse_dotenv, resolve_values

    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            line = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
            return f"{where} starts like JSON but is not valid JSON{line}"
        return data if isinstance(data, dict) else f"{where} is not a JSON object"
    try:
        entries = parse_dotenv(text, where)
        return dict(resolve_values(entries, {}, where))
    except ConfigError as exc:
        return f"{where} is neither a JSON object nor dotenv text ({exc.message})"


def update_bundle(text: str, name: str, value: str, where: str, *,
                  json_only: bool = False) -> str | None:
    """The bundle with ``name`` set, in the format it already has (None if it has none)."""
    from keyrun.dotenvfile import format_assignment, parse_dotenv, replace_assignment

    if not text.strip():
        return json.dumps({name: value}, ensure_ascii=False)
    if json_only or text.lstrip().startswith("{"):
        data = json_object(text)
        if data is None:
            return None
        data[name] = value
        return json.dumps(data, ensure_ascii=False, indent=2 if "\n" in text.strip() else None)
    try:
        entries = parse_dotenv(text, where)
    except ConfigError:
        return None
    if not entries:
        return format_assignment(name, value) + "\n"
    return replace_assignment(text, entries, name, value)


# messages and metadata


def _from_bundle(request: Request, target: Target, bundle: dict[str, Any] | str
                 ) -> str | Problem:
    if isinstance(bundle, str):
        return Problem("error", f"{bundle} — store a JSON object or KEY=value "
                                "lines in it, or use a secret per key (secret = "
                                "\"{env}-{key}\")")
    return bundle_entry(bundle, request, str(target), null="holds no value for")


def _learn_state(api: GcpApi, target: Target, failure: GcpFailure) -> None:
    """FAILED_PRECONDITION's text varies ("is in DESTROYED state", "is not in ENABLED
    state"), so GetSecretVersion tells the state, and the number "latest" stands for.
    Without secretmanager.versions.get (an accessor-only identity) both stay unknown."""
    try:
        version = api.call("get_secret_version", name=target.version_path)
    except (GcpFailure, KeyrunError):
        return
    state = _state_name(version)
    if state in ("DISABLED", "DESTROYED"):
        failure.state, failure.number = state.lower(), _number(version) or None


def _unusable(target: Target, failure: GcpFailure) -> str:
    """Why a version cannot be read, and what to do: from its state when known."""
    number, state = failure.number or target.version, failure.state
    which = ("the latest version" if number == "latest" else f"version {number}")
    where = f"{which} of secret {target.secret!r} in project {target.project!r}"
    enable = (f"gcloud secrets versions enable {number} --secret={target.secret} "
              f"--project={target.project}")
    if state is None:
        listing = f"gcloud secrets versions list {target.secret} --project={target.project}"
        if target.version == "latest":
            fix = ("\"latest\" is the newest version even when it is not enabled: "
                   f"{listing} shows its number and state; enable it if it is disabled, add "
                   "a new version with keyrun set, or pin an enabled one with version = \"N\"")
        else:
            fix = f"enable it if it is disabled ({enable}), or pin another version"
        return f"{where} is not enabled (disabled or destroyed) — {fix}"
    if target.version == "latest":
        fix = (f"\"latest\" is the newest version even when it is {state}: "
               + (f"enable it ({enable}), " if state == "disabled" else "")
               + "add a new version with keyrun set, or pin an enabled one with "
                 "version = \"N\"")
    elif state == "disabled":
        fix = f"enable it ({enable}) or pin another version"
    else:
        fix = "its value is gone: pin another version, or add one with keyrun set"
    return f"{where} is {state} — {fix}"


def _bundle_fix(target: Target, failure: GcpFailure) -> str:
    """What to do before keyrun set can add to a bundle whose latest version is unusable."""
    project = f"--project={target.project}"
    if failure.state == "disabled":
        return (f"enable it first: gcloud secrets versions enable {failure.number or 'N'} "
                f"--secret={target.secret} {project}")
    if failure.state == "destroyed":
        return ("its keys are gone, and a version holding only this key would hide that: add "
                f"a complete version by hand (gcloud secrets versions add {target.secret} "
                f"{project} --data-file=FILE)")
    return (f"gcloud secrets versions list {target.secret} {project} shows its state: "
            "enable it if it is disabled, else add a complete version by hand")


def _secret_times(secret: Any) -> tuple[datetime | None, datetime | None]:
    expires = _time(secret, "expire_time")
    rotation = secret.rotation if "rotation" in secret else None
    due = _time(rotation, "next_rotation_time") if rotation is not None else None
    return expires, due


def _time(message: Any, field: str) -> datetime | None:
    return aware(getattr(message, field)) if message is not None and field in message else None


def _state_name(version: Any) -> str:
    state = getattr(version, "state", None)
    return str(getattr(state, "name", state) or "STATE_UNSPECIFIED")


def _number(version: Any) -> str:
    return str(getattr(version, "name", "")).rsplit("/", 1)[-1]


def _bare_endpoint(endpoint: str) -> str:
    """``https://host:443/`` → ``host:443``: the client wants HOST[:PORT]."""
    return re.sub(r"^[a-z]+://", "", str(endpoint)).rstrip("/")
