"""What both AWS sources share: one boto3 session per source (the standard credential
chain, the ``region``, ``profile`` and ``endpoint_url`` options, ``AWS_ENDPOINT_URL``),
clients whose timeouts come from keyrun's deadline and whose own retries are off, keyrun's
retry of throttling and server errors inside that deadline (the source runtime's), and the
translation of AWS errors into messages that name the item and the next step.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from keyrun.errors import ConfigError, SourceError
from keyrun.sources import Deadline, Option, Problem, Source
from keyrun.sources.runtime import (
    Api,
    Endpoint,
    Failure,
    Runtime,
    attempts,
    check_reachable,
    no_answer,
    short,
)
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


def _short(message: str) -> str:
    """AWS's message on one line, bounded (moto's repeat themselves; ours stay readable)."""
    return short(re.sub(r"^An error occurred \([A-Za-z.]+\) when calling the \w+ operation: ",
                        "", " ".join(message.split())), 240)


def scrub(message: str, values: Iterable[str]) -> str:
    """Remove values from a message: on writes, moto (and a proxy) may echo the input."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        message = message.replace(value, "***")
    return message


class AwsApi(Api):
    """A client bound to one deadline: its timeouts were derived from it. ``call`` raises
    :class:`AwsFailure` for a failure of the item, a SourceError for one of the whole source
    (credentials, network, the deadline)."""

    max_attempts = _MAX_ATTEMPTS

    def __init__(self, client: Any, deadline: Deadline, endpoint: Endpoint,
                 runtime: Runtime) -> None:
        super().__init__(runtime, deadline)
        self.client = client
        self.endpoint = endpoint

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def call(self, name: str, /, **params: Any) -> dict[str, Any]:
        method = getattr(self.client, re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())
        return self.retry(lambda _: dict(method(**params)))

    def pages(self, name: str, /, **params: Any) -> Iterator[dict[str, Any]]:
        """Every page of a call that pages with NextToken."""
        while True:
            page = self.call(name, **params)
            yield page
            if not page.get("NextToken"):
                return
            params["NextToken"] = page["NextToken"]

    def classify(self, exc: Exception) -> AwsFailure:
        return classify(exc)

    def source_error(self, failure: Failure) -> SourceError:
        return whole_source_error(self.runtime.source.name, failure, self.deadline,
                                  self.endpoint.url)


def whole_source_error(source: str, failure: Failure, deadline: Deadline,
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
        "timeout": f"{no_answer(deadline, 'AWS' + at)} — {check_reachable('the endpoint')}",
        "setup": f"AWS is not configured: {reason} — "
                 + ("set region = \"…\" in the source's table, or AWS_REGION"
                    if failure.code == "NoRegionError"
                    else "check the profile option, AWS_PROFILE and ~/.aws/config"),
    }
    return SourceError(source, messages.get(kind, f"AWS call failed ({reason})"))


class AwsSession:
    """One boto3 session per source; one client per deadline (created outside the hot
    loop, then shared by its worker threads, which boto3 clients allow)."""

    def __init__(self, source: Source, service: str) -> None:
        self.source = source
        self.service = service
        self.runtime = Runtime(source, self._timed_out, workers=_WORKERS, credential=None)
        self._lock = threading.Lock()
        self._session: Any = None
        self._api: AwsApi | None = None

    def api(self, deadline: Deadline) -> AwsApi:
        with self._lock:
            if self._api is None or self._api.deadline is not deadline:
                client = self._client(deadline)
                configured = self.source.settings.get("endpoint_url")
                origin = (f"[sources.{self.source.name}] endpoint_url" if configured
                          else "the AWS configuration (AWS_ENDPOINT_URL, ~/.aws/config, region)")
                endpoint = self.runtime.endpoint(str(client.meta.endpoint_url), origin)
                self._api = AwsApi(client, deadline, endpoint, self.runtime)
            return self._api

    def _timed_out(self, deadline: Deadline) -> SourceError:
        endpoint = self._api.endpoint.url if self._api is not None else None
        return whole_source_error(self.source.name, AwsFailure("timeout", "timeout"), deadline,
                                  endpoint)

    def _client(self, deadline: Deadline) -> Any:
        boto3 = self.runtime.sdk("boto3")
        config_module = self.runtime.sdk("botocore.config")
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


class AwsSource(Source):
    """Both AWS sources: the boto3 session (``self._aws``) for ``service``, the options
    they share, and the check of endpoint_url."""

    service: ClassVar[str]
    extra = "aws"
    has_versions = True
    writable = True
    records_age = True

    def __init__(self, name: str, settings: Mapping[str, Any], context: Any) -> None:
        super().__init__(name, settings, context)
        self._aws = AwsSession(self, self.service)

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        endpoint = settings.get("endpoint_url")
        if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
            raise ConfigError(f"{where}: endpoint_url {endpoint!r} is not an http(s) URL",
                              "write it like https://secretsmanager.eu-west-1.amazonaws.com")


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def key_prefix(template: Template, source: Source) -> str:
    """The part of a per-key location before ``{key}``: what every item's name starts with."""
    marker = "\x00"
    return template.render(source.context.project, source.context.env, marker).split(marker)[0]


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
                                f"({attempts(failure.attempts)} within the "
                                f"{api.deadline.seconds:g}s deadline) — try again, or raise "
                                "timeout in the environment's table")
    return Problem("error", f"{verb} {what} failed ({reason})")
