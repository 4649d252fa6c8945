"""keyrun.load and keyrun.inject (SPEC §6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import keyrun
from keyrun.errors import ResolutionError
from tests.helpers import write


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(tmp_path / "keyrun.toml", """
[keys]
OPENAI_API_KEY = {}
EXTRA = { optional = true }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
""")
    write(tmp_path / ".env", "OPENAI_API_KEY=sk-load-123456789\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", str(tmp_path / "access.log"))
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
    monkeypatch.delenv("KEYRUN_PROFILE")
