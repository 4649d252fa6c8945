"""The keyring source next to keyrings.alt: keyring chains the Secret Service and the
plaintext file; keyrun uses the Secret Service and never reads or writes the file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SecretService
from tests.helpers import CANARY, assert_no_leak, clean_env, keyrun, write

if os.environ.get("CI"):  # the test extra installs it: missing there is a failure
    import keyrings.alt  # noqa: F401
else:
    pytest.importorskip("keyrings.alt", reason="keyrings.alt is in the test extra")

CONFIG = """
project = "kr"
[keys]
OPENAI_API_KEY = {}
ANTHROPIC_API_KEY = { optional = true }
[sources.keychain]
type = "keyring"
[env.dev]
sources = ["keychain"]
"""
IN_FILE_ONLY = "kr-plaintext-" + "77d0c1e5a3b94f02"


def python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout.strip()


@pytest.fixture
def chained(secret_service: SecretService, tmp_path: Path) -> dict[str, str]:
    """A keyrun environment where keyring's backend is the chainer, with the plaintext
    file already holding a value for one of the profile's keys."""
    env = clean_env(tmp_path, **secret_service.env, XDG_DATA_HOME=str(tmp_path / "data"))
    del env["PYTHON_KEYRING_BACKEND"]
    members = python("import keyring; b = keyring.get_keyring(); print(type(b).__name__, "
                     "[type(m).__module__ + '.' + type(m).__name__ for m in b.backends])", env)
    assert members == ("ChainerBackend ['keyring.backends.SecretService.Keyring', "
                       "'keyrings.alt.file.PlaintextKeyring']")
    python("from keyrings.alt.file import PlaintextKeyring; "
           f"PlaintextKeyring().set_password('keyrun/kr/dev', 'ANTHROPIC_API_KEY', '{IN_FILE_ONLY}')",
           env)
    # what keyring itself does: the chain reads the plaintext file
    assert python("import keyring; print(keyring.get_password('keyrun/kr/dev', "
                  "'ANTHROPIC_API_KEY'))", env) == IN_FILE_ONLY
    return env


def plaintext_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "python_keyring" / "keyring_pass.cfg"


def test_the_secret_service_in_a_chain_is_used(chained: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "keyrun.toml", CONFIG)
    stored = plaintext_file(tmp_path)
    before = stored.read_bytes()
    done = keyrun(["set", "OPENAI_API_KEY"], cwd=root, env=chained, input=CANARY + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "keyrun: set OPENAI_API_KEY in keychain (keyrun/kr/dev / OPENAI_API_KEY) for dev\n"
    assert stored.read_bytes() == before  # written to the Secret Service, not the file
    from_service = ("import keyring.backends.SecretService as s; "
                    "print(s.Keyring().get_password('keyrun/kr/dev', 'OPENAI_API_KEY'))")
    assert python(from_service, chained) == CANARY

    code = ("import os, hashlib; print(hashlib.sha256(os.environ['OPENAI_API_KEY'].encode())"
            ".hexdigest(), 'ANTHROPIC_API_KEY' in os.environ)")
    run = keyrun(["--", sys.executable, "-c", code], cwd=root, env=chained)
    assert run.returncode == 0, run.stderr
    # the value only the plaintext file holds is not read
    assert run.stdout == f"{hashlib.sha256(CANARY.encode()).hexdigest()} False\n"
    assert run.stderr == ("keyrun: warning: ANTHROPIC_API_KEY is optional and missing; "
                          "running without it\n")

    listed = keyrun(["list", "--json"], cwd=root, env=chained)
    rows = {row["name"]: row for row in json.loads(listed.stdout)["keys"]}
    assert (rows["OPENAI_API_KEY"]["status"], rows["ANTHROPIC_API_KEY"]["status"]) == (
        "ok", "optional")
    doctor = keyrun(["doctor", "--json"], cwd=root, env=chained)
    sources = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["sources"]
    assert sources["status"] == "pass"
    assert sources["message"].startswith(
        "keychain: backend keyring.backends.SecretService.Keyring (")
    assert stored.read_bytes() == before
    log = (tmp_path / "access.log").read_text()
    for value in (CANARY, IN_FILE_ONLY):
        assert_no_leak(value, done.stdout, done.stderr, run.stderr, listed.stdout,
                       listed.stderr, doctor.stdout, doctor.stderr, log, root=root)


def test_a_chain_of_only_files_is_refused(tmp_path: Path) -> None:
    """Without a Secret Service on the bus, the chain holds the plaintext file alone (and
    keyring picks it, or the chain of it): refused, naming why."""
    root = tmp_path / "proj"
    write(root / "keyrun.toml", CONFIG)
    env = clean_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"),
                    DBUS_SESSION_BUS_ADDRESS="unix:path=" + str(tmp_path / "no-bus"))
    del env["PYTHON_KEYRING_BACKEND"]
    done = keyrun(["list", "--json"], cwd=root, env=env)
    row = json.loads(done.stdout)["keys"][0]
    assert row["status"] == "error"
    assert row["error"] == (
        "keychain: the keyring backend keyrings.alt.file.PlaintextKeyring stores secrets in "
        "a plaintext file — " + "keyrun needs the OS keychain: macOS Keychain, Windows "
        "Credential Locker, or on Linux a Secret Service daemon (gnome-keyring or KWallet) on "
        "a D-Bus session; `python -m keyring diagnose` shows what keyring sees")
    assert not plaintext_file(tmp_path).exists()
