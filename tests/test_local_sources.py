"""The dotenv and keyring sources: the contract suite, and what is special to each.

The keyring tests use a real Secret Service (gnome-keyring on a private D-Bus session),
never a mock of the keyring library."""

from __future__ import annotations

import hashlib
import sys
import uuid
from pathlib import Path

import pytest

from keyrun.dotenvfile import format_assignment
from keyrun.errors import SourceError
from keyrun.secret import Secret
from keyrun.sources import Deadline, Request, Source
from keyrun.sources.dotenv import DotenvSource
from keyrun.sources.keyring import KeyringSource
from keyrun.testing import Harness, SourceContract
from tests.conftest import SecretService
from tests.helpers import CANARY, assert_no_leak, build_source, clean_env, keyrun, write


def make(cls: type[Source], root: Path, **settings: object) -> Source:
    return build_source(cls, "test", settings, root=root)


class DotenvHarness(Harness):
    holds_dollar_brace = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.values: dict[str, str] = {}

    def put(self, name: str, value: str) -> None:
        self.values[name] = value
        text = "".join(format_assignment(k, v) + "\n" for k, v in self.values.items())
        write(self.root / ".env", text)

    def source(self) -> Source:
        return make(DotenvSource, self.root)

    def broken_source(self) -> Source:
        (self.root / "broken.env").mkdir()  # a directory where the file should be
        return make(DotenvSource, self.root, path="broken.env")


class TestDotenvContract(SourceContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        return DotenvHarness(tmp_path)


class KeyringHarness(Harness):
    def __init__(self) -> None:
        self.service = f"keyrun-test-{uuid.uuid4().hex[:8]}/{{env}}"

    def put(self, name: str, value: str) -> None:
        import keyring

        keyring.set_password(self.service.format(env="dev"), name, value)

    def source(self) -> Source:
        return make(KeyringSource, Path("."), service=self.service)


class TestKeyringContract(SourceContract):
    @pytest.fixture
    def harness(self, secret_service: SecretService) -> Harness:
        return KeyringHarness()


def test_dotenv_file_missing_means_keys_missing(tmp_path: Path) -> None:
    source = make(DotenvSource, tmp_path, path=".env.{env}")
    outcome = source.fetch([Request("A", "A")], Deadline(5))["A"]
    assert not hasattr(outcome, "value")
    assert outcome.message == ".env.dev does not exist"  # type: ignore[union-attr]


def test_dotenv_write_keeps_mode_and_creates_private_files(tmp_path: Path) -> None:
    source = make(DotenvSource, tmp_path)
    source.write(Request("A", "A"), Secret("value-1"), Deadline(5))
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    (tmp_path / ".env").chmod(0o640)
    source.write(Request("B", "B"), Secret("value-2"), Deadline(5))
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / ".env").read_text() == "A='value-1'\nB='value-2'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_dotenv_path_cannot_hold_key(tmp_path: Path) -> None:
    from keyrun.errors import ConfigError

    with pytest.raises(ConfigError, match="path cannot contain"):
        make(DotenvSource, tmp_path, path="{key}.env")


def test_keyring_refuses_unsafe_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    keyring.core.init_backend()
    try:
        source = make(KeyringSource, tmp_path)
        with pytest.raises(SourceError, match="null backend"):
            source.fetch([Request("A", "A")], Deadline(5))
    finally:
        monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
        keyring.core.init_backend()


def test_keyring_through_the_cli(secret_service: SecretService, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "keyrun.toml", """
project = "kr"
[keys]
OPENAI_API_KEY = {}
[sources.local]
type = "dotenv"
[sources.keychain]
type = "keyring"
[env.dev]
sources = ["local", "keychain"]
""")
    env = clean_env(tmp_path, **secret_service.env)
    del env["PYTHON_KEYRING_BACKEND"]
    done = keyrun(["set", "OPENAI_API_KEY", "--source", "keychain"], cwd=root, env=env,
                  input=CANARY + "\n")
    assert done.returncode == 0, done.stderr
    assert "set OPENAI_API_KEY in keychain (keyrun/kr/dev / OPENAI_API_KEY)" in done.stderr
    import keyring

    assert keyring.get_password("keyrun/kr/dev", "OPENAI_API_KEY") == CANARY
    code = "import os, hashlib; print(hashlib.sha256(os.environ['OPENAI_API_KEY'].encode()).hexdigest())"
    run = keyrun(["--", sys.executable, "-c", code], cwd=root, env=env)
    assert run.stdout.strip() == hashlib.sha256(CANARY.encode()).hexdigest(), run.stderr
    listed = keyrun(["list", "--json"], cwd=root, env=env)
    assert '"source": "keychain"' in listed.stdout
    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    assert '"unknown": true' not in doctor.stdout  # no rotate_after: nothing to know
    log = (tmp_path / "access.log").read_text()
    assert_no_leak(CANARY, done.stdout, done.stderr, run.stderr, listed.stdout, doctor.stdout,
                   log, root=root)
