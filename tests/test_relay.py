"""The masking relay as a real process tree: pipes, a pseudo-terminal, signals, exit
statuses (issue 6; SPEC §5 "Masking" and "Staying the parent").

keyrun.relay.relay() is driven through a small launcher (the CLI's --mask calls the same)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable
SECRET = "sk-proj-Rel4yT3stS3cretValue0123456789abcdef"
VALUES = {"OPENAI_API_KEY": SECRET, "DB_PASSWORD": "hunter2-correct-horse"}

LAUNCHER = r"""
import json, os, sys, time
from keyrun.errors import LaunchError
from keyrun.mask import Masker, MaskSet
from keyrun.relay import relay

class SlowMasker(Masker):  # masking that takes a while, as a large read on a busy machine
    def feed_parts(self, data):
        time.sleep(SLOW_FEED)
        return super().feed_parts(data)

class SlowMaskSet(MaskSet):
    def stream(self):
        return SlowMasker(self)

class Keeper:
    def __init__(self, log, crash):
        self.log, self.crash = log, crash
    def first_renewal(self):
        return 0.1 if self.log else None
    def renew(self):
        self.note("renew")
        if self.crash:
            raise RuntimeError("renewal failed")
        return 0.2
    def release(self):
        self.note("release")
    def note(self, what):
        if self.log:
            with open(self.log, "a") as log:
                log.write(what + "\n")

values = json.loads(os.environ.pop("TEST_MASK_VALUES"))
keeper = Keeper(os.environ.pop("TEST_LEASE_LOG", ""), os.environ.pop("TEST_CRASH", ""))
SLOW_FEED = float(os.environ.pop("TEST_SLOW_FEED", "0"))
masks = (SlowMaskSet if SLOW_FEED else MaskSet)(values)
try:
    relay(sys.argv[1:], dict(os.environ), masks, keeper)
except LaunchError as exc:
    print(f"keyrun: error: {exc.message}", file=sys.stderr)
    raise SystemExit(exc.exit_code)
"""


def launcher_env(values: Mapping[str, str] = VALUES, **extra: str) -> dict[str, str]:
    env = dict(os.environ, TEST_MASK_VALUES=json.dumps(dict(values)), **extra)
    env.pop("KEYRUN_DEBUG", None)
    return env


def keyrun_argv(*command: str) -> list[str]:
    return [PY, "-c", LAUNCHER, *command]


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def run_piped(command: Sequence[str], *, values: Mapping[str, str] = VALUES,
              stdin: bytes | None = None, timeout: float = 30,
              **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(keyrun_argv(*command), input=stdin, capture_output=True,
                          env=launcher_env(values, **extra), timeout=timeout, check=False)


def wait_for(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# Pipes ----------------------------------------------------------------------------------


def test_stdout_and_stderr_masked_independently_bytes_untouched() -> None:
    code = (
        "import sys\n"
        f"s = {SECRET!r}.encode()\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe\\x00 out ' + s + b'\\r\\n' + s[:9]); sys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'err \\x00' + s + b' \\xc3\\x28 hunter2-correct-horse')\n"
    )
    result = run_piped(py(code))
    assert result.returncode == 0
    assert result.stdout == b"\xff\xfe\x00 out <OPENAI_API_KEY>\r\n" + SECRET.encode()[:9]
    assert result.stderr == b"err \x00<OPENAI_API_KEY> \xc3\x28 <DB_PASSWORD>"


def test_secret_split_across_writes_is_masked() -> None:
    code = (
        "import sys, time\n"
        f"s = {SECRET!r}.encode()\n"
        "for i in range(len(s)):\n"
        "    sys.stdout.buffer.write(s[i:i + 1]); sys.stdout.flush(); time.sleep(0.002)\n"
        "sys.stdout.buffer.write(b'|' + s[:20]); sys.stdout.flush(); time.sleep(0.01)\n"
        "sys.stdout.buffer.write(s[20:] + b'|')\n"
    )
    result = run_piped(py(code))
    assert result.stdout == b"<OPENAI_API_KEY>|<OPENAI_API_KEY>|"


def test_encodings_are_masked_through_the_pipe() -> None:
    code = (
        "import base64, json, sys, urllib.parse\n"
        f"s = {SECRET!r}\n"
        "print(base64.b64encode(('bob:' + s).encode()).decode())\n"
        "print(json.dumps({'k': s}), s.encode().hex(), urllib.parse.quote(s))\n"
    )
    result = run_piped(py(code))
    lines = result.stdout.decode().splitlines()
    assert lines[0].endswith("<OPENAI_API_KEY>")
    assert len(lines[0]) < 30
    assert lines[1] == '{"k": "<OPENAI_API_KEY>"} <OPENAI_API_KEY> <OPENAI_API_KEY>'


# The command writes the start of the secret, then the rest 50 ms later: long before keyrun
# has finished masking the first part (0.5 s), so the command was never silent.
SPLIT_BY_A_BUSY_RELAY = (
    "import sys, time\n"
    f"s = {SECRET!r}.encode()\n"
    "sys.stdout.buffer.write(b'x' * 1000 + s[:20]); sys.stdout.flush()\n"
    "time.sleep(0.05)\n"
    "sys.stdout.buffer.write(s[20:] + b'|'); sys.stdout.flush()\n"
)


def test_busy_relay_does_not_flush_part_of_a_secret() -> None:
    """Silence is measured after masking and writing, and a held prefix is let out only
    when nothing waits to be read."""
    result = run_piped(py(SPLIT_BY_A_BUSY_RELAY), TEST_SLOW_FEED="0.5")
    assert result.returncode == 0
    assert result.stdout == b"x" * 1000 + b"<OPENAI_API_KEY>|"


def test_slow_reader_does_not_make_keyrun_flush_part_of_a_secret() -> None:
    """keyrun blocked writing to a reader slower than the command: the rest of a secret
    waits in the pipe meanwhile, which is not silence. keyrun's first read is its pipe's
    1 MiB, and ends inside the secret."""
    code = (
        "import sys\n"
        f"s = {SECRET!r}.encode()\n"
        "sys.stdout.buffer.write(b'x' * ((1 << 20) - 10) + s + b'|')\n"
    )
    process = subprocess.Popen(keyrun_argv(*py(code)), stdout=subprocess.PIPE,
                               env=launcher_env())
    assert process.stdout is not None
    output = b""
    while chunk := os.read(process.stdout.fileno(), 1 << 16):
        output += chunk
        time.sleep(0.05)
    assert wait_for(process) == 0
    assert output == b"x" * ((1 << 20) - 10) + b"<OPENAI_API_KEY>|"


def test_stderr_flows_while_stdout_is_not_read() -> None:
    """stdout and stderr are filtered independently: a reader that does not take the
    command's stdout holds back neither its stderr nor keyrun's masking of it."""
    code = (
        "import os, threading, time\n"
        f"s = {SECRET!r}.encode()\n"
        "def log():\n"
        "    for i in range(5):\n"
        "        os.write(2, b'err %d ' % i + s + b'\\n'); time.sleep(0.1)\n"
        "threading.Thread(target=log).start()\n"
        "os.write(1, b'x' * 8_000_000 + s)\n"
    )
    process = subprocess.Popen(keyrun_argv(*py(code)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=launcher_env())
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        errors = b""
        end = time.monotonic() + 10
        while errors.count(b"\n") < 5 and time.monotonic() < end:
            if select.select([process.stderr], [], [], 0.1)[0]:
                errors += os.read(process.stderr.fileno(), 4096)
        assert errors == b"".join(b"err %d <OPENAI_API_KEY>\n" % i for i in range(5))
        assert process.poll() is None  # stdout, all of it waiting, was never read
        assert process.stdout.read() == b"x" * 8_000_000 + b"<OPENAI_API_KEY>"
    finally:
        assert wait_for(process) == 0


def test_stdin_is_inherited_directly_on_pipes() -> None:
    code = "import os, sys; print(os.isatty(0), os.isatty(1), sys.stdin.read().upper())"
    result = run_piped(py(code), stdin=b"hello")
    assert result.stdout == b"False False HELLO\n"


def test_prompt_that_starts_like_a_secret_shows_only_its_first_four_bytes() -> None:
    """A prompt ending in 6 bytes that begin the value: after a silence, the first 4 of
    them show (SPEC §5 allows no more); the rest waits until it is not the value."""
    code = (
        "import sys\n"
        "sys.stdout.write('key: sk-pro'); sys.stdout.flush()\n"
        "line = sys.stdin.readline()\n"
        "print('|' + line.strip())\n"
    )
    process = subprocess.Popen(keyrun_argv(*py(code)), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=launcher_env())
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        shown = b""
        while shown != b"key: sk-p":
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, f"the prompt was held: {shown!r}"
            shown += os.read(process.stdout.fileno(), 100)
        assert not select.select([process.stdout], [], [], 0.3)[0]  # "ro" is held
        process.stdin.write(SECRET.encode() + b"\n")
        process.stdin.close()
        assert process.stdout.read() == b"ro|<OPENAI_API_KEY>\n"
    finally:
        assert wait_for(process) == 0


@pytest.mark.parametrize("status", [0, 1, 3, 255])
def test_exit_status(status: int) -> None:
    assert run_piped(py(f"raise SystemExit({status})")).returncode == status


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV,
                                    signal.SIGUSR1])
def test_death_by_signal_is_repeated(number: int) -> None:
    code = f"import os, sys; print('bye'); sys.stdout.flush(); os.kill(os.getpid(), {number})"
    result = run_piped(py(code))
    assert result.returncode == -number
    assert result.stdout == b"bye\n"


def test_command_not_found_and_not_executable(tmp_path: Path) -> None:
    log = tmp_path / "leases"
    missing = run_piped(["keyrun-no-such-command"], TEST_LEASE_LOG=str(log))
    assert missing.returncode == 127
    assert b"keyrun-no-such-command: command not found" in missing.stderr
    assert log.read_text() == "release\n"
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    assert run_piped([str(script)]).returncode == 126


LATE_WRITER = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "try:\n"
    "    os.write(1, b'late ' + os.environ['SECRET'].encode() + b'\\n')\n"
    "except BrokenPipeError:\n"
    "    open(sys.argv[1], 'w').write('EPIPE')\n"
    "else:\n"
    "    open(sys.argv[1], 'w').write('written')\n"
)


def test_keyrun_ends_with_the_command_not_with_what_it_left_behind(tmp_path: Path) -> None:
    """What the command wrote before it ended is relayed whole; a process it left in the
    background is not waited for, and what that writes later finds the pipe closed
    (EPIPE; SIGPIPE unless it ignores it)."""
    report = tmp_path / "report"
    code = (f'{PY} -c "$LATE" {report} 1.5 & '
            f"{PY} -c \"import os; os.write(1, b'x' * 3_000_000)\"; echo early {SECRET}; exit 7")
    started = time.monotonic()
    result = run_piped(["sh", "-c", code], LATE=LATE_WRITER, SECRET=SECRET)
    took = time.monotonic() - started
    assert result.returncode == 7
    assert result.stdout == b"x" * 3_000_000 + b"early <OPENAI_API_KEY>\n"
    assert took < 1.4, took  # the background process still sleeps then
    end = time.monotonic() + 10
    while not report.exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert report.read_text() == "EPIPE"


def test_a_chatty_background_process_does_not_hold_keyrun() -> None:
    """It keeps writing after the command ended: keyrun stops reading within
    LEFTOVER_LIMIT all the same, and the writer then dies of SIGPIPE."""
    code = "(while :; do echo x; sleep 0.01; done) & echo started; exit 5"
    started = time.monotonic()
    result = run_piped(["sh", "-c", code])
    assert result.returncode == 5
    assert time.monotonic() - started < 6  # 1 s limit, with room for a loaded machine
    lines = result.stdout.splitlines()
    assert lines.count(b"started") == 1
    assert set(lines) == {b"started", b"x"}


def test_reader_going_away_gives_the_command_sigpipe() -> None:
    process = subprocess.Popen(keyrun_argv("yes", SECRET),
                               stdout=subprocess.PIPE, env=launcher_env())
    assert process.stdout is not None
    assert process.stdout.readline() == b"<OPENAI_API_KEY>\n"
    process.stdout.close()
    assert wait_for(process) == -signal.SIGPIPE


def test_large_output_is_exact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    block = bytes(range(256)) * 64 + b"\n" + SECRET.encode() + b"\r\n"
    data.write_bytes(block * 2000)
    result = run_piped(["cat", str(data)])
    assert result.returncode == 0
    expected = (bytes(range(256)) * 64 + b"\n<OPENAI_API_KEY>\r\n") * 2000
    assert result.stdout == expected


def test_leases_renewed_while_relaying_and_released_after(tmp_path: Path) -> None:
    log = tmp_path / "leases"
    result = run_piped(py("import time; time.sleep(0.5); print('done')"),
                       TEST_LEASE_LOG=str(log))
    assert result.stdout == b"done\n"
    events = log.read_text().split()
    assert events[-1] == "release"
    assert events.count("renew") >= 2


def test_leases_released_when_the_command_ends_not_when_its_output_is_read(
        tmp_path: Path) -> None:
    """The leases go when the command ends (issue 4), while keyrun still writes what it
    wrote to a reader that has not taken it yet."""
    log = tmp_path / "leases"
    code = f"{PY} -c \"import os; os.write(1, b'x' * 1_500_000)\"; exit 4"
    process = subprocess.Popen(keyrun_argv("sh", "-c", code),
                               stdout=subprocess.PIPE, env=launcher_env(TEST_LEASE_LOG=str(log)))
    assert process.stdout is not None
    assert process.stdout.read(10) == b"x" * 10
    deadline = time.monotonic() + 10
    while "release" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None  # more than the test's pipe holds: still writing
    assert log.read_text().split()[-1] == "release"
    assert process.stdout.read() == b"x" * (1_500_000 - 10)
    assert wait_for(process) == 4
    events = log.read_text().split()
    assert events.count("release") == 1
    assert events[-1] == "release"  # no renewal after it


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_keyrun_does_not_wait_for_what_the_command_left_behind(
        number: int, tmp_path: Path) -> None:
    """keyrun told to end: the command gets the signal and dies; a process it left holding
    the pipes does not keep keyrun (and its leases) alive."""
    log = tmp_path / "leases"
    code = f"sleep 5 & echo hi {SECRET}; wait"
    process = subprocess.Popen(keyrun_argv("sh", "-c", code), stdout=subprocess.PIPE,
                               env=launcher_env(TEST_LEASE_LOG=str(log)))
    assert process.stdout is not None
    assert process.stdout.readline() == b"hi <OPENAI_API_KEY>\n"
    started = time.monotonic()
    process.send_signal(number)
    assert wait_for(process) == -number
    assert time.monotonic() - started < 1.5
    assert log.read_text().split().count("release") == 1


SIGNAL_REPORTER = (
    "import signal, sys, time\n"
    "got = []\n"
    "for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,\n"
    "          signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):\n"
    "    signal.signal(n, lambda n, f: got.append(signal.Signals(n).name))\n"
    "print('ready', flush=True)\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    time.sleep(0.05)\n"
    "print(' '.join(got), flush=True)\n"
)


def test_signals_sent_to_keyrun_are_forwarded_once() -> None:
    process = subprocess.Popen(keyrun_argv(*py(SIGNAL_REPORTER), "1.5"),
                               stdout=subprocess.PIPE, env=launcher_env())
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
        process.send_signal(number)
        time.sleep(0.05)
    assert process.stdout.readline() == b"SIGINT SIGTERM SIGHUP SIGQUIT SIGUSR1 SIGUSR2 SIGWINCH\n"
    assert wait_for(process) == 0


# A pseudo-terminal held by the test -----------------------------------------------------


class Terminal:
    """keyrun's launcher with a pseudo-terminal as its controlling terminal (as a shell
    would start it); stdout, stderr and stdin each on the terminal or on a pipe."""

    def __init__(self, command: Sequence[str], *, stdout_tty: bool = True,
                 stderr_tty: bool = True, stdin_tty: bool = True, size: tuple[int, int] = (24, 80),
                 values: Mapping[str, str] = VALUES, as_job: bool = False,
                 background: bool = False, editor: bool = False, **extra: str) -> None:
        self.master, self.slave = os.openpty()
        self.resize(*size, fd=self.slave)
        self.before = termios.tcgetattr(self.slave)
        self.pipes: dict[int, int] = {}
        child_ends: dict[int, int] = {}
        for target, tty in ((0, stdin_tty), (1, stdout_tty), (2, stderr_tty)):
            if not tty:
                read_end, write_end = os.pipe()
                self.pipes[target] = write_end if target == 0 else read_end
                child_ends[target] = read_end if target == 0 else write_end
        env = launcher_env(values, **extra)
        argv = keyrun_argv(*command)
        job_read, job_write = os.pipe()
        control_read, self.control = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(self.master)
                os.login_tty(self.slave)
                for target, fd in child_ends.items():
                    os.dup2(fd, target)
                if as_job:
                    _job_control_shell(argv, env, job_write, control_read, background, editor)
                os.write(job_write, str(os.getpid()).encode())
                os.execve(PY, argv, env)
            finally:
                os._exit(127)
        for fd in (*child_ends.values(), job_write, control_read):
            os.close(fd)
        self.job = int(os.read(job_read, 32))  # keyrun's pid
        os.close(job_read)
        self.output = {1: b"", 2: b""}
        self.terminal = b""
        self.status: int | None = None
        self.cpu = 0.0

    def resize(self, rows: int, cols: int, fd: int | None = None) -> None:
        import fcntl

        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def shell(self, command: bytes) -> None:
        """Job control by the shell of ``as_job``: b"bg", b"fg" (of a running job)."""
        os.write(self.control, command[:1])

    def raw(self) -> bool:
        """In keyrun's raw mode (a line editor's keeps ISIG: Ctrl-C still interrupts)."""
        return not termios.tcgetattr(self.slave)[3] & (termios.ICANON | termios.ISIG)

    def _pump(self, timeout: float) -> None:
        sources = [self.master, *(fd for t, fd in self.pipes.items() if t != 0)]
        ready, _, _ = select.select(sources, [], [], timeout)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if fd == self.master:
                self.terminal += data
            else:
                target = next(t for t, f in self.pipes.items() if f == fd)
                self.output[target] += data

    def expect(self, needle: bytes, timeout: float = 15, where: int | None = None) -> None:
        end = time.monotonic() + timeout
        while needle not in (self.terminal if where is None else self.output[where]):
            assert time.monotonic() < end, (needle, self.terminal, self.output)
            self._pump(0.05)

    def wait(self, timeout: float = 20) -> int:
        end = time.monotonic() + timeout
        while self.status is None:
            assert time.monotonic() < end, (self.terminal, self.output)
            self._pump(0.05)
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                self.cpu = usage.ru_utime + usage.ru_stime
        for _ in range(5):
            self._pump(0.02)
        return -os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else (
            os.WEXITSTATUS(self.status))

    def restored(self) -> bool:
        return termios.tcgetattr(self.slave) == self.before

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for fd in (self.master, self.slave, self.control, *self.pipes.values()):
            os.close(fd)


def _job_control_shell(argv: Sequence[str], env: Mapping[str, str], report: int,
                       control: int, background: bool, editor: bool) -> None:
    """In the forked session leader: start keyrun as a shell starts a job (its own process
    group, in the terminal's foreground unless ``background``, a parent in the same
    session, so Ctrl-Z can stop it), do as told on ``control`` (``Terminal.shell``), then
    end as keyrun ends. ``editor``: the terminal is in the mode of a shell's line editor
    (readline's) while the job runs in the background."""
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    cooked = termios.tcgetattr(0)
    if editor:
        mode = termios.tcgetattr(0)
        mode[0] &= ~termios.ICRNL
        mode[3] &= ~(termios.ICANON | termios.ECHO)
        termios.tcsetattr(0, termios.TCSANOW, mode)
    job = os.fork()
    if job == 0:
        os.setpgid(0, 0)
        if not background:
            os.tcsetpgrp(1, os.getpid())
        signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        os.execve(PY, list(argv), dict(env))
    with contextlib.suppress(OSError):
        os.setpgid(job, job)
    os.write(report, str(job).encode())
    while not (ended := os.waitpid(job, os.WNOHANG))[0]:
        if not select.select([control], [], [], 0.02)[0]:
            continue
        command = os.read(control, 1)
        if command == b"b":  # bg: the shell takes its terminal back, the job goes on
            os.tcsetpgrp(0, os.getpgrp())
            os.killpg(job, signal.SIGCONT)
        elif command == b"f":  # fg of a running job: the terminal only, no signal
            termios.tcflush(0, termios.TCIFLUSH)  # what was typed meanwhile was the shell's
            termios.tcsetattr(0, termios.TCSANOW, cooked)
            os.tcsetpgrp(0, job)
    os._exit(os.waitstatus_to_exitcode(ended[1]) & 0xFF)


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_for_state(pid: int, stopped: bool, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while (process_state(pid) == "T") != stopped:
        assert time.monotonic() < end, (pid, process_state(pid))
        time.sleep(0.02)


Start = Callable[..., Terminal]


@pytest.fixture
def terminals() -> Iterator[Start]:
    opened: list[Terminal] = []

    def start(command: Sequence[str], **options: Any) -> Terminal:
        terminal = Terminal(command, **options)
        opened.append(terminal)
        return terminal

    yield start
    for terminal in opened:
        terminal.close()


def test_command_sees_a_terminal_and_its_size(terminals: Start) -> None:
    code = ("import os, sys\n"
            "print(os.isatty(0), os.isatty(1), os.isatty(2), tuple(os.get_terminal_size()))\n"
            f"print({SECRET!r}); sys.stderr.write('err hunter2-correct-horse\\n')\n"
            "raise SystemExit(5)")
    terminal = terminals(py(code), size=(33, 101))
    assert terminal.wait() == 5
    assert terminal.terminal == (b"True True True (101, 33)\r\n<OPENAI_API_KEY>\r\n"
                                 b"err <DB_PASSWORD>\r\n")
    assert terminal.restored()


def test_window_size_change_reaches_the_command(terminals: Start) -> None:
    code = ("import os, signal, time\n"
            "signal.signal(signal.SIGWINCH, lambda *a: print('size', tuple(os.get_terminal_size()),"
            " flush=True))\n"
            "print('ready', flush=True)\n"
            "time.sleep(1.5)\n")
    terminal = terminals(py(code))
    terminal.expect(b"ready")
    terminal.resize(40, 132)
    terminal.expect(b"size (132, 40)")
    assert terminal.wait() == 0
    assert terminal.terminal.count(b"size") == 1


def test_keys_are_relayed_and_echo_is_masked(terminals: Start) -> None:
    code = "name = input('name? '); print('got', len(name))"
    terminal = terminals(py(code))
    terminal.expect(b"name? ")
    terminal.type(SECRET.encode() + b"\r")
    assert terminal.wait() == 0
    assert terminal.terminal == b"name? <OPENAI_API_KEY>\r\ngot %d\r\n" % len(SECRET)
    assert terminal.restored()


def test_raw_mode_while_relaying(terminals: Start) -> None:
    terminal = terminals(py("import time; print('ready', flush=True); time.sleep(1)"))
    terminal.expect(b"ready")
    lflag = termios.tcgetattr(terminal.slave)[3]
    assert not lflag & termios.ICANON
    assert not lflag & termios.ECHO
    assert terminal.wait() == 0
    assert terminal.restored()


def test_ctrl_c_reaches_the_command_once(terminals: Start) -> None:
    terminal = terminals([*py(SIGNAL_REPORTER), "1.5"])
    terminal.expect(b"ready")
    terminal.type(b"\x03")
    assert terminal.wait() == 0
    assert terminal.terminal.endswith(b"SIGINT\r\n")
    assert terminal.restored()


def test_ctrl_c_on_pipes_is_not_delivered_twice(terminals: Start) -> None:
    """stdout is a pipe: the command shares keyrun's process group, the terminal's
    SIGINT reaches it directly, and keyrun must not forward a second one."""
    terminal = terminals([*py(SIGNAL_REPORTER), "1.5"], stdout_tty=False)
    terminal.expect(b"ready", where=1)
    terminal.type(b"\x03")
    assert terminal.wait() == 0
    assert terminal.output[1] == b"ready\nSIGINT\n"


def test_ctrl_c_kills_the_command_and_keyrun_dies_the_same(terminals: Start) -> None:
    terminal = terminals(py("import time; print('ready', flush=True); time.sleep(10)"))
    terminal.expect(b"ready")
    terminal.type(b"\x03")
    assert terminal.wait() == -signal.SIGINT
    assert b"KeyboardInterrupt" in terminal.terminal
    assert terminal.restored()


def test_signal_from_a_process_is_forwarded_on_a_terminal(terminals: Start) -> None:
    terminal = terminals(py("import time; print('ready', flush=True); time.sleep(10)"))
    terminal.expect(b"ready")
    os.kill(terminal.pid, signal.SIGTERM)
    assert terminal.wait() == -signal.SIGTERM
    assert terminal.restored()


def test_stderr_redirected_stays_a_pipe(terminals: Start) -> None:
    code = ("import os, sys\n"
            "print(os.isatty(1), os.isatty(2))\n"
            f"sys.stderr.write('e {SECRET}')\n")
    terminal = terminals(py(code), stderr_tty=False)
    assert terminal.wait() == 0
    assert terminal.terminal == b"True False\r\n"
    assert terminal.output[2] == b"e <OPENAI_API_KEY>"


def test_stdin_not_a_terminal_is_inherited(terminals: Start) -> None:
    code = "import os, sys; print(os.isatty(0), os.isatty(1), sys.stdin.read())"
    terminal = terminals(py(code), stdin_tty=False)
    os.write(terminal.pipes[0], b"piped")
    os.close(terminal.pipes.pop(0))
    assert terminal.wait() == 0
    assert terminal.terminal == b"False True piped\r\n"  # one \r: by keyrun's terminal


def test_busy_relay_does_not_flush_part_of_a_secret_on_a_terminal(terminals: Start) -> None:
    terminal = terminals(py(SPLIT_BY_A_BUSY_RELAY), TEST_SLOW_FEED="0.5")
    assert terminal.wait() == 0
    assert terminal.terminal == b"x" * 1000 + b"<OPENAI_API_KEY>|"


def test_ctrl_z_stops_the_command_and_keyrun_as_a_job(terminals: Start) -> None:
    """Ctrl-Z on the pseudo-terminal stops the command; keyrun gives its terminal back and
    stops too, so the shell regains it; continued, keyrun takes the terminal again and
    continues the command."""
    code = ("import os, time\n"
            "print('ready', os.getpid(), flush=True)\n"
            "for i in range(6):\n"
            "    time.sleep(0.1)\n"
            "print('done', flush=True)\n")
    terminal = terminals(py(code), as_job=True)
    # (other output may come first: gRPC, loaded by earlier tests, logs about fork())
    end = time.monotonic() + 15
    while (found := re.search(rb"ready (\d+)\r\n", terminal.terminal)) is None:
        assert time.monotonic() < end, terminal.terminal
        terminal._pump(0.05)
    command = int(found.group(1))
    terminal.type(b"\x1a")
    wait_for_state(terminal.job, stopped=True)
    assert process_state(command) == "T"
    assert terminal.restored()
    time.sleep(1)
    assert process_state(command) == "T"
    assert b"done" not in terminal.terminal
    os.killpg(terminal.job, signal.SIGCONT)  # what fg does
    wait_for_state(command, stopped=False)
    assert not termios.tcgetattr(terminal.slave)[3] & termios.ICANON  # raw again
    terminal.expect(b"done")
    assert terminal.wait() == 0
    assert terminal.restored()


def never_stopped(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process_state(pid) == "T":
            return False
        time.sleep(0.02)
    return True


def test_keys_typed_at_the_shell_after_bg_do_not_stop_keyrun(terminals: Start) -> None:
    """Ctrl-Z, then bg: keyrun runs on in the background and leaves the keyboard (and the
    terminal's mode) to the shell; fg: it takes both again."""
    code = "print('ready', flush=True); line = input('line? '); print('got', line)"
    terminal = terminals(py(code), as_job=True)
    terminal.expect(b"line? ")
    terminal.type(b"\x1a")
    wait_for_state(terminal.job, stopped=True)
    terminal.shell(b"bg")
    wait_for_state(terminal.job, stopped=False)
    terminal.type(b"echo typed at the shell\r")
    assert never_stopped(terminal.job, 1.0)  # no read of the shell's keys, no SIGTTIN
    assert terminal.restored()
    terminal.shell(b"fg")
    end = time.monotonic() + 10
    while not terminal.raw():
        assert time.monotonic() < end
        time.sleep(0.02)
    terminal.type(b"abc\r")
    assert terminal.wait() == 0
    assert terminal.terminal == (b"ready\r\nline? ^Z"  # echoed by the command's terminal
                                 b"echo typed at the shell\r\n"  # by keyrun's, for the shell
                                 b"abc\r\ngot abc\r\n")
    assert terminal.restored()


def test_what_is_held_when_the_command_stops_shows_before_keyrun_stops(
        terminals: Start) -> None:
    """A command that stops itself right after the first bytes of a value: keyrun lets out
    what the release policy allows (4 bytes) before stopping, as after any silence, not
    once it runs again (the ^Z a terminal echoes ends in a byte that may begin a value)."""
    code = ("import os, signal, sys; sys.stdout.write('held: sk-p'); sys.stdout.flush(); "
            "os.kill(os.getpid(), signal.SIGTSTP); print(' and on')")
    terminal = terminals(py(code), as_job=True)
    wait_for_state(terminal.job, stopped=True)
    terminal._pump(0.3)
    assert terminal.terminal == b"held: sk-p"
    terminal.shell(b"bg")  # continued in the background, it writes the rest and ends
    assert terminal.wait() == 0
    # in the background the shell's cooked mode has the terminal: \r\n arrives as \r\r\n
    assert terminal.terminal.replace(b"\r", b"") == b"held: sk-p and on\n"
    assert terminal.restored()


def test_started_in_the_background_then_fg_gets_the_keyboard(terminals: Start) -> None:
    """Started with &, while the shell's line editor has the terminal: the command's
    pseudo-terminal is line-buffered all the same, and keys reach it after fg."""
    code = "print('GOT', input('name? '))"
    terminal = terminals(py(code), as_job=True, background=True, editor=True)
    terminal.expect(b"name? ")
    assert never_stopped(terminal.job, 0.5)
    assert not terminal.raw()  # the mode of the shell's editor, left alone
    terminal.shell(b"fg")
    end = time.monotonic() + 10
    while not terminal.raw():
        assert time.monotonic() < end
        time.sleep(0.02)
    terminal.type(b"bob\r")
    assert terminal.wait() == 0
    assert terminal.terminal == b"name? bob\r\nGOT bob\r\n"
    assert terminal.restored()


def test_prompt_on_a_terminal_shows_only_the_first_four_bytes_of_a_value(
        terminals: Start) -> None:
    code = "x = input('key: sk-pro'); print('|' + x)"
    terminal = terminals(py(code))
    terminal.expect(b"key: sk-p", timeout=5)
    terminal._pump(0.3)
    assert terminal.terminal == b"key: sk-p"
    terminal.type(b"j-abc\r")  # echoed: "sk-proj-a" is not the value
    assert terminal.wait() == 0
    assert terminal.terminal == b"key: sk-proj-abc\r\n|j-abc\r\n"


def test_terminal_restored_when_keyrun_crashes(terminals: Start, tmp_path: Path) -> None:
    terminal = terminals(py("import time; time.sleep(3)"),
                         TEST_LEASE_LOG=str(tmp_path / "log"), TEST_CRASH="1")
    assert terminal.wait() == 1
    assert b"RuntimeError: renewal failed" in terminal.terminal
    assert (tmp_path / "log").read_text() == "renew\nrelease\n"
    assert terminal.restored()


def test_terminal_restored_when_the_command_dies_of_a_signal(terminals: Start) -> None:
    terminal = terminals(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert terminal.wait() == -signal.SIGKILL
    assert terminal.restored()


def test_output_written_just_before_exit_arrives_whole(terminals: Start) -> None:
    code = ("import sys, time\n"
            "time.sleep(0.6)\n"
            f"sys.stdout.write(('x' * 99 + '\\n') * 2000 + {SECRET!r})\n")
    terminal = terminals(py(code))
    assert terminal.wait() == 0
    assert terminal.terminal == (b"x" * 99 + b"\r\n") * 2000 + b"<OPENAI_API_KEY>"


def test_process_left_holding_the_terminal_does_not_hold_keyrun(terminals: Start) -> None:
    start = time.monotonic()
    terminal = terminals(["sh", "-c", "(trap '' HUP; sleep 4) & echo started"])
    assert terminal.wait(timeout=10) == 0
    assert time.monotonic() - start < 3
    assert terminal.terminal == b"started\r\n"


def test_keys_the_command_does_not_read_wait_without_spinning(terminals: Start) -> None:
    terminal = terminals(py("import time; print('ready', flush=True); time.sleep(1.5)"))
    terminal.expect(b"ready")
    os.set_blocking(terminal.master, False)
    typed = 0
    for _ in range(50):
        try:
            typed += os.write(terminal.master, b"a" * 1000)
        except BlockingIOError:
            break
    assert typed >= 4000
    assert terminal.wait() == 0
    assert terminal.cpu < 1.0  # keyrun waited for the pseudo-terminal, it did not poll
    assert terminal.restored()
