"""`keyrun run --mask` and `mask = true` through the real command line."""

from __future__ import annotations

import base64
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    CANARY,
    assert_no_leak,
    clean_env,
    dotenv_project,
    keyrun,
    read_to_end,
    write,
)

PY = sys.executable


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return dotenv_project(tmp_path / "proj", {"OPENAI_API_KEY": CANARY, "PIN": "1234"},
                          '[env.masked]\nsources = ["local"]\nmask = true\n')


PRINTER = ("import os, sys, base64; v = os.environ['OPENAI_API_KEY']; "
           "print('raw', v); print('b64', base64.b64encode(v.encode()).decode()); "
           "sys.stderr.write('err ' + v.encode().hex() + '\\n'); print('pin', os.environ['PIN']); "
           "sys.exit(3)")


def test_mask_flag_on_pipes(project: Path, tmp_path: Path) -> None:
    done = keyrun(["--mask", "--", PY, "-c", PRINTER], cwd=project, env=clean_env(tmp_path))
    assert done.returncode == 3
    assert done.stdout == "raw <OPENAI_API_KEY>\nb64 <OPENAI_API_KEY>\npin 1234\n"
    assert "err <OPENAI_API_KEY>\n" in done.stderr
    assert "PIN is too short to be masked reliably" in done.stderr
    for form in (CANARY, base64.b64encode(CANARY.encode()).decode(), CANARY.encode().hex()):
        assert form not in done.stdout + done.stderr


def test_mask_true_in_the_environment(project: Path, tmp_path: Path) -> None:
    done = keyrun(["-e", "masked", "--", PY, "-c", PRINTER], cwd=project, env=clean_env(tmp_path))
    assert done.stdout.splitlines()[0] == "raw <OPENAI_API_KEY>"
    plain = keyrun(["-e", "dev", "--", PY, "-c", PRINTER], cwd=project, env=clean_env(tmp_path))
    assert plain.stdout.splitlines()[0] == f"raw {CANARY}"


def test_mask_keeps_the_terminal(project: Path, tmp_path: Path) -> None:
    code = "import os, sys; print(sys.stdout.isatty(), sys.stdin.isatty(), os.environ['OPENAI_API_KEY'])"
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(project)
        os.execve(PY, [PY, "-m", "keyrun", "-q", "--mask", "--", PY, "-c", code],
                  clean_env(tmp_path))
    output = read_to_end(fd, timeout=30)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert output.replace(b"\r\n", b"\n") == b"True True <OPENAI_API_KEY>\n"


def test_keyrun_errors_are_masked(project: Path, tmp_path: Path) -> None:
    """keyrun's own messages quote the command's name, which may be a secret."""
    env = clean_env(tmp_path)
    missing = keyrun(["run", "--mask", "--allow-argv-secrets", "--", CANARY], cwd=project, env=env)
    assert missing.returncode == 127
    assert missing.stderr.splitlines()[-2:] == [
        "keyrun: error: <OPENAI_API_KEY>: command not found",
        "  hint: check the spelling, or that it is on PATH"]
    bin_dir = tmp_path / "bin"
    write(bin_dir / CANARY, "echo hi\n", mode=0o644)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    denied = keyrun(["run", "--mask", "--allow-argv-secrets", "--", CANARY], cwd=project, env=env)
    assert denied.returncode == 126
    assert denied.stderr.splitlines()[-2:] == [
        f"keyrun: error: {bin_dir}/<OPENAI_API_KEY>: permission denied",
        f"  hint: make it executable: chmod +x {bin_dir}/<OPENAI_API_KEY>"]
    assert_no_leak(CANARY, missing.stdout, missing.stderr, denied.stdout, denied.stderr)


def test_sigterm_to_keyrun_does_not_wait_for_a_process_left_holding_stdout(
        project: Path, tmp_path: Path) -> None:
    """The command dies of the SIGTERM keyrun forwards; the sleep it left in the background
    still holds stdout, and keyrun ends all the same (dying of the same signal)."""
    process = subprocess.Popen(
        [PY, "-m", "keyrun", "run", "--mask", "--", "sh", "-c",
         'sleep 5 & echo "hi $OPENAI_API_KEY"; wait'],
        cwd=project, env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"hi <OPENAI_API_KEY>\n"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == -signal.SIGTERM
        assert time.monotonic() - started < 1.5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
