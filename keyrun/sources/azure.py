"""The ``azure-key-vault`` source: Azure Key Vault secrets, through azure-keyvault-secrets."""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Meta, Option, Outcome, Problem, Request, Source
from keyrun.sources._values import entry_value, json_object
from keyrun.sources.runtime import RAISE_DEADLINE, Endpoint, Runtime, Verdict, gave_up, timed_out
from keyrun.template import PLACEHOLDERS, Template

NAME_RULE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
# Key Vault's DNS suffixes: Azure, Azure operated by 21Vianet (China), Azure Government, and
# Azure Germany (closed in 2021)
PUBLIC_HOSTS = ("*.vault.azure.net", "*.vault.azure.cn", "*.vault.usgovcloudapi.net",
                "*.vault.microsoftazure.de")
_TEMPLATE_TEXT = re.compile(r"^[0-9A-Za-z_-]*$")
_PARALLEL = 8  # requests' connection pool keeps 10 per host; more would churn connections
_CONNECT_TIMEOUT = 5.0
_MARGIN = 0.25  # seconds kept back so that a timeout is reported by the source, not the core
_CHALLENGE_RESOURCE = re.compile(r"challenge resource '([^']*)'")
_CREDENTIAL_HINT = (
    "sign in with `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
    "(a service principal), or run where a managed identity is assigned"
)
T = TypeVar("T")


def azure_name(name: str) -> str:
    """Key Vault names allow letters, digits and dashes only: ``_`` becomes ``-``."""
    return name.replace("_", "-")


class AzureKeyVaultSource(Source):
    """Azure Key Vault secrets, authenticated with azure-identity's DefaultAzureCredential.

    ``secret`` with ``{key}`` reads one secret per key; without ``{key}`` it reads one
    secret holding a JSON object of every key by name (a bundle). Key Vault names allow
    only letters, digits and dashes, so ``_`` becomes ``-`` in secret names, the same way
    for ``run``, ``list``, ``doctor`` and ``set`` (``OPENAI_API_KEY`` is read from the
    secret ``OPENAI-API-KEY``); ``doctor`` reports two keys that map to one secret.
    A key's ``version`` pins a secret version. A disabled, expired or not-yet-valid
    secret is an error naming it; its expiry and last change feed ``doctor``'s
    ``rotation`` check. ``keyrun set`` adds a new version (``set_secret``). HTTP 429 and
    5xx answers are retried with backoff (honouring ``Retry-After``) until the run's
    deadline; the SDK's own retry is off, as it would sleep past it.

    Authentication is DefaultAzureCredential's chain: a service principal in
    ``AZURE_TENANT_ID``/``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET`` (or a certificate),
    workload identity, managed identity, then the Azure CLI, Azure PowerShell and Azure
    Developer CLI sign-ins. ``AZURE_*`` variables are left in the command's environment.

    .. code-block:: toml

        [sources.azure]
        type = "azure-key-vault"
        vault_url = "https://acme-{env}.vault.azure.net"
        secret = "{key}"
    """

    type_name = "azure-key-vault"
    summary = "Azure Key Vault secrets (per key or one JSON bundle; versions; writable)"
    extra = "azure"
    has_versions = True
    writable = True
    records_age = True
    options = (
        Option("vault_url", "the vault's URL; may use {project} and {env}", required=True,
               template=True, example="https://acme.vault.azure.net"),
        Option("secret", "the secret's name: with {key}, one secret per key; without, one "
               "secret holding a JSON object of every key (\"_\" becomes \"-\" in names)",
               default="{key}", template=True, example="{env}-{key}"),
    )

    def __init__(self, name: str, settings: Mapping[str, Any], context: Any) -> None:
        super().__init__(name, settings, context)
        self._lock = threading.Lock()
        self._client: Any = None
        self._credential: Any = None
        self.runtime = Runtime(self, self._timed_out, margin=_MARGIN, spare=_MARGIN,
                               credential="your Azure access token", public=PUBLIC_HOSTS,
                               workers=_PARALLEL)

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        url = str(settings["vault_url"])
        if not url.startswith("https://"):
            raise ConfigError(f"{where}: vault_url {url!r} must start with https://",
                              "Key Vault only accepts tokens over TLS, e.g. "
                              "https://acme.vault.azure.net")
        text = str(settings["secret"])
        literal = text
        for placeholder in PLACEHOLDERS:
            literal = literal.replace("{" + placeholder + "}", "")
        if not _TEMPLATE_TEXT.match(literal):
            raise ConfigError(f"{where}: secret {text!r} holds characters Key Vault names "
                              "cannot have",
                              "use letters, digits, dashes (and \"_\", which becomes \"-\") "
                              "around {project}, {env} and {key}")

    # names and places

    @property
    def per_key(self) -> bool:
        return Template(str(self.settings["secret"]), where=self.name).has_key

    @functools.cached_property
    def endpoint(self) -> Endpoint:
        return self.runtime.endpoint(self.render("vault_url"), f"[sources.{self.name}] vault_url")

    def endpoints(self) -> tuple[Endpoint, ...]:
        return (self.endpoint,)

    @property
    def vault_url(self) -> str:
        return self.endpoint.url

    @property
    def vault_host(self) -> str:
        """For names and messages: not checked, since naming a vault sends nothing."""
        return Endpoint(self.render("vault_url"), "").host

    def backend_name(self, name: str) -> str:
        return azure_name(name) if self.per_key else name

    def secret_name(self, request: Request) -> str:
        """The Key Vault secret that holds ``request`` (per key, or the bundle)."""
        key = request.name if self.per_key else None
        return azure_name(self.render("secret", key))

    def locate(self, request: Request) -> str:
        where = f"{self.vault_host}/{self.secret_name(request)}"
        if request.version:
            where += f"@{request.version}"
        return where if self.per_key else f"{where}#{request.name}"

    def identity(self, request: Request) -> str:
        # Key Vault names are case-insensitive: api-key and API-KEY are one secret.
        where = f"{self.vault_host}/{self.secret_name(request)}".lower()
        if request.version:
            where += f"@{request.version}"
        return where if self.per_key else f"{where}#{request.name}"

    def token_env_vars(self) -> tuple[str, ...]:
        return ()

    # reading

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        wanted: dict[tuple[str, str | None], list[Request]] = {}
        for request in requests:
            name = self.secret_name(request)
            if not NAME_RULE.match(name):
                results[request.key] = Problem("error", self._bad_name(name))
                continue
            wanted.setdefault((name, request.version), []).append(request)
        tasks = [partial(self._get, target, deadline) for target in wanted]
        # the first alone: one challenge and one token serve the others
        secrets = self.runtime.parallel(deadline, tasks, first_alone=True)
        for ((name, _), group), got in zip(wanted.items(), secrets, strict=True):
            for request in group:
                results[request.key] = self._outcome(request, name, got)
        return results

    def _get(self, target: tuple[str, str | None], deadline: Deadline) -> Any:
        """The secret, or a Problem for this secret alone; raises SourceError."""
        name, version = target
        errors = self.runtime.sdk("azure.core.exceptions")
        client = self._sdk(deadline)
        try:
            return self._call(deadline, lambda limits: client.get_secret(name, version,
                                                                          **limits))
        except errors.ResourceNotFoundError:
            pinned = f" version {version}" if version else ""
            return Problem.missing(f"no secret {name}{pinned} in {self.vault_host}")
        except errors.AzureError as exc:
            return self._failure(exc, name, "read")

    def _outcome(self, request: Request, name: str, got: Any) -> Outcome:
        if isinstance(got, Problem):
            return got
        props = got.properties
        unusable = _unusable(props, name, self.vault_host)
        if unusable:
            fix = f" — {self._enable_fix(name)}" if props.enabled is False else ""
            return Problem("error", f"{unusable}{fix}")
        value = got.value if got.value is not None else ""
        picked = (entry_value(value, request.field, self.locate(request)) if self.per_key
                  else self._from_bundle(request, name, value))
        if isinstance(picked, Problem):
            return picked
        return Item(Secret(picked), version=props.version, updated=props.updated_on,
                    expires=props.expires_on)

    def _from_bundle(self, request: Request, name: str, raw: str) -> str | Problem:
        data = json_object(raw)
        if data is None:
            return Problem("error", f"secret {name} in {self.vault_host} is not a JSON object, "
                                    "so it cannot hold keys by name")
        if request.name not in data:
            return Problem.missing(f"no {request.name!r} in secret {self.vault_host}/{name}")
        return entry_value(data[request.name], request.field, self.locate(request))

    # value-free

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        errors = self.runtime.sdk("azure.core.exceptions")
        client = self._sdk(deadline)
        latest: dict[str, Any] | None = None
        found: dict[str, Meta] = {}
        try:
            for request in requests:
                name = self.secret_name(request)
                if request.version:
                    props = self._find_version(client, name, request.version, deadline)
                else:
                    if latest is None:
                        latest = self._latest_properties(client, deadline)
                    props = latest.get(name.lower())
                found[request.key] = _meta(props, bundle=not self.per_key)
        except errors.AzureError as exc:
            raise self._whole(exc, "list") from None
        return found

    def _latest_properties(self, client: Any, deadline: Deadline) -> dict[str, Any]:
        def listing(limits: dict[str, Any]) -> dict[str, Any]:
            listed: Iterable[Any] = client.list_properties_of_secrets(**limits)
            return {str(props.name).lower(): props for props in listed}

        return self._call(deadline, listing)

    def _find_version(self, client: Any, name: str, version: str, deadline: Deadline) -> Any:
        errors = self.runtime.sdk("azure.core.exceptions")

        def listing(limits: dict[str, Any]) -> Any:
            listed = client.list_properties_of_secret_versions(name, **limits)
            return next((props for props in listed if props.version == version), None)

        try:
            return self._call(deadline, listing)
        except errors.ResourceNotFoundError:
            return None

    def check(self, deadline: Deadline) -> Health:
        errors = self.runtime.sdk("azure.core.exceptions")
        client = self._sdk(deadline)
        try:
            self._call(deadline, lambda limits: next(client.list_properties_of_secrets(
                max_page_size=1, **limits).by_page(), None))
        except errors.HttpResponseError as exc:
            if exc.status_code == 403:
                return Health(f"{self.vault_host}: authenticated",
                              (f"{self.vault_host} does not let this identity list secrets "
                               "(secrets/list), so doctor cannot tell their age",))
            raise self._whole(exc, "list") from None
        except errors.AzureError as exc:
            raise self._whole(exc, "list") from None
        return Health(f"{self.vault_host}: authenticated")

    # writing

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        errors = self.runtime.sdk("azure.core.exceptions")
        name = self.secret_name(request)
        if not NAME_RULE.match(name):
            raise SourceError(self.name, f"{request.key}: {self._bad_name(name)}",
                              "give the key a valid backend name with name = \"…\"")
        if request.field is not None:
            raise SourceError(self.name, f"{request.key} is field {request.field!r} of a JSON "
                              f"value at {self.locate(request)}; keyrun set would replace "
                              "the whole value",
                              "update that field in the vault itself (az keyvault secret set)")
        client = self._sdk(deadline)
        try:
            if self.per_key:
                text, kind = value.reveal(), None
            else:
                text = self._updated_bundle(client, name, request, value, deadline)
                kind = "application/json"
            stored = self._call(deadline, lambda limits: client.set_secret(
                name, text, content_type=kind, **limits))
        except errors.AzureError as exc:
            raise self._whole(exc, "write", name) from None
        where = f"{self.vault_host}/{name}" + ("" if self.per_key else f"#{request.name}")
        return f"{where} (version {stored.properties.version})"

    def _updated_bundle(self, client: Any, name: str, request: Request, value: Secret,
                        deadline: Deadline) -> str:
        errors = self.runtime.sdk("azure.core.exceptions")
        try:
            current = self._call(deadline, lambda limits: client.get_secret(
                name, **limits)).value or "{}"
        except errors.ResourceNotFoundError:
            current = "{}"
        except errors.HttpResponseError as exc:
            if _is_disabled(exc):
                raise SourceError(self.name, f"{request.key} is written into secret {name} in "
                                  f"{self.vault_host}, which holds every key, but that secret "
                                  "is disabled, so keyrun cannot read the keys it holds",
                                  f"enable it first: {self._enable_command(name)}") from None
            raise
        data = json_object(current)
        if data is None:
            raise SourceError(self.name, f"secret {name} in {self.vault_host} is not a JSON "
                              f"object, so {request.key} cannot be added to it",
                              "fix the secret, or read keys from one secret each with "
                              "secret = \"{key}\"")
        data[request.name] = value.reveal()
        return json.dumps(data, ensure_ascii=False)

    # the SDK

    def _sdk(self, deadline: Deadline) -> Any:
        with self._lock:
            if self._client is None:
                url = self.vault_url  # a host the user did not choose stops here
                secrets = self.runtime.sdk("azure.keyvault.secrets")
                identity = self.runtime.sdk("azure.identity")
                _quiet_sdk_logging()
                # the credential's limits are fixed here: its retries (IMDS answers 410 and
                # 429 while it warms up) end before this deadline, so that a silent
                # identity endpoint is named by the source, not timed out by the core
                limit = max(0.5, deadline.remaining() - 2 * _MARGIN)
                self._credential = identity.DefaultAzureCredential(
                    process_timeout=min(10.0, limit), connection_timeout=min(_CONNECT_TIMEOUT,
                                                                             limit),
                    read_timeout=limit, retry_total=2, retry_backoff_factor=0.2,
                    retry_backoff_max=1, timeout=limit)
                self._client = secrets.SecretClient(
                    url, self._credential, retry_total=0,
                    connection_timeout=min(_CONNECT_TIMEOUT, limit), read_timeout=limit)
            return self._client

    def _call(self, deadline: Deadline, call: Callable[[dict[str, Any]], T]) -> T:
        """One request (or one whole listing) through the SDK, given the socket limits left
        by the deadline; HTTP 429 and 5xx are retried with keyrun's backoff, honouring
        Retry-After, while the deadline leaves room (then a SourceError for the vault)."""
        errors = self.runtime.sdk("azure.core.exceptions")

        def judge(exc: Exception, tries: int) -> Verdict:
            if isinstance(exc, errors.HttpResponseError):
                status = exc.status_code or 0
                if status != 429 and status < 500:
                    return Verdict(exc)
                after = _header(exc, "Retry-After")
                return Verdict(self._gave_up(exc, tries, after, deadline), again=True,
                               retry_after=after)
            if isinstance(exc, errors.ServiceRequestTimeoutError
                          | errors.ServiceResponseTimeoutError):
                # a connection is given 5 s at most: another try, while the deadline lasts
                return Verdict(self._timed_out(deadline), again=True)
            if isinstance(exc, ValueError) and "challenge" in str(exc).lower():
                return Verdict(self._challenge_refused(exc))
            return Verdict(exc)

        return self.runtime.retry(deadline, lambda seconds: call(
            {"connection_timeout": min(_CONNECT_TIMEOUT, seconds), "read_timeout": seconds}),
            judge)

    def _failure(self, exc: Exception, name: str, action: str) -> Problem:
        """A failure of one secret (denied, disabled…); raises when the whole vault failed,
        with a message that names no secret, as it is every key's."""
        status = getattr(exc, "status_code", None)
        code, message = _error_detail(exc)
        if _is_disabled(exc):
            return Problem("error", f"secret {name} in {self.vault_host} is disabled — "
                                    f"{self._enable_fix(name)}")
        if status == 403:
            return Problem("denied", f"{self.vault_host} denied {action} of secret {name}: "
                                     f"{message or 'Forbidden'} (grant this identity the Key "
                                     "Vault Secrets User role, or secrets/get in the vault's "
                                     "access policy)")
        if status is not None and status != 401 and status < 500:
            return Problem("error", f"{self.vault_host} refused {action} of secret {name}: "
                                    f"HTTP {status} {code or ''} {message}".rstrip())
        raise self._whole(exc, action)

    def _whole(self, exc: Exception, action: str, name: str | None = None) -> SourceError:
        """A failure of the whole vault (``action`` is read, write or list); ``name`` only
        where one secret is at stake (a write)."""
        errors = self.runtime.sdk("azure.core.exceptions")
        what = f"secret {name}" if name else "secrets"
        if isinstance(exc, errors.ClientAuthenticationError) and exc.response is None:
            return SourceError(self.name, *_no_credential(str(exc), self._credential,
                                                          self.context.environ))
        status = getattr(exc, "status_code", None)
        code, message = _error_detail(exc)
        if status == 401:
            return SourceError(self.name, f"{self.vault_host} refused the Azure token "
                               f"(HTTP 401 {message})".rstrip(),
                               "check that the identity belongs to the vault's tenant")
        if status == 403 and name and _is_disabled(exc):
            return SourceError(self.name, f"secret {name} in {self.vault_host} is disabled "
                               f"({message})", self._enable_fix(name))
        if status == 403:
            role = "Secrets Officer" if action == "write" else "Secrets User"
            return SourceError(self.name, f"{self.vault_host} denied {action} of {what}: "
                               f"{message or 'Forbidden'}",
                               f"grant this identity the Key Vault {role} role (or the "
                               "matching access policy)")
        if status is not None:
            return SourceError(self.name, f"{self.vault_host} refused to {action} {what}: "
                               f"HTTP {status} {code or ''} {message}".rstrip(),
                               "check vault_url and the secret's name; `az keyvault secret "
                               "show` gives the vault's own view")
        if isinstance(exc, errors.ServiceRequestTimeoutError | errors.ServiceResponseTimeoutError):
            return self._timed_out(None)
        if isinstance(exc, errors.ServiceRequestError | errors.ServiceResponseError):
            reason = _first_line(str(exc)) or type(exc).__name__
            return SourceError(self.name, f"cannot reach {self.vault_url}: {reason}",
                               "check vault_url, your network and any proxy "
                               "(HTTPS_PROXY)")
        return SourceError(self.name, f"{action} {what} failed: "
                           f"{_first_line(str(exc)) or type(exc).__name__}")

    def _gave_up(self, exc: Exception, attempts: int, retry_after: str | None,
                 deadline: Deadline) -> SourceError:
        """429 or 5xx until the deadline left no room for another attempt."""
        status = getattr(exc, "status_code", None)
        code, message = _error_detail(exc)
        answer = f"HTTP {status} {code or ''} {message}".rstrip().replace("  ", " ")
        tried = gave_up(attempts, deadline, retry_after)
        if status == 429:
            return SourceError(self.name, f"{self.vault_host} kept throttling keyrun ({answer}): "
                               f"{tried}",
                               f"try again later, or {RAISE_DEADLINE}; Key Vault throttles per "
                               "vault")
        return SourceError(self.name, f"{self.vault_host} kept failing ({answer}): {tried}",
                           "try again later; if it persists, check the vault's health in the "
                           "Azure portal")

    def _challenge_refused(self, exc: ValueError) -> SourceError:
        """The SDK's check that the vault's bearer challenge names a resource of the vault's
        own domain failed (a proxy, a custom domain, or a vault_url that is no vault)."""
        found = _CHALLENGE_RESOURCE.search(str(exc))
        if found:
            why = (f"for resource {found.group(1)}, which does not match the vault's host "
                   f"{self.vault_host}, so the Azure SDK refuses to send it a token")
        else:
            why = f"that the Azure SDK refuses ({_first_line(str(exc))})"
        return SourceError(self.name, f"{self.vault_url} answered with an authentication "
                           f"challenge {why}",
                           "check vault_url: it must be the vault's own URL "
                           "(https://NAME.vault.azure.net, or your cloud's vault domain), not a "
                           "proxy, gateway or custom domain in front of it")

    def _timed_out(self, deadline: Deadline | None) -> SourceError:
        return timed_out(self.name, deadline, self.vault_host, "the vault")

    def _enable_command(self, name: str) -> str:
        return (f"az keyvault secret set-attributes --id {self.vault_url}/secrets/{name} "
                "--enabled true")

    def _enable_fix(self, name: str) -> str:
        return f"enable it ({self._enable_command(name)}) or add a new version with keyrun set"

    def _bad_name(self, name: str) -> str:
        return (f"{name!r} is not a valid Key Vault secret name (letters, digits and dashes "
                "only, 1 to 127 characters); give the key another name with name = \"…\"")

    def close(self) -> None:
        for closable in (self._client, self._credential):
            if closable is not None:
                closable.close()


def _is_disabled(exc: Exception) -> bool:
    """Key Vault answers a disabled secret with 403, inner code SecretDisabled."""
    code, message = _error_detail(exc)
    return getattr(exc, "status_code", None) == 403 and (
        code == "SecretDisabled" or "disabled secret" in message.lower())


def _header(exc: Exception, name: str) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get(name) if headers is not None else None


def _unusable(props: Any, name: str, host: str) -> str | None:
    now = datetime.now(UTC)
    if props.enabled is False:
        return f"secret {name} in {host} is disabled"
    if props.expires_on is not None and props.expires_on <= now:
        return (f"secret {name} in {host} expired on {props.expires_on:%Y-%m-%d %H:%M} UTC "
                "(rotate it with keyrun set)")
    if props.not_before is not None and props.not_before > now:
        return f"secret {name} in {host} is not valid before {props.not_before:%Y-%m-%d %H:%M} UTC"
    return None


def _meta(props: Any, bundle: bool) -> Meta:
    if props is None:
        return Meta(exists=False)
    note = None if props.enabled is not False else "disabled"
    # a bundle's metadata says nothing, value-free, about whether it holds this key
    return Meta(exists=None if bundle else True, version=props.version,
                updated=props.updated_on, expires=props.expires_on, note=note)


def _error_detail(exc: Exception) -> tuple[str | None, str]:
    """Key Vault's error code (the inner one where there is one) and message."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or ""
    inner = getattr(error, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        code = inner["code"]
    if not message:
        response = getattr(exc, "response", None)
        message = _body_message(response)
    return code, _first_line(message)


def _body_message(response: Any) -> str:
    if response is None:
        return ""
    try:
        body = json.loads(response.text())
    except (ValueError, TypeError, AttributeError):
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message", "")) if isinstance(error, dict) else ""


def _no_credential(text: str, credential: Any, environ: Mapping[str, str]
                   ) -> tuple[str, str]:
    """What DefaultAzureCredential's chain tried, and a hint. The chain moves on while a
    credential is unavailable and stops at the first that fails: when it stopped early,
    that one's reason is the news."""
    attempts = [line.strip().split(":", 1) for line in text.splitlines()
                if line.startswith("\t") and ":" in line]
    chain = [type(c).__name__ for c in getattr(credential, "credentials", ())]
    tried = [name for name, _ in attempts] or chain
    if attempts and len(attempts) < len(chain):
        name, reason = attempts[-1]
        where = _friendly(name)
        if name == "ManagedIdentityCredential":
            endpoint = (environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT")
                        or "http://169.254.169.254 (IMDS)")
            where += f" at {endpoint}"
        if "timed out" in reason.lower() or "timeout" in reason.lower():
            return (f"timed out: {where} did not answer in time",
                    f"check that it is reachable from here; {RAISE_DEADLINE}")
        return f"no usable Azure credential: {where} failed ({_first_line(reason)})", \
            _CREDENTIAL_HINT
    names = ", ".join(_friendly(name) for name in tried) or "DefaultAzureCredential"
    return f"no usable Azure credential (tried {names})", _CREDENTIAL_HINT


_FRIENDLY = {
    "EnvironmentCredential": "AZURE_* environment variables",
    "WorkloadIdentityCredential": "workload identity",
    "ManagedIdentityCredential": "managed identity",
    "SharedTokenCacheCredential": "shared token cache",
    "VisualStudioCodeCredential": "VS Code",
    "AzureCliCredential": "Azure CLI",
    "AzurePowerShellCredential": "Azure PowerShell",
    "AzureDeveloperCliCredential": "Azure Developer CLI",
    "BrokerCredential": "broker",
}


def _friendly(name: str) -> str:
    return _FRIENDLY.get(name, name)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _quiet_sdk_logging() -> None:
    # azure-identity logs a failed credential chain at WARNING; with no handler configured,
    # Python's last-resort handler would print that multi-line text on keyrun's stderr.
    logger = logging.getLogger("azure")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
