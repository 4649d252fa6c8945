"""The azure-key-vault source through the official SDK (azure-keyvault-secrets and
azure-identity's DefaultAzureCredential) against a fake Key Vault over real HTTPS
(tests/azure_server.py): the contract suite, what is special to Key Vault, and the CLI
as a real process."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Item, Problem, Request
from keyrun.sources.azure import AzureKeyVaultSource, azure_name
from keyrun.testing import Harness, SourceContract
from tests.azure_server import FakeKeyVault
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
    value,
    write_project,
)

NOW = dt.datetime.now(dt.UTC)
_AZURE_VARIABLES = ("AZURE_", "MSI_", "IDENTITY_", "IMDS_")


@pytest.fixture(scope="session")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKeyVault]:
    server = FakeKeyVault(tmp_path_factory.mktemp("key-vault"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def vault(vault_server: FakeKeyVault, monkeypatch: pytest.MonkeyPatch) -> FakeKeyVault:
    """The fake vault, emptied, and this process's environment pointed at it (the SDK
    reads os.environ itself)."""
    vault_server.reset()
    for name in list(os.environ):
        if name.startswith(_AZURE_VARIABLES):
            monkeypatch.delenv(name)
    for name, setting in vault_server.env().items():
        monkeypatch.setenv(name, setting)
    monkeypatch.setenv("HOME", str(vault_server.cert.parent))
    return vault_server


def make(url: str, *, app: str = "proj", env: str = "dev", **settings: str
         ) -> AzureKeyVaultSource:
    return build_source(AzureKeyVaultSource, "azure", {"vault_url": url, **settings},
                        project=app, env=env)


def request(source: AzureKeyVaultSource, key: str, **extra: str) -> Request:
    name = extra.pop("name", key)
    return Request(key, source.backend_name(name), **extra)


def one(source: AzureKeyVaultSource, key: str, deadline: float = 10, **extra: str
        ) -> Item | Problem:
    return fetch(source, request(source, key, **extra), seconds=deadline)[key]


# the contract, per key and as a bundle


class PerKeyHarness(Harness):
    max_value_size = 25 * 1024

    def __init__(self, vault: FakeKeyVault) -> None:
        self.vault = vault

    def put(self, name: str, value: str) -> None:
        self.vault.put(azure_name(f"dev-{name}"), value)

    def source(self) -> AzureKeyVaultSource:
        return make(self.vault.url, secret="{env}-{key}")

    def broken_source(self) -> AzureKeyVaultSource:
        return make(f"https://127.0.0.1:{free_port()}")


class BundleHarness(Harness):
    max_value_size = 24 * 1024

    def __init__(self, vault: FakeKeyVault) -> None:
        self.vault = vault
        self.data: dict[str, str] = {}

    def put(self, name: str, value: str) -> None:
        self.data[name] = value
        self.vault.put("proj-dev", json.dumps(self.data))

    def source(self) -> AzureKeyVaultSource:
        return make(self.vault.url, secret="{project}-{env}")

    def broken_source(self) -> AzureKeyVaultSource:
        self.vault.deny_all = True
        return self.source()


class TestAzurePerKeyContract(SourceContract):
    @pytest.fixture
    def harness(self, vault: FakeKeyVault) -> Harness:
        return PerKeyHarness(vault)


class TestAzureBundleContract(SourceContract):
    @pytest.fixture
    def harness(self, vault: FakeKeyVault) -> Harness:
        return BundleHarness(vault)


# names


def test_underscores_become_dashes_everywhere(vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", "sk-mapped-0001")
    source = make(vault.url)
    req = request(source, "OPENAI_API_KEY")
    assert req.name == "OPENAI-API-KEY"
    assert source.locate(req) == f"127.0.0.1:{vault.port}/OPENAI-API-KEY"
    assert value(one(source, "OPENAI_API_KEY")) == "sk-mapped-0001"
    source.write(req, Secret("sk-mapped-0002"), Deadline(10))
    assert vault.names() == ["OPENAI-API-KEY"]
    assert vault.value("OPENAI-API-KEY") == "sk-mapped-0002"


def test_the_whole_template_is_mapped(vault: FakeKeyVault) -> None:
    vault.put("support-bot-prod-OPENAI-API-KEY", "sk-templated-0001")
    source = make("https://127.0.0.1:{port}".replace("{port}", str(vault.port)),
                  app="support_bot", env="prod", secret="{project}-{env}-{key}")
    req = request(source, "OPENAI_API_KEY")
    assert source.locate(req).endswith("/support-bot-prod-OPENAI-API-KEY")
    assert value(one(source, "OPENAI_API_KEY")) == "sk-templated-0001"


def test_bundle_names_are_json_keys_not_mapped(vault: FakeKeyVault) -> None:
    source = make(vault.url, secret="{project}-{env}")
    req = request(source, "OPENAI_API_KEY")
    assert req.name == "OPENAI_API_KEY"
    assert source.locate(req) == f"127.0.0.1:{vault.port}/proj-dev#OPENAI_API_KEY"


def test_invalid_names(vault: FakeKeyVault) -> None:
    source = make(vault.url)
    outcome = one(source, "DB_URL", name="db.url")
    assert outcome == Problem("error", "'db.url' is not a valid Key Vault secret name "
                                       "(letters, digits and dashes only, 1 to 127 characters); "
                                       "give the key another name with name = \"…\"")
    assert vault.seen == []
    with pytest.raises(ConfigError, match="holds characters Key Vault names cannot have"):
        make(vault.url, secret="prod/{key}")
    with pytest.raises(ConfigError, match="must start with https://"):
        make("http://127.0.0.1:1")


# values, bundles, versions, attributes


def test_versions(vault: FakeKeyVault) -> None:
    first = vault.put("API-KEY", "value-one-0001")
    second = vault.put("API-KEY", "value-two-0002")
    source = make(vault.url)
    latest = one(source, "API_KEY")
    pinned = one(source, "API_KEY", version=first)
    assert (value(latest), value(pinned)) == ("value-two-0002", "value-one-0001")
    assert isinstance(latest, Item)
    assert isinstance(pinned, Item)
    assert (latest.version, pinned.version) == (second, first)
    assert source.locate(request(source, "API_KEY", version=first)).endswith(f"/API-KEY@{first}")
    unknown = one(source, "API_KEY", version="0" * 32)
    assert unknown == Problem.missing(f"no secret API-KEY version {'0' * 32} in "
                                      f"127.0.0.1:{vault.port}")


def test_attributes_feed_item(vault: FakeKeyVault) -> None:
    updated = NOW - dt.timedelta(days=100)
    expires = NOW + dt.timedelta(days=3)
    vault.put("AGED", "aged-value-0001", updated=updated, expires=expires)
    outcome = one(make(vault.url), "AGED")
    assert isinstance(outcome, Item)
    assert outcome.updated == updated.replace(microsecond=0)
    assert outcome.expires == expires.replace(microsecond=0)


@pytest.mark.parametrize(("attributes", "message"), [
    ({"enabled": False}, "secret BLOCKED in {host} is disabled — enable it (az keyvault "
                         "secret set-attributes --id https://{host}/secrets/BLOCKED --enabled "
                         "true) or add a new version with keyrun set"),
    ({"expires": NOW - dt.timedelta(days=1)},
     "secret BLOCKED in {host} expired on {when} UTC (rotate it with keyrun set)"),
    ({"not_before": NOW + dt.timedelta(days=1)},
     "secret BLOCKED in {host} is not valid before {when} UTC"),
])
def test_unusable_secrets_are_errors(vault: FakeKeyVault, attributes: dict[str, object],
                                     message: str) -> None:
    vault.put("BLOCKED", CANARY, **attributes)  # type: ignore[arg-type]
    when = next((v for v in attributes.values() if isinstance(v, dt.datetime)), NOW)
    outcome = one(make(vault.url), "BLOCKED")
    assert outcome == Problem("error", message.format(host=f"127.0.0.1:{vault.port}",
                                                      when=f"{when:%Y-%m-%d %H:%M}"))


def test_bundle(vault: FakeKeyVault) -> None:
    vault.put("proj-dev", json.dumps({"OPENAI_API_KEY": "sk-bundle-0001",
                                      "DB": {"url": "postgres://h/db", "port": 5432},
                                      "COUNT": 3}))
    source = make(vault.url, secret="{project}-{env}")
    result = fetch(source, request(source, "OPENAI_API_KEY"), request(source, "COUNT"),
                   request(source, "DATABASE_URL", name="DB", field="url"),
                   request(source, "ABSENT_KEY"))
    assert value(result["OPENAI_API_KEY"]) == "sk-bundle-0001"
    assert value(result["COUNT"]) == "3"
    assert value(result["DATABASE_URL"]) == "postgres://h/db"
    assert result["ABSENT_KEY"] == Problem.missing(
        f"no 'ABSENT_KEY' in secret 127.0.0.1:{vault.port}/proj-dev")
    assert [s.path for s in vault.seen if s.authorized] == ["/secrets/proj-dev/"]


def test_bundle_that_is_not_an_object(vault: FakeKeyVault) -> None:
    vault.put("proj-dev", "OPENAI_API_KEY=sk-not-json")
    outcome = one(make(vault.url, secret="{project}-{env}"), "OPENAI_API_KEY")
    assert outcome == Problem("error", f"secret proj-dev in 127.0.0.1:{vault.port} is "
                                       "not a JSON object, so it cannot hold keys by name")


def test_missing_bundle(vault: FakeKeyVault) -> None:
    outcome = one(make(vault.url, secret="{project}-{env}"), "OPENAI_API_KEY")
    assert outcome == Problem.missing(f"no secret proj-dev in 127.0.0.1:{vault.port}")


def test_field_of_a_per_key_secret(vault: FakeKeyVault) -> None:
    vault.put("SERVICE", json.dumps({"api_key": "sk-field-0001"}))
    assert value(one(make(vault.url), "SERVICE_KEY", name="SERVICE", field="api_key")) == (
        "sk-field-0001")


def test_parallel_gets_share_one_challenge_and_one_token(vault: FakeKeyVault) -> None:
    for i in range(40):
        vault.put(f"KEY-{i:02d}", f"value-{i:02d}")
    source = make(vault.url)
    started = time.monotonic()
    result = fetch(source, *[request(source, f"KEY_{i:02d}") for i in range(40)])
    elapsed = time.monotonic() - started
    assert [value(result[f"KEY_{i:02d}"]) for i in range(40)] == [
        f"value-{i:02d}" for i in range(40)]
    assert vault.token_requests == 1
    # the SDK caches a vault's challenge for the process: at most one unauthenticated request
    assert [s.authorized for s in vault.seen].count(False) <= 1
    assert elapsed < 3


# failures


def test_denied_names_vault_and_secret(vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY)
    vault.put("OTHER", "other-value-0001")
    vault.denied.add("openai-api-key")
    source = make(vault.url)
    result = fetch(source, request(source, "OPENAI_API_KEY"), request(source, "OTHER"))
    outcome = result["OPENAI_API_KEY"]
    assert isinstance(outcome, Problem)
    assert outcome.kind == "denied"
    assert outcome.message.startswith(
        f"127.0.0.1:{vault.port} denied read of secret OPENAI-API-KEY: The user, group "
        "or application 'appid=fake-app' does not have secrets get permission")
    assert value(result["OTHER"]) == "other-value-0001"


def test_no_usable_credential(vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        make(vault.url).fetch([Request("K", "K")], Deadline(20))
    assert time.monotonic() - started < 10
    message = caught.value.message
    assert message.startswith("azure: no usable Azure credential (tried AZURE_* environment "
                              "variables, workload identity, managed identity, ")
    assert "Azure CLI" in message
    assert "az login" in (caught.value.hint or "")
    assert "\n" not in message


def test_managed_identity_that_fails(vault: FakeKeyVault) -> None:
    vault.identity_fails = True
    with pytest.raises(SourceError, match=r"^azure: no usable Azure credential \(tried "):
        make(vault.url).fetch([Request("K", "K")], Deadline(20))


def test_token_refused_by_the_vault(vault: FakeKeyVault) -> None:
    vault.reject_tokens = True
    with pytest.raises(SourceError) as caught:
        make(vault.url).fetch([Request("K", "K")], Deadline(10))
    assert caught.value.message == (f"azure: 127.0.0.1:{vault.port} refused the Azure token "
                                    "(HTTP 401 AKV10032: Invalid issuer.)")


def test_server_errors_and_throttling_are_retried_until_the_deadline(
        vault: FakeKeyVault) -> None:
    vault.put("K", "after-retry-0001")
    vault.failures.extend([503, 429, 500, 429, 502])  # more than the SDK's own retry allows
    assert value(one(make(vault.url), "K")) == "after-retry-0001"
    assert vault.failures == []


def test_a_vault_that_keeps_failing_names_no_secret(vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY)
    vault.put("OTHER", "other-value-0001")
    vault.failures.extend([503] * 1000)
    source = make(vault.url)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.fetch([request(source, "OPENAI_API_KEY"), request(source, "OTHER")], Deadline(2))
    assert time.monotonic() - started < 2
    message = caught.value.message  # every key of the source shows it: it names none
    assert message.startswith(f"azure: 127.0.0.1:{vault.port} kept failing (HTTP 503 "
                              "InternalServerError Injected failure): ")
    assert message.endswith(" attempts within the deadline of 2s")
    assert "OPENAI" not in message
    assert "OTHER" not in message
    assert caught.value.hint == ("try again later; if it persists, check the vault's health in "
                                 "the Azure portal")


def test_retry_after_is_honoured(vault: FakeKeyVault) -> None:
    vault.put("K", "throttled-0001")
    vault.retry_after = "0.4"
    vault.failures.extend([429, 429])
    started = time.monotonic()
    assert value(one(make(vault.url), "K")) == "throttled-0001"
    assert time.monotonic() - started >= 0.8
    vault.retry_after = "60"
    vault.failures.extend([429] * 1000)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        make(vault.url).fetch([Request("K", "K")], Deadline(3))
    assert time.monotonic() - started < 1  # waiting 60 s cannot end within 3 s: said at once
    assert caught.value.message == (
        f"azure: 127.0.0.1:{vault.port} kept throttling keyrun (HTTP 429 Throttled Injected "
        "failure): 1 attempt within the deadline of 3s; it asked to wait 60s, past the deadline")
    assert (caught.value.hint or "").startswith("try again later, or raise the deadline")


def test_refused_connection_fails_fast(vault: FakeKeyVault) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        make(f"https://127.0.0.1:{port}").fetch([Request("K", "K")], Deadline(10))
    assert time.monotonic() - started < 3
    assert caught.value.message.startswith(f"azure: cannot reach https://127.0.0.1:{port}: ")


def test_silent_vault_ends_at_the_deadline(vault: FakeKeyVault) -> None:
    vault.put("K", "slow-value-0001")
    vault.hang = 4
    started = time.monotonic()
    try:
        with pytest.raises(SourceError) as caught:
            make(vault.url).fetch([Request("K", "K")], Deadline(1.5))
    finally:
        vault.hang = 0
    assert time.monotonic() - started < 2.2
    assert caught.value.message.startswith(f"azure: timed out: no answer from 127.0.0.1:"
                                           f"{vault.port}")


# value-free metadata, health, writing


def test_describe_is_value_free_and_pages(vault: FakeKeyVault) -> None:
    updated = NOW - dt.timedelta(days=10)
    for i in range(30):
        vault.put(f"FILLER-{i:02d}", "filler")
    first = vault.put("ZZ-LAST", "old", updated=updated)
    vault.put("ZZ-LAST", "new", expires=NOW + dt.timedelta(days=2), updated=updated)
    source = make(vault.url)
    meta = source.describe([request(source, "ZZ_LAST"), request(source, "NOT_THERE"),
                            request(source, "ZZ_LAST2", name="ZZ_LAST", version=first)],
                           Deadline(10))
    assert meta["ZZ_LAST"].exists is True
    assert meta["ZZ_LAST"].updated == updated.replace(microsecond=0)
    assert meta["ZZ_LAST"].expires is not None
    assert meta["NOT_THERE"].exists is False
    assert (meta["ZZ_LAST2"].exists, meta["ZZ_LAST2"].version) == (True, first)
    paths = [s.path for s in vault.seen if s.authorized]
    assert paths == ["/secrets", "/secrets", "/secrets/ZZ-LAST/versions"]


def test_check(vault: FakeKeyVault) -> None:
    health = make(vault.url).check(Deadline(5))
    assert (health.detail, health.warnings) == (f"127.0.0.1:{vault.port}: authenticated", ())
    vault.deny_list = True
    health = make(vault.url).check(Deadline(5))
    assert health.warnings == (f"127.0.0.1:{vault.port} does not let this identity list "
                               "secrets (secrets/list), so doctor cannot tell their age",)


def test_write_adds_a_version(vault: FakeKeyVault) -> None:
    source = make(vault.url)
    req = request(source, "NEW_KEY")
    where = source.write(req, Secret(CANARY), Deadline(10))
    assert where.startswith(f"127.0.0.1:{vault.port}/NEW-KEY (version ")
    assert CANARY not in where
    source.write(req, Secret("second-value-0002"), Deadline(10))
    assert vault.value("NEW-KEY") == "second-value-0002"
    assert len(vault.records["new-key"].versions) == 2


def test_write_into_a_bundle_keeps_the_others(vault: FakeKeyVault) -> None:
    vault.put("proj-dev", json.dumps({"KEEP": "kept-0001"}))
    source = make(vault.url, secret="{project}-{env}")
    where = source.write(request(source, "NEW_KEY"), Secret(CANARY), Deadline(10))
    assert where.startswith(f"127.0.0.1:{vault.port}/proj-dev#NEW_KEY (version ")
    assert json.loads(vault.value("proj-dev") or "") == {"KEEP": "kept-0001", "NEW_KEY": CANARY}
    assert vault.records["proj-dev"].versions[-1].content_type == "application/json"


def test_write_refuses_a_field(vault: FakeKeyVault) -> None:
    source = make(vault.url)
    with pytest.raises(SourceError, match="is field 'url' of a JSON value at 127.0.0.1"):
        source.write(Request("DB_URL", "DB", field="url"), Secret("x"), Deadline(5))
    assert vault.seen == []


def test_write_denied(vault: FakeKeyVault) -> None:
    vault.denied.add("new-key")
    with pytest.raises(SourceError) as caught:
        make(vault.url).write(Request("NEW_KEY", "NEW-KEY"), Secret(CANARY), Deadline(10))
    assert caught.value.message.startswith(
        f"azure: 127.0.0.1:{vault.port} denied write of secret NEW-KEY: The user, group or ")
    assert caught.value.hint == ("grant this identity the Key Vault Secrets Officer role (or "
                                 "the matching access policy)")
    assert CANARY not in str(caught.value)


def test_write_into_a_disabled_bundle_says_it_is_disabled(vault: FakeKeyVault) -> None:
    vault.put("proj-dev", json.dumps({"KEEP": CANARY}), enabled=False)
    with pytest.raises(SourceError) as caught:
        make(vault.url, secret="{project}-{env}").write(Request("NEW_KEY", "NEW_KEY"),
                                                        Secret("new-0001"), Deadline(10))
    assert caught.value.message == (
        f"azure: NEW_KEY is written into secret proj-dev in 127.0.0.1:{vault.port}, which holds "
        "every key, but that secret is disabled, so keyrun cannot read the keys it holds")
    assert caught.value.hint == ("enable it first: az keyvault secret set-attributes --id "
                                 f"{vault.url}/secrets/proj-dev --enabled true")
    assert len(vault.records["proj-dev"].versions) == 1


# the CLI, as a real process

CONFIG = """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{}}
{extra_keys}

[sources.azure]
type = "azure-key-vault"
vault_url = "{url}"

[env.dev]
sources = ["azure"]
timeout = "{timeout}"
rotate_after = "90d"
"""



def project_dir(tmp_path: Path, vault: FakeKeyVault, *, timeout: str = "5s",
                extra_keys: str = "", url: str | None = None) -> Path:
    return write_project(tmp_path / "proj", CONFIG.format(
        url=url or vault.url, timeout=timeout, extra_keys=extra_keys))


def cli_env(tmp_path: Path, vault: FakeKeyVault, **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, **vault.env(), **extra)


def run(root: Path, env: dict[str, str], *keys: str) -> tuple[int, str, str]:
    done = keyrun(["-e", "dev", "--", sys.executable, "-c", PRINT_DIGESTS, *keys], cwd=root,
                  env=env)
    return done.returncode, done.stdout, done.stderr


def access_log(tmp_path: Path) -> str:
    log = tmp_path / "access.log"
    return log.read_text() if log.exists() else ""


def test_cli_run(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY)
    vault.put("ANTHROPIC-API-KEY", "sk-ant-azure-0002")
    root = project_dir(tmp_path, vault)
    status, out, err = run(root, cli_env(tmp_path, vault), "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    assert status == 0, err
    assert out.split() == [digest(CANARY), digest("sk-ant-azure-0002")]
    assert_no_leak(CANARY, out, err, access_log(tmp_path), root=tmp_path)
    versions = {k["name"]: k["version"] for k in json.loads(access_log(tmp_path))["keys"]}
    assert versions["OPENAI_API_KEY"] == vault.records["openai-api-key"].versions[-1].id


def _prepare(case: str, vault: FakeKeyVault) -> None:
    vault.put("ANTHROPIC-API-KEY", CANARY + "-anthropic")
    if case == "missing":
        return
    unusable: dict[str, dict[str, object]] = {
        "disabled": {"enabled": False},
        "expired": {"expires": NOW - dt.timedelta(days=2)},
        "not-yet-valid": {"not_before": NOW + dt.timedelta(days=2)},
    }
    vault.put("OPENAI-API-KEY", CANARY, **unusable.get(case, {}))  # type: ignore[arg-type]
    if case == "denied":
        vault.denied.add("openai-api-key")
    elif case == "5xx":
        vault.failures.extend([502] * 200)


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "OPENAI_API_KEY: missing from azure (no secret OPENAI-API-KEY in {host})"),
    ("denied", "OPENAI_API_KEY: azure: {host} denied read of secret OPENAI-API-KEY: The user"),
    ("disabled", "OPENAI_API_KEY: azure: secret OPENAI-API-KEY in {host} is disabled"),
    ("expired", "OPENAI_API_KEY: azure: secret OPENAI-API-KEY in {host} expired on "),
    ("not-yet-valid", "OPENAI_API_KEY: azure: secret OPENAI-API-KEY in {host} is not valid "
                      "before "),
    ("5xx", "OPENAI_API_KEY, ANTHROPIC_API_KEY: azure: {host} kept failing (HTTP 502 InternalServerError "
            "Injected failure): "),
    ("no-credential", "OPENAI_API_KEY, ANTHROPIC_API_KEY: azure: no usable Azure credential (tried AZURE_* "
                      "environment variables, workload identity, managed identity, "),
])
def test_cli_failures_end_in_125(case: str, expected: str, tmp_path: Path,
                                 vault: FakeKeyVault) -> None:
    _prepare(case, vault)
    env = cli_env(tmp_path, vault)
    if case == "no-credential":
        env = {k: v for k, v in env.items() if not k.startswith("IDENTITY_")}
    root = project_dir(tmp_path, vault)
    started = time.monotonic()
    status, out, err = run(root, env, "OPENAI_API_KEY")
    assert status == 125, err
    assert time.monotonic() - started < 15
    assert err.startswith("keyrun: error: cannot run with bot/dev:\n")
    assert expected.format(host=f"127.0.0.1:{vault.port}") in err
    assert out == ""
    assert_no_leak(CANARY, out, err, access_log(tmp_path), root=tmp_path)
    vault.failures.clear()


def test_cli_dead_endpoint_ends_within_the_timeout(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY)
    vault.put("ANTHROPIC-API-KEY", CANARY)
    root = project_dir(tmp_path, vault, timeout="2s")
    vault.hang = 10
    started = time.monotonic()
    try:
        status, out, err = run(root, cli_env(tmp_path, vault), "OPENAI_API_KEY")
    finally:
        vault.hang = 0
    elapsed = time.monotonic() - started
    assert status == 125, err
    assert elapsed < 2 + 3  # the deadline, plus the interpreter's and the SDK's start-up
    assert (f"OPENAI_API_KEY, ANTHROPIC_API_KEY: azure: timed out: no answer from 127.0.0.1:{vault.port} within "
            "the total deadline of 2s") in err
    assert_no_leak(CANARY, out, err)


def test_cli_silent_identity_endpoint_is_named(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY)
    root = project_dir(tmp_path, vault, timeout="2s")
    with socket.socket() as silent:  # connections queue in the backlog; nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"https://127.0.0.1:{silent.getsockname()[1]}/msi/token"
        started = time.monotonic()
        env = {**cli_env(tmp_path, vault), "IDENTITY_ENDPOINT": endpoint}
        status, out, err = run(root, env, "OPENAI_API_KEY")
    assert status == 125, err
    assert time.monotonic() - started < 2 + 3
    assert (f"OPENAI_API_KEY, ANTHROPIC_API_KEY: azure: timed out: managed identity at {endpoint} did not answer "
            "in time — check that it is reachable from here") in err
    assert_no_leak(CANARY, out, err)


def test_cli_challenge_for_another_resource(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY)
    vault.challenge_resource = "https://vault.azure.net"
    root = project_dir(tmp_path, vault)
    status, out, err = run(root, cli_env(tmp_path, vault), "OPENAI_API_KEY")
    assert status == 125, err
    assert (f"OPENAI_API_KEY, ANTHROPIC_API_KEY: azure: {vault.url} answered with an authentication challenge for "
            f"resource vault.azure.net, which does not match the vault's host 127.0.0.1:"
            f"{vault.port}, so the Azure SDK refuses to send it a token — check vault_url: it "
            "must be the vault's own URL") in err
    assert vault.token_requests == 0
    assert_no_leak(CANARY, out, err)


def test_cli_set_into_a_disabled_bundle(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("bot-dev", json.dumps({"ANTHROPIC_API_KEY": "sk-ant-0001"}), enabled=False)
    root = project_dir(tmp_path, vault)
    config = root / "keyrun.toml"
    config.write_text(config.read_text().replace('type = "azure-key-vault"',
                                                 'type = "azure-key-vault"\n'
                                                 'secret = "{project}-{env}"'))
    done = keyrun(["set", "OPENAI_API_KEY", "-e", "dev"], cwd=root, env=cli_env(tmp_path, vault),
                  input=CANARY)
    assert done.returncode == 125, done.stderr
    assert done.stderr == (
        f"keyrun: error: azure: OPENAI_API_KEY is written into secret bot-dev in 127.0.0.1:"
        f"{vault.port}, which holds every key, but that secret is disabled, so keyrun cannot "
        "read the keys it holds\n  hint: enable it first: az keyvault secret set-attributes "
        f"--id {vault.url}/secrets/bot-dev --enabled true\n")
    assert len(vault.records["bot-dev"].versions) == 1


def test_cli_unreachable_vault(tmp_path: Path, vault: FakeKeyVault) -> None:
    port = free_port()
    root = project_dir(tmp_path, vault, url=f"https://127.0.0.1:{port}")
    status, _, err = run(root, cli_env(tmp_path, vault), "OPENAI_API_KEY")
    assert status == 125
    assert f"OPENAI_API_KEY, ANTHROPIC_API_KEY: azure: cannot reach https://127.0.0.1:{port}: " in err


def test_cli_collision_refused_by_run_reported_by_doctor(tmp_path: Path,
                                                         vault: FakeKeyVault) -> None:
    vault.put("DB-URL", CANARY)
    root = project_dir(tmp_path, vault, extra_keys='DB_URL = {}\nDATABASE_URL = { name = "DB-URL" }')
    env = cli_env(tmp_path, vault)
    status, out, err = run(root, env, "DB_URL")
    assert status == 125
    collision = f"DB_URL and DATABASE_URL both map to 127.0.0.1:{vault.port}/DB-URL in azure"
    assert collision in err
    doctor = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=env)
    names = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["names"]
    assert names["status"] == "fail"
    assert collision in names["message"]
    assert names["keys"] == ["DATABASE_URL"]
    assert_no_leak(CANARY, out, err, doctor.stdout, doctor.stderr)


def test_cli_set_round_trip(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("ANTHROPIC-API-KEY", "sk-ant-azure-0003")
    root = project_dir(tmp_path, vault)
    env = cli_env(tmp_path, vault)
    done = keyrun(["set", "OPENAI_API_KEY", "-e", "dev"], cwd=root, env=env, input=CANARY + "\n")
    assert done.returncode == 0, done.stderr
    version = vault.records["openai-api-key"].versions[-1].id
    assert done.stderr == (f"keyrun: set OPENAI_API_KEY in azure (127.0.0.1:{vault.port}/"
                           f"OPENAI-API-KEY (version {version})) for dev\n")
    assert vault.value("OPENAI-API-KEY") == CANARY
    status, out, err = run(root, env, "OPENAI_API_KEY")
    assert (status, out.split()) == (0, [digest(CANARY)]), err
    assert_no_leak(CANARY, done.stdout, done.stderr, out, err, access_log(tmp_path),
                   root=tmp_path)


def test_cli_list_json(tmp_path: Path, vault: FakeKeyVault) -> None:
    updated = NOW - dt.timedelta(days=5)
    version = vault.put("OPENAI-API-KEY", CANARY, updated=updated)
    root = project_dir(tmp_path, vault)
    done = keyrun(["list", "--json", "-e", "dev"], cwd=root, env=cli_env(tmp_path, vault))
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["keys"]}
    assert rows["OPENAI_API_KEY"] == {
        "name": "OPENAI_API_KEY", "source": "azure",
        "location": f"127.0.0.1:{vault.port}/OPENAI-API-KEY", "status": "ok",
        "preview": "kr-…", "version": version,
        "updated": updated.replace(microsecond=0).isoformat(), "error": None,
        "as": "env"}
    assert rows["ANTHROPIC_API_KEY"]["status"] == "missing"
    assert rows["ANTHROPIC_API_KEY"]["location"] == f"127.0.0.1:{vault.port}/ANTHROPIC-API-KEY"
    assert_no_leak(CANARY, done.stderr, root=tmp_path)


def test_cli_doctor_rotation_and_expiry(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY, updated=NOW - dt.timedelta(days=120))
    vault.put("ANTHROPIC-API-KEY", "sk-ant-azure-0004", expires=NOW + dt.timedelta(days=3))
    root = project_dir(tmp_path, vault)
    done = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=cli_env(tmp_path, vault))
    checks = {c["id"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["sources"]["status"] == "pass"
    assert checks["sources"]["message"].startswith(f"azure: 127.0.0.1:{vault.port}: "
                                                   "authenticated (")
    rotation = checks["rotation"]
    assert rotation["status"] == "warn"
    assert "expiring soon: ANTHROPIC_API_KEY (azure, expires in " in rotation["message"]
    assert "older than rotate_after (90d): OPENAI_API_KEY (azure, 120d old)" in rotation["message"]
    assert rotation["keys"] == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    assert done.returncode == 0
    assert_no_leak(CANARY, done.stdout, done.stderr, root=tmp_path)


def test_cli_doctor_expired_secret_fails(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("OPENAI-API-KEY", CANARY, expires=NOW - dt.timedelta(days=1))
    vault.put("ANTHROPIC-API-KEY", "sk-ant-azure-0005")
    root = project_dir(tmp_path, vault)
    done = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=cli_env(tmp_path, vault))
    assert done.returncode == 1
    missing = {c["id"]: c for c in json.loads(done.stdout)["checks"]}["missing-keys"]
    assert missing["status"] == "fail"
    assert missing["keys"] == ["OPENAI_API_KEY"]
    assert "secret OPENAI-API-KEY in " in missing["message"]
    assert "expired on" in missing["message"]
    assert_no_leak(CANARY, done.stdout, done.stderr)


def test_cli_names_differing_in_case_collide(tmp_path: Path, vault: FakeKeyVault) -> None:
    vault.put("API-KEY", CANARY)
    root = project_dir(tmp_path, vault, extra_keys='API_KEY = {}\napi_key = {}')
    env = cli_env(tmp_path, vault)
    doctor = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=env)
    names = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["names"]
    assert names["status"] == "fail"
    assert f"API_KEY and api_key both map to 127.0.0.1:{vault.port}/api-key in azure" in (
        names["message"])
    assert_no_leak(CANARY, doctor.stdout, doctor.stderr)
