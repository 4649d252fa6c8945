"""The aws-ssm source against moto's real server (tests/aws_server.py): the contract suite
per key and by path, GetParameters batching, version and label pins, every error mode,
metadata, writes, and the CLI as a real process."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Request, Source
from keyrun.sources.aws_ssm import AwsSsmSource
from keyrun.testing import Harness, SourceContract
from tests.aws_server import (
    AwsBackend,
    BlackHole,
)
from tests.helpers import (
    CANARY,
    assert_no_leak,
    build_source,
    clean_env,
    fetch,
    free_port,
    keyrun,
    problem,
    value,
    write,
    write_project,
)


def make(aws: AwsBackend | None, **settings: Any) -> Source:
    if aws is not None:
        settings.setdefault("endpoint_url", aws.url)
    return build_source(AwsSsmSource, "params", settings)


def put(aws: AwsBackend, name: str, secret: str, kind: str = "SecureString") -> int:
    done = aws.client("ssm").put_parameter(Name=name, Value=secret, Type=kind, Overwrite=True)
    return int(done["Version"])


# --- the contract suite --------------------------------------------------------------


class PerKeyHarness(Harness):
    max_value_size = 4096  # a standard parameter
    supports_empty = False  # PutParameter refuses an empty value

    def __init__(self, aws: AwsBackend) -> None:
        self.aws = aws

    def put(self, name: str, value: str) -> None:
        put(self.aws, f"/proj/dev/{name}", value)

    def source(self) -> Source:
        return make(self.aws)

    def broken_source(self) -> Source:
        return make(None, endpoint_url=f"http://127.0.0.1:{free_port()}")


class PathHarness(PerKeyHarness):
    def source(self) -> Source:
        return make(self.aws, path="/{project}/{env}")


class TestPerKeyContract(SourceContract):
    @pytest.fixture
    def harness(self, aws: AwsBackend) -> Harness:
        return PerKeyHarness(aws)


class TestPathContract(SourceContract):
    @pytest.fixture
    def harness(self, aws: AwsBackend) -> Harness:
        return PathHarness(aws)


# --- options --------------------------------------------------------------------------


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="give name or path, not both"):
        make(None, name="/a/{key}", path="/a")
    with pytest.raises(ConfigError, match="path cannot contain \\{key\\}"):
        make(None, path="/a/{key}")
    with pytest.raises(ConfigError, match="recursive applies to a path"):
        make(None, recursive=True)
    with pytest.raises(ConfigError, match="option 'recursive' must be a boolean"):
        make(None, path="/a", recursive="yes")


def test_locations(aws: AwsBackend) -> None:
    assert make(aws).locate(Request("A", "A")) == "/proj/dev/A"
    assert make(aws).locate(Request("A", "A", "user", "3")) == "/proj/dev/A:3#user"
    assert make(aws, path="/{project}/{env}/").locate(Request("A", "db/url")) == "/proj/dev/db/url"
    assert make(aws, name="/{env}").locate(Request("A", "A")) == "/dev/A"  # a name without {key}


# --- reading --------------------------------------------------------------------------


def test_get_parameters_ten_names_per_call_in_parallel(aws: AwsBackend) -> None:
    names = [f"KEY_{i:02d}" for i in range(65)]
    for name in names[:63]:
        put(aws, f"/proj/dev/{name}", f"value-of-{name}")
    aws.proxy.slow("GetParameters", 0.4)
    started = time.monotonic()
    result = fetch(make(aws), *names)
    elapsed = time.monotonic() - started
    assert [value(result[n]) for n in names[:63]] == [f"value-of-{n}" for n in names[:63]]
    for name in names[63:]:
        assert problem(result[name], "missing") == f"no parameter '/proj/dev/{name}' in us-east-1"
    calls = aws.proxy.operations("GetParameters")
    assert sorted(len(c.body["Names"]) for c in calls) == [5, 10, 10, 10, 10, 10, 10]
    assert all(c.body["WithDecryption"] is True for c in calls)
    assert len(aws.proxy.operations()) == 7
    # every call started before the first one ended: all 7 were in flight at once
    assert max(c.started for c in calls) < min(c.ended for c in calls)
    assert elapsed < 7 * 0.4, f"7 calls of 0.4 s took {elapsed:.2f} s: not in parallel"


def test_types_fields_and_metadata(aws: AwsBackend) -> None:
    put(aws, "/proj/dev/SECURE", "plain-secret-1")
    put(aws, "/proj/dev/PLAIN", "plain-string", "String")
    put(aws, "/proj/dev/LIST", "a,b,c", "StringList")
    put(aws, "/proj/dev/DB", json.dumps({"user": "u1", "port": 5432}))
    result = fetch(make(aws), "SECURE", "PLAIN", "LIST", Request("DB_USER", "DB", "user"),
                   Request("DB_PORT", "DB", "port"), Request("DB_X", "DB", "x"),
                   Request("PLAIN_FIELD", "PLAIN", "x"))
    assert value(result["SECURE"]) == "plain-secret-1"  # decrypted, not kms:alias/aws/ssm:…
    assert value(result["PLAIN"]) == "plain-string"
    assert value(result["LIST"]) == "a,b,c"
    assert value(result["DB_USER"]) == "u1"
    assert value(result["DB_PORT"]) == "5432"
    assert problem(result["DB_X"], "missing") == (
        "no field 'x' at parameter '/proj/dev/DB' (fields: port, user)")
    assert problem(result["PLAIN_FIELD"], "error") == (
        "the value at parameter '/proj/dev/PLAIN' is not JSON, so field "
        "'x' cannot be read from it")
    item = result["SECURE"]
    assert item.version == "1"
    assert item.updated is not None
    assert abs(item.updated - datetime.now(UTC)) < timedelta(minutes=5)
    [call] = aws.proxy.operations()
    assert call.body["Names"] == ["/proj/dev/SECURE", "/proj/dev/PLAIN", "/proj/dev/LIST",
                                  "/proj/dev/DB"]


def test_version_and_label_pins(aws: AwsBackend) -> None:
    for i in (1, 2, 3):
        put(aws, "/proj/dev/TOKEN", f"token-{i}")
    aws.client("ssm").label_parameter_version(Name="/proj/dev/TOKEN", ParameterVersion=2,
                                              Labels=["stable"])
    put(aws, "/proj/dev/OTHER", "other-1")
    result = fetch(make(aws), "TOKEN", Request("FIRST", "TOKEN", version="1"),
                   Request("STABLE", "TOKEN", version="stable"),
                   Request("COLON", "TOKEN", version=":1"),
                   Request("NINE", "TOKEN", version="9"),
                   Request("NOLABEL", "TOKEN", version="nolabel"), "OTHER")
    assert value(result["TOKEN"]) == "token-3"
    assert result["TOKEN"].version == "3"
    assert value(result["FIRST"]) == "token-1"
    assert value(result["STABLE"]) == "token-2"
    assert result["STABLE"].version == "2"
    assert value(result["COLON"]) == "token-1"
    assert value(result["OTHER"]) == "other-1"
    assert problem(result["NINE"], "missing") == "no parameter '/proj/dev/TOKEN:9' in us-east-1"
    assert problem(result["NOLABEL"], "missing") == (
        "no parameter '/proj/dev/TOKEN:nolabel' in us-east-1")
    for call in aws.proxy.operations("GetParameters"):  # one name per call, whatever the pin
        bases = [name.split(":")[0] for name in call.body["Names"]]
        assert len(bases) == len(set(bases)), call.body
    assert len(aws.proxy.operations("GetParameters")) == 5


def test_by_path_and_recursive(aws: AwsBackend) -> None:
    put(aws, "/proj/dev/API_KEY", "api-1")
    put(aws, "/proj/dev/db/url", "postgres://u@h/db")
    put(aws, "/proj/other/API_KEY", "wrong-env")
    flat = fetch(make(aws, path="/{project}/{env}"), "API_KEY", Request("DB", "db/url"), "NONE")
    assert value(flat["API_KEY"]) == "api-1"
    assert problem(flat["DB"], "error") == (
        "'db/url' is nested under /proj/dev; set recursive = true in [sources.params] "
        "to read nested parameters")
    assert problem(flat["NONE"], "missing") == "no parameter '/proj/dev/NONE' in us-east-1"
    deep = fetch(make(aws, path="/{project}/{env}/", recursive=True), Request("DB", "db/url"))
    assert value(deep["DB"]) == "postgres://u@h/db"
    as_name = fetch(make(aws, name="/{project}/{env}"), "API_KEY")
    assert value(as_name["API_KEY"]) == "api-1"
    deadline = Deadline(10)
    assert make(aws, path="/{project}/{env}").names(deadline) == ["API_KEY"]
    assert make(aws, path="/{project}/{env}", recursive=True).names(deadline) == [
        "API_KEY", "db/url"]
    assert make(aws).names(deadline) is None  # one parameter per key: nothing to list
    assert aws.proxy.operations("GetParametersByPath") == []  # listing reads no value


def test_cli_a_path_without_declared_keys_reads_every_parameter(
        aws: AwsBackend, tmp_path: Path) -> None:
    put(aws, "/bot/prod/FIRST_KEY", "first-value")
    put(aws, "/bot/prod/SECOND_KEY", "second-value")
    put(aws, "/bot/prod/nested/x", "nested-value")
    root = tmp_path / "bot"
    write(root / "keyrun.toml", """
project = "bot"
[sources.tree]
type = "aws-ssm"
region = "us-east-1"
path = "/{project}/{env}"
recursive = true
[env.prod]
sources = ["tree"]
""")
    env = clean_env(tmp_path, **aws.env())
    done = keyrun(["-e", "prod", "--", sys.executable, "-c",
                   "import os; print(os.environ['FIRST_KEY'], os.environ['SECOND_KEY'])"],
                  cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "first-value second-value\n"
    assert "'nested/x' is not a valid environment variable name; left out" in done.stderr


# --- errors ---------------------------------------------------------------------------


def test_one_failing_name_does_not_spoil_its_batch(aws: AwsBackend) -> None:
    for name in ("A", "B", "KMSFAIL", "C"):
        put(aws, f"/proj/dev/{name}", f"value-{name}")
    aws.proxy.error("GetParameters", "InvalidKeyId", "the KMS key is disabled",
                    match="/proj/dev/KMSFAIL")
    result = fetch(make(aws), "A", "B", "KMSFAIL", "C")
    assert [value(result[k]) for k in "ABC"] == ["value-A", "value-B", "value-C"]
    assert problem(result["KMSFAIL"], "error") == (
        "KMS could not decrypt parameter '/proj/dev/KMSFAIL' (InvalidKeyId: the KMS key "
        "is disabled) — check that its KMS key is enabled and that the identity in use may use "
        "it (kms:Decrypt)")
    assert len(aws.proxy.operations("GetParameters")) == 1 + 4


def test_throttling_is_retried_and_bounded(aws: AwsBackend) -> None:
    put(aws, "/proj/dev/A", "value-a")
    aws.proxy.error("GetParameters", "ThrottlingException", "Rate exceeded", times=3)
    assert value(fetch(make(aws), "A")["A"]) == "value-a"
    assert len(aws.proxy.operations("GetParameters")) == 4
    aws.proxy.error("GetParameters", "ThrottlingException", "Rate exceeded")
    started = time.monotonic()
    message = problem(fetch(make(aws), "A", seconds=1.5)["A"], "error")
    assert time.monotonic() - started < 1.5 + 0.1
    assert message.startswith("AWS kept answering ThrottlingException: Rate exceeded "
                              "while reading parameter '/proj/dev/A' (")


def test_access_denied(aws: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    iam = aws.client("iam")
    iam.create_user(UserName="lister")
    iam.put_user_policy(UserName="lister", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ssm:DescribeParameters"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName="lister")["AccessKey"]
    put(aws, "/proj/dev/A", "value-a")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    aws.moto.require_auth(0)
    try:
        result = fetch(make(aws), "A", "B")
        health = make(aws).check(Deadline(5))
    finally:
        aws.moto.require_auth(float("inf"))
    for key_name in ("A", "B"):
        assert problem(result[key_name], "denied") == (
            f"access denied to parameter '/proj/dev/{key_name}' (AccessDenied: User: "
            "arn:aws:iam::123456789012:user/lister is not authorized to perform: "
            "ssm:GetParameters) — grant ssm:GetParameters (and kms:Decrypt for SecureString) "
            "on it to the identity in use")
    assert health.detail == "parameters under /proj/dev/ in us-east-1: reachable"


def test_expired_and_missing_credentials(aws: AwsBackend,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    aws.proxy.error("GetParameters", "ExpiredTokenException", "The security token included "
                    "in the request is expired")
    with pytest.raises(SourceError, match="^params: the AWS credentials have expired "
                                          "\\(ExpiredTokenException: "):
        fetch(make(aws), "A")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(SourceError, match="^params: no AWS credentials found"):
        fetch(make(aws), "A")


def test_black_hole_and_aws_endpoint_url(aws: AwsBackend,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    hole = BlackHole()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", hole.url)
        started = time.monotonic()
        with pytest.raises(SourceError, match=f"^params: no answer from AWS at {hole.url} "
                                              "within the total deadline of 1s"):
            fetch(make(None), *(f"K{i}" for i in range(25)), seconds=1)
        assert time.monotonic() - started < 1.0 + 0.5  # botocore's own would be 60 s
    finally:
        hole.close()
    put(aws, "/proj/dev/A", "via-env-endpoint")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    assert value(fetch(make(None), "A")["A"]) == "via-env-endpoint"


# --- metadata -------------------------------------------------------------------------


def test_describe_is_value_free(aws: AwsBackend) -> None:
    put(aws, "/proj/dev/A", "a1")
    put(aws, "/proj/dev/A", "a2")
    client = aws.client("ssm")
    client.put_parameter(Name="/proj/dev/EXPIRING", Value="e1", Type="SecureString",
                         Tier="Advanced", Policies=json.dumps([{
                             "Type": "Expiration", "Version": "1.0",
                             "Attributes": {"Timestamp": "2020-01-02T03:04:05.000Z"}}]))
    metas = make(aws).describe([Request("A", "A"), Request("OLD", "A", version="1"),
                                Request("EXPIRING", "EXPIRING"), Request("GONE", "GONE")],
                               Deadline(5))
    assert (metas["A"].exists, metas["A"].version, metas["A"].note) == (True, "2", "SecureString")
    assert metas["A"].updated is not None
    assert metas["OLD"].version == "1"
    assert metas["EXPIRING"].expires == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert metas["GONE"].exists is False
    assert {c.operation for c in aws.proxy.operations()} == {"DescribeParameters"}


def test_check(aws: AwsBackend) -> None:
    empty = make(aws).check(Deadline(5))
    assert empty.warnings == ("no parameter under /proj/dev/ in us-east-1 yet (keyrun set "
                              "creates them)",)
    put(aws, "/proj/dev/A", "a1")
    assert make(aws, path="/{project}/{env}").check(Deadline(5)).warnings == ()
    assert aws.proxy.operations("DescribeParameters")[-1].body == {
        "MaxResults": 1,
        "ParameterFilters": [{"Key": "Name", "Option": "BeginsWith", "Values": ["/proj/dev/"]}]}


# --- writing --------------------------------------------------------------------------


def test_write_secure_string_with_overwrite(aws: AwsBackend) -> None:
    source = make(aws)
    assert source.write(Request("NEW", "NEW"), Secret("v1"), Deadline(5)) == "/proj/dev/NEW"
    source.write(Request("NEW", "NEW"), Secret("v2"), Deadline(5))
    put(aws, "/proj/dev/WAS_PLAIN", "plain", "String")
    source.write(Request("WAS_PLAIN", "WAS_PLAIN"), Secret("now-secure"), Deadline(5))
    client = aws.client("ssm")
    for name, expected, version in (("NEW", "v2", 2), ("WAS_PLAIN", "now-secure", 2)):
        stored = client.get_parameter(Name=f"/proj/dev/{name}", WithDecryption=True)["Parameter"]
        assert (stored["Value"], stored["Type"], stored["Version"]) == (
            expected, "SecureString", version)
    [call, *_] = aws.proxy.operations("PutParameter")
    assert {k: v for k, v in call.body.items() if k != "Value"} == {
        "Name": "/proj/dev/NEW", "Type": "SecureString", "Overwrite": True}
    path = make(aws, path="/{project}/{env}")
    assert path.write(Request("P", "P"), Secret("p1"), Deadline(5)) == "/proj/dev/P"


def test_write_refusals(aws: AwsBackend) -> None:
    with pytest.raises(SourceError, match="Parameter Store cannot hold an empty value"):
        make(aws).write(Request("A", "A"), Secret(""), Deadline(5))
    with pytest.raises(SourceError, match="A is read from field 'user' of parameter "
                                          "'/proj/dev/A'; keyrun set cannot rewrite one field"):
        make(aws).write(Request("A", "A", "user"), Secret("x"), Deadline(5))
    with pytest.raises(SourceError, match="'db/url' is nested under /proj/dev; set recursive"):
        make(aws, path="/proj/dev").write(Request("A", "db/url"), Secret("x"), Deadline(5))
    aws.proxy.error("PutParameter", "ValidationException",
                    f"Value '{CANARY}' at 'value' failed to satisfy constraint")
    with pytest.raises(SourceError) as caught:
        make(aws).write(Request("A", "A"), Secret(CANARY), Deadline(5))
    assert caught.value.message == (
        "params: writing parameter '/proj/dev/A' failed (ValidationException: Value '***' at "
        "'value' failed to satisfy constraint)")
    assert aws.proxy.operations("PutParameter") != []


# --- the CLI as a real process --------------------------------------------------------

KEYS = [f"TOOL_{i:02d}_API_KEY" for i in range(62)]

CONFIG = """
project = "proj"
default_env = "dev"
[keys]
{keys}
[sources.params]
type = "aws-ssm"
region = "us-east-1"
name = "/{{project}}/{{env}}/{{key}}"
[sources.tree]
type = "aws-ssm"
path = "/{{project}}/{{env}}"
recursive = true
[env.dev]
sources = ["params"]
[env.byPath]
sources = ["tree"]
[env.staging]
sources = ["params"]
rotate_after = "1s"
"""

DIGEST = ("import os, hashlib, json; print(hashlib.sha256(json.dumps([os.environ[k] for k in "
          "sorted(os.environ) if k.startswith('TOOL_')]).encode()).hexdigest())")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj",
                         CONFIG.format(keys="\n".join(f"{k} = {{}}" for k in KEYS)))


def test_cli_run_62_keys_per_key_and_by_path(aws: AwsBackend, project: Path,
                                             tmp_path: Path) -> None:
    values = {key: f"{CANARY}-{i:02d}" for i, key in enumerate(KEYS)}
    for key, secret in values.items():
        put(aws, f"/proj/dev/{key}", secret)
        put(aws, f"/proj/byPath/{key}", secret + "-tree")
    env = clean_env(tmp_path, **aws.env())
    expected = hashlib.sha256(json.dumps([values[k] for k in sorted(values)]).encode())
    done = keyrun(["-e", "dev", "--", sys.executable, "-c", DIGEST], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected.hexdigest()
    calls = aws.proxy.operations("GetParameters")
    assert sorted(len(c.body["Names"]) for c in calls) == [2, 10, 10, 10, 10, 10, 10]
    tree = keyrun(["-e", "byPath", "--", sys.executable, "-c", DIGEST], cwd=project, env=env)
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.strip() == hashlib.sha256(json.dumps(
        [values[k] + "-tree" for k in sorted(values)]).encode()).hexdigest()
    log = (tmp_path / "access.log").read_text()
    assert_no_leak(CANARY, done.stdout, done.stderr, tree.stderr, log, root=project)


def test_cli_missing_key_exits_125(aws: AwsBackend, project: Path, tmp_path: Path) -> None:
    for key in KEYS[1:]:
        put(aws, f"/proj/dev/{key}", CANARY)
    env = clean_env(tmp_path, **aws.env())
    done = keyrun(["-e", "dev", "--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert (f"{KEYS[0]}: missing from params (no parameter '/proj/dev/{KEYS[0]}' in "
            "us-east-1)") in done.stderr
    assert_no_leak(CANARY, done.stdout, done.stderr, root=project)


def test_cli_set_list_and_doctor(aws: AwsBackend, project: Path, tmp_path: Path) -> None:
    write(project / "keyrun.toml", CONFIG.format(keys="OPENAI_API_KEY = {}"))
    env = clean_env(tmp_path, **aws.env())
    done = keyrun(["set", "OPENAI_API_KEY", "-e", "staging"], cwd=project, env=env,
                  input=CANARY + "\n")
    assert done.returncode == 0, done.stderr
    stored = aws.client("ssm").get_parameter(Name="/proj/staging/OPENAI_API_KEY",
                                             WithDecryption=True)["Parameter"]
    assert (stored["Value"], stored["Type"]) == (CANARY, "SecureString")
    listed = keyrun(["list", "--json", "-e", "staging"], cwd=project, env=env)
    [row] = json.loads(listed.stdout)["keys"]
    assert (row["source"], row["location"], row["status"], row["version"]) == (
        "params", "/proj/staging/OPENAI_API_KEY", "ok", "1")
    time.sleep(1.2)  # rotate_after = "1s"
    doctor = keyrun(["doctor", "--json", "-e", "staging"], cwd=project, env=env)
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["sources"]["status"] == "pass", checks["sources"]
    assert checks["rotation"]["status"] == "warn"
    assert checks["rotation"]["keys"] == ["OPENAI_API_KEY"]
    log = (tmp_path / "access.log").read_text()
    assert_no_leak(CANARY, done.stdout, done.stderr, listed.stdout, listed.stderr,
                   doctor.stdout, doctor.stderr, log, root=project)
