"""doctor's shared-values check without --all-envs reads no value of another environment
from a remote source (SPEC §4, least privilege): production sits behind a counting HTTP
server (the Doppler fake) that no request may reach; with --all-envs, a value shared by dev
and production is reported."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doppler_server import FakeDoppler
from tests.helpers import CANARY, assert_no_leak, clean_env, keyrun, write, write_project

TOKEN = "dp.st.all.fake0123456789abcdefTOKEN"
SHARED_STAGING = "sk-staging-and-dev-" + "0a1b2c3d4e"
PROD_ONLY = "kr-prod-" + "9e8d7c6b5a493827"
TEAM_ITEM = "postgres://team:" + "Pq8sT2vX4z" + "@db.internal/app"

CONFIG = """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{}}
DATABASE_URL = {{ source = "team" }}

[sources.local]
type = "dotenv"
path = ".env.{{env}}"

[sources.prod]
type = "doppler"
api_host = "{prod}"
config = "{{env}}"

[sources.team]
type = "doppler"
api_host = "{team}"
config = "shared"

[env.dev]
sources = ["local"]

[env.staging]
sources = ["local"]

[env.production]
sources = ["prod"]
"""


@pytest.fixture
def servers() -> Iterator[tuple[FakeDoppler, FakeDoppler]]:
    prod, team = FakeDoppler(), FakeDoppler()
    try:
        for server in (prod, team):
            server.grant(TOKEN)
        prod.put("bot", "production", "OPENAI_API_KEY", CANARY)  # dev's value: shared
        prod.put("bot", "production", "ANTHROPIC_API_KEY", PROD_ONLY)
        team.put("bot", "shared", "DATABASE_URL", TEAM_ITEM)
        yield prod, team
    finally:
        prod.stop()
        team.stop()


def project(root: Path, prod: FakeDoppler, team: FakeDoppler) -> Path:
    return write_project(root, CONFIG.format(prod=prod.url, team=team.url), {
        ".env.dev": f"OPENAI_API_KEY={CANARY}\nANTHROPIC_API_KEY={SHARED_STAGING}\n",
        ".env.staging": f"OPENAI_API_KEY=sk-staging-own-0123456789\n"
                        f"ANTHROPIC_API_KEY={SHARED_STAGING}\n"})


def shared_values(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return next(c for c in json.loads(done.stdout)["checks"] if c["id"] == "shared-values")


def test_doctor_reads_no_remote_value_of_another_environment(
        servers: tuple[FakeDoppler, FakeDoppler], tmp_path: Path) -> None:
    prod, team = servers
    root = project(tmp_path / "bot", prod, team)
    env = clean_env(tmp_path, DOPPLER_TOKEN=TOKEN)
    done = keyrun(["doctor", "-e", "dev", "--json"], cwd=root, env=env)
    assert prod.requests() == []  # not one request reached production's server
    team_item = "doppler:bot/shared#DATABASE_URL"
    assert shared_values(done) == {
        "id": "shared-values", "status": "warn",
        "message": "same value in another environment: ANTHROPIC_API_KEY equals staging; "
                   "DATABASE_URL is read from the same item in staging, production (team: "
                   f"{team_item})"
                   "; not compared, since doctor reads no other environment's remote values "
                   "without --all-envs: production's OPENAI_API_KEY, ANTHROPIC_API_KEY (prod)",
        "fix": "give each environment its own key, so one leak does not open them all",
        "keys": ["ANTHROPIC_API_KEY", "DATABASE_URL"]}
    # the team item was read for dev's own keys, never for production's
    assert {(s.query["project"], s.query["config"]) for s in team.requests()} == {
        ("bot", "shared")}
    logged = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert sorted((e["env"], [k["source"] for k in e["keys"]]) for e in logged) == [
        ("dev", ["local", "local", "team"]), ("staging", ["local", "local"])]
    # a --strict CI run passes without production's values, unless something is shared
    write(root / ".env.staging", "OPENAI_API_KEY=sk-staging-own-0123456789\n"
                                 "ANTHROPIC_API_KEY=sk-staging-own-abcdefghij\n")
    write(root / "keyrun.toml", CONFIG.format(prod=prod.url, team=team.url).replace(
        'DATABASE_URL = { source = "team" }', 'DATABASE_URL = { optional = true }'))
    clean = keyrun(["doctor", "-e", "dev", "--json"], cwd=root, env=env)
    assert shared_values(clean) == {
        "id": "shared-values", "status": "pass",
        "message": "no value shared with staging; not compared, since doctor reads no other "
                   "environment's remote values without --all-envs: production's "
                   "OPENAI_API_KEY, ANTHROPIC_API_KEY (prod)",
        "fix": None, "keys": []}
    assert prod.requests() == []
    for value in (CANARY, PROD_ONLY, TEAM_ITEM, SHARED_STAGING):
        assert_no_leak(value, done.stdout, done.stderr, clean.stdout, clean.stderr,
                       json.dumps(logged))


def test_all_envs_compares_remote_values(servers: tuple[FakeDoppler, FakeDoppler],
                                         tmp_path: Path) -> None:
    prod, team = servers
    root = project(tmp_path / "bot", prod, team)
    env = clean_env(tmp_path, DOPPLER_TOKEN=TOKEN)
    done = keyrun(["doctor", "--all-envs", "--json"], cwd=root, env=env)
    reports = {report["env"]: report for report in json.loads(done.stdout)["envs"]}
    dev = next(c for c in reports["dev"]["checks"] if c["id"] == "shared-values")
    assert dev["message"] == ("same value in another environment: ANTHROPIC_API_KEY equals "
                              "staging; DATABASE_URL equals staging, production; "
                              "OPENAI_API_KEY equals production")
    assert [(s.query["config"], s.status) for s in prod.requests()] == [
        ("production", 200)] * len(prod.requests())
    assert prod.requests()
    for value in (CANARY, PROD_ONLY, TEAM_ITEM, SHARED_STAGING):
        assert_no_leak(value, done.stdout, done.stderr)
