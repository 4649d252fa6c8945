"""Staying the parent (SPEC §5): keyrun.launch.supervise as a real process tree."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PY = sys.executable

LAUNCHER = """
import sys
from keyrun.launch import supervise

class Keeper:
    def __init__(self, log):
        self.log = log
        self.renewals = 0
    def first_renewal(self):
        return 0.2
    def renew(self):
        self.renewals += 1
        open(self.log, "a").write("renew\\n")
        return 0.2 if self.renewals < 3 else None
    def release(self):
        open(self.log, "a").write("release\\n")

supervise(sys.argv[2:], dict(__import__("os").environ), Keeper(sys.argv[1]))
"""


def launch(tmp_path: Path, *command: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PY, "-c", LAUNCHER, str(tmp_path / "log"), *command],
                            stdout=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def events(tmp_path: Path) -> list[str]:
    return (tmp_path / "log").read_text().split()


@pytest.mark.parametrize("status", [0, 3, 255])
def test_exit_status_and_release(tmp_path: Path, status: int) -> None:
    process = launch(tmp_path, PY, "-c", f"import time; time.sleep(0.7); raise SystemExit({status})")
    assert process.wait(10) == status
    assert events(tmp_path) == ["renew", "renew", "renew", "release"]


def test_child_killed_by_signal_kills_keyrun_the_same_way(tmp_path: Path) -> None:
    process = launch(tmp_path, PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert process.wait(10) == -signal.SIGTERM
    assert events(tmp_path)[-1] == "release"


def test_sigterm_to_keyrun_is_forwarded_then_released(tmp_path: Path) -> None:
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(5)); "
            "print('ready', flush=True); time.sleep(30)")
    process = launch(tmp_path, PY, "-c", code)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 5
    assert events(tmp_path)[-1] == "release"


def test_sigterm_to_keyrun_when_the_child_dies_of_it(tmp_path: Path) -> None:
    process = launch(tmp_path, "sh", "-c", "echo ready; sleep 30")
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == -signal.SIGTERM
    assert events(tmp_path)[-1] == "release"


def test_not_found_is_127_and_releases(tmp_path: Path) -> None:
    process = launch(tmp_path, "no-such-program-keyrun", stderr=subprocess.PIPE)
    assert process.wait(10) == 1  # LaunchError escapes this bare launcher (the CLI maps it to 127)
    assert events(tmp_path)[-1] == "release"


def test_terminal_ctrl_c_is_not_delivered_twice(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    code = ("import signal, sys, time\n"
            f"n = 0\n"
            "def hit(*a):\n"
            "    global n\n"
            "    n += 1\n"
            f"    open({str(counter)!r}, 'w').write(str(n))\n"
            "signal.signal(signal.SIGINT, hit)\n"
            "print('ready', flush=True)\n"
            "time.sleep(1.5)\n"
            "sys.exit(n)\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: keyrun's launcher on a terminal of its own
        os.execv(PY, [PY, "-c", LAUNCHER, str(tmp_path / "log"), PY, "-c", code])
    output = b""
    deadline = time.monotonic() + 10
    while b"ready" not in output and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            output += os.read(fd, 1024)
    os.write(fd, b"\x03")  # Ctrl-C: the terminal signals the whole foreground group
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert counter.read_text() == "1"
    os.close(fd)


def test_keyrun_is_undumpable_and_the_command_is_not_changed(tmp_path: Path) -> None:
    code = ("import ctypes, resource; libc = ctypes.CDLL(None); "
            "print(libc.prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE))")
    process = launch(tmp_path, PY, "-c", code)
    out, _ = process.communicate(timeout=10)
    import resource

    assert out.decode().strip() == f"1 {resource.getrlimit(resource.RLIMIT_CORE)}"
    probe = subprocess.run(
        [PY, "-c", "import ctypes; from keyrun.launch import make_undumpable; make_undumpable();"
                   " print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout == "0\n"
