"""Dynamic secrets: leased credentials made for one run and revoked when it ends.

Real OpenBao with its database engine making real Redis ACL users, and its PKI engine
issuing leased certificates. The CLI tests check that the Redis user exists while the
command runs and is gone after it exits, however it exits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from keyrun.errors import SourceError
from keyrun.sources import Deadline, Item, Problem, Request
from keyrun.sources.vault import VaultSource
from tests.helpers import build_source, clean_env, keyrun, write, write_project
from tests.vault_server import (
    ROOT_TOKEN,
    OpenBao,
    Redis,
    configure_redis_engine,
    dynamic_config,
)


@pytest.fixture(autouse=True)
def _scrubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("VAULT_", "BAO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


def role(client: Any, default_ttl: str = "1m", max_ttl: str = "10m") -> str:
    name = f"r{uuid.uuid4().hex[:8]}"
    client.secrets.database.create_role(name=name, db_name="redis",
                                        creation_statements=['["~*", "+@read"]'],
                                        default_ttl=default_ttl, max_ttl=max_ttl)
    return name


def make(server: OpenBao, root: Path, token: str = ROOT_TOKEN, **settings: Any) -> VaultSource:
    settings = {"url": server.url, "mount": "database", "path": "creds/{key}", **settings}
    return build_source(VaultSource, "vault", settings, root=root,
                        environ={"VAULT_TOKEN": token, "HOME": str(root)}, where="[s]")


def credentials(name: str) -> list[Request]:
    return [Request("REDIS_USER", name, "username"), Request("REDIS_PASSWORD", name, "password")]


def items(source: VaultSource, requests: list[Request]) -> dict[str, Item]:
    got = source.fetch(requests, Deadline(20))
    for key, outcome in got.items():
        assert isinstance(outcome, Item), (key, outcome)
    return {key: outcome for key, outcome in got.items() if isinstance(outcome, Item)}


def login_works(redis: Redis, user: str, password: str) -> bool:
    import redis as redis_py

    try:
        return redis.connect(user, password).get("keyrun-probe") is None
    except redis_py.exceptions.AuthenticationError:
        return False


# the source itself


def test_fields_of_one_lease_share_one_read_and_release_revokes_it(
        openbao: OpenBao, database: Any, redis_server: Redis, tmp_path: Path) -> None:
    name = role(database)
    before = set(redis_server.users())
    source = make(openbao, tmp_path)
    got = items(source, credentials(name))
    user, password = (got[k].value.reveal() for k in ("REDIS_USER", "REDIS_PASSWORD"))
    assert set(redis_server.users()) - before == {user}
    lease = got["REDIS_USER"].lease
    assert lease is not None
    assert lease == got["REDIS_PASSWORD"].lease
    assert lease.id.startswith(f"database/creds/{name}/")
    assert lease.renewable is True
    assert lease.ttl == 60
    assert got["REDIS_USER"].expires is None  # lives as long as the run
    assert login_works(redis_server, user, password)
    assert source.release() == []
    assert not redis_server.user_exists(user)
    assert not login_works(redis_server, user, password)
    assert source.release() == []  # twice is harmless


def test_child_token_is_short_renewable_capped_and_no_wider(
        openbao: OpenBao, database: Any, tmp_path: Path) -> None:
    name = role(database)
    database.sys.create_or_update_policy(name="creds-reader", policy=(
        f'path "database/creds/{name}" {{ capabilities = ["read"] }}\n'
        'path "auth/token/create" { capabilities = ["update"] }\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }'))
    token = database.auth.token.create(policies=["creds-reader"], ttl="1h")["auth"]
    source = make(openbao, tmp_path, token["client_token"], child_token_ttl="90s",
                  child_token_max_ttl="2h")
    got = items(source, credentials(name))
    assert got["REDIS_USER"].lease is not None
    assert got["REDIS_USER"].lease.ttl == 60
    accessor = source._child_accessor
    child = database.auth.token.lookup_accessor(accessor)["data"]
    assert child["policies"] == ["creds-reader", "default"]
    assert 80 <= child["ttl"] <= 90
    assert child["explicit_max_ttl"] == 7200
    assert child["renewable"] is True
    assert child["display_name"] == "token-keyrun-proj-dev"
    assert child["meta"] == {"keyrun": "proj/dev"}
    lease = database.sys.read_lease(got["REDIS_USER"].lease.id)["data"]
    assert lease["id"] == got["REDIS_USER"].lease.id
    assert source.release() == []
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.InvalidRequest):
        database.auth.token.lookup_accessor(accessor)


def test_renewals_keep_the_credential_alive(openbao: OpenBao, database: Any,
                                            redis_server: Redis, tmp_path: Path) -> None:
    name = role(database, default_ttl="2s", max_ttl="1m")
    source = make(openbao, tmp_path, child_token_ttl="3s")
    got = items(source, credentials(name))
    user, password = (got[k].value.reveal() for k in ("REDIS_USER", "REDIS_PASSWORD"))
    assert got["REDIS_USER"].lease is not None
    assert got["REDIS_USER"].lease.ttl == 2
    try:
        for _ in range(4):
            time.sleep(1)
            delay = source.renew_leases()
            assert delay == pytest.approx(1.0, abs=0.05)
        assert login_works(redis_server, user, password)  # 4 s: twice the lease's TTL
        assert database.auth.token.lookup_accessor(source._child_accessor)["data"]["ttl"] >= 2
    finally:
        assert source.release() == []
    assert not redis_server.user_exists(user)


def test_warning_when_max_ttl_nears(openbao: OpenBao, database: Any, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    name = role(database, default_ttl="3s", max_ttl="4s")
    source = make(openbao, tmp_path, child_token_ttl="3s", child_token_max_ttl="4s")
    items(source, credentials(name))
    try:
        time.sleep(2.2)  # Vault counts whole seconds towards a max TTL
        assert source.renew_leases() is not None
        err = re.sub(r"in [0-3]s", "in Ns", capsys.readouterr().err)
        assert err == (
            "keyrun: warning: vault: the child token holding this run's leases reaches its max "
            "TTL in Ns; its leased credentials are revoked then (raise child_token_max_ttl)\n"
            f"keyrun: warning: vault: the lease on database/creds/{name} reaches its max TTL in "
            "Ns; the credential stops working then (raise the role's max_ttl)\n")
        source.renew_leases()
        assert capsys.readouterr().err == ""  # each warning once
    finally:
        source.release()


def test_nothing_leased_means_no_child_token(openbao: OpenBao, database: Any,
                                             tmp_path: Path) -> None:
    database.secrets.kv.v2.create_or_update_secret("static-app", secret={"A": "b"},
                                                   mount_point="secret")
    source = make(openbao, tmp_path, mount="secret", path="static-app")
    got = items(source, [Request("A", "A")])
    assert got["A"].lease is None
    assert source._lease_token is None


def test_failed_leased_reads_revoke_the_child_at_once(openbao: OpenBao, database: Any,
                                                      tmp_path: Path) -> None:
    source = make(openbao, tmp_path)
    outcome = source.fetch(credentials("no-such-role"), Deadline(20))
    assert all(isinstance(o, Problem) for o in outcome.values())
    assert source._lease_token is None


def test_token_that_may_not_create_children(openbao: OpenBao, database: Any,
                                            redis_server: Redis, tmp_path: Path) -> None:
    name = role(database)
    database.sys.create_or_update_policy(name="creds-only", policy=(
        f'path "database/creds/{name}" {{ capabilities = ["read"] }}\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }'))
    database.sys.create_or_update_policy(name="creds-and-revoke", policy=(
        f'path "database/creds/{name}" {{ capabilities = ["read"] }}\n'
        'path "sys/leases/revoke" { capabilities = ["update"] }\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }'))
    revoker = database.auth.token.create(policies=["creds-and-revoke"], ttl="1h")["auth"]
    source = make(openbao, tmp_path, revoker["client_token"])
    user = items(source, credentials(name))["REDIS_USER"].value.reveal()
    assert source._child is False
    assert source.release() == []
    assert not redis_server.user_exists(user)
    plain = database.auth.token.create(policies=["creds-only"], ttl="1h")["auth"]
    before = set(redis_server.users())
    source = make(openbao, tmp_path, plain["client_token"])
    with pytest.raises(SourceError, match="may neither create a child token"):
        source.fetch(credentials(name), Deadline(20))
    assert set(redis_server.users()) == before  # refused before anything was made
    warned: list[str] = []
    settings = {"url": openbao.url, "mount": "database", "path": "creds/{key}",
                "unrevocable_leases": "warn"}
    source = build_source(VaultSource, "vault", settings, root=tmp_path, where="[s]",
                          environ={"VAULT_TOKEN": plain["client_token"], "HOME": str(tmp_path)},
                          warn=warned.append)
    user = items(source, credentials(name))["REDIS_USER"].value.reveal()
    assert len(warned) == 1
    assert "would outlive it; they stay valid until their TTL ends" in warned[0]
    warnings = source.release()
    assert warnings == [f"could not revoke the lease on database/creds/{name} "
                        "(permission denied); it stays valid until it expires (revoke it "
                        "with: vault lease revoke LEASE_ID, as a token allowed to)"]
    assert redis_server.user_exists(user)
    database.sys.revoke_prefix(f"database/creds/{name}")


def test_approle_login_token_is_revoked_with_the_leases(openbao: OpenBao, database: Any,
                                                        redis_server: Redis,
                                                        tmp_path: Path) -> None:
    name = role(database)
    database.sys.create_or_update_policy(name="creds-only", policy=(
        f'path "database/creds/{name}" {{ capabilities = ["read"] }}\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }'))
    if "approle/" not in database.sys.list_auth_methods()["data"]:
        database.sys.enable_auth_method("approle")
    database.auth.approle.create_or_update_approle("leaser", token_policies=["creds-only"])
    role_id = database.auth.approle.read_role_id("leaser")["data"]["role_id"]
    secret_id = database.auth.approle.generate_secret_id("leaser")["data"]["secret_id"]
    settings = {"url": openbao.url, "mount": "database", "path": "creds/{key}",
                "auth": {"method": "approle", "role_id": role_id, "secret_id_env": "SID"}}
    source = build_source(VaultSource, "vault", settings, root=tmp_path, environ={"SID": secret_id},
                          where="[s]")
    user = items(source, credentials(name))["REDIS_USER"].value.reveal()
    assert source.release() == []
    assert not redis_server.user_exists(user)


def test_failed_revocation_is_a_warning(private_openbao: OpenBao, redis_server: Redis,
                                        tmp_path: Path) -> None:
    configure_redis_engine(private_openbao, redis_server)
    source = make(private_openbao, tmp_path)
    user = items(source, credentials("keyrun"))["REDIS_USER"].value.reveal()
    private_openbao.stop()
    try:
        warnings = source.release()
        assert warnings == [
            f"could not revoke the token holding this run's leases (cannot reach the "
            f"Vault server at {private_openbao.url}: Connection refused); the credentials from "
            "database/creds/keyrun stay valid until it expires (revoke them with: vault lease "
            "revoke -prefix PATH)"]
    finally:
        redis_server.admin().acl_deluser(user)


def test_a_failing_engine_is_an_error_of_its_keys_after_a_few_tries(
        openbao: OpenBao, database: Any, tmp_path: Path) -> None:
    from tests.helpers import free_port

    database.secrets.database.configure(
        name="dead", plugin_name="redis-database-plugin", allowed_roles=["dead-role"],
        host="127.0.0.1", port=free_port(), username="default", password="x",
        verify_connection=False)
    database.secrets.database.create_role(name="dead-role", db_name="dead",
                                          creation_statements=['["~*", "+@read"]'])
    source = make(openbao, tmp_path)
    started = time.monotonic()
    got = source.fetch(credentials("dead-role"), Deadline(20))
    assert time.monotonic() - started < 5
    user = got["REDIS_USER"]
    assert isinstance(user, Problem)
    assert user.kind == "error"
    assert user.message.startswith("reading database/creds/dead-role failed: ")
    assert got["REDIS_PASSWORD"] == user
    assert source._lease_token is None


def test_pki_certificates_are_leased_and_revoked(openbao: OpenBao, database: Any,
                                                 tmp_path: Path) -> None:
    if "pki/" not in database.sys.list_mounted_secrets_engines()["data"]:
        database.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "24h"})
        database.secrets.pki.generate_root("internal", "keyrun test CA", mount_point="pki")
    # the session's one OpenBao: another module may have mounted pki/ without this role
    database.secrets.pki.create_or_update_role("web", {
        "allow_any_name": True, "generate_lease": True, "max_ttl": "2h"}, mount_point="pki")
    source = make(openbao, tmp_path, mount="pki", path="issue/{key}",
                  params={"common_name": "{env}.{project}.example.com", "ttl": "1h"})
    got = items(source, [Request("TLS_CERT", "web", "certificate"),
                         Request("TLS_KEY", "web", "private_key"),
                         Request("TLS_SERIAL", "web", "serial_number")])
    assert got["TLS_CERT"].value.reveal().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in got["TLS_KEY"].value.reveal()
    lease = got["TLS_CERT"].lease
    assert lease is not None
    assert lease == got["TLS_KEY"].lease
    assert lease.id.startswith("pki/issue/web/")
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(got["TLS_CERT"].value.reveal().encode())
    assert cert.subject.rfc4514_string() == "CN=dev.proj.example.com"
    serial = got["TLS_SERIAL"].value.reveal()
    assert database.read(f"pki/cert/{serial}")["data"]["revocation_time"] == 0
    assert source.release() == []
    assert database.read(f"pki/cert/{serial}")["data"]["revocation_time"] > 0


# the CLI: the user exists while the command runs and is gone after it exits

CHILD = """
import json, os, signal, sys, time
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

user, password = os.environ["REDIS_USER"], os.environ["REDIS_PASSWORD"]
connection = redis.Redis(host="127.0.0.1", port=int(sys.argv[2]), username=user,
                         password=password, retry=Retry(NoBackoff(), 0))
seconds = float(sys.argv[4])
time.sleep(seconds)
report = {"user": user, "ping": connection.get("keyrun-probe") is None, "vault_token": "VAULT_TOKEN" in os.environ,
          "bao_token": "BAO_TOKEN" in os.environ, "profile": os.environ.get("KEYRUN_PROFILE")}
with open(sys.argv[3], "w") as out:
    json.dump(report, out)
mode = sys.argv[1]
if mode == "exit3":
    sys.exit(3)
if mode == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
if mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "wait":
    print("ready", flush=True)
    time.sleep(60)
"""

def cli_project(tmp_path: Path, server: OpenBao, name: str, *, extra_key: str = "",
                child_ttl: str = "5m") -> tuple[Path, Path, dict[str, str]]:
    root = write_project(tmp_path / "project", dynamic_config(
        server.url, name, child_ttl=child_ttl, extra_key=extra_key,
        head='project = "demo"\ndefault_env = "dev"\n'), {"child.py": CHILD})
    env = clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN, BAO_TOKEN=ROOT_TOKEN)
    return root, tmp_path / "report.json", env


def report(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def assert_clean_output(redis: Redis, user: str, *texts: str) -> None:
    for text in texts:
        assert user not in text
        assert ROOT_TOKEN + "\n" not in text


@pytest.mark.parametrize(("mode", "status"), [
    ("exit0", 0), ("exit3", 3), ("sigterm", -signal.SIGTERM),
    ("sigkill", -signal.SIGKILL)])
def test_cli_user_is_gone_after_the_command_exits(openbao: OpenBao, database: Any,
                                                  redis_server: Redis, tmp_path: Path,
                                                  mode: str, status: int) -> None:
    root, out, env = cli_project(tmp_path, openbao, role(database))
    before = set(redis_server.users())
    done = subprocess.run([sys.executable, "-m", "keyrun", "-e", "dev", "--", sys.executable,
                           "child.py", mode, str(redis_server.port), str(out), "0"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    seen = report(out)
    assert seen["ping"] is True
    assert seen["vault_token"] is False
    assert seen["bao_token"] is False
    assert seen["profile"] == "demo/dev"
    assert not redis_server.user_exists(seen["user"])
    assert set(redis_server.users()) == before
    assert done.returncode == status, done.stderr
    assert_clean_output(redis_server, seen["user"], done.stdout, done.stderr,
                        (tmp_path / "access.log").read_text())
    assert done.stderr == ""


def test_cli_sigterm_to_keyrun_revokes(openbao: OpenBao, database: Any, redis_server: Redis,
                                       tmp_path: Path) -> None:
    root, out, env = cli_project(tmp_path, openbao, role(database))
    process = subprocess.Popen([sys.executable, "-m", "keyrun", "--", sys.executable,
                                "child.py", "wait", str(redis_server.port), str(out), "0"],
                               cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        user = report(out)["user"]
        assert redis_server.user_exists(user)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not redis_server.user_exists(user)
    assert process.stderr is not None
    assert_clean_output(redis_server, user, process.stderr.read())


def test_cli_renews_while_the_command_runs(openbao: OpenBao, database: Any,
                                           redis_server: Redis, tmp_path: Path) -> None:
    name = role(database, default_ttl="2s", max_ttl="1m")
    root, out, env = cli_project(tmp_path, openbao, name, child_ttl="3s")
    done = keyrun(["--", sys.executable, "child.py", "exit0", str(redis_server.port),
                   str(out), "4.5"], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    seen = report(out)
    assert seen["ping"] is True  # after 4.5 s on a 2 s lease and a 3 s token
    assert not redis_server.user_exists(seen["user"])
    assert done.stderr == ""


def test_cli_failure_after_fetching_revokes(openbao: OpenBao, database: Any,
                                            redis_server: Redis, tmp_path: Path) -> None:
    before = set(redis_server.users())
    root, _, env = cli_project(tmp_path, openbao, role(database),
                               extra_key='MISSING = { name = "no-such-role" }\n')
    done = keyrun(["--", "true"], cwd=root, env=env)
    assert done.returncode == 125
    assert "MISSING" in done.stderr
    assert set(redis_server.users()) == before
    root, _, env = cli_project(tmp_path / "again", openbao, role(database))
    done = keyrun(["--", "no-such-command-keyrun"], cwd=root, env=env)
    assert done.returncode == 127
    assert set(redis_server.users()) == before


def test_cli_login_token_is_revoked_when_nothing_is_leased(openbao: OpenBao, database: Any,
                                                            tmp_path: Path) -> None:
    """An AppRole login made for a run (or `list`) is not left valid for its whole TTL."""
    database.secrets.kv.v2.create_or_update_secret("login-demo/dev", secret={"A": "a-value-1"},
                                                   mount_point="secret")
    database.sys.create_or_update_policy(name="login-demo", policy=(
        'path "secret/data/login-demo/*" { capabilities = ["read"] }\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }'))
    if "approle/" not in database.sys.list_auth_methods()["data"]:
        database.sys.enable_auth_method("approle")
    database.auth.approle.create_or_update_approle("login-demo", token_policies=["login-demo"])
    role_id = database.auth.approle.read_role_id("login-demo")["data"]["role_id"]
    secret_id = database.auth.approle.generate_secret_id("login-demo")["data"]["secret_id"]
    root = tmp_path / "login"
    write(root / "keyrun.toml", f"""
project = "login-demo"
[keys]
A = {{}}
[sources.vault]
type = "vault"
url = "{openbao.url}"
auth = {{ method = "approle", role_id = "{role_id}", secret_id_env = "SID" }}
[env.dev]
sources = ["vault"]
""")
    env = clean_env(tmp_path, SID=secret_id)

    def login_tokens() -> int:
        accessors = database.list("auth/token/accessors")["data"]["keys"]
        return sum(1 for accessor in accessors
                   if database.auth.token.lookup_accessor(accessor)["data"]["path"]
                   .startswith("auth/approle/login"))

    before = login_tokens()
    done = keyrun(["--", sys.executable, "-c", "import os; print(os.environ['A'])"],
                  cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a-value-1\n"
    listed = keyrun(["list"], cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    assert login_tokens() == before


def test_cli_the_shipped_vault_example_works(openbao: OpenBao, database: Any,
                                             redis_server: Redis, tmp_path: Path) -> None:
    """examples/sources/vault.toml as written, pointed at the test server."""
    example = Path(__file__).parent.parent / "examples" / "sources" / "vault.toml"
    text = example.read_text().replace("https://vault.example.com:8200", openbao.url)
    root = tmp_path / "example"
    write(root / "keyrun.toml", text)
    database.secrets.kv.v2.create_or_update_secret(
        "support-bot/production", secret={"OPENAI_API_KEY": "sk-example-0000"},
        mount_point="secret")
    database.secrets.database.create_role(name="support-bot", db_name="redis",
                                          creation_statements=['["~*", "+@read"]'],
                                          default_ttl="1m", max_ttl="10m")
    database.sys.create_or_update_policy(name="support-bot", policy=(
        'path "secret/data/support-bot/*" { capabilities = ["read"] }\n'
        'path "database/creds/support-bot" { capabilities = ["read"] }\n'
        'path "auth/token/create" { capabilities = ["update"] }\n'
        'path "sys/internal/ui/mounts/*" { capabilities = ["read"] }'))
    if "approle/" not in database.sys.list_auth_methods()["data"]:
        database.sys.enable_auth_method("approle")
    database.auth.approle.create_or_update_approle("support-bot", token_policies=["support-bot"])
    role_id = database.auth.approle.read_role_id("support-bot")["data"]["role_id"]
    secret_id = database.auth.approle.generate_secret_id("support-bot")["data"]["secret_id"]
    env = clean_env(tmp_path, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    before = set(redis_server.users())
    code = ("import os; print(os.environ['OPENAI_API_KEY'], "
            "os.environ['DB_USER'].startswith('V_'), bool(os.environ['DB_PASSWORD']))")
    done = keyrun(["--", sys.executable, "-c", code], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sk-example-0000 True True\n"
    assert set(redis_server.users()) == before  # revoked at exit


def test_cli_mask_revokes_when_the_command_ends_not_when_what_it_left_behind_does(
        openbao: OpenBao, database: Any, redis_server: Redis, tmp_path: Path) -> None:
    """With --mask keyrun ends with the command: a process the command left behind holding
    its stdout is not waited for, and the credential is revoked by the time keyrun exits."""
    root, out, env = cli_project(tmp_path, openbao, role(database))
    script = (f'"{sys.executable}" child.py exit0 {redis_server.port} "{out}" 0; '
              "(sleep 4; echo late) & echo started; exit 5")
    process = subprocess.Popen([sys.executable, "-m", "keyrun", "run", "--mask", "--",
                                "sh", "-c", script], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        ended = time.monotonic()
        user = report(out)["user"]
        assert process.wait(20) == 5
        assert time.monotonic() - ended < 3.5  # the background sleep still holds stdout
        assert not redis_server.user_exists(user)
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert_clean_output(redis_server, user, process.stderr.read())
