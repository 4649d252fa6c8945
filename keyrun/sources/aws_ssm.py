"""The ``aws-ssm`` source: AWS Systems Manager Parameter Store."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Health, Item, Meta, Option, Outcome, Problem, Request
from keyrun.sources._aws import (
    AWS_OPTIONS,
    AwsApi,
    AwsFailure,
    AwsSource,
    chunked,
    item_problem,
    key_prefix,
    scrub,
)
from keyrun.sources._values import aware, entry_value
from keyrun.template import Template

_DEFAULT_NAME = "/{project}/{env}/{key}"
_PER_CALL = 10  # GetParameters refuses more names than this
_DESCRIBE_PER_CALL = 50  # values of one DescribeParameters filter

# A parameter to read: its full name and the version or label it is pinned to, if any.
Wanted = tuple[str, str | None]


class AwsSsmSource(AwsSource):
    """AWS Systems Manager Parameter Store.

    ``name`` with ``{key}`` names one parameter per key (default
    ``/{project}/{env}/{key}``). A ``path`` (or a ``name`` without ``{key}``) reads the
    parameters under it, each named by its name relative to the path; with
    ``recursive = true`` nested ones too (``db/url``). Reads use GetParameters, 10 names per
    call, the calls in parallel, always decrypting SecureString values; a name AWS reports
    as invalid is missing, never empty. A key's ``version`` pins a version number or a
    label (``name:3``, ``name:prod``); ``field`` picks a field of a JSON value.

    Authenticates with the standard boto3 chain (environment, ``profile`` or AWS_PROFILE,
    ~/.aws files, SSO, container and instance roles). Throttling and server errors are
    retried with jittered backoff inside keyrun's deadline. ``keyrun set`` writes a
    SecureString (PutParameter with Overwrite). ``doctor`` and ``list`` use
    DescribeParameters (no values): last change, version, expiration policies.

    .. code-block:: toml

        [sources.params]
        type = "aws-ssm"
        region = "us-east-1"
        name = "/{project}/{env}/{key}"      # or: path = "/{project}/{env}", recursive = true
    """

    type_name = "aws-ssm"
    summary = "AWS SSM Parameter Store: a parameter per key, or every parameter under a path"
    service = "ssm"
    options = (
        Option("name", "the parameter's name, with {key}; default /{project}/{env}/{key}",
               template=True, example="/{project}/{env}/{key}"),
        Option("path", "read every parameter under this path, named relative to it (no {key})",
               template=True, example="/{project}/{env}"),
        Option("recursive", "with path: also read nested parameters (their names then hold "
                            "slashes, such as db/url)", kind=bool, default=False),
        *AWS_OPTIONS,
    )

    @classmethod
    def validate(cls, settings: Mapping[str, Any], where: str) -> None:
        super().validate(settings, where)
        name, path = settings.get("name"), settings.get("path")
        if name is not None and path is not None:
            raise ConfigError(f"{where}: give name or path, not both",
                              "name = \"/app/{env}/{key}\" reads a parameter per key; "
                              "path = \"/app/{env}\" reads every parameter under a path")
        if path is not None and Template(path, where=where).has_key:
            raise ConfigError(f"{where}: path cannot contain {{key}}",
                              "a path names where the parameters are; use name = \"…/{key}\" "
                              "for a parameter per key")
        per_key = path is None and Template(name or _DEFAULT_NAME, where=where).has_key
        if per_key and settings.get("recursive"):
            raise ConfigError(f"{where}: recursive applies to a path, not to name = \"…{{key}}\"",
                              "remove recursive, or use path = \"/app/{env}\"")

    @property
    def _location(self) -> Template:
        text = self.settings.get("path") or self.settings.get("name") or _DEFAULT_NAME
        return Template(str(text), where=f"[sources.{self.name}]")

    @property
    def by_path(self) -> bool:
        return not self._location.has_key

    @property
    def base_path(self) -> str:
        location = self._location
        return location.render(self.context.project, self.context.env).rstrip("/")

    def parameter(self, request: Request) -> str:
        if self.by_path:
            return f"{self.base_path}/{request.name.lstrip('/')}"
        return self._location.render(self.context.project, self.context.env, request.name)

    def locate(self, request: Request) -> str:
        where = self.parameter(request) + (f":{_selector(request.version)}"
                                           if request.version else "")
        return where + (f"#{request.field}" if request.field else "")

    def _nested(self, request: Request) -> Problem | None:
        """A nested name under a path read without ``recursive`` is refused, never guessed."""
        if self.by_path and not self.settings.get("recursive") and "/" in request.name.strip("/"):
            return Problem("error", f"{request.name!r} is nested under "
                                    f"{self.base_path or '/'}; set recursive = true in "
                                    f"[sources.{self.name}] to read nested parameters")
        return None

    # reading

    def fetch(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        wanted: dict[str, Wanted] = {}
        for request in requests:
            refused = self._nested(request)
            if refused is not None:
                results[request.key] = refused
            else:
                wanted[request.key] = (self.parameter(request), _selector(request.version))
        if not wanted:
            return results
        api = self._aws.api(deadline)
        tasks = [partial(self._get, api, chunk) for chunk in _pack(list(wanted.values()))]
        read: dict[Wanted, Any] = {}
        for part in api.parallel(tasks):
            read.update(part)
        for request in requests:
            if request.key in wanted:
                results[request.key] = self._outcome(api, request, wanted[request.key],
                                                     read.get(wanted[request.key]))
        return results

    def _get(self, api: AwsApi, chunk: list[Wanted]) -> dict[Wanted, Any]:
        names = [_full(w) for w in chunk]
        try:
            response = api.call("GetParameters", Names=names, WithDecryption=True)
        except AwsFailure as failure:
            if len(chunk) > 1 and failure.kind in ("invalid", "denied", "kms"):
                return self._get_each(api, chunk)  # find which name spoils the call
            return dict.fromkeys(chunk, failure)
        by_name = {w[0]: w for w in chunk}  # a chunk never asks one name twice (see _pack)
        found: dict[Wanted, Any] = {}
        for parameter in response.get("Parameters", []):
            wanted = by_name.get(str(parameter.get("Name"))) or by_name.get(
                str(parameter.get("ARN")))
            if wanted is not None:
                found[wanted] = parameter
        return found  # InvalidParameters, and anything unanswered, is missing

    def _get_each(self, api: AwsApi, chunk: list[Wanted]) -> dict[Wanted, Any]:
        tasks = [partial(self._get, api, [wanted]) for wanted in chunk]
        found: dict[Wanted, Any] = {}
        for part in api.parallel(tasks):
            found.update(part)
        return found

    def _outcome(self, api: AwsApi, request: Request, wanted: Wanted, read: Any) -> Outcome:
        what = f"parameter {_full(wanted)!r}"
        if read is None:
            return Problem.missing(f"no {what} in {api.region}")
        if isinstance(read, AwsFailure):
            return item_problem(read, what, api, "ssm:GetParameters (and kms:Decrypt "
                                "for SecureString)")
        value = entry_value(str(read.get("Value", "")), request.field, what)
        if isinstance(value, Problem):
            return value
        version = read.get("Version")
        return Item(Secret(value), version=None if version is None else str(version),
                    updated=aware(read.get("LastModifiedDate")))

    def names(self, deadline: Deadline) -> list[str] | None:
        """With a path: every parameter under it, named relative to it (value-free:
        DescribeParameters with a Path filter). Per-key names cannot be listed."""
        if not self.by_path:
            return None
        api = self._aws.api(deadline)
        base = self.base_path or "/"
        option = "Recursive" if self.settings.get("recursive") else "OneLevel"
        pages = api.pages("DescribeParameters", MaxResults=50, ParameterFilters=[
            {"Key": "Path", "Option": option, "Values": [base]}])
        prefix = base.rstrip("/") + "/"
        try:
            names = [str(p.get("Name", "")) for page in pages for p in page.get("Parameters", [])]
        except AwsFailure as failure:
            raise api.source_error(failure) from None
        return sorted(name[len(prefix):] for name in names if name.startswith(prefix))

    # metadata

    def describe(self, requests: Sequence[Request], deadline: Deadline) -> dict[str, Meta]:
        names = {r.key: self.parameter(r) for r in requests if self._nested(r) is None}
        if not names:
            return {}
        api = self._aws.api(deadline)
        distinct = list(dict.fromkeys(names.values()))
        tasks = [partial(self._describe_chunk, api, chunk)
                 for chunk in chunked(distinct, _DESCRIBE_PER_CALL)]
        described: dict[str, dict[str, Any]] = {}
        for part in api.parallel(tasks):
            described.update(part)
        return {r.key: _meta(r, described.get(names[r.key])) for r in requests
                if r.key in names}

    def _describe_chunk(self, api: AwsApi, names: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        try:
            for page in api.pages("DescribeParameters", MaxResults=50, ParameterFilters=[
                    {"Key": "Name", "Option": "Equals", "Values": names}]):
                found.update({str(p.get("Name")): p for p in page.get("Parameters", [])})
        except AwsFailure:
            pass  # what was found stands; the rest is unknown
        return found

    def check(self, deadline: Deadline) -> Health:
        api = self._aws.api(deadline)
        prefix = (self.base_path + "/") if self.by_path else key_prefix(self._location, self)
        params: dict[str, Any] = {"MaxResults": 1}
        if prefix.strip("/"):
            params["ParameterFilters"] = [{"Key": "Name", "Option": "BeginsWith",
                                           "Values": [prefix]}]
        try:
            page = api.call("DescribeParameters", **params)
        except AwsFailure as failure:
            return Health(f"{api.region}: reachable", (
                f"DescribeParameters under {prefix} failed ({failure.reason}), so doctor "
                "cannot see ages without reading values — grant ssm:DescribeParameters",))
        if not page.get("Parameters"):
            return Health(f"parameters under {prefix} in {api.region}: reachable",
                          (f"no parameter under {prefix} in {api.region} yet (keyrun set "
                           "creates them)",))
        return Health(f"parameters under {prefix} in {api.region}: reachable")

    # writing

    def write(self, request: Request, value: Secret, deadline: Deadline) -> str:
        name = self.parameter(request)
        refused = self._nested(request)
        if refused is not None:
            raise SourceError(self.name, refused.message)
        if request.field is not None:
            raise SourceError(self.name, f"{request.key} is read from field {request.field!r} "
                              f"of parameter {name!r}; keyrun set cannot rewrite one field — "
                              "edit the parameter by hand")
        if not value.reveal():
            raise SourceError(self.name, f"Parameter Store cannot hold an empty value "
                              f"(parameter {name!r}) — store a non-empty value")
        api = self._aws.api(deadline)
        try:
            api.call("PutParameter", Name=name, Value=value.reveal(), Type="SecureString",
                     Overwrite=True)
        except AwsFailure as failure:
            problem = item_problem(failure, f"parameter {name!r}", api,
                                   "ssm:PutParameter (and kms:Encrypt)", writing=True)
            raise SourceError(self.name, scrub(problem.message, [value.reveal()])) from None
        return name


def _selector(version: str | None) -> str | None:
    """``3`` or ``prod`` (a leading colon is accepted too)."""
    return None if version is None else version.lstrip(":")


def _full(wanted: Wanted) -> str:
    name, selector = wanted
    return name if selector is None else f"{name}:{selector}"


def _pack(wanted: list[Wanted]) -> list[list[Wanted]]:
    """Chunks of at most 10, never holding one parameter twice: the answer names the
    parameter but not always the version asked for (moto omits ``Selector``)."""
    chunks: list[list[Wanted]] = []
    for item in dict.fromkeys(wanted):
        home = next((c for c in chunks if len(c) < _PER_CALL
                     and all(w[0] != item[0] for w in c)), None)
        if home is None:
            chunks.append([item])
        else:
            home.append(item)
    return chunks


def _meta(request: Request, described: dict[str, Any] | None) -> Meta:
    if described is None:
        return Meta(exists=False)
    version = described.get("Version")
    pinned = _selector(request.version)
    return Meta(
        exists=True,
        version=pinned if pinned is not None else (None if version is None else str(version)),
        updated=aware(described.get("LastModifiedDate")),
        expires=_expiration(described.get("Policies") or []),
        note=f"{described.get('Type', 'parameter')}" + (
            f", pinned to {pinned}; age is the latest version's" if pinned else ""),
    )


def _expiration(policies: Sequence[Mapping[str, Any]]) -> datetime | None:
    """The Timestamp of an Expiration parameter policy, if one is attached."""
    for policy in policies:
        text = str(policy.get("PolicyText") or "")
        try:
            data = json.loads(text)
        except ValueError:
            try:  # moto writes the policy as a Python literal
                data = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue
        if not isinstance(data, dict) or data.get("Type") != "Expiration":
            continue
        try:
            stamp = datetime.fromisoformat(str((data.get("Attributes") or {}).get("Timestamp")))
        except ValueError:
            continue
        return aware(stamp)
    return None
