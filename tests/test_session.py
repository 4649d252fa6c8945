"""The resolution session every caller uses, and the one warning sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyrun.reporter import Reporter
from keyrun.scan import profile_values
from keyrun.session import Selection, open_session
from tests.helpers import (
    CANARY,
    assert_no_leak,
    clean_env,
    keyrun,
    log_entries,
    write,
    write_project,
)

CONFIG = """
project = "shop"
[keys]
TOKEN = {}
SPARE = { optional = true }
[sources.local]
type = "dotenv"
[env.dev]
sources = ["local"]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_project(tmp_path / "shop", CONFIG, {".env": f"TOKEN={CANARY}\n"})
    monkeypatch.chdir(root)
    monkeypatch.setenv("KEYRUN_ACCESS_LOG", str(tmp_path / "access.log"))
    monkeypatch.delenv("KEYRUN_ENV", raising=False)
    monkeypatch.delenv("KEYRUN_CONFIG", raising=False)
    return root


def test_a_session_fetches_once_when_first_asked_and_logs_when_told(
        project: Path, tmp_path: Path) -> None:
    session = open_session(Selection(), action="list")
    assert not session.fetched
    assert log_entries(tmp_path, CANARY) == []
    first = session.fetch()
    assert session.fetched
    assert session.fetch() is first
    assert session.values() == {"TOKEN": CANARY}
    session.log()
    entries = log_entries(tmp_path, CANARY)
    assert [(e["action"], e["project"], e["env"], e["keys"], e["missing"]) for e in entries] == [
        ("list", "shop", "dev", [{"name": "TOKEN", "source": "local", "version": None}],
         ["SPARE"])]


def test_scan_values_are_fetched_and_logged_only_when_asked_for(project: Path,
                                                                 tmp_path: Path) -> None:
    values = profile_values(Selection(), Reporter())
    assert log_entries(tmp_path, CANARY) == []
    assert values() == {"TOKEN": CANARY}
    assert [(e["action"], e["keys"]) for e in log_entries(tmp_path, CANARY)] == [
        ("scan", [{"name": "TOKEN", "source": "local", "version": None}])]


def test_keyrun_scan_writes_its_access_log_line(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    write(root / "keyrun.toml", CONFIG)
    write(root / ".env", f"TOKEN={CANARY}\n")
    write(root / "notes.txt", f"token: {CANARY}\n")
    done = keyrun(["scan", "notes.txt"], cwd=root, env=clean_env(tmp_path))
    assert done.returncode == 1, done.stderr
    assert done.stdout.split()[:2] == ["notes.txt:1", "profile-value"]
    assert_no_leak(CANARY, done.stdout, done.stderr)
    entries = log_entries(tmp_path, CANARY)
    assert [(e["action"], e["project"], e["env"], e["command"], e["keys"], e["missing"])
            for e in entries] == [
        ("scan", "shop", "dev", None, [{"name": "TOKEN", "source": "local", "version": None}],
         ["SPARE"])]


def test_scan_without_a_profile_resolves_nothing_and_logs_nothing(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    write(root / "notes.txt", "nothing here\n")
    done = keyrun(["scan", "notes.txt"], cwd=root, env=clean_env(tmp_path))
    assert (done.returncode, done.stdout) == (0, "")
    assert log_entries(tmp_path, CANARY) == []


def test_the_sink_honours_quiet_verbose_and_once(capsys: pytest.CaptureFixture[str]) -> None:
    loud, quiet = Reporter(verbose=True, once=True), Reporter(quiet=True)
    for report in (loud, quiet):
        report.warn("a lease could not be revoked")
        report.warn("a lease could not be revoked")
        report.note("a note")
        report.detail("a detail")
        report.always("nested inside keyrun profile a/b")
    assert capsys.readouterr().err.splitlines() == [
        "keyrun: warning: a lease could not be revoked", "keyrun: a note", "keyrun: a detail",
        "keyrun: nested inside keyrun profile a/b",
        "keyrun: nested inside keyrun profile a/b"]
    twice = Reporter()
    twice.warn("renewal failed")
    twice.warn("renewal failed")
    assert capsys.readouterr().err.count("renewal failed") == 2


def test_list_quiet_hides_the_profiles_warnings(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    write(root / ".env", "MY_KEY=1\n")
    write(root / ".env.example", "MY_KEY=\nPATH=\n")
    env = clean_env(tmp_path)
    loud = keyrun(["list", "--json"], cwd=root, env=env)
    quiet = keyrun(["-q", "list", "--json"], cwd=root, env=env)
    assert loud.returncode == quiet.returncode == 0
    assert loud.stderr == "keyrun: warning: PATH in .env.example is a reserved name; left out\n"
    assert quiet.stderr == ""
    assert loud.stdout == quiet.stdout
