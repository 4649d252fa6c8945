"""The aws-secrets-manager source against moto's real server (tests/aws_server.py): the
contract suite in bundle and per-key mode, batching, versions, every error mode, the
value-free metadata, writes, and the CLI as a real process."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Meta, Request, Source
from keyrun.sources.aws import AwsSecretsManagerSource
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
    write_project,
)

BUNDLE = "proj/dev"


def make(aws: AwsBackend | None, **settings: Any) -> Source:
    if aws is not None:
        settings.setdefault("endpoint_url", aws.url)
    return build_source(AwsSecretsManagerSource, "aws", settings)


def put(aws: AwsBackend, name: str, secret: str | bytes) -> str:
    client = aws.client("secretsmanager")
    field = "SecretBinary" if isinstance(secret, bytes) else "SecretString"
    try:
        return str(client.create_secret(Name=name, **{field: secret})["VersionId"])
    except client.exceptions.ResourceExistsException:
        return str(client.put_secret_value(SecretId=name, **{field: secret})["VersionId"])


# --- the contract suite --------------------------------------------------------------


class BundleHarness(Harness):
    max_value_size = 60 * 1024

    def __init__(self, aws: AwsBackend) -> None:
        self.aws = aws
        self.values: dict[str, str] = {}

    def put(self, name: str, value: str) -> None:
        self.values[name] = value
        put(self.aws, BUNDLE, json.dumps(self.values))

    def source(self) -> Source:
        return make(self.aws)

    def broken_source(self) -> Source:
        return make(None, endpoint_url=f"http://127.0.0.1:{free_port()}")  # nobody listens


class PerKeyHarness(BundleHarness):
    supports_empty = False  # SecretString has a minimum length of 1

    def put(self, name: str, value: str) -> None:
        put(self.aws, f"{BUNDLE}/{name}", value)

    def source(self) -> Source:
        return make(self.aws, secret="{project}/{env}/{key}")


class TestBundleContract(SourceContract):
    @pytest.fixture
    def harness(self, aws: AwsBackend) -> Harness:
        return BundleHarness(aws)


class TestPerKeyContract(SourceContract):
    @pytest.fixture
    def harness(self, aws: AwsBackend) -> Harness:
        return PerKeyHarness(aws)


# --- options --------------------------------------------------------------------------


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="endpoint_url 'localhost:4566' is not an http"):
        make(None, endpoint_url="localhost:4566")
    with pytest.raises(ConfigError, match="unknown option 'regoin'"):
        make(None, regoin="us-east-1")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        make(None, secret="{project}/{environment}")


def test_importing_the_module_does_not_import_boto3() -> None:
    import subprocess

    code = "import sys, keyrun.sources.aws, keyrun.sources.aws_ssm; print('boto3' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_locate_names_secret_key_field_and_version(aws: AwsBackend) -> None:
    bundle, each = make(aws), make(aws, secret="{env}/{key}")
    assert bundle.locate(Request("A", "a")) == "proj/dev#a"
    assert bundle.locate(Request("A", "a", "user", "AWSPREVIOUS")) == "proj/dev#a.user@AWSPREVIOUS"
    assert each.locate(Request("A", "a", "user")) == "dev/a#user"


# --- bundle mode ----------------------------------------------------------------------


def test_bundle_values_fields_and_missing_keys(aws: AwsBackend) -> None:
    put(aws, BUNDLE, json.dumps({
        "OPENAI_API_KEY": "sk-bundle-0001", "PORT": 8080, "DB": {"user": "u1", "password": "p1"},
        "NESTED_JSON": json.dumps({"token": "t1"}), "NULLED": None, "EMPTY": ""}))
    result = fetch(make(aws), "OPENAI_API_KEY", "PORT", Request("DB_USER", "DB", "user"),
                   Request("TOKEN", "NESTED_JSON", "token"), Request("NOFIELD", "DB", "nope"),
                   "NULLED", "EMPTY", "ABSENT")
    assert value(result["OPENAI_API_KEY"]) == "sk-bundle-0001"
    assert value(result["PORT"]) == "8080"
    assert value(result["DB_USER"]) == "u1"
    assert value(result["TOKEN"]) == "t1"
    assert value(result["EMPTY"]) == ""
    assert problem(result["NOFIELD"], "missing") == (
        "no field 'nope' at secret 'proj/dev'#DB (fields: password, user)")
    assert problem(result["NULLED"], "missing") == "secret 'proj/dev' holds null for 'NULLED'"
    assert problem(result["ABSENT"], "missing") == "secret 'proj/dev' has no key 'ABSENT'"
    item = result["OPENAI_API_KEY"]
    assert isinstance(item.version, str)
    assert len(item.version) == 36
    assert item.updated is not None
    assert abs(item.updated - datetime.now(UTC)) < timedelta(minutes=5)
    assert [c.operation for c in aws.proxy.operations()] == ["GetSecretValue"]


def test_bundle_absent_means_every_key_missing(aws: AwsBackend) -> None:
    result = fetch(make(aws), "A", "B")
    assert problem(result["A"], "missing") == "no secret 'proj/dev' in us-east-1"
    assert problem(result["B"], "missing") == "no secret 'proj/dev' in us-east-1"


@pytest.mark.parametrize("stored", ["not json at all", "[1, 2]", "\"just a string\""])
def test_bundle_that_is_not_a_json_object_is_an_error(aws: AwsBackend, stored: str) -> None:
    put(aws, BUNDLE, stored)
    message = problem(fetch(make(aws), "A")["A"], "error")
    assert message.startswith("secret 'proj/dev' is not a JSON object of keys")
    assert stored not in message


def test_bundle_versions_pin_per_key(aws: AwsBackend) -> None:
    first = put(aws, BUNDLE, json.dumps({"A": "a-old", "B": "b-old"}))
    put(aws, BUNDLE, json.dumps({"A": "a-new", "B": "b-new"}))
    result = fetch(make(aws), "A", Request("B", "B", version="AWSPREVIOUS"),
                   Request("C", "A", version=first), Request("D", "A", version="NOSUCHLABEL"))
    assert value(result["A"]) == "a-new"
    assert value(result["B"]) == "b-old"
    assert value(result["C"]) == "a-old"
    assert result["C"].version == first
    assert problem(result["D"], "missing") == "no secret 'proj/dev' version 'NOSUCHLABEL' in us-east-1"
    assert sorted(str(c.body.get("VersionStage") or c.body.get("VersionId"))
                  for c in aws.proxy.operations("GetSecretValue")) == sorted(
        ["None", "AWSPREVIOUS", first, "NOSUCHLABEL"])


def test_bundle_in_secret_binary(aws: AwsBackend) -> None:
    put(aws, BUNDLE, json.dumps({"A": "from-binary"}).encode())
    assert value(fetch(make(aws), "A")["A"]) == "from-binary"


# --- per-key mode ---------------------------------------------------------------------


def test_per_key_batches_of_twenty_in_parallel(aws: AwsBackend) -> None:
    names = [f"KEY_{i:02d}" for i in range(65)]
    for name in names[:63]:
        put(aws, f"{BUNDLE}/{name}", f"value-of-{name}")
    aws.proxy.slow("BatchGetSecretValue", 0.4)
    started = time.monotonic()
    result = fetch(make(aws, secret="{project}/{env}/{key}"), *names)
    elapsed = time.monotonic() - started
    assert [value(result[n]) for n in names[:63]] == [f"value-of-{n}" for n in names[:63]]
    assert problem(result["KEY_63"], "missing") == "no secret 'proj/dev/KEY_63' in us-east-1"
    calls = aws.proxy.operations("BatchGetSecretValue")
    assert sorted(len(c.body["SecretIdList"]) for c in calls) == [5, 20, 20, 20]
    assert len(aws.proxy.operations()) == 4
    # every call started before the first one ended: all 4 were in flight at once
    assert max(c.started for c in calls) < min(c.ended for c in calls)
    # one after another they take 1.6 s at least; the bound leaves room for a loaded machine
    assert elapsed < 4 * 0.4 + 1.0, f"4 calls of 0.4 s took {elapsed:.2f} s"


def test_per_key_fields_versions_and_duplicates(aws: AwsBackend) -> None:
    put(aws, f"{BUNDLE}/DB", json.dumps({"user": "u1", "password": "p1"}))
    old = put(aws, f"{BUNDLE}/TOKEN", "token-1")
    put(aws, f"{BUNDLE}/TOKEN", "token-2")
    result = fetch(make(aws, secret="{project}/{env}/{key}"),
                   Request("DB_USER", "DB", "user"), Request("DB_PASSWORD", "DB", "password"),
                   "TOKEN", Request("TOKEN_OLD", "TOKEN", version="AWSPREVIOUS"),
                   Request("TOKEN_FIRST", "TOKEN", version=old),
                   Request("DB_PORT", "DB", "port"))
    assert value(result["DB_USER"]) == "u1"
    assert value(result["DB_PASSWORD"]) == "p1"
    assert value(result["TOKEN"]) == "token-2"
    assert value(result["TOKEN_OLD"]) == "token-1"
    assert value(result["TOKEN_FIRST"]) == "token-1"
    assert problem(result["DB_PORT"], "missing") == (
        "no field 'port' at secret 'proj/dev/DB' (fields: password, user)")
    [batch] = aws.proxy.operations("BatchGetSecretValue")
    assert batch.body["SecretIdList"] == ["proj/dev/DB", "proj/dev/TOKEN"]
    assert len(aws.proxy.operations("GetSecretValue")) == 2


def test_secret_binary_must_be_text(aws: AwsBackend) -> None:
    put(aws, f"{BUNDLE}/TEXT", "héllo".encode())
    put(aws, f"{BUNDLE}/BLOB", b"\xff\xfe\x00binary")
    result = fetch(make(aws, secret="{project}/{env}/{key}"), "TEXT", "BLOB")
    assert value(result["TEXT"]) == "héllo"
    assert problem(result["BLOB"], "error") == (
        "the value at secret 'proj/dev/BLOB' is binary, not UTF-8 text")


def test_batch_next_token_is_followed(aws: AwsBackend) -> None:
    page = {"Name": "proj/dev/A", "ARN": "arn:aws:secretsmanager:us-east-1:1:secret:proj/dev/A-x",
            "VersionId": "11111111-1111-1111-1111-111111111111", "SecretString": "from-page-1",
            "CreatedDate": 1700000000}
    aws.proxy.respond("BatchGetSecretValue", {"SecretValues": [page], "NextToken": "page-2"},
                      times=1)
    aws.proxy.respond("BatchGetSecretValue", {"SecretValues": [
        dict(page, Name="proj/dev/B", ARN=page["ARN"].replace("/A-", "/B-"),
             SecretString="from-page-2")]}, match="page-2", times=1)
    result = fetch(make(aws, secret="{project}/{env}/{key}"), "A", "B")
    assert value(result["A"]) == "from-page-1"
    assert value(result["B"]) == "from-page-2"
    assert result["A"].updated == datetime.fromtimestamp(1700000000, UTC)
    first, second = aws.proxy.operations("BatchGetSecretValue")
    assert "NextToken" not in first.body
    assert second.body == {"SecretIdList": ["proj/dev/A", "proj/dev/B"], "NextToken": "page-2"}


def test_batch_errors_become_per_key_problems(aws: AwsBackend) -> None:
    aws.proxy.respond("BatchGetSecretValue", {"SecretValues": [], "Errors": [
        {"SecretId": "proj/dev/DENIED", "ErrorCode": "AccessDeniedException",
         "Message": "User is not authorized to perform secretsmanager:GetSecretValue"},
        {"SecretId": "proj/dev/KMS", "ErrorCode": "DecryptionFailure",
         "Message": "KMS key is disabled"},
        {"SecretId": "proj/dev/GONE", "ErrorCode": "ResourceNotFoundException",
         "Message": "Secrets Manager can't find the specified secret."},
        {"SecretId": "proj/dev/ODD", "ErrorCode": "InternalServiceError", "Message": "boom"}]})
    result = fetch(make(aws, secret="{project}/{env}/{key}"), "DENIED", "KMS", "GONE", "ODD",
                   "UNANSWERED")
    assert problem(result["DENIED"], "denied") == (
        "access denied to secret 'proj/dev/DENIED' (AccessDeniedException: User is not "
        "authorized to perform secretsmanager:GetSecretValue) — grant "
        "secretsmanager:GetSecretValue on it to the identity in use")
    assert problem(result["KMS"], "error") == (
        "KMS could not decrypt secret 'proj/dev/KMS' (DecryptionFailure: KMS key is "
        "disabled) — check that its KMS key is enabled and that the identity in use may use "
        "it (kms:Decrypt)")
    assert problem(result["GONE"], "missing") == "no secret 'proj/dev/GONE' in us-east-1"
    assert "AWS kept answering InternalServiceError: boom while reading secret 'proj/dev/ODD'" in (
        problem(result["ODD"], "error"))
    assert problem(result["UNANSWERED"], "missing") == "no secret 'proj/dev/UNANSWERED' in us-east-1"


def test_secret_scheduled_for_deletion(aws: AwsBackend) -> None:
    put(aws, f"{BUNDLE}/OLD", "old-value-1")
    put(aws, BUNDLE, json.dumps({"OLD": "old-value-1"}))
    client = aws.client("secretsmanager")
    client.delete_secret(SecretId=f"{BUNDLE}/OLD", RecoveryWindowInDays=7)
    client.delete_secret(SecretId=BUNDLE, RecoveryWindowInDays=7)
    for source, where in ((make(aws, secret="{project}/{env}/{key}"), "proj/dev/OLD"),
                          (make(aws), "proj/dev")):
        message = problem(fetch(source, "OLD")["OLD"], "error")
        assert message == (f"secret '{where}' is scheduled for deletion — restore it: "
                           f"aws secretsmanager restore-secret --secret-id '{where}'")
    meta = make(aws, secret="{project}/{env}/{key}").describe([Request("OLD", "OLD")],
                                                             Deadline(5))["OLD"]
    assert meta.exists is False
    assert meta.deleted is not None
    health = make(aws).check(Deadline(5))
    assert health.warnings[0].startswith("secret 'proj/dev' is scheduled for deletion on ")


# --- access, credentials, configuration -----------------------------------------------


@pytest.fixture
def iam_user(aws: AwsBackend) -> Iterator[Any]:
    """A factory of moto IAM users with an inline policy; moto then checks every request."""
    iam = aws.client("iam")
    made: list[dict[str, str]] = []

    def create(*actions: str) -> dict[str, str]:
        name = f"user{len(made)}"
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions) or ["sts:GetCallerIdentity"],
                           "Resource": "*"}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        made.append({"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                     "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
        return made[-1]

    try:
        yield create
    finally:
        aws.moto.require_auth(float("inf"))


def test_policy_without_batch_falls_back_to_get_secret_value(
        aws: AwsBackend, iam_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(aws, f"{BUNDLE}/A", "value-a-1")
    put(aws, f"{BUNDLE}/B", "value-b-1")
    for name, setting in iam_user("secretsmanager:GetSecretValue").items():
        monkeypatch.setenv(name, setting)
    aws.moto.require_auth(0)
    result = fetch(make(aws, secret="{project}/{env}/{key}"), "A", "B")
    assert (value(result["A"]), value(result["B"])) == ("value-a-1", "value-b-1")
    assert [c.operation for c in aws.proxy.operations()].count("GetSecretValue") == 2


def test_access_denied_names_secret_and_permission(
        aws: AwsBackend, iam_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    put(aws, BUNDLE, json.dumps({"A": "value-a-1"}))
    for name, setting in iam_user("secretsmanager:ListSecrets").items():
        monkeypatch.setenv(name, setting)
    aws.moto.require_auth(0)
    message = problem(fetch(make(aws), "A")["A"], "denied")
    assert message == (
        "access denied to secret 'proj/dev' (AccessDenied: User: "
        "arn:aws:iam::123456789012:user/user0 is not authorized to perform: "
        "secretsmanager:GetSecretValue) — grant secretsmanager:GetSecretValue on it to the "
        "identity in use")
    health = make(aws).check(Deadline(5))
    assert health.detail == "us-east-1: reachable and authenticated"
    assert "DescribeSecret on secret 'proj/dev' is denied" in health.warnings[0]


def test_rejected_credentials(aws: AwsBackend, iam_user: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    iam_user()
    aws.moto.require_auth(0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKNOWNKEY0000")
    with pytest.raises(SourceError) as caught:
        fetch(make(aws), "A")
    assert caught.value.message == (
        "aws: AWS rejected the credentials (InvalidClientTokenId: The security token included "
        "in the request is invalid.) — check the access key and the profile in use: aws sts "
        "get-caller-identity")


def test_no_credentials(aws: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"^aws: no AWS credentials found \(") as caught:
        fetch(make(aws), "A")
    assert "aws configure, aws sso login, or AWS_ACCESS_KEY_ID" in caught.value.message
    assert time.monotonic() - started < 3
    assert aws.proxy.operations() == []


def test_expired_token(aws: AwsBackend) -> None:
    aws.proxy.error(None, "ExpiredTokenException", "The security token included in the "
                    "request is expired")
    for source in (make(aws), make(aws, secret="{project}/{env}/{key}")):
        with pytest.raises(SourceError) as caught:
            fetch(source, "A")
        assert caught.value.message == (
            "aws: the AWS credentials have expired (ExpiredTokenException: The security token "
            "included in the request is expired) — refresh them: aws sso login (with "
            "--profile), or fetch new session credentials")


def test_no_region(aws: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(SourceError, match="AWS is not configured: NoRegionError: .* set "
                                          "region = \"…\" in the source's table, or AWS_REGION"):
        fetch(make(aws), "A")


def test_region_option_is_used(aws: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.client("secretsmanager")  # us-east-1
    eu = aws.moto.client("secretsmanager", region_name="eu-west-1")
    eu.create_secret(Name=BUNDLE, SecretString=json.dumps({"A": "from-eu"}))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert value(fetch(make(aws, region="eu-west-1"), "A")["A"]) == "from-eu"
    assert problem(fetch(make(aws, region="us-west-2"), "A")["A"], "missing") == (
        "no secret 'proj/dev' in us-west-2")


def test_profile_option_and_missing_profile(aws: AwsBackend, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    put(aws, BUNDLE, json.dumps({"A": "via-profile"}))
    config = tmp_path / "config"
    config.write_text("[profile keyrun-test]\nregion = us-east-1\n"
                      "aws_access_key_id = AKIAPROFILE000000000\naws_secret_access_key = dummy\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert value(fetch(make(aws, profile="keyrun-test"), "A")["A"]) == "via-profile"
    with pytest.raises(SourceError, match="AWS is not configured: ProfileNotFound: The config "
                                          "profile \\(nope\\) could not be found — check the "
                                          "profile option"):
        fetch(make(aws, profile="nope"), "A")


def test_aws_endpoint_url_variable(aws: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    put(aws, BUNDLE, json.dumps({"A": "via-env-endpoint"}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    assert value(fetch(make(None), "A")["A"]) == "via-env-endpoint"
    assert len(aws.proxy.operations()) == 1


def test_unreachable_endpoint(aws: AwsBackend) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch(make(None, endpoint_url=f"http://127.0.0.1:{port}"), "A")
    assert caught.value.message.startswith(
        f"aws: cannot reach AWS at http://127.0.0.1:{port} (EndpointConnectionError: ")
    assert time.monotonic() - started < 3


# --- throttling and deadlines ---------------------------------------------------------


def test_throttling_is_retried(aws: AwsBackend) -> None:
    for i in range(25):
        put(aws, f"{BUNDLE}/K{i}", f"v{i}")
    aws.proxy.error("BatchGetSecretValue", "ThrottlingException", "Rate exceeded", times=3)
    aws.proxy.error("BatchGetSecretValue", "TooManyRequests", "slow down", status=429, times=1)
    aws.proxy.error("GetSecretValue", "InternalServiceError", "oops", status=500, times=2)
    result = fetch(make(aws, secret="{project}/{env}/{key}"),
                   *(f"K{i}" for i in range(25)), Request("P", "K0", version="AWSCURRENT"))
    assert [value(result[f"K{i}"]) for i in range(25)] == [f"v{i}" for i in range(25)]
    assert value(result["P"]) == "v0"
    assert len(aws.proxy.operations("BatchGetSecretValue")) == 2 + 4
    assert len(aws.proxy.operations("GetSecretValue")) == 3


def test_throttling_gives_up_inside_the_deadline(aws: AwsBackend) -> None:
    aws.proxy.error("GetSecretValue", "ThrottlingException", "Rate exceeded")
    started = time.monotonic()
    message = problem(fetch(make(aws), "A", seconds=2)["A"], "error")
    elapsed = time.monotonic() - started
    assert message.startswith("AWS kept answering ThrottlingException: Rate exceeded while "
                              "reading secret 'proj/dev' (")
    assert message.endswith("attempts within the 2s deadline) — try again, or raise timeout in "
                            "the environment's table")
    assert 0.3 < elapsed < 2
    assert len(aws.proxy.operations()) >= 3


def test_black_holed_endpoint_ends_within_the_deadline(aws: AwsBackend) -> None:
    hole = BlackHole()
    try:
        for settings in ({}, {"secret": "{key}"}):
            source = make(None, endpoint_url=hole.url, **settings)
            started = time.monotonic()
            with pytest.raises(SourceError) as caught:
                fetch(source, "A", "B", seconds=1.5)
            assert time.monotonic() - started < 1.5 + 0.5  # botocore's own would be 60 s
            assert caught.value.message == (
                f"aws: no answer from AWS at {hole.url} within the total deadline of 1.5s — "
                "check that the endpoint is reachable; raise the deadline with timeout = "
                "\"60s\" in the environment's table")
    finally:
        hole.close()


# --- metadata -------------------------------------------------------------------------


def test_describe_is_value_free(aws: AwsBackend) -> None:
    put(aws, BUNDLE, json.dumps({"A": "a1"}))
    current = put(aws, BUNDLE, json.dumps({"A": "a2"}))
    put(aws, f"{BUNDLE}/A", "a3")
    bundle = make(aws).describe([Request("A", "A")], Deadline(5))["A"]
    assert isinstance(bundle, Meta)
    assert (bundle.exists, bundle.version, bundle.deleted, bundle.next_rotation) == (
        None, current, None, None)
    assert bundle.updated is not None
    each = make(aws, secret="{project}/{env}/{key}").describe(
        [Request("A", "A"), Request("GONE", "GONE")], Deadline(5))
    assert each["A"].exists is True
    assert each["GONE"].exists is False
    assert {c.operation for c in aws.proxy.operations()} == {"DescribeSecret"}


def test_describe_reports_rotation(aws: AwsBackend) -> None:
    put(aws, BUNDLE, json.dumps({"A": "a1"}))
    due = datetime.now(UTC) + timedelta(days=3)
    aws.proxy.respond("DescribeSecret", {
        "Name": BUNDLE, "RotationEnabled": True, "RotationRules": {"AutomaticallyAfterDays": 30},
        "LastChangedDate": 1700000000, "NextRotationDate": due.timestamp(),
        "VersionIdsToStages": {"v1": ["AWSCURRENT"]}})
    meta = make(aws).describe([Request("A", "A")], Deadline(5))["A"]
    assert meta.note == "rotation enabled every 30 days"
    assert meta.next_rotation is not None
    assert abs(meta.next_rotation - due) < timedelta(seconds=1)
    assert meta.updated == datetime.fromtimestamp(1700000000, UTC)
    assert meta.version == "v1"


def test_check(aws: AwsBackend) -> None:
    missing = make(aws).check(Deadline(5))
    assert missing.warnings == ("secret 'proj/dev' does not exist in us-east-1 (keyrun set "
                                "creates it)",)
    put(aws, BUNDLE, "{}")
    present = make(aws).check(Deadline(5))
    assert present.detail.startswith("secret 'proj/dev' in us-east-1, last changed ")
    assert present.warnings == ()
    listing = make(aws, secret="{project}/{env}/{key}").check(Deadline(5))
    assert listing.detail == "secrets named proj/dev/… in us-east-1: reachable"
    assert aws.proxy.operations("ListSecrets")[0].body == {
        "MaxResults": 1, "Filters": [{"Key": "name", "Values": ["proj/dev/"]}]}
    assert {c.operation for c in aws.proxy.operations()} == {"DescribeSecret", "ListSecrets"}


# --- writing --------------------------------------------------------------------------


def current_json(aws: AwsBackend, name: str = BUNDLE) -> Any:
    return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def test_bundle_write_keeps_other_keys_and_creates_the_secret(aws: AwsBackend) -> None:
    source = make(aws)
    assert source.write(Request("A", "A"), Secret("first-a"), Deadline(5)) == "proj/dev#A"
    assert current_json(aws) == {"A": "first-a"}
    put(aws, BUNDLE, json.dumps({"A": "first-a", "OTHER": {"x": 1}, "N": 5}))
    source.write(Request("A", "A"), Secret("second-a"), Deadline(5))
    source.write(Request("B", "B"), Secret("new-b"), Deadline(5))
    assert current_json(aws) == {"A": "second-a", "OTHER": {"x": 1}, "N": 5, "B": "new-b"}
    previous = fetch(make(aws), Request("B", "B", version="AWSPREVIOUS"))["B"]
    assert problem(previous, "missing") == "secret 'proj/dev' version 'AWSPREVIOUS' has no key 'B'"


def test_bundle_write_refuses_a_version_changed_underneath(aws: AwsBackend) -> None:
    put(aws, BUNDLE, json.dumps({"A": "a1", "B": "b1"}))
    other = {"A": "a1", "B": "b-from-someone-else"}
    aws.proxy.before("PutSecretValue", lambda: put(aws, BUNDLE, json.dumps(other)))
    with pytest.raises(SourceError) as caught:
        make(aws).write(Request("A", "A"), Secret(CANARY), Deadline(5))
    assert caught.value.message == (
        "aws: secret 'proj/dev' changed while keyrun was writing it; the other change was kept "
        "and this value was not stored — run keyrun set again")
    assert current_json(aws) == other


def test_bundle_write_refuses_what_it_cannot_rewrite(aws: AwsBackend) -> None:
    put(aws, BUNDLE, "[1, 2, 3]")
    with pytest.raises(SourceError, match="secret 'proj/dev' is JSON but not an object, so it "
                                          "cannot hold keys by name — keyrun set will not "
                                          "replace it"):
        make(aws).write(Request("A", "A"), Secret("v"), Deadline(5))
    with pytest.raises(SourceError, match="A is read from field 'user' of a value in secret "
                                          "'proj/dev'; keyrun set cannot rewrite one field"):
        make(aws).write(Request("A", "A", "user"), Secret("v"), Deadline(5))
    assert current_json(aws) == [1, 2, 3]


def test_per_key_write_creates_then_updates(aws: AwsBackend) -> None:
    source = make(aws, secret="{project}/{env}/{key}")
    assert source.write(Request("NEW", "NEW"), Secret("v1"), Deadline(5)) == "proj/dev/NEW"
    source.write(Request("NEW", "NEW"), Secret("v2"), Deadline(5))
    client = aws.client("secretsmanager")
    assert client.get_secret_value(SecretId="proj/dev/NEW")["SecretString"] == "v2"
    assert client.get_secret_value(SecretId="proj/dev/NEW",
                                   VersionStage="AWSPREVIOUS")["SecretString"] == "v1"
    source.write(Request("DB_USER", "DB", "user"), Secret("u1"), Deadline(5))
    source.write(Request("DB_PASS", "DB", "password"), Secret("p1"), Deadline(5))
    assert current_json(aws, "proj/dev/DB") == {"user": "u1", "password": "p1"}
    with pytest.raises(SourceError, match="Secrets Manager cannot hold an empty value"):
        source.write(Request("NEW", "NEW"), Secret(""), Deadline(5))


def test_write_errors_never_show_the_value(aws: AwsBackend) -> None:
    aws.proxy.error("PutSecretValue", "ValidationException",
                    f"Value '{CANARY}' at 'secretString' failed to satisfy constraint")
    put(aws, f"{BUNDLE}/K", "old")
    with pytest.raises(SourceError) as caught:
        make(aws, secret="{project}/{env}/{key}").write(Request("K", "K"), Secret(CANARY),
                                                        Deadline(5))
    assert caught.value.message == (
        "aws: writing secret 'proj/dev/K' failed (ValidationException: Value '***' at "
        "'secretString' failed to satisfy constraint)")


# --- the CLI as a real process --------------------------------------------------------

CONFIG = """
project = "proj"
default_env = "dev"
[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{}}
[sources.bundle]
type = "aws-secrets-manager"
region = "us-east-1"
[sources.each]
type = "aws-secrets-manager"
secret = "{{project}}/{{env}}/{{key}}"
[env.dev]
sources = ["bundle"]
{extra}
[env.perkey]
sources = ["each"]
[env.staging]
sources = ["bundle"]
rotate_after = "1s"
timeout = "3s"
"""

DIGEST = ("import os, hashlib; print(hashlib.sha256((os.environ['OPENAI_API_KEY'] + '|' + "
          "os.environ['ANTHROPIC_API_KEY']).encode()).hexdigest())")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", CONFIG.format(extra=""))


def digest(*values: str) -> str:
    return hashlib.sha256("|".join(values).encode()).hexdigest()


def test_cli_run_bundle_and_per_key(aws: AwsBackend, project: Path, tmp_path: Path) -> None:
    put(aws, BUNDLE, json.dumps({"OPENAI_API_KEY": CANARY, "ANTHROPIC_API_KEY": "sk-ant-1"}))
    put(aws, "proj/perkey/OPENAI_API_KEY", CANARY + "-pk")
    put(aws, "proj/perkey/ANTHROPIC_API_KEY", "sk-ant-2")
    env = clean_env(tmp_path, **aws.env())
    bundle = keyrun(["-e", "dev", "--", sys.executable, "-c", DIGEST], cwd=project, env=env)
    assert bundle.returncode == 0, bundle.stderr
    assert bundle.stdout.strip() == digest(CANARY, "sk-ant-1")
    each = keyrun(["-e", "perkey", "--", sys.executable, "-c", DIGEST], cwd=project, env=env)
    assert each.returncode == 0, each.stderr
    assert each.stdout.strip() == digest(CANARY + "-pk", "sk-ant-2")
    log = (tmp_path / "access.log").read_text()
    assert '"source":"each"' in log
    assert_no_leak(CANARY, bundle.stdout, bundle.stderr, each.stderr, log, root=project)


def test_cli_failures_exit_125_naming_the_key(aws: AwsBackend, project: Path,
                                              tmp_path: Path) -> None:
    put(aws, BUNDLE, json.dumps({"OPENAI_API_KEY": CANARY}))
    env = clean_env(tmp_path, **aws.env())
    missing = keyrun(["-e", "dev", "--", "true"], cwd=project, env=env)
    assert missing.returncode == 125
    assert ("ANTHROPIC_API_KEY: missing from bundle (secret 'proj/dev' has no key "
            "'ANTHROPIC_API_KEY')") in missing.stderr
    aws.proxy.error(None, "ExpiredTokenException", "The security token included in the "
                    "request is expired")
    expired = keyrun(["-e", "dev", "--", "true"], cwd=project, env=env)
    assert expired.returncode == 125
    assert ("OPENAI_API_KEY, ANTHROPIC_API_KEY: bundle: the AWS credentials have expired (ExpiredTokenException"
            in expired.stderr)
    no_creds = dict(env)
    del no_creds["AWS_ACCESS_KEY_ID"], no_creds["AWS_SECRET_ACCESS_KEY"]
    aws.proxy.clear()
    denied = keyrun(["-e", "dev", "--", "true"], cwd=project, env=no_creds)
    assert denied.returncode == 125
    assert "OPENAI_API_KEY, ANTHROPIC_API_KEY: bundle: no AWS credentials found" in denied.stderr
    assert_no_leak(CANARY, missing.stdout, missing.stderr, expired.stderr, denied.stderr,
                   root=project)


def test_cli_black_hole_ends_within_the_timeout(aws: AwsBackend, project: Path,
                                                tmp_path: Path) -> None:
    hole = BlackHole()
    try:
        env = clean_env(tmp_path, **aws.env())
        env["AWS_ENDPOINT_URL"] = hole.url
        started = time.monotonic()
        done = keyrun(["-e", "staging", "--", "true"], cwd=project, env=env, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert done.returncode == 125, done.stderr
    assert "OPENAI_API_KEY, ANTHROPIC_API_KEY: bundle: " in done.stderr
    assert "within the total deadline of 3s" in done.stderr
    # start-up (boto3's import) included; without the deadline botocore waits 60 s a try
    assert elapsed < 3 + 3.0, f"took {elapsed:.1f}s with timeout = 3s"


def test_cli_list_doctor_and_set(aws: AwsBackend, project: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path, **aws.env())
    for key, secret in (("OPENAI_API_KEY", CANARY), ("ANTHROPIC_API_KEY", "sk-ant-key-0002")):
        done = keyrun(["set", key, "-e", "staging"], cwd=project, env=env, input=secret + "\n")
        assert done.returncode == 0, done.stderr
        assert CANARY not in done.stderr + done.stdout
    assert current_json(aws, "proj/staging") == {"OPENAI_API_KEY": CANARY,
                                                 "ANTHROPIC_API_KEY": "sk-ant-key-0002"}
    listed = keyrun(["list", "--json", "-e", "staging"], cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["keys"]}
    openai = rows["OPENAI_API_KEY"]
    assert (openai["source"], openai["location"], openai["status"]) == (
        "bundle", "proj/staging#OPENAI_API_KEY", "ok")
    assert len(openai["version"]) == 36
    assert openai["updated"] is not None
    assert openai["preview"] == "kr-…"  # at most a quarter of the canary's 26 characters
    time.sleep(1.2)  # rotate_after = "1s"
    doctor = keyrun(["doctor", "--json", "-e", "staging"], cwd=project, env=env)
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["sources"]["status"] == "pass", checks["sources"]
    assert "bundle: secret 'proj/staging' in us-east-1, last changed" in checks["sources"]["message"]
    assert checks["rotation"]["status"] == "warn"
    assert sorted(checks["rotation"]["keys"]) == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    log = (tmp_path / "access.log").read_text()
    assert_no_leak(CANARY, listed.stdout, listed.stderr, doctor.stdout, doctor.stderr, log,
                   root=project)


def test_secret_binary_base64_is_not_guessed(aws: AwsBackend) -> None:
    encoded = base64.b64encode(b"plain").decode()
    put(aws, f"{BUNDLE}/K", encoded)
    assert value(fetch(make(aws, secret="{project}/{env}/{key}"), "K")["K"]) == encoded
