"""The pytest plugin, used in a throwaway project by a real pytest process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, write

TESTS = '''
import os

def test_key_is_there(keyrun_secrets):
    assert os.environ["OPENAI_API_KEY"] == "sk-plugin-123456789"
    assert keyrun_secrets == {"OPENAI_API_KEY": "sk-plugin-123456789"}
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    write(root / "keyrun.toml", """
[keys]
OPENAI_API_KEY = {}
[sources.local]
type = "dotenv"
path = ".env.{env}"
[env.staging]
sources = ["local"]
[env.dev]
sources = ["local"]
""")
    write(root / ".env.staging", "OPENAI_API_KEY=sk-plugin-123456789\n")
    write(root / ".env.dev", "OTHER=1\n")
    write(root / "test_app.py", TESTS)
    return root


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
