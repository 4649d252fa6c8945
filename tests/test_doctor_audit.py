"""doctor and list: one deadline per environment, every fetch logged, rotation that
accounts for every key, one-line previews (found by an audit)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyrun.doctor import Check, DoctorOptions, Report, diagnose_all
from keyrun.listing import list_all_envs
from tests.azure_server import FakeKeyVault
from tests.gcp_server import FakeSecretManager, SilentServer
from tests.helpers import (
    CANARY,
    assert_no_leak,
    checks,
    clean_env,
    keyrun,
    log_entries,
    write,
    write_project,
)

NOW = dt.datetime.now(dt.UTC)


# a dead endpoint

DEAD = """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}

[sources.doppler]
type = "doppler"
api_host = "http://{endpoint}"
{envs}
"""


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def dead_project(tmp_path: Path, server: SilentServer, envs: tuple[str, ...],
                 timeout: str) -> Path:
    tables = "".join(f'\n[env.{env}]\nsources = ["doppler"]\ntimeout = "{timeout}"\n'
                     for env in envs)
    return write_project(tmp_path / "proj", DEAD.format(endpoint=server.endpoint, envs=tables))


def test_doctor_waits_for_a_dead_endpoint_once(tmp_path: Path, silent: SilentServer) -> None:
    root = dead_project(tmp_path, silent, ("dev", "prd"), "3s")
    env = clean_env(tmp_path, DOPPLER_TOKEN="dp.st.dev.x")
    started = time.monotonic()
    done = keyrun(["doctor", "-e", "dev", "--json"], cwd=root, env=env)
    elapsed = time.monotonic() - started
    # the sources check, the fetch and the other environment's fetch share one deadline:
    # before, each waited its own 3 s (9 s in all)
    assert elapsed < 3 + 2.5, elapsed
    assert done.returncode == 1
    found = checks(done)
    assert found["sources"]["status"] == "fail"
    assert found["sources"]["message"].startswith("doppler: timed out")
    assert "within the total deadline of 3s" in found["sources"]["message"]
    assert found["missing-keys"]["status"] == "fail"
    assert found["shared-values"]["message"] == (  # nothing compared: not a pass (and prd,
        "could not compare: this environment's values could not be read")  # remote: not read)
    assert found["shared-values"]["unknown"] is True
    rotation = found["rotation"]
    assert rotation == {"id": "rotation", "status": "warn", "unknown": True,
                        "message": "1 of 1 keys not checked, since they did not resolve (see "
                                   "missing-keys): OPENAI_API_KEY",
                        "fix": "fix what missing-keys reports, then run keyrun doctor again",
                        "keys": ["OPENAI_API_KEY"]}


def test_every_environment_at_once(tmp_path: Path, silent: SilentServer) -> None:
    root = dead_project(tmp_path, silent, ("dev", "prd", "qa"), "2s")
    env = clean_env(tmp_path, DOPPLER_TOKEN="dp.st.dev.x")
    config = str(root / "keyrun.toml")
    started = time.monotonic()
    reports = diagnose_all(DoctorOptions(config=config), environ=env)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.5, elapsed  # one environment after the other took 3 × 2 s
    assert [report.env for report in reports] == ["dev", "prd", "qa"]
    for report in reports:
        status = {check.id: check.status for check in report.checks}
        assert (status["sources"], status["missing-keys"]) == ("fail", "fail")
    # each environment was fetched once, for its own checks and the others' shared-values
    logged = [(entry["action"], entry["env"]) for entry in log_entries(tmp_path)]
    assert sorted(logged) == [("doctor", "dev"), ("doctor", "prd"), ("doctor", "qa")]
    started = time.monotonic()
    listed = list_all_envs(config=config, environ=env)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.5, elapsed
    assert list(listed) == ["dev", "prd", "qa"]
    assert {rows[0].status for _, _, rows in listed.values()} == {"error"}
    assert len(log_entries(tmp_path)) == 6


# rotation

@pytest.fixture(scope="module")
def gcp_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSecretManager]:
    # only keyrun subprocesses talk to it: this process's gRPC settings are left alone
    fake = FakeSecretManager(tmp_path_factory.mktemp("gcp"))
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gcp(gcp_fake: FakeSecretManager) -> FakeSecretManager:
    gcp_fake.backend.reset()
    return gcp_fake


GCP = """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{}}
{extra}

[sources.gcp]
type = "gcp-secret-manager"
secret = "{{env}}-{{key}}"
endpoint = "{endpoint}"

[env.dev]
sources = ["gcp"]
rotate_after = "30d"
"""


def gcp_project(tmp_path: Path, fake: FakeSecretManager, extra: str = "") -> Path:
    return write_project(tmp_path / "proj", GCP.format(endpoint=fake.endpoint, extra=extra))


def test_rotation_reports_every_finding_with_the_worst_status(
        tmp_path: Path, gcp: FakeSecretManager) -> None:
    backend = gcp.backend
    backend.put("dev-OPENAI_API_KEY", CANARY, created=NOW - dt.timedelta(days=90))
    backend.put("dev-ANTHROPIC_API_KEY", "sk-ant-gcp-0001")
    backend.secrets["dev-ANTHROPIC_API_KEY"].expire_time = NOW + dt.timedelta(days=2)
    backend.put("dev-EXPIRED", "sk-expired-0002")
    backend.secrets["dev-EXPIRED"].expire_time = NOW - dt.timedelta(days=2, hours=1)
    backend.put("dev-ROTDUE", "sk-rotdue-0003")
    due = NOW - dt.timedelta(days=3)
    backend.secrets["dev-ROTDUE"].next_rotation = due
    backend.put("dev-DISABLED", "sk-disabled-0004")
    backend.put("dev-DISABLED", "sk-disabled-0005", state="DISABLED")
    root = gcp_project(tmp_path, gcp, "EXPIRED = {}\nROTDUE = {}\nDISABLED = {}")
    done = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=clean_env(tmp_path, **gcp.env))
    rotation = checks(done)["rotation"]
    assert rotation["status"] == "fail"
    parts = str(rotation["message"]).split("; ")
    assert parts[0] == "expired: EXPIRED (gcp, expired 2d ago)"
    assert parts[1].startswith("expiring soon: ANTHROPIC_API_KEY (gcp, expires in ")
    assert parts[2:] == [
        "older than rotate_after (30d): OPENAI_API_KEY (gcp, 90d old)",
        f"rotation overdue: ROTDUE (gcp, due {due:%Y-%m-%d})",
        "1 of 5 keys not checked, since they did not resolve (see missing-keys): DISABLED"]
    assert rotation["keys"] == ["EXPIRED", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ROTDUE",
                                "DISABLED"]
    assert rotation["fix"] == ("rotate them: keyrun set KEY -e dev; fix what missing-keys "
                               "reports, then run keyrun doctor again")
    assert_no_leak(CANARY, done.stdout, done.stderr)


def test_rotation_says_why_the_age_could_not_be_read(tmp_path: Path,
                                                     gcp: FakeSecretManager) -> None:
    gcp.backend.metadata_denied = True  # roles/secretmanager.secretAccessor only
    gcp.backend.put("dev-OPENAI_API_KEY", CANARY, created=NOW - dt.timedelta(days=90))
    gcp.backend.put("dev-ANTHROPIC_API_KEY", "sk-ant-gcp-0006")
    root = gcp_project(tmp_path, gcp)
    done = keyrun(["doctor", "--json", "-e", "dev"], cwd=root, env=clean_env(tmp_path, **gcp.env))
    rotation = checks(done)["rotation"]
    assert (rotation["status"], rotation["unknown"]) == ("warn", True)
    message = str(rotation["message"])
    assert message.startswith("unknown: the age of OPENAI_API_KEY, ANTHROPIC_API_KEY (gcp) "
                              "could not be read; for OPENAI_API_KEY: "), message
    assert "denied" in message
    assert "does not record" not in message
    assert rotation["fix"] == ("let keyrun read the secrets' metadata, not only their values "
                               "(the sources check names a missing permission)")
    assert rotation["keys"] == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKeyVault]:
    server = FakeKeyVault(tmp_path_factory.mktemp("key-vault"))
    try:
        yield server
    finally:
        server.stop()


def test_rotation_fails_for_an_expired_secret_the_fetch_refused(tmp_path: Path,
                                                                azure: FakeKeyVault) -> None:
    azure.reset()
    azure.put("OPENAI-API-KEY", CANARY, expires=NOW - dt.timedelta(days=1, hours=1))
    azure.put("ANTHROPIC-API-KEY", "sk-ant-azure-0007")
    root = tmp_path / "proj"
    write(root / "keyrun.toml", f"""
project = "bot"
default_env = "dev"
[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{}}
[sources.azure]
type = "azure-key-vault"
vault_url = "{azure.url}"
[env.dev]
sources = ["azure"]
rotate_after = "90d"
""")
    done = keyrun(["doctor", "--json", "-e", "dev"], cwd=root,
                  env=clean_env(tmp_path, **azure.env()))
    assert done.returncode == 1
    found = checks(done)
    assert found["missing-keys"]["keys"] == ["OPENAI_API_KEY"]
    assert found["rotation"]["status"] == "fail"
    assert found["rotation"]["message"] in (  # expired one day ago, give or take the run
        "expired: OPENAI_API_KEY (azure, expired 24h ago)",
        "expired: OPENAI_API_KEY (azure, expired 25h ago)")
    assert found["rotation"]["keys"] == ["OPENAI_API_KEY"]
    assert_no_leak(CANARY, done.stdout, done.stderr)


# local projects

TWO_ENVS = """
project = "bot"
default_env = "dev"
[keys]
A = {}
[sources.d]
type = "dotenv"
[sources.p]
type = "dotenv"
path = ".env.prod"
[env.dev]
sources = ["d"]
[env.prod]
sources = ["p"]
"""


def test_shared_values_logs_the_environments_it_reads(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "keyrun.toml", TWO_ENVS)
    write(root / ".env", f"A={CANARY}\n")
    write(root / ".env.prod", f"A={CANARY}\n")
    done = keyrun(["doctor", "--json"], cwd=root, env=clean_env(tmp_path))
    assert checks(done)["shared-values"]["message"].startswith(  # type: ignore[union-attr]
        "same value in another environment: A equals prod")
    entries = log_entries(tmp_path)
    assert [(e["action"], e["env"], e["keys"]) for e in entries] == [
        ("doctor", "dev", [{"name": "A", "source": "d", "version": None}]),
        ("doctor", "prod", [{"name": "A", "source": "p", "version": None}])]
    assert_no_leak(CANARY, done.stdout, done.stderr, (tmp_path / "access.log").read_text())


FIELDS = """
project = "bot"
default_env = "dev"
[keys]
OPENAI_API_KEY = {}
ANTHROPIC_API_KEY = {}
MISTRAL_API_KEY = {}
PINECONE_API_KEY = { optional = true }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
"""


def test_missing_keys_counts_required_keys(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "keyrun.toml", FIELDS)
    write(root / ".env", "OPENAI_API_KEY=sk-0001-abcdef\nANTHROPIC_API_KEY=sk-0002-abcdef\n"
                         "MISTRAL_API_KEY=sk-0003-abcdef\n")
    done = keyrun(["doctor", "--json"], cwd=root, env=clean_env(tmp_path))
    assert checks(done)["missing-keys"] == {  # SPEC §2: missing is a warning, not an error
        "id": "missing-keys", "status": "warn",
        "message": "all 3 required keys resolve; optional and missing: PINECONE_API_KEY",
        "fix": "keyrun set PINECONE_API_KEY -e dev if the command needs it; run goes on "
               "without optional keys",
        "keys": ["PINECONE_API_KEY"]}
    assert done.returncode == 0  # a warning; --strict fails it
    strict = keyrun(["doctor", "--strict", "--json"], cwd=root, env=clean_env(tmp_path))
    assert (strict.returncode, json.loads(strict.stdout)["ok"]) == (1, False)


def test_missing_key_fix_keeps_the_options_and_knows_field_keys(tmp_path: Path) -> None:
    root = tmp_path / "my proj"
    write(root / "conf" / "keyrun.toml", FIELDS.replace(
        'MISTRAL_API_KEY = {}', 'MISTRAL_API_KEY = { name = "MISTRAL", field = "api_key" }')
          .replace('type = "dotenv"', 'type = "dotenv"\npath = "../.env"'))
    write(root / ".env", "OTHER=1\n")
    done = keyrun(["doctor", "--json", "-c", "conf/keyrun.toml", "-p", "other"], cwd=root,
                  env=clean_env(tmp_path))
    missing = checks(done)["missing-keys"]
    assert missing["keys"] == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MISTRAL_API_KEY"]
    assert missing["fix"] == (
        "keyrun set OPENAI_API_KEY -e dev -c conf/keyrun.toml -p other (then the same for "
        "ANTHROPIC_API_KEY); MISTRAL_API_KEY is the field 'api_key' of a JSON value in local: "
        "add that field to the value with the backend's own tools (keyrun set writes whole "
        "values only)")
    spaced = keyrun(["doctor", "--json", "-c", str(root / "conf" / "keyrun.toml")],
                    cwd=tmp_path, env=clean_env(tmp_path))
    fix = str(checks(spaced)["missing-keys"]["fix"])
    assert fix.startswith(f"keyrun set OPENAI_API_KEY -e dev -c '{root}/conf/keyrun.toml' ")


def test_unknown_is_a_warning_in_json_and_fails_strict() -> None:
    report = Report("dev", "bot", [Check("rotation", "unknown", "unknown: …", "fix it", ("A",)),
                                   Check("names", "pass", "1 valid, distinct names")])
    assert report.as_json()["checks"] == [
        {"id": "rotation", "status": "warn", "unknown": True, "message": "unknown: …",
         "fix": "fix it", "keys": ["A"]},
        {"id": "names", "status": "pass", "message": "1 valid, distinct names", "fix": None,
         "keys": []}]
    assert report.ok() is True
    assert report.ok(strict=True) is False
    assert report.as_json(strict=True)["ok"] is False


def test_list_preview_of_a_multi_line_value_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "keyrun.toml", 'project = "bot"\n[keys]\nPEM = {}\n[sources.local]\n'
                                'type = "dotenv"\n[env.dev]\nsources = ["local"]\n')
    write(root / ".env", 'PEM="-----BEGIN TEST KEY-----\\nMIIBOgIBAAJBAK' + CANARY +
                         '\\n-----END TEST KEY-----\\n"\n')
    env = clean_env(tmp_path)
    plain = keyrun(["list", "-e", "dev"], cwd=root, env=env)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert len(lines) == 3  # title, header, one row
    assert lines[2].split()[:5] == ["PEM", "local", ".env#PEM", "ok", "---…---\\n"]
    listed = keyrun(["list", "-e", "dev", "--json"], cwd=root, env=env)
    assert json.loads(listed.stdout)["keys"][0]["preview"] == "---…---\\n"
    assert_no_leak(CANARY, plain.stdout, listed.stdout)
