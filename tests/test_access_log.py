"""The access log: capped with one previous file, said once where it cannot be written,
and off for a project that says ``access_log = false``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from keyrun import accesslog
from tests.helpers import CANARY, assert_no_leak, clean_env, dotenv_project, keyrun, write


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return dotenv_project(tmp_path / "bot", {"OPENAI_API_KEY": CANARY})


def old_entry(number: int) -> str:
    return json.dumps({"time": f"2026-01-01T00:00:{number % 60:02d}.000Z", "action": "run",
                       "project": "old", "env": "dev", "keys": [], "missing": [],
                       "number": number}) + "\n"


def test_a_full_log_becomes_the_previous_one(project: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    log = tmp_path / "access.log"
    line = old_entry(0)
    count = accesslog.MAX_BYTES // len(line)  # as many as fit: the next entry does not
    log.write_text("".join(old_entry(n) for n in range(count)))
    log.chmod(0o600)
    write(accesslog.previous_path(log), old_entry(-1), mode=0o644)  # an older previous one
    first = keyrun(["--", "true"], cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    previous = accesslog.previous_path(log)
    assert previous.read_text().splitlines()[-1] == old_entry(count - 1).strip()
    assert len(previous.read_text().splitlines()) == count  # the older one is gone
    assert [json.loads(entry)["project"] for entry in log.read_text().splitlines()] == ["bot"]
    keyrun(["--", "true"], cwd=project, env=env)
    assert len(log.read_text().splitlines()) == 2
    assert previous.stat().st_mode & 0o777 == 0o600
    assert log.stat().st_mode & 0o777 == 0o600
    # keyrun log reads both, newest first
    shown = json.loads(keyrun(["log", "--json", "-n", "3"], cwd=project, env=env).stdout)
    assert [(e["project"], e.get("number")) for e in shown] == [
        ("bot", None), ("bot", None), ("old", count - 1)]
    assert_no_leak(CANARY, first.stderr, log.read_text(), previous.read_text())


def test_an_entry_is_stamped_with_the_time_in_utc(project: Path, tmp_path: Path) -> None:
    import re
    from datetime import UTC, datetime, timedelta

    env = clean_env(tmp_path)
    before = datetime.now(UTC)
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 0
    after = datetime.now(UTC)
    stamp = json.loads((tmp_path / "access.log").read_text().splitlines()[-1])["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
    logged = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= logged <= after


def test_the_log_is_never_written_through_a_symlink(project: Path, tmp_path: Path) -> None:
    target = write(tmp_path / "elsewhere", "")
    (tmp_path / "access.log").symlink_to(target)
    done = keyrun(["--", "true"], cwd=project, env=clean_env(tmp_path))
    assert done.returncode == 0
    assert target.read_text() == ""
    assert done.stderr.startswith(f"keyrun: warning: cannot write the access log "
                                  f"{tmp_path / 'access.log'} (Too many levels of symbolic links)")


def test_an_unwritable_log_is_said_once(project: Path, tmp_path: Path) -> None:
    write(tmp_path / "state", "a file where the state directory should be")
    env = clean_env(tmp_path, XDG_RUNTIME_DIR=str(tmp_path / "runtime"))
    del env["KEYRUN_ACCESS_LOG"]
    (tmp_path / "runtime").mkdir(mode=0o700)
    first = keyrun(["--", sys.executable, "-c", "print('ran')"], cwd=project, env=env)
    assert (first.returncode, first.stdout) == (0, "ran\n")
    assert first.stderr == (
        f"keyrun: warning: cannot write the access log {tmp_path}/state/keyrun/access.log "
        "(Not a directory), so keyrun runs without one; to say so and silence this: "
        "KEYRUN_ACCESS_LOG=off (or access_log = false in keyrun.toml), or point "
        "KEYRUN_ACCESS_LOG at a writable file (said once)\n")
    again = keyrun(["--", sys.executable, "-c", "print('ran')"], cwd=project, env=env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "ran\n", "")
    off = keyrun(["--", "true"], cwd=project, env=dict(env, KEYRUN_ACCESS_LOG="off",
                                                      XDG_RUNTIME_DIR=str(tmp_path)))
    assert (off.returncode, off.stderr) == (0, "")
    assert_no_leak(CANARY, first.stderr, root=tmp_path)


def test_access_log_false_in_keyrun_toml(project: Path, tmp_path: Path) -> None:
    config = project / "keyrun.toml"
    write(config, "access_log = false\n" + config.read_text())
    env = clean_env(tmp_path)
    del env["KEYRUN_ACCESS_LOG"]
    for args in (["--", "true"], ["list"], ["doctor"]):
        done = keyrun(args, cwd=project, env=env)
        assert "access log" not in done.stderr
    assert not (tmp_path / "state").exists()
    # a log the user names is still written: a checkout cannot silence it
    named = keyrun(["--", "true"], cwd=project, env=clean_env(tmp_path))
    assert named.returncode == 0
    entry = json.loads((tmp_path / "access.log").read_text())
    assert (entry["action"], entry["keys"]) == (
        "run", [{"name": "OPENAI_API_KEY", "source": "local", "version": None}])
