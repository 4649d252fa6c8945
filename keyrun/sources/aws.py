"""The ``aws-secrets-manager`` source: AWS Secrets Manager (what both AWS sources share
is in ``_aws``)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from keyrun.errors import SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Meta, Option, Outcome, Problem, Request
from keyrun.sources._aws import (
    AWS_OPTIONS,
    AwsApi,
    AwsFailure,
    AwsSource,
    chunked,
    failure_for_code,
    item_problem,
    key_prefix,
    scrub,
)
from keyrun.sources._values import (
    as_text,
    aware,
    bundle_entry,
    decode_text,
    entry_value,
    json_object,
)

_VERSION_ID = re.compile(r"^[0-9a-fA-F-]{32,64}$")


def version_params(version: str | None) -> dict[str, str]:
    """A pin: a version id (a UUID) or a staging label such as AWSPREVIOUS."""
    if version is None:
        return {}
    return {"VersionId": version} if _VERSION_ID.match(version) else {"VersionStage": version}


class AwsSecretsManagerSource(AwsSource):
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
    service = "secretsmanager"
    options = (
        Option("secret", "the secret's name or ARN; without {key} one JSON secret holds every "
                         "key, with {key} each key is its own secret",
               default="{project}/{env}", template=True, example="{project}/{env}/{key}"),
        *AWS_OPTIONS,
    )

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
        for part in api.parallel(tasks):
            read.update(part)
        return {r.key: self._outcome(api, r, read.get(k)) for r, k in zip(requests, keys,
                                                                          strict=True)}

    def _read_pinned(self, api: AwsApi, secret: str, version: str | None
                     ) -> dict[tuple[str, str | None], Any]:
        return {(secret, version): self._read_one(api, secret, version)}

    def _read_one(self, api: AwsApi, secret: str, version: str | None) -> Any:
        return api.outcome("GetSecretValue", SecretId=secret, **version_params(version))

    def _read_batch(self, api: AwsApi, ids: list[str]) -> dict[tuple[str, str | None], Any]:
        found: dict[tuple[str, str | None], Any] = {}
        try:
            for page in api.pages("BatchGetSecretValue", SecretIdList=ids):
                for value in page.get("SecretValues", []):
                    found[(_matching_id(ids, value), None)] = value
                for error in page.get("Errors", []):
                    found[(str(error.get("SecretId")), None)] = failure_for_code(
                        str(error.get("ErrorCode")), str(error.get("Message") or ""))
        except AwsFailure as failure:
            if failure.kind == "denied" or (failure.kind == "invalid" and len(ids) > 1):
                # a policy granting GetSecretValue only, or one bad id spoiling the call
                return self._read_each(api, ids)
            return {(secret, None): failure for secret in ids}
        return found

    def _read_each(self, api: AwsApi, ids: list[str]) -> dict[tuple[str, str | None], Any]:
        tasks = [partial(self._read_one, api, secret, None) for secret in ids]
        results = api.parallel(tasks)
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
        version, updated = read.get("VersionId"), aware(read.get("CreatedDate"))
        value = (_from_bundle(request, text, what) if self.bundled
                 else entry_value(text, request.field, what))
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
        tasks = [partial(api.outcome, "DescribeSecret", SecretId=secret) for secret in ids]
        described = dict(zip(ids, api.parallel(tasks), strict=True))
        return {r.key: self._meta(r, described[self.secret_id(r)]) for r in requests}

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
        deleted = aware(described.get("DeletedDate"))
        if deleted:
            notes.append(f"scheduled for deletion on {deleted:%Y-%m-%d}")
        return Meta(
            exists=(deleted is None and version is not None) if not self.bundled else None,
            version=version,
            updated=aware(described.get("LastChangedDate")),
            next_rotation=aware(described.get("NextRotationDate")) if rotation else None,
            deleted=deleted,
            note="; ".join(notes) or None,
        )

    def check(self, deadline: Deadline) -> Health:
        api = self._aws.api(deadline)
        if not self.bundled:
            return self._check_listing(api)
        secret = self.render("secret")
        described = api.outcome("DescribeSecret", SecretId=secret)
        if isinstance(described, AwsFailure):
            return _health_after(described, f"secret {secret!r}", api, "DescribeSecret")
        warnings = []
        deleted = aware(described.get("DeletedDate"))
        if deleted:
            warnings.append(f"secret {secret!r} is scheduled for deletion on {deleted:%Y-%m-%d}; "
                            f"restore it: {_restore(secret)}")
        due = aware(described.get("NextRotationDate"))
        if described.get("RotationEnabled") and due and due < datetime.now(UTC):
            warnings.append(f"secret {secret!r} was due for rotation on {due:%Y-%m-%d}")
        changed = aware(described.get("LastChangedDate"))
        detail = f"secret {secret!r} in {api.region}" + (
            f", last changed {changed:%Y-%m-%d}" if changed else "")
        return Health(detail, tuple(warnings))

    def _check_listing(self, api: AwsApi) -> Health:
        prefix = key_prefix(self.template("secret"), self)
        params: dict[str, Any] = {"MaxResults": 1}
        if prefix and not prefix.startswith("arn:"):
            params["Filters"] = [{"Key": "name", "Values": [prefix]}]
        listed = api.outcome("ListSecrets", **params)
        if isinstance(listed, AwsFailure):
            return _health_after(listed, f"secrets named {prefix}…", api, "ListSecrets")
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
        problem = item_problem(failure, f"secret {secret!r}", api,
                               "secretsmanager:PutSecretValue and CreateSecret",
                               restore=_restore(secret), writing=True)
        return SourceError(self.name, scrub(problem.message, values))


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
    return bundle_entry(data, request, what)
