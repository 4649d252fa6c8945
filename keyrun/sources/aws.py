"""The ``aws-secrets-manager`` source, and what both AWS sources share.

Shared: one boto3 session per source (the standard credential chain, the ``region``,
``profile`` and ``endpoint_url`` options, ``AWS_ENDPOINT_URL``), clients whose timeouts
come from keyrun's deadline and whose own retries are off, keyrun's retry of throttling
and server errors with jittered backoff inside that deadline, the translation of AWS
errors into messages that name the source, the item and the next step, and a small
daemon-thread pool for parallel calls.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from keyrun.errors import ConfigError, KeyrunError, SourceError
from keyrun.secret import Secret
from keyrun.sources import (
    Context,
    Deadline,
    Health,
    Item,
    Meta,
    Option,
    Outcome,
    Problem,
    Request,
    Source,
    import_sdk,
)
from keyrun.sources._values import as_text, decode_text, entry_value, json_object, pick_field
from keyrun.sources.runtime import Failure, Runtime, pause_before_retry
from keyrun.template import Template

T = TypeVar("T")

AWS_OPTIONS = (
    Option("region", "the AWS region; default AWS_REGION or AWS_DEFAULT_REGION, then the "
                     "profile's region", example="us-east-1"),
    Option("profile", "a named profile of ~/.aws/config; default AWS_PROFILE, then the "
                      "standard credential chain", example="prod-readonly"),
    Option("endpoint_url", "a custom endpoint (VPC endpoint, LocalStack, moto); default "
                           "AWS_ENDPOINT_URL", example="http://127.0.0.1:5000"),
)

_WORKERS = 16  # parallel calls per fetch; also the size of botocore's connection pool
_MARGIN = 0.25  # seconds kept back so a timeout is reported by the source, not the core
_MAX_ATTEMPTS = {"throttled": 12, "server": 6, "unreachable": 3}

_THROTTLING = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestThrottled",
    "RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
    "TransactionInProgressException",
}
_SERVER = {"InternalServiceError", "InternalFailure", "InternalServerError", "ServiceUnavailable",
           "ServiceUnavailableException", "InternalError", "RequestTimeout",
           "RequestTimeoutException"}
_MISSING = {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation",
           "UnauthorizedException", "KMSAccessDeniedException"}
_KMS = {"DecryptionFailure", "InvalidKeyId", "InvalidCiphertextException", "KMSDisabledException",
        "KMSInvalidStateException", "KMSNotFoundException", "KMSOptInRequired",
        "DisabledException", "KeyUnavailableException"}
_REJECTED = {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
             "SignatureDoesNotMatch", "IncompleteSignature", "MissingAuthenticationToken",
             "AuthFailure", "InvalidAccessKeyId", "NoCredentialsError",
             "PartialCredentialsError", "CredentialRetrievalError"}
_EXPIRED = {"ExpiredTokenException", "ExpiredToken", "RequestExpired", "TokenRefreshRequired",
            "TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError",
            "InvalidGrantException"}
_SOURCE_KINDS = {"no-credentials", "rejected", "expired", "unreachable", "timeout", "setup"}


class AwsFailure(Failure):
    """One failed AWS call, classified; ``detail`` is AWS's own message (never a value)."""

    whole_source_kinds = frozenset(_SOURCE_KINDS)

    @property
    def retryable(self) -> bool:
        return self.kind in _MAX_ATTEMPTS


def classify(exc: BaseException) -> AwsFailure:
    """Sort a boto3/botocore exception into what keyrun does about it."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping) and "Error" in response:
        error = response.get("Error") or {}
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        code, message = str(error.get("Code") or f"HTTP {status}"), str(error.get("Message") or "")
        inner = re.search(r"<Code>([^<]+)</Code>(?:\s*<Message>([^<]*)</Message>)?", message)
        if inner:  # an XML error body where JSON was expected (moto's IAM checks do this)
            code, message = inner.group(1), inner.group(2) or ""
        return failure_for_code(code, message, status)
    names = [cls.__name__ for cls in type(exc).__mro__]
    detail = _short(str(exc))
    if "ReadTimeoutError" in names:
        return AwsFailure("timeout", "ReadTimeoutError", detail)
    for name in names:
        if name == "NoCredentialsError":
            return AwsFailure("no-credentials", name, detail)
        if name in _EXPIRED:
            return AwsFailure("expired", name, detail)
        if name in _REJECTED:
            return AwsFailure("rejected", name, detail)
        if name in ("EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
                    "ProxyConnectionError", "SSLError", "HTTPClientError"):
            return AwsFailure("unreachable", name, detail)
        if name in ("NoRegionError", "ProfileNotFound", "InvalidConfigError",
                    "UnknownCredentialError", "InvalidRegionError"):
            return AwsFailure("setup", name, detail)
        if name == "ParamValidationError":
            return AwsFailure("invalid", name, detail)
    return AwsFailure("error", type(exc).__name__, detail)


def failure_for_code(code: str, message: str, status: int = 400) -> AwsFailure:
    """Classify an AWS error code (from a response, or a batch call's ``Errors`` entry)."""
    detail = _short(message)
    lowered = message.lower()
    if code in _THROTTLING or status == 429:
        return AwsFailure("throttled", code, detail)
    if code in _SERVER or status >= 500:
        return AwsFailure("server", code, detail)
    if code in _MISSING:
        return AwsFailure("missing", code, detail)
    if code in _EXPIRED:
        return AwsFailure("expired", code, detail)
    if code in _REJECTED:
        return AwsFailure("rejected", code, detail)
    if code.startswith("KMS") or code in _KMS:
        return AwsFailure("kms", code, detail)
    if code in _DENIED or status == 403:
        return AwsFailure("denied", code, detail)
    if code == "InvalidRequestException" and "delet" in lowered:
        return AwsFailure("deleted", code, detail)
    if code in ("ValidationException", "InvalidParameterException", "InvalidParameterValue"):
        return AwsFailure("invalid", code, detail)
    return AwsFailure("error", code, detail)


def _short(message: str, limit: int = 240) -> str:
    """AWS's message on one line, bounded (moto's repeat themselves; ours stay readable)."""
    text = " ".join(message.split())
    text = re.sub(r"^An error occurred \([A-Za-z.]+\) when calling the \w+ operation: ", "",
                  text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub(message: str, values: Iterable[str]) -> str:
    """Remove values from a message: on writes, moto (and a proxy) may echo the input."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        message = message.replace(value, "***")
    return message


@dataclass
class AwsApi:
    """A client bound to one deadline: its timeouts were derived from it."""

    client: Any
    deadline: Deadline
    source: str
    runtime: Runtime

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS call, retried with full-jitter backoff on throttling and server errors
        while the deadline leaves room; raises :class:`AwsFailure`."""
        method = getattr(self.client, _snake(operation))
        attempt = 0
        while True:
            attempt += 1
            if self.deadline.remaining() <= 0.05:
                raise AwsFailure("timeout", "deadline", "", attempt - 1)
            try:
                return dict(method(**params))
            except KeyrunError:
                raise
            except Exception as exc:
                failure = classify(exc)
            failure.attempts = attempt
            if not failure.retryable or attempt >= _MAX_ATTEMPTS[failure.kind]:
                raise failure
            if not pause_before_retry(attempt, self.deadline):
                raise failure

    def source_error(self, failure: AwsFailure) -> SourceError:
        return whole_source_error(self.source, failure, self.deadline, self.endpoint)


def whole_source_error(source: str, failure: AwsFailure, deadline: Deadline,
                       endpoint: str | None = None) -> SourceError:
    """The message for a failure that is the whole source's, naming what to do."""
    kind, reason = failure.kind, failure.reason
    at = f" at {endpoint}" if endpoint else ""
    messages = {
        "no-credentials": "no AWS credentials found (environment, AWS_PROFILE or the profile "
                          "option, ~/.aws files, SSO, container and instance metadata were "
                          "tried) — configure them: aws configure, aws sso login, or "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        "rejected": f"AWS rejected the credentials ({reason}) — check the access key and the "
                    "profile in use: aws sts get-caller-identity",
        "expired": f"the AWS credentials have expired ({reason}) — refresh them: aws sso login "
                   "(with --profile), or fetch new session credentials",
        "unreachable": f"cannot reach AWS{at} ({reason}) — check the network, proxy settings, "
                       "region, and endpoint_url or AWS_ENDPOINT_URL",
        "timeout": f"no answer from AWS{at} within the total deadline of {deadline.seconds:g}s "
                   "— check that the endpoint is reachable; raise the deadline with "
                   "timeout = \"60s\" in the environment's table",
        "setup": f"AWS is not configured: {reason} — "
                 + ("set region = \"…\" in the source's table, or AWS_REGION"
                    if failure.code == "NoRegionError"
                    else "check the profile option, AWS_PROFILE and ~/.aws/config"),
    }
    return SourceError(source, messages.get(kind, f"AWS call failed ({reason})"))


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class AwsSession:
    """One boto3 session per source; one client per deadline (created outside the hot
    loop, then shared by its worker threads, which boto3 clients allow)."""

    def __init__(self, source: Source, service: str) -> None:
        self.source = source
        self.service = service
        self._lock = threading.Lock()
        self._session: Any = None
        self._api: AwsApi | None = None
        self.runtime = Runtime(source, self._timed_out, workers=_WORKERS)

    def api(self, deadline: Deadline) -> AwsApi:
        with self._lock:
            if self._api is None or self._api.deadline is not deadline:
                self._api = AwsApi(self._client(deadline), deadline, self.source.name,
                                   self.runtime)
            return self._api

    def _timed_out(self, deadline: Deadline) -> SourceError:
        endpoint = self._api.endpoint if self._api is not None else None
        return whole_source_error(self.source.name, AwsFailure("timeout", "timeout"), deadline,
                                  endpoint)

    def _client(self, deadline: Deadline) -> Any:
        boto3 = import_sdk("boto3", self.source)
        config_module = import_sdk("botocore.config", self.source)
        settings = self.source.settings
        remaining = max(0.2, deadline.remaining())
        config = config_module.Config(
            connect_timeout=min(5.0, remaining),
            read_timeout=max(0.1, remaining - _MARGIN if remaining > 2 * _MARGIN
                             else remaining / 2),
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=_WORKERS * 2,
            user_agent_extra="keyrun",
        )
        try:
            if self._session is None:
                self._session = boto3.session.Session(profile_name=settings.get("profile"),
                                                      region_name=settings.get("region"))
            return self._session.client(self.service, config=config,
                                        endpoint_url=settings.get("endpoint_url"))
        except Exception as exc:
            raise whole_source_error(self.source.name, classify(exc), deadline) from None


def validate_aws(settings: Mapping[str, Any], where: str) -> None:
    endpoint = settings.get("endpoint_url")
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise ConfigError(f"{where}: endpoint_url {endpoint!r} is not an http(s) URL",
                          "write it like https://secretsmanager.eu-west-1.amazonaws.com")


def run_parallel(tasks: Sequence[Callable[[], T]], api: AwsApi) -> list[T]:
    return api.runtime.parallel(api.deadline, tasks)


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def key_prefix(template: Template, source: Source) -> str:
    """The part of a per-key location before ``{key}``: what every item's name starts with."""
    marker = "\x00"
    return template.render(source.context.project, source.context.env, marker).split(marker)[0]


def timestamp(value: object) -> datetime | None:
    """An AWS date as an aware datetime."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_VERSION_ID = re.compile(r"^[0-9a-fA-F-]{32,64}$")


def version_params(version: str | None) -> dict[str, str]:
    """A pin: a version id (a UUID) or a staging label such as AWSPREVIOUS."""
    if version is None:
        return {}
    return {"VersionId": version} if _VERSION_ID.match(version) else {"VersionStage": version}


class AwsSecretsManagerSource(Source):
    """AWS Secrets Manager.

    ``secret`` without ``{key}`` names ONE secret whose SecretString is a JSON object
    holding every key by name (the bundle); with ``{key}`` it names one secret per key,
    read with BatchGetSecretValue, 20 ids per call, the calls in parallel. A key's
    ``field`` picks a field of a JSON value; ``version`` pins a version id (a UUID) or
    a staging label (``AWSPREVIOUS``). SecretBinary must be UTF-8 text.

    Authenticates with the standard boto3 chain (environment, ``profile`` or AWS_PROFILE,
    ~/.aws files, SSO, container and instance roles). Throttling and server errors are
    retried with jittered backoff inside keyrun's deadline. ``keyrun set`` rewrites a
    bundle keeping its other keys, and refuses (restoring the other change) when another
    version was written between its read and its write; a per-key secret is created if
    it does not exist. ``doctor`` and ``list`` use DescribeSecret (no values).

    .. code-block:: toml

        [sources.aws]
        type = "aws-secrets-manager"
        region = "us-east-1"
        secret = "{project}/{env}"          # or "{project}/{env}/{key}": one secret per key
    """

    type_name = "aws-secrets-manager"
    summary = "AWS Secrets Manager: a JSON secret holding every key, or a secret per key"
    extra = "aws"
    has_versions = True
    writable = True
    records_age = True
    options = (
        Option("secret", "the secret's name or ARN; without {key} one JSON secret holds every "
                         "key, with {key} each key is its own secret",
               default="{project}/{env}", template=True, example="{project}/{env}/{key}"),
        *AWS_OPTIONS,
    )

    def __init__(self, name: str, settings: Mapping[str, Any], context: Context) -> None:
        super().__init__(name, settings, context)
        self._aws = AwsSession(self, "secretsmanager")

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        validate_aws(settings, where)

    @property
    def bundled(self) -> bool:
        return not self.template("secret").has_key

    def secret_id(self, request: Request) -> str:
        return self.render("secret", None if self.bundled else request.name)

    def locate(self, request: Request) -> str:
        where = self.secret_id(request)
        if self.bundled:
            where += f"#{request.name}" + (f".{request.field}" if request.field else "")
        elif request.field:
            where += f"#{request.field}"
        return where + (f"@{request.version}" if request.version else "")

    # reading

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        if not requests:
            return {}
        api = self._aws.api(deadline)
        keys = [(self.secret_id(r), r.version) for r in requests]
        wanted = list(dict.fromkeys(keys))
        pinned = [k for k in wanted if k[1] is not None or self.bundled]
        plain = [k[0] for k in wanted if k not in pinned]
        tasks = [partial(self._read_pinned, api, *k) for k in pinned]
        tasks += [partial(self._read_batch, api, c) for c in chunked(plain, 20)]
        read: dict[tuple[str, str | None], Any] = {}
        for part in run_parallel(tasks, api):
            read.update(part)
        return {r.key: self._outcome(api, r, read.get(k)) for r, k in zip(requests, keys,
                                                                          strict=True)}

    def _read_pinned(self, api: AwsApi, secret: str, version: str | None
                     ) -> dict[tuple[str, str | None], Any]:
        return {(secret, version): self._read_one(api, secret, version)}

    def _read_one(self, api: AwsApi, secret: str, version: str | None) -> Any:
        try:
            return api.call("GetSecretValue", SecretId=secret, **version_params(version))
        except AwsFailure as failure:
            if failure.whole_source:
                raise api.source_error(failure) from None
            return failure

    def _read_batch(self, api: AwsApi, ids: list[str]) -> dict[tuple[str, str | None], Any]:
        found: dict[tuple[str, str | None], Any] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"SecretIdList": ids}
            if token:
                params["NextToken"] = token
            try:
                page = api.call("BatchGetSecretValue", **params)
            except AwsFailure as failure:
                if failure.whole_source:
                    raise api.source_error(failure) from None
                if failure.kind == "denied" or (failure.kind == "invalid" and len(ids) > 1):
                    # a policy granting GetSecretValue only, or one bad id spoiling the call
                    return self._read_each(api, ids)
                return {(secret, None): failure for secret in ids}
            for value in page.get("SecretValues", []):
                found[(_matching_id(ids, value), None)] = value
            for error in page.get("Errors", []):
                found[(str(error.get("SecretId")), None)] = failure_for_code(
                    str(error.get("ErrorCode")), str(error.get("Message") or ""))
            token = page.get("NextToken")
            if not token:
                return found

    def _read_each(self, api: AwsApi, ids: list[str]) -> dict[tuple[str, str | None], Any]:
        tasks = [partial(self._read_one, api, secret, None) for secret in ids]
        results = run_parallel(tasks, api)
        return {(secret, None): result for secret, result in zip(ids, results, strict=True)}

    def _outcome(self, api: AwsApi, request: Request, read: Any) -> Outcome:
        secret = self.secret_id(request)
        what = _describe_secret(secret, request.version)
        if read is None:
            return Problem.missing(f"no {what} in {api.region}")
        if isinstance(read, AwsFailure):
            return self._problem(read, secret, request.version, api)
        text = _secret_text(read, what)
        if isinstance(text, Problem):
            return text
        version, updated = read.get("VersionId"), timestamp(read.get("CreatedDate"))
        if self.bundled:
            value = _from_bundle(request, text, what)
        elif request.field is not None:
            value = pick_field(text, request.field, what)
        else:
            value = text
        if isinstance(value, Problem):
            return value
        return Item(Secret(value), version=version, updated=updated)

    def _problem(self, failure: AwsFailure, secret: str, version: str | None,
                 api: AwsApi) -> Problem:
        return item_problem(failure, _describe_secret(secret, version), api,
                            "secretsmanager:GetSecretValue", restore=_restore(secret))

    # metadata

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        if not requests:
            return {}
        api = self._aws.api(deadline)
        ids = list(dict.fromkeys(self.secret_id(r) for r in requests))
        tasks = [partial(self._describe_one, api, secret) for secret in ids]
        described = dict(zip(ids, run_parallel(tasks, api),
                             strict=True))
        return {r.key: self._meta(r, described[self.secret_id(r)]) for r in requests}

    def _describe_one(self, api: AwsApi, secret: str) -> dict[str, Any] | AwsFailure:
        try:
            return api.call("DescribeSecret", SecretId=secret)
        except AwsFailure as failure:
            if failure.whole_source:
                raise api.source_error(failure) from None
            return failure

    def _meta(self, request: Request, described: dict[str, Any] | AwsFailure) -> Meta:
        if isinstance(described, AwsFailure):
            exists = False if described.kind == "missing" else None
            return Meta(exists=exists, note=f"DescribeSecret failed: {described.reason}")
        stages: dict[str, list[str]] = described.get("VersionIdsToStages") or {}
        label = request.version or "AWSCURRENT"
        version = next((v for v, s in stages.items() if label in s or v == label), None)
        rotation = described.get("RotationEnabled")
        notes = []
        if rotation:
            days = (described.get("RotationRules") or {}).get("AutomaticallyAfterDays")
            notes.append(f"rotation enabled{f' every {days} days' if days else ''}")
        deleted = timestamp(described.get("DeletedDate"))
        if deleted:
            notes.append(f"scheduled for deletion on {deleted:%Y-%m-%d}")
        return Meta(
            exists=(deleted is None and version is not None) if not self.bundled else None,
            version=version,
            updated=timestamp(described.get("LastChangedDate")),
            next_rotation=timestamp(described.get("NextRotationDate")) if rotation else None,
            deleted=deleted,
            note="; ".join(notes) or None,
        )

    def check(self, deadline: Deadline) -> Health:
        api = self._aws.api(deadline)
        if not self.bundled:
            return self._check_listing(api)
        secret = self.render("secret")
        described = self._describe_one(api, secret)
        if isinstance(described, AwsFailure):
            return _health_after(described, f"secret {secret!r}", api, "DescribeSecret")
        warnings = []
        deleted = timestamp(described.get("DeletedDate"))
        if deleted:
            warnings.append(f"secret {secret!r} is scheduled for deletion on {deleted:%Y-%m-%d}; "
                            f"restore it: {_restore(secret)}")
        due = timestamp(described.get("NextRotationDate"))
        if described.get("RotationEnabled") and due and due < datetime.now(UTC):
            warnings.append(f"secret {secret!r} was due for rotation on {due:%Y-%m-%d}")
        changed = timestamp(described.get("LastChangedDate"))
        detail = f"secret {secret!r} in {api.region}" + (
            f", last changed {changed:%Y-%m-%d}" if changed else "")
        return Health(detail, tuple(warnings))

    def _check_listing(self, api: AwsApi) -> Health:
        prefix = key_prefix(self.template("secret"), self)
        params: dict[str, Any] = {"MaxResults": 1}
        if prefix and not prefix.startswith("arn:"):
            params["Filters"] = [{"Key": "name", "Values": [prefix]}]
        try:
            api.call("ListSecrets", **params)
        except AwsFailure as failure:
            if failure.whole_source:
                raise api.source_error(failure) from None
            return _health_after(failure, f"secrets named {prefix}…", api, "ListSecrets")
        return Health(f"secrets named {prefix}… in {api.region}: reachable")

    # writing

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        api = self._aws.api(deadline)
        secret = self.secret_id(request)
        if self.bundled:
            if request.field is not None:
                raise SourceError(self.name, f"{request.key} is read from field "
                                  f"{request.field!r} of a value in secret {secret!r}; keyrun "
                                  "set cannot rewrite one field of it — edit the secret by hand")
            self._update_json(api, secret, request.name, value)
        elif request.field is not None:
            self._update_json(api, secret, request.field, value)
        else:
            self._put_whole(api, secret, value)
        return self.locate(Request(request.key, request.name, request.field))

    def _put_whole(self, api: AwsApi, secret: str, value: Secret) -> None:
        text = value.reveal()
        if not text:
            raise SourceError(self.name, f"Secrets Manager cannot hold an empty value "
                              f"(secret {secret!r}) — store a non-empty value")
        token = str(uuid.uuid4())
        try:
            api.call("PutSecretValue", SecretId=secret, SecretString=text,
                     ClientRequestToken=token)
        except AwsFailure as failure:
            if failure.kind != "missing":
                raise self._write_error(api, failure, secret, [text]) from None
            self._create(api, secret, text, token)

    def _create(self, api: AwsApi, secret: str, text: str, token: str) -> None:
        try:
            api.call("CreateSecret", Name=secret, SecretString=text, ClientRequestToken=token)
        except AwsFailure as failure:
            if failure.code == "ResourceExistsException":
                raise SourceError(self.name, f"secret {secret!r} was created by someone else "
                                  "while keyrun was writing it — run keyrun set again") from None
            raise self._write_error(api, failure, secret, [text]) from None

    def _update_json(self, api: AwsApi, secret: str, name: str, value: Secret) -> None:
        """Read-modify-write of a JSON object secret that keeps the other keys."""
        current = self._read_one(api, secret, None)
        if isinstance(current, AwsFailure) and current.kind == "missing":
            text = json.dumps({name: value.reveal()}, ensure_ascii=False)
            self._create(api, secret, text, str(uuid.uuid4()))
            return
        if isinstance(current, AwsFailure):
            raise self._write_error(api, current, secret, []) from None
        data = _json_object(current, secret)
        if isinstance(data, str):
            raise SourceError(self.name, f"{data} — keyrun set will not replace it")
        data[name] = value.reveal()
        text = json.dumps(data, ensure_ascii=False)
        secrets = [text, *(as_text(v) for v in data.values())]
        token = str(uuid.uuid4())
        try:
            api.call("PutSecretValue", SecretId=secret, SecretString=text,
                     ClientRequestToken=token)
            self._confirm_base(api, secret, str(current["VersionId"]), token)
        except AwsFailure as failure:
            raise self._write_error(api, failure, secret, secrets) from None

    def _confirm_base(self, api: AwsApi, secret: str, base: str, written: str) -> None:
        """PutSecretValue has no condition, so check afterwards that the version it
        replaced (now AWSPREVIOUS) is the one that was read. If another writer's version
        came in between, it is put back and the write is refused.

        (Staging the new version and moving AWSCURRENT with UpdateSecretVersionStage's
        RemoveFromVersionId would be a true compare-and-swap, but moto's server keeps
        answering GetSecretValue with the old version after such a move.)"""
        replaced = api.call("GetSecretValue", SecretId=secret, VersionStage="AWSPREVIOUS")
        if replaced.get("VersionId") in (base, written):
            return
        restore: dict[str, Any] = {k: replaced[k] for k in ("SecretString", "SecretBinary")
                                   if replaced.get(k) is not None}
        api.call("PutSecretValue", SecretId=secret, ClientRequestToken=str(uuid.uuid4()),
                 **restore)
        raise SourceError(self.name, f"secret {secret!r} changed while keyrun was writing it; "
                          "the other change was kept and this value was not stored — run "
                          "keyrun set again")

    def _write_error(self, api: AwsApi, failure: AwsFailure, secret: str,
                     values: list[str]) -> SourceError:
        if failure.whole_source:
            return api.source_error(failure)
        problem = item_problem(failure, f"secret {secret!r}", api,
                               "secretsmanager:PutSecretValue and CreateSecret",
                               restore=_restore(secret), writing=True)
        return SourceError(self.name, scrub(problem.message, values))


def item_problem(failure: AwsFailure, what: str, api: AwsApi, permission: str,
                 *, restore: str = "", writing: bool = False) -> Problem:
    """A per-item failure as a Problem whose message names the item and the next step."""
    reason, kind = failure.reason, failure.kind
    verb = "writing" if writing else "reading"
    if kind == "missing":
        return Problem.missing(f"no {what} in {api.region}")
    if kind == "denied":
        return Problem("denied", f"access denied to {what} ({reason}) — grant "
                                 f"{permission} on it to the identity in use")
    if kind == "kms":
        return Problem("error", f"KMS could not {'encrypt' if writing else 'decrypt'} "
                                f"{what} ({reason}) — check that its KMS key is enabled and "
                                "that the identity in use may use it (kms:Decrypt)")
    if kind == "deleted":
        fix = f" — restore it: {restore}" if restore else ""
        return Problem("error", f"{what} is scheduled for deletion{fix}")
    if kind in ("throttled", "server"):
        return Problem("error", f"AWS kept answering {reason} while {verb} {what} "
                                f"({failure.attempts} attempts within the "
                                f"{api.deadline.seconds:g}s deadline) — try again, or raise "
                                "timeout in the environment's table")
    return Problem("error", f"{verb} {what} failed ({reason})")


def _health_after(failure: AwsFailure, what: str, api: AwsApi, operation: str) -> Health:
    """``check`` reached AWS and was authenticated, but could not look at the item."""
    if failure.kind == "missing":
        return Health(f"{api.region}: reachable", (f"{what} does not exist in {api.region} "
                                                   "(keyrun set creates it)",))
    if failure.kind == "denied":
        return Health(f"{api.region}: reachable and authenticated",
                      (f"{operation} on {what} is denied ({failure.reason}), so doctor cannot "
                       "see its age without reading values — grant that permission",))
    return Health(f"{api.region}: reachable", (f"{operation} on {what} failed: "
                                               f"{failure.reason}",))


def _describe_secret(secret: str, version: str | None) -> str:
    return f"secret {secret!r}" + (f" version {version!r}" if version else "")


def _restore(secret: str) -> str:
    return f"aws secretsmanager restore-secret --secret-id '{secret}'"


def _matching_id(ids: Sequence[str], value: Mapping[str, Any]) -> str:
    """Which requested id (name, ARN or partial ARN) a batch result answers."""
    name, arn = str(value.get("Name")), str(value.get("ARN"))
    for candidate in ids:
        if candidate in (name, arn):
            return candidate
    return next((c for c in ids if c.startswith("arn:") and arn.startswith(c)), name)


def _secret_text(value: Mapping[str, Any], what: str) -> str | Problem:
    if value.get("SecretString") is not None:
        return str(value["SecretString"])
    binary = value.get("SecretBinary")
    if isinstance(binary, bytes | bytearray):
        return decode_text(bytes(binary), what)
    return Problem("error", f"{what} holds no value")


def _json_object(value: Mapping[str, Any], secret: str) -> dict[str, Any] | str:
    """The bundle's JSON object, or why it is not one (never quoting it)."""
    raw = value.get("SecretString")
    if raw is None:
        return f"secret {secret!r} holds SecretBinary, not a JSON object of keys"
    try:
        data = json.loads(raw)
    except ValueError:
        return f"secret {secret!r} is not JSON, so it cannot hold keys by name"
    if not isinstance(data, dict):
        return f"secret {secret!r} is JSON but not an object, so it cannot hold keys by name"
    return data


def _from_bundle(request: Request, text: str, what: str) -> str | Problem:
    data = json_object(text)
    if data is None:
        return Problem("error", f"{what} is not a JSON object of keys — store "
                                "{\"KEY\": \"value\", …} in it, or use a secret per key "
                                "(secret = \"…/{key}\")")
    if data.get(request.name) is None:
        detail = "holds null for" if request.name in data else "has no key"
        return Problem.missing(f"{what} {detail} {request.name!r}")
    return entry_value(data[request.name], request.field, f"{what}#{request.name}")
