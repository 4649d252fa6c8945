"""The pytest plugin, used in a throwaway project by a real pytest process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, write, write_project
from tests.vault_server import (
    ROOT_TOKEN,
    OpenBao,
    Redis,
    configure_redis_engine,
    dynamic_config,
)

TESTS = '''
import os

def test_key_is_there(keyrun_secrets):
    assert os.environ["OPENAI_API_KEY"] == "sk-plugin-123456789"
    assert keyrun_secrets == {"OPENAI_API_KEY": "sk-plugin-123456789"}
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "app", """
[keys]
OPENAI_API_KEY = {}
[sources.local]
type = "dotenv"
path = ".env.{env}"
[env.staging]
sources = ["local"]
[env.dev]
sources = ["local"]
""", {".env.staging": "OPENAI_API_KEY=sk-plugin-123456789\n", ".env.dev": "OTHER=1\n",
      "test_app.py": TESTS})


def pytest_in(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=root, env=clean_env(tmp_path), capture_output=True, text=True,
                          check=False, timeout=120)


def test_command_line_option(project: Path, tmp_path: Path) -> None:
    done = pytest_in(project, tmp_path, "--keyrun-env", "staging")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ini_setting(project: Path, tmp_path: Path) -> None:
    write(project / "pytest.ini", "[pytest]\nkeyrun_env = staging\n")
    done = pytest_in(project, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_missing_key_fails_the_session_with_keyruns_message(project: Path, tmp_path: Path
                                                            ) -> None:
    done = pytest_in(project, tmp_path, "--keyrun-env", "dev")
    assert done.returncode == 4
    assert "keyrun: cannot run with app/dev:" in done.stderr
    assert "OPENAI_API_KEY: missing from local (not found in .env.dev)" in done.stderr


def test_environment_restored_after_the_session(project: Path, tmp_path: Path) -> None:
    write(project / "probe.py", '''
import os
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", "--keyrun-env", "staging", "test_app.py"])
print("after:", os.environ.get("OPENAI_API_KEY"), "code:", int(code))
''')
    done = subprocess.run([sys.executable, "probe.py"], cwd=project, env=clean_env(tmp_path),
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.stdout.splitlines()[-1] == "after: None code: 0", done.stdout + done.stderr


def test_config_is_found_from_the_rootdir_not_the_current_directory(project: Path,
                                                                    tmp_path: Path) -> None:
    write(project / "pytest.ini", "[pytest]\n")
    write(project / "sub" / "keyrun.toml", "[keys]\nDECOY = {}\n")  # not the session's
    done = pytest_in(project / "sub", tmp_path, "--keyrun-env", "staging", "../test_app.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_command_line_config_is_relative_to_the_current_directory(project: Path,
                                                                  tmp_path: Path) -> None:
    write(project / "pytest.ini", "[pytest]\n")
    conf = project / "sub" / "conf"
    conf.mkdir(parents=True)
    (project / "keyrun.toml").rename(conf / "keyrun.toml")
    (project / ".env.staging").rename(conf / ".env.staging")
    done = pytest_in(project / "sub", tmp_path, "--keyrun-env", "staging",
                     "--keyrun-config", "conf/keyrun.toml", "../test_app.py")
    assert done.returncode == 0, done.stdout + done.stderr
    missing = pytest_in(project, tmp_path, "--keyrun-env", "staging",
                        "--keyrun-config", "conf/keyrun.toml")
    assert missing.returncode == 4
    assert missing.stderr.splitlines()[:2] == [
        f"ERROR: keyrun: {project}/conf/keyrun.toml: no such configuration file "
        "(named by --keyrun-config)",
        f"  hint: check the path (relative to {project}), or run `keyrun init` there"]


def test_ini_config_is_relative_to_the_ini_file(project: Path, tmp_path: Path) -> None:
    conf = project / "conf"
    conf.mkdir()
    (project / "keyrun.toml").rename(conf / "keyrun.toml")
    (project / ".env.staging").rename(conf / ".env.staging")
    write(project / "pytest.ini", "[pytest]\nkeyrun_env = staging\nkeyrun_config = conf/keyrun.toml\n")
    (project / "tests").mkdir()
    (project / "test_app.py").rename(project / "tests" / "test_app.py")
    done = pytest_in(project, tmp_path, "--rootdir", "tests", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_keyrun_profile_names_project_and_env(project: Path, tmp_path: Path) -> None:
    write(project / "test_app.py", TESTS + '''
def test_profile():
    assert os.environ["KEYRUN_PROFILE"] == "app/staging"
''')
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--keyrun-env", "staging"], cwd=project,
                          env=clean_env(tmp_path, KEYRUN_PROFILE="other/dev"),
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_messages_name_the_plugins_own_options(project: Path, tmp_path: Path) -> None:
    done = pytest_in(project, tmp_path, "--keyrun-env", "dev")
    assert done.returncode == 4
    assert ("  hint: set it with: keyrun set OPENAI_API_KEY -e dev; or load without it: "
            "--keyrun-allow-missing") in done.stderr.splitlines()
    write(project / "test_app.py", "def test_nothing():\n    pass\n")
    allowed = pytest_in(project, tmp_path, "--keyrun-env", "dev", "--keyrun-allow-missing")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert ("keyrun: warning: OPENAI_API_KEY is missing; loading without it "
            "(--keyrun-allow-missing)") in allowed.stderr


def test_leases_are_revoked_when_the_session_ends(openbao: OpenBao, redis_server: Redis,
                                                  tmp_path: Path) -> None:
    configure_redis_engine(openbao, redis_server, role="plugin")
    root = tmp_path / "dyn"
    write(root / "keyrun.toml", dynamic_config(openbao.url, "plugin"))
    write(root / "test_user.py", '''
import os

def test_user(keyrun_secrets):
    print("USER", os.environ["REDIS_USER"])
''')
    write(root / "probe.py", '''
import sys
import pytest
code = pytest.main(["-q", "-s", "-p", "no:cacheprovider", "--keyrun-env", "dev", "test_user.py"])
print("session over", int(code), flush=True)
sys.stdin.readline()
''')
    process = subprocess.Popen([sys.executable, "probe.py"], cwd=root,
                               env=clean_env(tmp_path, VAULT_TOKEN=ROOT_TOKEN),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        lines = []
        while not (line := process.stdout.readline()).startswith("session over"):
            assert line, process.stderr.read() if process.stderr else ""
            lines.append(line)
        assert line == "session over 0\n"
        user = next(line.split()[-1] for line in lines if "USER " in line)
        assert not redis_server.user_exists(user)  # revoked by the session, not by the exit
    finally:
        process.communicate("\n", timeout=60)
