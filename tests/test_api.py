"""keyrun.load and keyrun.inject (SPEC §6)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import keyrun
from keyrun.errors import ResolutionError
from tests.helpers import clean_env, write, write_project
from tests.vault_server import (
    ROOT_TOKEN,
    OpenBao,
    Redis,
    dynamic_config,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_project(tmp_path, """
[keys]
OPENAI_API_KEY = {}
EXTRA = { optional = true }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
""", {".env": "OPENAI_API_KEY=sk-load-123456789\n"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", str(tmp_path / "access.log"))
    monkeypatch.delenv("KEYRUN_PROFILE", raising=False)  # restored to unset: inject sets it
    return tmp_path


def test_load(project: Path) -> None:
    assert keyrun.load() == {"OPENAI_API_KEY": "sk-load-123456789"}
    assert keyrun.load("dev", config=project / "keyrun.toml") == {
        "OPENAI_API_KEY": "sk-load-123456789"}
    assert '"action":"load"' in (project / "access.log").read_text()


def test_load_fails_closed(project: Path) -> None:
    write(project / ".env", "OTHER=1\n")
    with pytest.raises(ResolutionError, match="OPENAI_API_KEY: missing"):
        keyrun.load()
    assert keyrun.load(allow_missing=True) == {}


def test_inject_precedence(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-shell")
    assert keyrun.inject(preserve_env=True) == []
    assert os.environ["OPENAI_API_KEY"] == "from-shell"
    assert keyrun.inject() == ["OPENAI_API_KEY"]
    assert os.environ["OPENAI_API_KEY"] == "sk-load-123456789"
    assert os.environ["KEYRUN_PROFILE"] == f"{project.name}/dev"


def test_missing_key_hint_is_spelled_for_python(project: Path) -> None:
    write(project / ".env", "OTHER=1\n")
    with pytest.raises(ResolutionError) as caught:
        keyrun.load()
    hint = ("set it with: keyrun set OPENAI_API_KEY -e dev; "
            "or load without it: allow_missing=True")
    assert caught.value.hint == hint
    assert caught.value.__notes__ == [f"hint: {hint}"]  # shown under the traceback


def test_an_uncaught_error_shows_its_hint(project: Path, tmp_path: Path) -> None:
    write(project / ".env", "OTHER=1\n")
    done = subprocess.run([sys.executable, "-c", "import keyrun; keyrun.inject()"],
                          cwd=project, env=clean_env(tmp_path), capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-3:] == [
        f"keyrun.errors.ResolutionError: cannot run with {project.name}/dev:",
        "  OPENAI_API_KEY: missing from local (not found in .env)",
        "hint: set it with: keyrun set OPENAI_API_KEY -e dev; "
        "or load without it: allow_missing=True"]


def test_load_has_no_exec_limits_but_inject_does(project: Path) -> None:
    big = "x" * (200 * 1024)
    write(project / ".env", f"OPENAI_API_KEY={big}\n")
    assert keyrun.load() == {"OPENAI_API_KEY": big}  # load never execs
    with pytest.raises(ResolutionError, match=r"OPENAI_API_KEY is 204816 bytes; the kernel "
                                              r"refuses one variable over 131072 bytes \(E2BIG\)"):
        keyrun.inject()  # every process the program starts would fail to exec
    assert "OPENAI_API_KEY" not in os.environ


# Dynamic credentials: real OpenBao making real Redis users (tests/vault_server.py)



def dynamic_project(tmp_path: Path, openbao: OpenBao, database: Any, *, default_ttl: str = "1m",
                    child_ttl: str = "5m") -> tuple[Path, dict[str, str]]:
    role = f"r{uuid.uuid4().hex[:8]}"
    database.secrets.database.create_role(name=role, db_name="redis",
                                          creation_statements=['["~*", "+@read"]'],
                                          default_ttl=default_ttl, max_ttl="10m")
    root = tmp_path / "dynamic"
    write(root / "keyrun.toml", dynamic_config(openbao.url, role, child_ttl=child_ttl,
                                               head='project = "demo"\ndefault_env = "dev"'))
    return root, clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN)


def python(code: str, root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=root, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], stdin: str = "") -> tuple[str, str]:
    try:
        return process.communicate(stdin, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("call", ["keyrun.load()", "keyrun.inject() and dict(os.environ)"])
def test_leases_live_with_the_process_and_are_revoked_at_exit(
        openbao: OpenBao, database: Any, redis_server: Redis, tmp_path: Path, call: str) -> None:
    root, env = dynamic_project(tmp_path, openbao, database)
    before = set(redis_server.users())
    process = python(f"""
        import os, sys, keyrun
        values = {call}
        print(values["REDIS_USER"], flush=True)
        sys.stdin.readline()
    """, root, env)
    assert process.stdout is not None
    user = process.stdout.readline().strip()
    try:
        assert redis_server.user_exists(user)  # alive while the process is
    finally:
        _, err = finish(process, "\n")
    assert process.returncode == 0, err
    assert not redis_server.user_exists(user)
    assert set(redis_server.users()) == before
    assert err == ""


def test_leases_are_renewed_while_the_process_lives(openbao: OpenBao, database: Any,
                                                   redis_server: Redis, tmp_path: Path) -> None:
    root, env = dynamic_project(tmp_path, openbao, database, default_ttl="2s", child_ttl="3s")
    process = python(f"""
        import time, keyrun, redis
        values = keyrun.load()
        time.sleep(4.5)  # past the 2 s lease and the 3 s child token
        connection = redis.Redis(host="127.0.0.1", port={redis_server.port},
                                 username=values["REDIS_USER"], password=values["REDIS_PASSWORD"])
        print(values["REDIS_USER"], connection.get("keyrun-probe") is None)
    """, root, env)
    out, err = finish(process)
    assert process.returncode == 0, err
    user, works = out.split()
    assert works == "True"
    assert not redis_server.user_exists(user)
    assert err == ""


def test_release_revokes_at_once(openbao: OpenBao, database: Any, redis_server: Redis,
                                 tmp_path: Path) -> None:
    root, env = dynamic_project(tmp_path, openbao, database)
    process = python("""
        import sys, keyrun, keyrun.api
        print(keyrun.load()["REDIS_USER"], flush=True)
        sys.stdin.readline()
        keyrun.api.release()
        print("released", flush=True)
        sys.stdin.readline()
    """, root, env)
    assert process.stdin is not None
    assert process.stdout is not None
    user = process.stdout.readline().strip()
    try:
        assert redis_server.user_exists(user)
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.stdout.readline() == "released\n"
        assert not redis_server.user_exists(user)  # the process is still running
    finally:
        _, err = finish(process, "\n")
    assert process.returncode == 0, err


def test_a_forked_child_leaves_its_parents_leases_alone(
        openbao: OpenBao, database: Any, redis_server: Redis, tmp_path: Path) -> None:
    root, env = dynamic_project(tmp_path, openbao, database)
    process = python("""
        import os, sys, keyrun
        user = keyrun.load()["REDIS_USER"]
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs atexit handlers in the child
        os.waitpid(pid, 0)
        print(user, flush=True)
        sys.stdin.readline()
    """, root, env)
    assert process.stdout is not None
    user = process.stdout.readline().strip()
    try:
        assert redis_server.user_exists(user)
    finally:
        _, err = finish(process, "\n")
    assert process.returncode == 0, err
    assert not redis_server.user_exists(user)
