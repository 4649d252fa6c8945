"""The gcp-secret-manager source against a fake Secret Manager that speaks gRPC over TLS
(tests/gcp_server.py), reached by the official client through the ``endpoint`` option:
the contract suite, what is special to Google, and the CLI as a real process."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from keyrun.dotenvfile import format_assignment, parse_dotenv, replace_assignment
from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Item, Meta, Request
from keyrun.sources.gcp import GcpSecretManagerSource, crc32c, gcp_name
from keyrun.testing import Harness, SourceContract
from tests.gcp_server import PROJECT, FakeSecretManager, SilentServer
from tests.helpers import (
    CANARY,
    PRINT_DIGESTS,
    assert_no_leak,
    build_source,
    clean_env,
    digest,
    fetch,
    free_port,
    keyrun,
    problem,
    unavailable,
    value,
    write,
    write_project,
)

_ENV = ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")


@pytest.fixture(scope="session")
def gcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSecretManager]:
    try:
        fake = FakeSecretManager(tmp_path_factory.mktemp("gcp"))
        fake.start()
    except Exception as exc:  # grpcio missing or no port: a failure under CI
        unavailable(f"the fake Secret Manager cannot start: {exc}")
    saved = {name: os.environ.get(name) for name in _ENV}
    # gRPC reads its trusted roots once, when the first secure channel opens
    for name in _ENV:
        os.environ.pop(name, None)
    os.environ.update(fake.env)
    try:
        yield fake
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
        fake.stop()


@pytest.fixture
def gcp(gcp_server: FakeSecretManager) -> FakeSecretManager:
    gcp_server.backend.reset()
    return gcp_server


def make(fake: FakeSecretManager | None, *, endpoint: str | None = None, env: str = "dev",
         environ: Mapping[str, str] | None = None, **settings: object) -> GcpSecretManagerSource:
    options = dict(settings)
    if endpoint or fake:
        options["endpoint"] = endpoint or (fake.endpoint if fake else None)
    return build_source(GcpSecretManagerSource, "gcp", options, project="bot", env=env,
                        environ=dict(environ or {}))


# the contract, per key and for both kinds of bundle


class PerKeyHarness(Harness):
    supports_empty = False  # Secret Manager refuses an empty payload

    def __init__(self, fake: FakeSecretManager) -> None:
        self.fake = fake

    def put(self, name: str, value: str) -> None:
        self.fake.backend.put(f"dev-{name}", value)

    def source(self) -> GcpSecretManagerSource:
        return make(self.fake)

    def broken_source(self) -> GcpSecretManagerSource:
        return make(None, endpoint=f"127.0.0.1:{free_port()}")


class JsonBundleHarness(PerKeyHarness):
    supports_empty = True

    def put(self, name: str, value: str) -> None:
        backend = self.fake.backend
        data = json.loads(backend.value("bot-dev")) if "bot-dev" in backend.secrets else {}
        backend.put("bot-dev", json.dumps({**data, name: value}))

    def source(self) -> GcpSecretManagerSource:
        return make(self.fake, secret="{project}-{env}")


class DotenvBundleHarness(JsonBundleHarness):
    holds_dollar_brace = False

    def put(self, name: str, value: str) -> None:
        backend = self.fake.backend
        text = backend.value("bot-dev").decode() if "bot-dev" in backend.secrets else ""
        backend.put("bot-dev", replace_assignment(text, parse_dotenv(text, "t"), name, value))


class TestPerKeyContract(SourceContract):
    @pytest.fixture
    def harness(self, gcp: FakeSecretManager) -> Harness:
        return PerKeyHarness(gcp)


class TestJsonBundleContract(SourceContract):
    @pytest.fixture
    def harness(self, gcp: FakeSecretManager) -> Harness:
        return JsonBundleHarness(gcp)


class TestDotenvBundleContract(SourceContract):
    @pytest.fixture
    def harness(self, gcp: FakeSecretManager) -> Harness:
        return DotenvBundleHarness(gcp)


# reading


def test_per_key_values_come_with_their_version(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-OPENAI_API_KEY", "sk-first-0001")
    gcp.backend.put("dev-OPENAI_API_KEY", CANARY)
    got = fetch(make(gcp), "OPENAI_API_KEY")["OPENAI_API_KEY"]
    assert value(got) == CANARY
    assert isinstance(got, Item)
    assert got.version == "2"
    assert gcp.backend.accessed() == [
        f"projects/{PROJECT}/secrets/dev-OPENAI_API_KEY/versions/latest"]
    assert gcp.backend.tokens[0]["iss"].startswith("keyrun-test@")  # a JWT the client signed


def test_a_pinned_version(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", "old-value-0001")
    gcp.backend.put("dev-KEY", "new-value-0002")
    got = fetch(make(gcp), Request("OLD", "KEY", version="1"), Request("NEW", "KEY"),
                Request("LATEST", "KEY", version="latest"), Request("NONE", "KEY", version="7"))
    assert (value(got["OLD"]), value(got["NEW"]), value(got["LATEST"])) == (
        "old-value-0001", "new-value-0002", "new-value-0002")
    assert problem(got["NONE"], "missing") == "no secret 'dev-KEY' version 7 in project " \
                                              "'keyrun-test'"
    assert len(gcp.backend.accessed()) == 3  # NEW and LATEST share one read


def test_latest_disabled_is_its_own_error(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", "enabled-value-1")
    gcp.backend.put("dev-KEY", CANARY)
    gcp.backend.set_state("dev-KEY", 2, "DISABLED")
    got = fetch(make(gcp), "KEY", Request("PINNED", "KEY", version="1"),
                Request("TWO", "KEY", version="2"))
    assert problem(got["KEY"], "error") == (
        "version 2 of secret 'dev-KEY' in project 'keyrun-test' is disabled — \"latest\" "
        "is the newest version even when it is disabled: enable it (gcloud secrets versions "
        "enable 2 --secret=dev-KEY --project=keyrun-test), add a new version with keyrun set, "
        "or pin an enabled one with version = \"N\"")
    assert problem(got["TWO"], "error").startswith(
        "version 2 of secret 'dev-KEY' in project 'keyrun-test' is disabled — enable it")
    assert value(got["PINNED"]) == "enabled-value-1"


def test_a_destroyed_version(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", "gone-value-0001")
    gcp.backend.set_state("dev-KEY", 1, "DESTROYED")
    assert problem(fetch(make(gcp), "KEY")["KEY"], "error") == (
        "version 1 of secret 'dev-KEY' in project 'keyrun-test' is destroyed — \"latest\" "
        "is the newest version even when it is destroyed: add a new version with keyrun set, "
        "or pin an enabled one with version = \"N\"")


def test_the_state_comes_from_get_secret_version_not_the_error_text(
        gcp: FakeSecretManager) -> None:
    gcp.backend.not_enabled_text = "is not in ENABLED state."
    gcp.backend.put("dev-GONE", "gone-value-0001")
    gcp.backend.put("dev-GONE", "gone-value-0002")
    gcp.backend.set_state("dev-GONE", 2, "DESTROYED")
    gcp.backend.put("dev-OFF", "off-value-0001")
    gcp.backend.put("dev-OFF", CANARY, state="DISABLED")
    got = fetch(make(gcp), "GONE", "OFF", Request("PINNED", "OFF", version="2"))
    assert problem(got["GONE"], "error") == (
        "version 2 of secret 'dev-GONE' in project 'keyrun-test' is destroyed — "
        "\"latest\" is the newest version even when it is destroyed: add a new version with "
        "keyrun set, or pin an enabled one with version = \"N\"")
    assert problem(got["OFF"], "error") == (
        "version 2 of secret 'dev-OFF' in project 'keyrun-test' is disabled — \"latest\" "
        "is the newest version even when it is disabled: enable it (gcloud secrets versions "
        "enable 2 --secret=dev-OFF --project=keyrun-test), add a new version with keyrun set, "
        "or pin an enabled one with version = \"N\"")
    assert problem(got["PINNED"], "error") == (
        "version 2 of secret 'dev-OFF' in project 'keyrun-test' is disabled — enable it "
        "(gcloud secrets versions enable 2 --secret=dev-OFF --project=keyrun-test) or pin "
        "another version")
    assert CANARY not in str(got)


def test_an_unknown_state_is_worded_neutrally(gcp: FakeSecretManager) -> None:
    gcp.backend.not_enabled_text = "is not in ENABLED state."
    gcp.backend.metadata_denied = True  # GetSecretVersion is denied: the state stays unknown
    gcp.backend.put("dev-KEY", "key-value-0001", state="DESTROYED")
    got = fetch(make(gcp), "KEY", Request("PINNED", "KEY", version="1"))
    assert problem(got["KEY"], "error") == (
        "the latest version of secret 'dev-KEY' in project 'keyrun-test' is not enabled "
        "(disabled or destroyed) — \"latest\" is the newest version even when it is not "
        "enabled: gcloud secrets versions list dev-KEY --project=keyrun-test shows its number "
        "and state; enable it if it is disabled, add a new version with keyrun set, or pin an "
        "enabled one with version = \"N\"")
    assert problem(got["PINNED"], "error") == (
        "version 1 of secret 'dev-KEY' in project 'keyrun-test' is not enabled (disabled "
        "or destroyed) — enable it if it is disabled (gcloud secrets versions enable 1 "
        "--secret=dev-KEY --project=keyrun-test), or pin another version")


def test_the_state_lookup_keeps_to_the_deadline(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", "key-value-0001", state="DISABLED")
    gcp.backend.delay = 0.7  # the read answers; the lookup after it cannot
    started = time.monotonic()
    got = fetch(make(gcp), "KEY", seconds=1.2)
    gcp.backend.delay = 0
    assert time.monotonic() - started < 1.2
    assert "is not enabled (disabled or destroyed)" in problem(got["KEY"], "error")


def test_a_bad_version_pin_is_refused_without_a_call(gcp: FakeSecretManager) -> None:
    got = fetch(make(gcp), Request("KEY", "KEY", version="v/1"))
    assert problem(got["KEY"], "error") == ("version 'v/1' of secret 'dev-KEY' is neither "
                                            "a version number, \"latest\" nor an alias")
    assert gcp.backend.accessed() == []


def test_json_bundle(gcp: FakeSecretManager) -> None:
    gcp.backend.put("bot-dev", json.dumps({
        "OPENAI_API_KEY": CANARY, "PORT": 8080, "NULL": None,
        "DB": {"user": "app", "password": "pw-0001"}, "RAW": '{"token": "t-0002"}'}))
    got = fetch(make(gcp, secret="{project}-{env}"), "OPENAI_API_KEY", "PORT", "NULL", "ABSENT",
                Request("DB_PASSWORD", "DB", field="password"),
                Request("RAW_TOKEN", "RAW", field="token"),
                Request("DB_NOPE", "DB", field="nope"))
    assert value(got["OPENAI_API_KEY"]) == CANARY
    assert value(got["PORT"]) == "8080"
    assert value(got["DB_PASSWORD"]) == "pw-0001"
    assert value(got["RAW_TOKEN"]) == "t-0002"
    assert problem(got["NULL"], "missing") == ("secret 'bot-dev' in project 'keyrun-test' holds "
                                               "no value for 'NULL'")
    assert problem(got["ABSENT"], "missing") == ("secret 'bot-dev' in project 'keyrun-test' has "
                                                 "no key 'ABSENT'")
    assert problem(got["DB_NOPE"], "missing").startswith("no field 'nope' at ")
    assert len(gcp.backend.accessed()) == 1


def test_dotenv_bundle(gcp: FakeSecretManager) -> None:
    gcp.backend.put("bot-dev", "# the bot's keys\nexport OPENAI_API_KEY=" + CANARY + "\n"
                    "QUOTED='single $HOME'\nDOUBLE=\"a\\nb\"\nREF=${QUOTED}-x\n")
    got = fetch(make(gcp, secret="{project}-{env}"), "OPENAI_API_KEY", "QUOTED", "DOUBLE",
                "REF", "ABSENT")
    assert value(got["OPENAI_API_KEY"]) == CANARY
    assert value(got["QUOTED"]) == "single $HOME"
    assert value(got["DOUBLE"]) == "a\nb"
    assert value(got["REF"]) == "single $HOME-x"
    assert problem(got["ABSENT"], "missing").endswith("has no key 'ABSENT'")


@pytest.mark.parametrize("line", ["BARE", "QUOTED='${HOME}'", "TICK=`x`"])
def test_a_dotenv_bundle_is_read_as_strictly_as_a_dotenv_file(gcp: FakeSecretManager,
                                                              line: str) -> None:
    gcp.backend.put("bot-dev", f"OPENAI_API_KEY={CANARY}\n{line}\n")
    got = fetch(make(gcp, secret="{project}-{env}"), "OPENAI_API_KEY")["OPENAI_API_KEY"]
    message = problem(got, "error")
    assert "is neither a JSON object nor dotenv text (secret 'bot-dev' in project " \
        "'keyrun-test':2: " in message
    assert CANARY not in message


def test_a_bundle_that_is_neither_json_nor_dotenv(gcp: FakeSecretManager) -> None:
    gcp.backend.put("bot-dev", f"OPENAI_API_KEY='{CANARY}\nOTHER=x\n")
    got = fetch(make(gcp, secret="{project}-{env}"), "OPENAI_API_KEY")["OPENAI_API_KEY"]
    message = problem(got, "error")
    assert message.startswith("secret 'bot-dev' in project 'keyrun-test' "
                              "is neither a JSON object nor dotenv text (")
    assert CANARY not in message
    gcp.backend.put("bot-dev", '{"OPENAI_API_KEY": ')
    got = fetch(make(gcp, secret="{project}-{env}"), "OPENAI_API_KEY")["OPENAI_API_KEY"]
    assert "starts like JSON but is not valid JSON" in problem(got, "error")


def test_binary_payload_names_the_key(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-CERT", b"\x30\x82\xff\xfe" + CANARY.encode())
    message = problem(fetch(make(gcp), "CERT")["CERT"], "error")
    assert message == ("secret 'dev-CERT' in project 'keyrun-test' holds binary data, "
                       "not UTF-8 text, so CERT cannot be set from it")


def test_crc32c_is_checked(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", CANARY)
    gcp.backend.corrupt.add("dev-KEY")
    message = problem(fetch(make(gcp), "KEY")["KEY"], "error")
    assert message == ("the payload of secret 'dev-KEY' in project 'keyrun-test' failed "
                       "its CRC32C check (damaged on the way) — run keyrun again")


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert crc32c(b"") == 0
    assert crc32c(b"\x00" * 32) == 0x8A9136AA


def test_missing_and_denied(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-DENIED", CANARY)
    gcp.backend.denied.add("dev-DENIED")
    got = fetch(make(gcp), "ABSENT", "DENIED")
    assert problem(got["ABSENT"], "missing") == "no secret 'dev-ABSENT' in project 'keyrun-test'"
    assert problem(got["DENIED"], "denied") == (
        "permission denied on secret 'dev-DENIED' in project 'keyrun-test' (Permission "
        "'secretmanager.versions.access' denied for resource "
        "'projects/keyrun-test/secrets/dev-DENIED/versions/latest' (or it may not exist).) — "
        "grant secretmanager.versions.access on it (roles/secretmanager.secretAccessor) to "
        "keyrun-test@keyrun-test.iam.gserviceaccount.com")


def test_project_from_option_environment_or_credentials(gcp: FakeSecretManager,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    gcp.backend.put("dev-KEY", "project-value-01")
    assert value(fetch(make(gcp), "KEY")["KEY"]) == "project-value-01"  # the key file's
    url = make(None, endpoint=f"https://{gcp.endpoint}/")
    assert value(fetch(url, "KEY")["KEY"]) == "project-value-01"
    assert value(fetch(make(gcp, gcp_project="123456789012"), "KEY")["KEY"]) == (
        "project-value-01")
    denied = problem(fetch(make(gcp, gcp_project="acme-{env}"), "KEY")["KEY"], "denied")
    assert denied.startswith("permission denied on secret 'dev-KEY' in project 'acme-dev' ")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    denied = problem(fetch(make(gcp), "KEY")["KEY"], "denied")
    assert denied.startswith("permission denied on secret 'dev-KEY' in project 'from-env' ")
    full = make(gcp, secret=f"projects/{PROJECT}/secrets/{{env}}-{{key}}", gcp_project="x")
    assert value(fetch(full, "KEY")["KEY"]) == "project-value-01"


def test_names_are_mapped_to_valid_secret_ids(gcp: FakeSecretManager) -> None:
    assert gcp_name("db.url/primary") == "db_url_primary"
    source = make(gcp)
    assert source.backend_name("db.url") == "db_url"
    assert source.backend_name("OPENAI_API_KEY") == "OPENAI_API_KEY"
    assert make(gcp, secret="{env}").backend_name("db.url") == "db.url"  # a bundle's JSON key
    gcp.backend.put("dev-db_url", "postgres://u@h/db")
    assert value(fetch(source, Request("DATABASE_URL", source.backend_name("db.url")))[
        "DATABASE_URL"]) == "postgres://u@h/db"
    assert source.locate(Request("DATABASE_URL", "db_url", version="3")) == (
        "projects/keyrun-test/secrets/dev-db_url@3")
    bundle = make(gcp, secret="{env}")
    assert bundle.locate(Request("K", "db.url", field="f")) == "dev#db.url.f"  # project unknown
    bundle.check(Deadline(5))  # now the credentials have named it
    assert bundle.locate(Request("K", "db.url", field="f")) == (
        "projects/keyrun-test/secrets/dev#db.url.f")
    assert make(gcp, gcp_project="p", secret="{env}").locate(Request("K", "K")) == (
        "projects/p/secrets/dev#K")


def test_an_invalid_secret_id_is_an_error_without_a_call(gcp: FakeSecretManager) -> None:
    got = fetch(make(gcp, secret="{key}"), Request("LONG", "x" * 256))
    assert problem(got["LONG"], "error").startswith(f"'{'x' * 256}' is not a valid secret id")
    assert gcp.backend.calls == []


def test_reads_are_parallel(gcp: FakeSecretManager) -> None:
    names = [f"KEY_{i:02d}" for i in range(32)]
    for name in names:
        gcp.backend.put(f"dev-{name}", f"value-of-{name}")
    gcp.backend.delay = 0.1
    started = time.monotonic()
    got = fetch(make(gcp), *names)
    elapsed = time.monotonic() - started
    assert [value(got[n]) for n in names] == [f"value-of-{n}" for n in names]
    assert elapsed < 1.5  # one after another would take 3.2 s


def test_unavailable_is_retried_within_the_deadline(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", "retried-value-01")
    gcp.backend.unavailable = 2
    assert value(fetch(make(gcp), "KEY")["KEY"]) == "retried-value-01"
    assert len(gcp.backend.accessed()) == 3
    gcp.backend.unavailable = 100
    message = problem(fetch(make(gcp), "KEY")["KEY"], "error")
    assert message == ("Secret Manager kept answering ServiceUnavailable: The service is "
                       "currently unavailable. while reading secret 'dev-KEY' in project "
                       "'keyrun-test' (4 attempts) — try again")


def test_rejected_credentials_fail_the_source(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", CANARY)
    gcp.backend.reject_tokens = True
    with pytest.raises(SourceError) as caught:
        fetch(make(gcp), "KEY", "OTHER")
    assert caught.value.source == "gcp"
    assert str(caught.value).startswith(f"gcp: Secret Manager at {gcp.endpoint} rejected the "
                                        "credentials (Unauthenticated: Request had invalid ")
    assert "— check the account: gcloud auth application-default print-access-token; " \
        in str(caught.value)


def test_no_credentials(gcp: FakeSecretManager, monkeypatch: pytest.MonkeyPatch,
                        tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(SourceError) as caught:
        fetch(make(gcp), "KEY")
    assert str(caught.value).startswith("gcp: no Google credentials found (")
    assert "absent.json" in str(caught.value)
    assert str(caught.value).endswith(
        " — run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
        "to a service-account key file, or run where a service account is attached")


def test_credentials_that_cannot_make_a_token(gcp: FakeSecretManager,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    write(tmp_path / "user.json", json.dumps({
        "type": "external_account_authorized_user", "client_id": "c", "client_secret": "s",
        "audience": "//iam.googleapis.com/locations/global/workforcePools/p/providers/q",
        "refresh_token": "r", "token_url": f"{refused}/token",
        "token_info_url": f"{refused}/info"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "user.json"))
    with pytest.raises(SourceError) as caught:
        fetch(make(gcp, gcp_project=PROJECT), "KEY", "OTHER")
    message = str(caught.value)
    assert message.startswith("gcp: the Google credentials could not make an access token "
                              "(ServiceUnavailable: Getting metadata from plugin failed ")
    assert message.endswith(" — sign in again: gcloud auth application-default login")
    assert gcp.backend.calls == []


def test_no_project(gcp: FakeSecretManager, monkeypatch: pytest.MonkeyPatch,
                    tmp_path: Path) -> None:
    info = json.loads(gcp.credentials_path.read_text())
    del info["project_id"]
    write(tmp_path / "key.json", json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    with pytest.raises(SourceError) as caught:
        fetch(make(gcp), "KEY")
    assert str(caught.value) == (
        "gcp: no Google Cloud project: gcp_project is not set and neither GOOGLE_CLOUD_PROJECT "
        "nor the credentials name one — set gcp_project = \"…\" in [sources.gcp]")
    gcp.backend.put("dev-KEY", "with-project-01")
    assert value(fetch(make(gcp, gcp_project=PROJECT), "KEY")["KEY"]) == "with-project-01"


def test_a_refused_connection_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch(make(None, endpoint=f"127.0.0.1:{free_port()}"), "KEY", seconds=20)
    assert time.monotonic() - started < 5
    assert "gcp: cannot reach Secret Manager at 127.0.0.1:" in str(caught.value)


def test_a_silent_server_ends_at_the_deadline(gcp_server: FakeSecretManager) -> None:
    silent = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            fetch(make(None, endpoint=silent.endpoint), "KEY", "OTHER", seconds=1.5)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 1.5
    assert str(caught.value) == (f"gcp: timed out: no answer from Secret Manager at "
                                 f"{silent.endpoint} within the total deadline of 1.5s — check "
                                 "that the endpoint is reachable; raise the deadline with "
                                 "timeout = \"60s\" in the environment's table")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="endpoint 'https://h/x' is not HOST or HOST:PORT"):
        make(None, endpoint="https://h/x")
    with pytest.raises(ConfigError, match="holds characters a secret id cannot have"):
        make(None, secret="{env}/{key}")
    assert make(None, endpoint="https://secretmanager.me-west1.rep.googleapis.com:443/")
    assert make(None, secret="projects/p/secrets/{env}-{key}")


# metadata, never values


def test_describe_reads_metadata_only(gcp: FakeSecretManager) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    gcp.backend.put("dev-OLD", CANARY, created=old)
    gcp.backend.put("dev-OFF", "x-0001")
    gcp.backend.put("dev-OFF", "x-0002", state="DISABLED")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    due = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    gcp.backend.secrets["dev-OLD"].expire_time = expires
    gcp.backend.secrets["dev-OLD"].next_rotation = due
    source = make(gcp)
    requests = [Request(k, k) for k in ("OLD", "OFF", "ABSENT")]
    meta = source.describe(requests, Deadline(10))
    assert gcp.backend.accessed() == []
    assert meta["OLD"] == Meta(exists=True, version="1", updated=old, expires=expires,
                               next_rotation=due,
                               note=f"rotation was due on {due:%Y-%m-%d}")
    assert meta["OFF"].exists is False
    assert meta["OFF"].version == "2"
    assert meta["OFF"].note == "version 2 is DISABLED"
    assert meta["ABSENT"].exists is False


def test_describe_says_when_metadata_is_denied(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-KEY", CANARY)
    gcp.backend.metadata_denied = True
    meta = make(gcp).describe([Request("KEY", "KEY")], Deadline(10))["KEY"]
    assert meta.updated is None
    assert meta.note == (
        "metadata calls were denied (secretmanager.secrets.get: Permission "
        "'secretmanager.secrets.get' denied for resource 'projects/keyrun-test/secrets/dev-KEY' "
        "(or it may not exist).) — grant roles/secretmanager.viewer to "
        f"{gcp.backend.client_email}")


def test_check_is_value_free(gcp: FakeSecretManager) -> None:
    assert make(gcp).check(Deadline(5)).detail == ("project 'keyrun-test': reachable and "
                                                   "authenticated")
    bundle = make(gcp, secret="{project}-{env}")
    health = bundle.check(Deadline(5))
    assert health.warnings == ("secret 'bot-dev' in project 'keyrun-test' does not exist "
                               "(keyrun set creates it)",)
    gcp.backend.put("bot-dev", json.dumps({"K": CANARY}))
    gcp.backend.secrets["bot-dev"].next_rotation = dt.datetime(2020, 1, 2, tzinfo=dt.UTC)
    health = bundle.check(Deadline(5))
    assert health.detail == "secret 'bot-dev' in project 'keyrun-test': reachable"
    assert health.warnings == ("secret 'bot-dev' in project 'keyrun-test' was due for rotation "
                               "on 2020-01-02 — rotate it with keyrun set",)
    gcp.backend.denied.add("bot-dev")
    assert bundle.check(Deadline(5)).warnings[0].startswith(
        "secretmanager.secrets.get is denied on secret 'bot-dev'")
    assert gcp.backend.accessed() == []


# writing


def test_write_adds_versions_and_creates_the_secret(gcp: FakeSecretManager) -> None:
    source = make(gcp)
    where = source.write(Request("NEW_KEY", "NEW_KEY"), Secret("first-0001"), Deadline(10))
    assert where == "projects/keyrun-test/secrets/dev-NEW_KEY (version 1)"
    assert source.write(Request("NEW_KEY", "NEW_KEY"), Secret(CANARY), Deadline(10)).endswith(
        "(version 2)")
    assert gcp.backend.value("dev-NEW_KEY") == CANARY.encode()
    with pytest.raises(SourceError, match="cannot hold an empty value"):
        source.write(Request("NEW_KEY", "NEW_KEY"), Secret(""), Deadline(10))


def test_write_into_bundles_keeps_their_format(gcp: FakeSecretManager) -> None:
    source = make(gcp, secret="{project}-{env}")
    source.write(Request("A", "A"), Secret("a-0001"), Deadline(10))
    assert json.loads(gcp.backend.value("bot-dev")) == {"A": "a-0001"}
    source.write(Request("B", "B"), Secret(CANARY), Deadline(10))
    assert json.loads(gcp.backend.value("bot-dev")) == {"A": "a-0001", "B": CANARY}
    gcp.backend.put("bot-dev", "# keys\nA=a-0001\nB=b-0002\n")
    where = source.write(Request("B", "B"), Secret("b 0003"), Deadline(10))
    assert where == "projects/keyrun-test/secrets/bot-dev#B (version 4)"
    assert gcp.backend.value("bot-dev").decode() == f"# keys\nA=a-0001\n{format_assignment('B', 'b 0003')}\n"
    gcp.backend.set_state("bot-dev", 4, "DISABLED")
    gcp.backend.not_enabled_text = "is not in ENABLED state."
    with pytest.raises(SourceError, match="cannot read the latest one: version 4 of secret") \
            as caught:
        source.write(Request("C", "C"), Secret("c-0001"), Deadline(10))
    assert caught.value.hint == ("enable it first: gcloud secrets versions enable 4 "
                                 "--secret=bot-dev --project=keyrun-test")
    gcp.backend.set_state("bot-dev", 4, "DESTROYED")
    with pytest.raises(SourceError, match="cannot read the latest one: version 4 of secret "
                                          "'bot-dev' in project 'keyrun-test' is destroyed$") \
            as caught:
        source.write(Request("C", "C"), Secret("c-0001"), Deadline(10))
    assert (caught.value.hint or "").startswith("its keys are gone")


def test_write_says_when_another_version_slipped_in(gcp: FakeSecretManager) -> None:
    gcp.backend.put("bot-dev", json.dumps({"A": "a-0001"}))
    gcp.backend.interleave = [("bot-dev", json.dumps({"A": "a-0001", "B": "b-0002"}).encode())]
    with pytest.raises(SourceError) as caught:
        make(gcp, secret="{project}-{env}").write(Request("C", "C"), Secret(CANARY),
                                                  Deadline(10))
    assert str(caught.value) == (
        "gcp: secret 'bot-dev' in project 'keyrun-test' changed while keyrun was writing it: "
        "keyrun read version 1 and added version 3, so the versions in between were written "
        "by someone else and the new latest may lack their change")
    assert caught.value.hint == ("compare them: gcloud secrets versions list bot-dev "
                                 "--project=keyrun-test")


def test_write_a_field_of_a_per_key_json_value(gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-DB", json.dumps({"user": "app", "password": "old"}))
    make(gcp).write(Request("DB_PASSWORD", "DB", field="password"), Secret("new-0001"),
                    Deadline(10))
    assert json.loads(gcp.backend.value("dev-DB")) == {"user": "app", "password": "new-0001"}
    gcp.backend.put("dev-DB", "not json")
    with pytest.raises(SourceError, match="is not a JSON object, so DB_PASSWORD cannot be"):
        make(gcp).write(Request("DB_PASSWORD", "DB", field="password"), Secret("x"),
                        Deadline(10))


def test_write_denied_names_the_secret(gcp: FakeSecretManager) -> None:
    gcp.backend.denied.add("dev-KEY")
    with pytest.raises(SourceError) as caught:
        make(gcp).write(Request("KEY", "KEY"), Secret(CANARY), Deadline(10))
    assert str(caught.value).startswith("gcp: permission denied on secret 'dev-KEY' in project "
                                        "'keyrun-test' (")
    assert CANARY not in str(caught.value)


# the CLI, as a real process

CONFIG = """\
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{ optional = true }}

[sources.gcp]
type = "gcp-secret-manager"
secret = "{secret}"
endpoint = "{endpoint}"

[env.dev]
sources = ["gcp"]
timeout = "{timeout}"
rotate_after = "30d"
"""


def project_dir(tmp_path: Path, endpoint: str, *, location: str = "{env}-{key}",
                timeout: str = "5s") -> Path:
    return write_project(tmp_path / "proj", CONFIG.format(
        secret=location, endpoint=endpoint, timeout=timeout))


def cli_env(tmp_path: Path, fake: FakeSecretManager, **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, **{**fake.env, **extra})


def run(root: Path, tmp_path: Path, fake: FakeSecretManager, *keys: str, **extra: str
        ) -> tuple[int, str, str, str]:
    done = keyrun(["-e", "dev", "--", sys.executable, "-c", PRINT_DIGESTS, *keys], cwd=root,
                  env=cli_env(tmp_path, fake, **extra))
    log = tmp_path / "access.log"
    return done.returncode, done.stdout, done.stderr, log.read_text() if log.exists() else ""


def test_cli_run_per_key_and_bundle(tmp_path: Path, gcp: FakeSecretManager) -> None:
    gcp.backend.put("dev-OPENAI_API_KEY", CANARY)
    gcp.backend.put("dev-ANTHROPIC_API_KEY", "sk-ant-fake-0002")
    root = project_dir(tmp_path, gcp.endpoint)
    status, out, err, log = run(root, tmp_path, gcp, "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                                "GOOGLE_APPLICATION_CREDENTIALS", "GRPC_VERBOSITY")
    assert status == 0, err
    assert out.split() == [digest(CANARY), digest("sk-ant-fake-0002"),
                           digest(str(gcp.credentials_path)), digest("-")]
    assert err == ""
    logged = json.loads(log.splitlines()[-1])["keys"]
    assert {(k["name"], k["source"], k["version"]) for k in logged} == {
        ("OPENAI_API_KEY", "gcp", "1"), ("ANTHROPIC_API_KEY", "gcp", "1")}
    assert_no_leak(CANARY, out, err, log, root=tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    gcp.backend.put("bot-dev", json.dumps({"OPENAI_API_KEY": CANARY + "-json"}))
    root = project_dir(bundle, gcp.endpoint, location="{project}-{env}")
    status, out, err, log = run(root, bundle, gcp, "OPENAI_API_KEY")
    assert (status, out.split()) == (0, [digest(CANARY + "-json")]), err
    gcp.backend.put("bot-dev", f"OPENAI_API_KEY={CANARY}-dotenv\n")
    status, out, err, log = run(root, bundle, gcp, "OPENAI_API_KEY")
    assert (status, out.split()) == (0, [digest(CANARY + "-dotenv")]), err
    assert_no_leak(CANARY, out, err, log, root=bundle)


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "OPENAI_API_KEY: missing from gcp (no secret 'dev-OPENAI_API_KEY' in project "
                "'keyrun-test')"),
    ("denied", "OPENAI_API_KEY: gcp: permission denied on secret 'dev-OPENAI_API_KEY' in "
               "project 'keyrun-test' ("),
    ("other-project", "OPENAI_API_KEY: gcp: permission denied on secret 'dev-OPENAI_API_KEY' "
                      "in project 'elsewhere' ("),
    ("disabled", "OPENAI_API_KEY: gcp: version 2 of secret 'dev-OPENAI_API_KEY' in project "
                 "'keyrun-test' is disabled — \"latest\" is the newest version even when it "
                 "is disabled"),
    ("binary", "OPENAI_API_KEY: gcp: secret 'dev-OPENAI_API_KEY' in project 'keyrun-test' "
               "holds binary data, not UTF-8 text, so OPENAI_API_KEY cannot be set from it"),
    ("corrupt", "OPENAI_API_KEY: gcp: the payload of secret 'dev-OPENAI_API_KEY' in project "
                "'keyrun-test' failed its CRC32C check"),
    ("unavailable", "OPENAI_API_KEY: gcp: Secret Manager kept answering ServiceUnavailable"),
    ("rejected", "OPENAI_API_KEY, ANTHROPIC_API_KEY: gcp: Secret Manager at 127.0.0.1:"),
    ("no-credentials", "OPENAI_API_KEY, ANTHROPIC_API_KEY: gcp: no Google credentials found ("),
    ("untrusted", "OPENAI_API_KEY, ANTHROPIC_API_KEY: gcp: cannot reach Secret Manager at 127.0.0.1:"),
])
def test_cli_failures_end_in_125(case: str, expected: str, tmp_path: Path,
                                 gcp: FakeSecretManager) -> None:
    backend = gcp.backend
    backend.put("dev-OPENAI_API_KEY", CANARY)
    extra: dict[str, str] = {}
    if case == "missing":
        backend.reset()
    elif case == "denied":
        backend.denied.add("dev-OPENAI_API_KEY")
    elif case == "other-project":
        extra["GOOGLE_CLOUD_PROJECT"] = "elsewhere"
    elif case == "disabled":
        backend.put("dev-OPENAI_API_KEY", CANARY + "-2", state="DISABLED")
    elif case == "binary":
        backend.put("dev-OPENAI_API_KEY", b"\xff" + CANARY.encode())
    elif case == "corrupt":
        backend.corrupt.add("dev-OPENAI_API_KEY")
    elif case == "unavailable":
        backend.unavailable = 1000
    elif case == "rejected":
        backend.reject_tokens = True
    elif case == "no-credentials":
        extra["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "absent.json")
    elif case == "untrusted":
        extra["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(tmp_path / "no-roots.pem")
        write(tmp_path / "no-roots.pem", "")
    root = project_dir(tmp_path, gcp.endpoint)
    started = time.monotonic()
    status, out, err, log = run(root, tmp_path, gcp, "OPENAI_API_KEY", **extra)
    assert status == 125, err
    assert time.monotonic() - started < 8
    assert err.startswith("keyrun: error: cannot run with bot/dev:\n"), err
    assert expected in err
    assert out == ""
    assert_no_leak(CANARY, out, err, log, root=tmp_path)


def test_cli_dead_endpoint_ends_within_the_timeout(tmp_path: Path,
                                                   gcp: FakeSecretManager) -> None:
    silent = SilentServer()
    try:
        root = project_dir(tmp_path, silent.endpoint, timeout="2s")
        started = time.monotonic()
        status, _, err, _ = run(root, tmp_path, gcp, "OPENAI_API_KEY")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert status == 125, err
    assert elapsed < 2 + 2.5  # the deadline, plus the interpreter's start-up
    assert (f"OPENAI_API_KEY, ANTHROPIC_API_KEY: gcp: timed out: no answer from Secret Manager at "
            f"{silent.endpoint} within the total deadline of 2s") in err


def test_cli_set_round_trip(tmp_path: Path, gcp: FakeSecretManager) -> None:
    root = project_dir(tmp_path, gcp.endpoint)
    env = cli_env(tmp_path, gcp)
    done = keyrun(["set", "OPENAI_API_KEY", "-e", "dev"], cwd=root, env=env, input=CANARY)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ("keyrun: set OPENAI_API_KEY in gcp (projects/keyrun-test/secrets/"
                           "dev-OPENAI_API_KEY (version 1)) for dev\n")
    assert gcp.backend.value("dev-OPENAI_API_KEY") == CANARY.encode()
    status, out, err, log = run(root, tmp_path, gcp, "OPENAI_API_KEY")
    assert (status, out.split()) == (0, [digest(CANARY)]), err
    assert_no_leak(CANARY, done.stdout, done.stderr, out, err, log, root=tmp_path)


def test_cli_list_and_doctor(tmp_path: Path, gcp: FakeSecretManager) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    gcp.backend.put("dev-OPENAI_API_KEY", CANARY, created=old)
    gcp.backend.put("dev-ANTHROPIC_API_KEY", "sk-ant-fake-0003")
    gcp.backend.secrets["dev-ANTHROPIC_API_KEY"].expire_time = (
        dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    root = project_dir(tmp_path, gcp.endpoint)
    env = cli_env(tmp_path, gcp)
    listed = keyrun(["list", "--json", "-e", "dev"], cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["keys"]}
    assert rows["OPENAI_API_KEY"]["status"] == "ok"
    assert rows["OPENAI_API_KEY"]["location"] == (
        "projects/keyrun-test/secrets/dev-OPENAI_API_KEY")
    assert rows["OPENAI_API_KEY"]["version"] == "1"
    assert rows["OPENAI_API_KEY"]["preview"] == "kr-…"  # at most a quarter of the canary's 26 characters
    doctor = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=env)
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["sources"]["status"] == "pass", checks["sources"]
    assert checks["sources"]["message"].startswith(
        "gcp: project 'keyrun-test': reachable and authenticated (")
    rotation = checks["rotation"]
    assert rotation["status"] == "warn", rotation
    assert "expiring soon: ANTHROPIC_API_KEY (gcp, expires in " in rotation["message"]
    assert "older than rotate_after (30d): OPENAI_API_KEY (gcp, 90d old)" in rotation["message"]
    assert sorted(rotation["keys"]) == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    assert_no_leak(CANARY, listed.stderr, doctor.stdout, doctor.stderr, root=tmp_path)


def test_cli_doctor_reports_two_keys_mapped_to_one_secret(tmp_path: Path,
                                                         gcp: FakeSecretManager) -> None:
    root = project_dir(tmp_path, gcp.endpoint)
    toml = (root / "keyrun.toml").read_text().replace(
        "ANTHROPIC_API_KEY = { optional = true }",
        'DB_URL = { name = "db.url" }\nDB_URL_TOO = { name = "db_url" }')
    write(root / "keyrun.toml", toml)
    gcp.backend.put("dev-OPENAI_API_KEY", CANARY)
    gcp.backend.put("dev-db_url", "postgres://app@db/app")
    doctor = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=cli_env(tmp_path, gcp))
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1
    assert checks["names"]["status"] == "fail", checks["names"]
    assert ("DB_URL and DB_URL_TOO both map to projects/keyrun-test/secrets/dev-db_url in gcp"
            in checks["names"]["message"])
    assert_no_leak(CANARY, doctor.stdout, doctor.stderr, root=tmp_path)
