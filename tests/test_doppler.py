"""The doppler source against a fake Doppler API over real HTTP (tests/doppler_server.py):
the contract suite, what is special to Doppler, and the CLI as a real process."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from keyrun.errors import ConfigError, SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Problem, Request
from keyrun.sources.doppler import DopplerSource
from keyrun.testing import Harness, SourceContract
from tests.conftest import SecretService
from tests.doppler_server import CONFIG, TOKEN, FakeDoppler
from tests.helpers import (
    CANARY,
    PRINT_DIGESTS,
    assert_no_leak,
    build_source,
    clean_env,
    digest,
    fetch,
    keyrun,
    value,
    write,
    write_project,
)

DOWNLOAD = "/v3/configs/config/secrets/download"
NAMES = "/v3/configs/config/secrets/names"


@pytest.fixture(scope="session")
def doppler_server() -> Iterator[FakeDoppler]:
    server = FakeDoppler()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def doppler(doppler_server: FakeDoppler) -> FakeDoppler:
    doppler_server.reset()
    doppler_server.grant(TOKEN)
    doppler_server.add_config("proj", "dev")
    return doppler_server


def make(environ: Mapping[str, str] | None = None, *, app: str = "proj", env: str = "dev",
         **settings: object) -> DopplerSource:
    return build_source(DopplerSource, "doppler", settings, project=app, env=env,
                        environ=dict(environ or {}))


def source_for(fake: FakeDoppler, token: str = TOKEN, **settings: str) -> DopplerSource:
    return make({"DOPPLER_TOKEN": token}, api_host=fake.url, **settings)


def failure(source: DopplerSource, deadline: float = 10) -> SourceError:
    with pytest.raises(SourceError) as caught:
        source.fetch([Request("OPENAI_API_KEY", "OPENAI_API_KEY")], Deadline(deadline))
    assert caught.value.source == "doppler"
    return caught.value


# the contract


class DopplerHarness(Harness):
    def __init__(self, fake: FakeDoppler) -> None:
        self.fake = fake

    def put(self, name: str, value: str) -> None:
        self.fake.put("proj", "dev", name, value)

    def source(self) -> DopplerSource:
        return source_for(self.fake)

    def broken_source(self) -> DopplerSource:
        return source_for(self.fake, token="dp.st.dev.revoked")


class TestDopplerContract(SourceContract):
    @pytest.fixture
    def harness(self, doppler: FakeDoppler) -> Harness:
        return DopplerHarness(doppler)


# the wire


def test_one_request_per_config_with_bearer_token(doppler: FakeDoppler) -> None:
    for name in ("A_KEY", "B_KEY", "C_KEY"):
        doppler.put("proj", "dev", name, f"value-of-{name}")
    result = fetch(source_for(doppler), "A_KEY", "B_KEY", "C_KEY", "NOT_THERE")
    assert [value(result[k]) for k in ("A_KEY", "B_KEY", "C_KEY")] == [
        "value-of-A_KEY", "value-of-B_KEY", "value-of-C_KEY"]
    assert result["NOT_THERE"] == Problem.missing("no secret NOT_THERE in Doppler config proj/dev")
    (seen,) = doppler.requests()
    assert (seen.method, seen.path) == ("GET", DOWNLOAD)
    assert seen.query == {"project": "proj", "config": "dev", "format": "json"}
    assert seen.authorization == f"Bearer {TOKEN}"


def test_project_and_config_are_templates(doppler: FakeDoppler) -> None:
    doppler.put("support-bot", "prd_eu", "OPENAI_API_KEY", "sk-prd-eu-value-0001")
    source = make({"DOPPLER_TOKEN": TOKEN}, app="support-bot", env="production",
                  api_host=doppler.url, config="prd_eu")
    assert value(fetch(source, "OPENAI_API_KEY")["OPENAI_API_KEY"]) == "sk-prd-eu-value-0001"
    assert source.locate(Request("OPENAI_API_KEY", "OPENAI_API_KEY")) == (
        "doppler:support-bot/prd_eu#OPENAI_API_KEY")
    templated = make({}, app="bot", env="stg", config="{env}_{project}")
    assert (templated.project, templated.config) == ("bot", "stg_bot")


def test_key_template_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config cannot contain \{key\}"):
        make(config="{key}")


def test_api_host_option_then_environment_then_default(doppler: FakeDoppler) -> None:
    assert make({}).api_host == "https://api.doppler.com"
    assert make({"DOPPLER_API_HOST": doppler.url + "/"}).api_host == doppler.url
    assert make({"DOPPLER_API_HOST": "https://other.example",
                 "KEYRUN_TRUSTED_HOSTS": "api.eu.doppler.example"},
                api_host="https://api.eu.doppler.example").api_host == (
        "https://api.eu.doppler.example")
    doppler.put("proj", "dev", "K", "from-env-host")
    through_env = make({"DOPPLER_TOKEN": TOKEN, "DOPPLER_API_HOST": doppler.url})
    assert value(fetch(through_env, "K")["K"]) == "from-env-host"


def test_plain_http_is_refused_except_on_loopback() -> None:
    with pytest.raises(ConfigError, match="is not an https:// URL"):
        make(api_host="http://api.doppler.com")
    with pytest.raises(ConfigError, match="DOPPLER_API_HOST: 'http://10.0.0.1' is not"):
        _ = make({"DOPPLER_API_HOST": "http://10.0.0.1"}).api_host


def test_field_of_a_json_value(doppler: FakeDoppler) -> None:
    doppler.put("proj", "dev", "DB", json.dumps({"url": "postgres://u@h/db", "port": 5432}))
    outcomes = source_for(doppler).fetch(
        [Request("DATABASE_URL", "DB", field="url"), Request("DB_PORT", "DB", field="port"),
         Request("DB_USER", "DB", field="user")], Deadline(10))
    assert value(outcomes["DATABASE_URL"]) == "postgres://u@h/db"
    assert value(outcomes["DB_PORT"]) == "5432"
    assert isinstance(outcomes["DB_USER"], Problem)
    assert outcomes["DB_USER"].kind == "missing"
    assert len(doppler.requests()) == 1


def test_token_env_vars() -> None:
    assert make().token_env_vars() == ("DOPPLER_TOKEN",)


# tokens


def test_no_token_names_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty keychain without touching keyring's global backend choice (the CLI test
    # below runs the real lookup against keyring's null backend)
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr("keyrun.sources.doppler._keyring_password",
                        lambda service, user: asked.append((service, user)))
    error = failure(make({}, api_host="http://127.0.0.1:9"))
    assert asked == [("keyrun/doppler", "proj/dev"), ("keyrun/doppler", "default")]
    assert error.message == (
        "doppler: no Doppler token for proj/dev (looked in DOPPLER_TOKEN, keyring "
        "keyrun/doppler / proj/dev, keyring keyrun/doppler / default)")
    assert error.hint is not None
    assert "python -m keyring set keyrun/doppler default" in error.hint


def test_token_from_the_keyring(secret_service: SecretService, doppler: FakeDoppler) -> None:
    import keyring

    doppler.put("proj", "dev", "K", "from-keyring-token")
    doppler.grant("dp.pt.personal-token")
    doppler.grant("dp.st.config-token", ("proj", "dev"))
    keyring.set_password("keyrun/doppler", "default", "dp.pt.personal-token")
    try:
        source = make({}, api_host=doppler.url)
        assert value(fetch(source, "K")["K"]) == "from-keyring-token"
        assert doppler.requests()[-1].authorization == "Bearer dp.pt.personal-token"
        assert "token from the keyring (keyrun/doppler / default)" in source.check(
            Deadline(5)).detail
        keyring.set_password("keyrun/doppler", "proj/dev", "dp.st.config-token")
        fetch(make({}, api_host=doppler.url), "K")
        assert doppler.requests()[-1].authorization == "Bearer dp.st.config-token"
        fetch(make({"DOPPLER_TOKEN": TOKEN}, api_host=doppler.url), "K")
        assert doppler.requests()[-1].authorization == f"Bearer {TOKEN}"
    finally:
        for user in ("default", "proj/dev"):
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                keyring.delete_password("keyrun/doppler", user)


# failures


def test_invalid_token(doppler: FakeDoppler) -> None:
    error = failure(source_for(doppler, token="dp.st.dev.revoked"))
    assert error.message == ("doppler: Doppler refused the token from DOPPLER_TOKEN "
                             "(HTTP 401: Invalid Auth token)")
    assert "export DOPPLER_TOKEN" in (error.hint or "")


def test_token_without_access(doppler: FakeDoppler) -> None:
    doppler.grant("dp.st.other", ("proj", "prd"))
    error = failure(source_for(doppler, token="dp.st.other"))
    assert error.message == (
        "doppler: the token from DOPPLER_TOKEN may not read proj/dev (HTTP 403: This token "
        "does not have access to requested project 'proj' and config 'dev')")


def test_unknown_project_and_config(doppler: FakeDoppler) -> None:
    project = failure(source_for(doppler, project="nope"))
    assert project.message == ("doppler: Doppler has no project nope (HTTP 404: Could not "
                               "find requested project 'nope')")
    assert "project = " in (project.hint or "")
    config = failure(source_for(doppler, config="stg"))
    assert config.message == ("doppler: Doppler project proj has no config stg (HTTP 404: "
                              "Could not find requested config 'stg')")
    assert "config = " in (config.hint or "")


def test_not_found_is_read_from_the_message_not_the_names(doppler: FakeDoppler) -> None:
    doppler.add_config("proj", "dev")
    project = failure(source_for(doppler, project="configsvc"))  # holds the word "config"
    assert project.message == ("doppler: Doppler has no project configsvc (HTTP 404: Could not "
                               "find requested project 'configsvc')")
    config = failure(source_for(doppler, config="project_x"))  # holds the word "project"
    assert config.message == ("doppler: Doppler project proj has no config project_x (HTTP "
                              "404: Could not find requested config 'project_x')")
    doppler.fail(400, message="Could not find requested project.")  # some endpoints say 400
    assert failure(source_for(doppler)).message == (
        "doppler: Doppler has no project proj (HTTP 400: Could not find requested project.)")
    doppler.fail(404, message="Not found: the config page moved")
    assert failure(source_for(doppler)).message == (
        "doppler: Doppler refused to read proj/dev (HTTP 404: Not found: the config page "
        "moved)")


def test_429_and_5xx_are_retried(doppler: FakeDoppler) -> None:
    doppler.put("proj", "dev", "K", "after-retries")
    doppler.fail(429, retry_after="0.1")
    doppler.fail(503, times=2)
    started = time.monotonic()
    assert value(fetch(source_for(doppler), "K")["K"]) == "after-retries"
    assert time.monotonic() - started < 2
    assert [s.status for s in doppler.requests()] == [429, 503, 503, 200]


def test_5xx_until_the_deadline(doppler: FakeDoppler) -> None:
    doppler.fail(500, times=1000)
    started = time.monotonic()
    error = failure(source_for(doppler), deadline=1.5)
    assert time.monotonic() - started < 1.6
    assert error.message.startswith("doppler: Doppler answered HTTP 500 for proj/dev "
                                    "(Internal Server Error), ")
    assert error.message.endswith(" attempts within the deadline of 1.5s")
    assert len(doppler.requests()) >= 4


def test_retry_after_beyond_the_deadline_gives_up_at_once(doppler: FakeDoppler) -> None:
    doppler.fail(429, retry_after="60")
    started = time.monotonic()
    error = failure(source_for(doppler), deadline=5)
    assert time.monotonic() - started < 1
    assert error.message == ("doppler: Doppler answered HTTP 429 for proj/dev (You are being "
                             "rate limited), 1 attempt within the deadline of 5s; it asked to "
                             "wait 60s, past the deadline")


def test_refused_connection_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    error = failure(make({"DOPPLER_TOKEN": TOKEN}, api_host=f"http://127.0.0.1:{port}"))
    assert time.monotonic() - started < 2
    assert error.message.startswith(f"doppler: cannot reach http://127.0.0.1:{port}: ")


def test_silent_server_ends_at_the_deadline(doppler: FakeDoppler) -> None:
    doppler.hang = 5
    started = time.monotonic()
    error = failure(source_for(doppler), deadline=1)
    elapsed = time.monotonic() - started
    doppler.hang = 0
    assert 0.6 < elapsed < 1  # the source's own limit ends first, so it names the host
    assert error.message == (f"doppler: timed out: no answer from {doppler.url} for proj/dev "
                             "within the total deadline of 1s")


# value-free and writing


def test_describe_and_check_list_names_only(doppler: FakeDoppler) -> None:
    doppler.put("proj", "dev", "A_KEY", "a-value-0001")
    source = source_for(doppler)
    meta = source.describe([Request("A_KEY", "A_KEY"), Request("B_KEY", "B_KEY")], Deadline(5))
    assert (meta["A_KEY"].exists, meta["B_KEY"].exists) == (True, False)
    assert source.check(Deadline(5)).detail == "proj/dev: 1 secrets (token from DOPPLER_TOKEN)"
    assert source.names(Deadline(5)) == ["A_KEY"]
    assert {s.path for s in doppler.requests()} == {NAMES}


def test_write_updates_one_secret(doppler: FakeDoppler) -> None:
    doppler.put("proj", "dev", "KEEP", "kept-value-0001")
    source = source_for(doppler)
    where = source.write(Request("NEW_KEY", "NEW_KEY"), Secret(CANARY), Deadline(5))
    assert where == "doppler:proj/dev#NEW_KEY"
    assert doppler.secrets("proj", "dev") == {"KEEP": "kept-value-0001", "NEW_KEY": CANARY}
    (seen,) = doppler.requests()
    assert (seen.method, seen.path) == ("POST", "/v3/configs/config/secrets")


def test_write_refuses_a_field(doppler: FakeDoppler) -> None:
    with pytest.raises(SourceError, match="is field 'url' of a JSON value at doppler:proj/dev#DB"):
        source_for(doppler).write(Request("DB_URL", "DB", field="url"), Secret("x"), Deadline(5))
    assert doppler.requests() == []


def test_write_with_a_read_only_token(doppler: FakeDoppler) -> None:
    doppler.grant("dp.st.read-only", ("proj", "dev"), write=False)
    with pytest.raises(SourceError) as caught:
        source_for(doppler, token="dp.st.read-only").write(
            Request("K", "K"), Secret(CANARY), Deadline(5))
    assert caught.value.message == ("doppler: the token from DOPPLER_TOKEN may not write "
                                    "proj/dev (HTTP 403: This token does not have write access)")
    assert CANARY not in str(caught.value) + (caught.value.hint or "")


# the CLI, as a real process


@pytest.fixture
def project(tmp_path: Path, doppler: FakeDoppler) -> Path:
    root = write_project(tmp_path / "proj", CONFIG.format(url=doppler.url, timeout="3s"))
    doppler.add_config("bot", "dev")
    return root


def run(root: Path, tmp_path: Path, *keys: str, token: str = TOKEN, args: tuple[str, ...] = ()
        ) -> tuple[int, str, str, str]:
    import sys

    env = clean_env(tmp_path, DOPPLER_TOKEN=token) if token else clean_env(tmp_path)
    done = keyrun([*args, "-e", "dev", "--", sys.executable, "-c", PRINT_DIGESTS, *keys],
                  cwd=root, env=env)
    log = tmp_path / "access.log"
    return done.returncode, done.stdout, done.stderr, log.read_text() if log.exists() else ""


def test_cli_run_injects_and_hides_the_token(project: Path, tmp_path: Path,
                                             doppler: FakeDoppler) -> None:
    doppler.put("bot", "dev", "OPENAI_API_KEY", CANARY)
    doppler.put("bot", "dev", "ANTHROPIC_API_KEY", "sk-ant-fake-0002")
    status, out, err, log = run(project, tmp_path, "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                                "DOPPLER_TOKEN")
    assert status == 0, err
    assert out.split() == [digest(CANARY), digest("sk-ant-fake-0002"), digest("-")]
    assert len(doppler.requests(DOWNLOAD)) == 1
    assert_no_leak(CANARY, out, err, log, root=tmp_path)
    assert_no_leak(TOKEN, out, err, log)


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "OPENAI_API_KEY: missing from doppler (no secret OPENAI_API_KEY in Doppler "
                "config bot/dev)"),
    ("revoked", "OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: Doppler refused the token from DOPPLER_TOKEN "
                "(HTTP 401: Invalid Auth token)"),
    ("forbidden", "OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: the token from DOPPLER_TOKEN may not read bot/dev "
                  "(HTTP 403: This token does not have access to requested project 'bot' and "
                  "config 'dev')"),
    ("no-project", "OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: Doppler has no project bot (HTTP 404: Could not "
                   "find requested project 'bot')"),
    ("no-config", "OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: Doppler project bot has no config dev (HTTP 404: "
                  "Could not find requested config 'dev')"),
    ("5xx", "OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: Doppler answered HTTP 502 for bot/dev (Bad "
            "Gateway)"),
    ("no-token", "OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: no Doppler token for bot/dev (looked in "
                 "DOPPLER_TOKEN, keyring keyrun/doppler / bot/dev, keyring keyrun/doppler / "
                 "default)"),
])
def test_cli_failures_end_in_125(case: str, expected: str, project: Path, tmp_path: Path,
                                 doppler: FakeDoppler) -> None:
    doppler.put("bot", "dev", "ANTHROPIC_API_KEY", CANARY)
    token = TOKEN
    if case != "missing":
        doppler.put("bot", "dev", "OPENAI_API_KEY", CANARY + "-openai")
    if case == "revoked":
        token = "dp.st.revoked"
    elif case == "forbidden":
        doppler.grant("dp.st.other", ("bot", "prd"))
        token = "dp.st.other"
    elif case == "no-project":
        doppler.projects.pop("bot")
    elif case == "no-config":
        doppler.projects["bot"].pop("dev")
        doppler.add_config("bot", "prd")
    elif case == "5xx":
        doppler.fail(502, times=10_000)
    elif case == "no-token":
        token = ""
    started = time.monotonic()
    status, out, err, log = run(project, tmp_path, "OPENAI_API_KEY", token=token)
    assert status == 125, err
    assert time.monotonic() - started < 8
    assert err.startswith("keyrun: error: cannot run with bot/dev:\n")
    assert expected in err  # a failing source: one line naming both keys
    assert out == ""
    assert_no_leak(CANARY, out, err, log, root=tmp_path)
    doppler.failures.clear()


def test_cli_dead_endpoint_ends_within_the_timeout(tmp_path: Path, doppler: FakeDoppler) -> None:
    root = tmp_path / "proj"
    write(root / "keyrun.toml", CONFIG.format(url=doppler.url, timeout="2s"))
    doppler.hang = 10
    started = time.monotonic()
    try:
        status, _, err, _ = run(root, tmp_path, "OPENAI_API_KEY")
    finally:
        doppler.hang = 0
    elapsed = time.monotonic() - started
    assert status == 125, err
    assert elapsed < 2 + 2.5  # the deadline, plus the interpreter's start-up
    assert (f"OPENAI_API_KEY, ANTHROPIC_API_KEY: doppler: timed out: no answer from {doppler.url} for bot/dev "
            "within the total deadline of 2s") in err


def test_cli_set_round_trip(project: Path, tmp_path: Path, doppler: FakeDoppler) -> None:
    env = clean_env(tmp_path, DOPPLER_TOKEN=TOKEN)
    done = keyrun(["set", "OPENAI_API_KEY", "-e", "dev"], cwd=project, env=env,
                  input=CANARY + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ("keyrun: set OPENAI_API_KEY in doppler "
                           "(doppler:bot/dev#OPENAI_API_KEY) for dev\n")
    assert doppler.secrets("bot", "dev") == {"OPENAI_API_KEY": CANARY}
    doppler.put("bot", "dev", "ANTHROPIC_API_KEY", "sk-ant-fake-0003")
    status, out, err, log = run(project, tmp_path, "OPENAI_API_KEY")
    assert (status, out.split()) == (0, [digest(CANARY)]), err
    assert_no_leak(CANARY, done.stdout, done.stderr, out, err, log, root=tmp_path)


def test_cli_list_and_doctor(project: Path, tmp_path: Path, doppler: FakeDoppler) -> None:
    doppler.put("bot", "dev", "OPENAI_API_KEY", CANARY)
    env = clean_env(tmp_path, DOPPLER_TOKEN=TOKEN)
    listed = keyrun(["list", "--json", "-e", "dev"], cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["keys"]}
    assert rows["OPENAI_API_KEY"]["status"] == "ok"
    assert rows["OPENAI_API_KEY"]["location"] == "doppler:bot/dev#OPENAI_API_KEY"
    assert rows["OPENAI_API_KEY"]["preview"] == "kr-…"  # at most a quarter of the canary's 26 characters
    assert rows["ANTHROPIC_API_KEY"]["status"] == "missing"
    doctor = keyrun(["doctor", "--json", "-e", "dev"], cwd=project, env=env)
    assert doctor.returncode == 1
    checks = {check["id"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["sources"]["status"] == "pass"
    assert checks["sources"]["message"].startswith(
        "doppler: bot/dev: 1 secrets (token from DOPPLER_TOKEN) (")
    assert checks["missing-keys"]["keys"] == ["ANTHROPIC_API_KEY"]
    assert checks["missing-keys"]["fix"] == "keyrun set ANTHROPIC_API_KEY -e dev"
    assert_no_leak(CANARY, listed.stderr, doctor.stdout, doctor.stderr, root=tmp_path)
