"""Starting the command: exec when keyrun can step aside, supervise when it must stay.

Everything that touches the command's process lives here (STYLE.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol

from keyrun.errors import EXIT_KEYRUN_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, LaunchError

# Signals whose disposition Python changes at start-up and exec would pass on.
PYTHON_IGNORED = ("SIGPIPE", "SIGXFSZ")

# Standard streams the caller closed (``keyrun -- cmd <&-``): open on /dev/null while
# keyrun runs, closed again for the command.
CLOSED_STDIO: list[int] = []


def open_missing_stdio() -> None:
    """Give keyrun a stdin, stdout and stderr even when the caller closed one, and
    remember which, so the command starts with the same ones closed, as under env(1)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
            CLOSED_STDIO.append(fd)
    if CLOSED_STDIO:
        if sys.stdin is None:
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as keyrun
        if sys.stdout is None:
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        if sys.stderr is None:
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def close_actions(keep: Sequence[int] = ()) -> list[tuple[int, ...]]:
    """posix_spawn file actions that close again what the caller had closed."""
    return [(os.POSIX_SPAWN_CLOSE, fd) for fd in CLOSED_STDIO if fd not in keep]


def restore_signals() -> None:
    """Undo what CPython did to signal handling, so the command starts as from a shell."""
    for name in PYTHON_IGNORED:
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, [])


def find_program(program: str, env: Mapping[str, str]) -> str:
    """The path exec would run, or LaunchError with 127 / 126 as env(1) does."""
    if "/" in program:
        if not os.path.exists(program):
            raise LaunchError(f"{program}: no such file", EXIT_NOT_FOUND)
        return program
    denied = None
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = denied or candidate
    if denied is not None:
        raise LaunchError(f"{denied}: permission denied", EXIT_NOT_EXECUTABLE,
                          f"make it executable: chmod +x {denied}")
    raise LaunchError(f"{program}: command not found", EXIT_NOT_FOUND,
                      "check the spelling, or that it is on PATH")


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace keyrun with the command. Returns only by raising LaunchError."""
    program = find_program(argv[0], env)
    restore_signals()
    sys.stdout.flush()
    sys.stderr.flush()
    for fd in CLOSED_STDIO:
        os.close(fd)
    try:
        try:
            os.execve(program, list(argv), dict(env))
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
            os.execve(*as_shell_script(program, argv), dict(env))
    except OSError as exc:
        raise launch_error(argv[0], exc, program, env) from None


def as_shell_script(program: str, argv: Sequence[str]) -> tuple[str, list[str]]:
    """An executable file without a ``#!`` line is a shell script, as execvp and env(1)
    treat it."""
    return "/bin/sh", ["/bin/sh", program, *argv[1:]]


def spawn(program: str, argv: Sequence[str], env: Mapping[str, str], **options: Any) -> int:
    """os.posix_spawn, with execvp's fallback for a script without ``#!``."""
    try:
        return os.posix_spawn(program, list(argv), dict(env), **options)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        shell, shell_argv = as_shell_script(program, argv)
        return os.posix_spawn(shell, shell_argv, dict(env), **options)


def launch_error(program: str, exc: OSError, path: str | None = None,
                 env: Mapping[str, str] | None = None) -> LaunchError:
    """What exec's ``exc`` means for ``program`` (found at ``path``), as env(1) reports it:
    127 when it or its interpreter is missing, 126 when it cannot be run."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if path is not None and os.path.exists(path):
            return LaunchError(f"{program}: the interpreter its #! line names was not found",
                               EXIT_NOT_FOUND, f"check the first line of {path}")
        return LaunchError(f"{program}: no such file", EXIT_NOT_FOUND)
    if exc.errno == errno.E2BIG:
        largest = sorted(env or {}, key=lambda name: -len(env[name]) if env else 0)[:3]
        sizes = ", ".join(f"{name} ({len(name) + len((env or {})[name].encode()) + 2} bytes)"
                          for name in largest)
        return LaunchError(
            f"{program}: the environment and arguments together are too large for exec"
            + (f"; the largest variables: {sizes}" if sizes else ""),
            EXIT_KEYRUN_FAILED, "pass fewer or smaller keys (--only KEY), or --clean-env")
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return LaunchError(f"{program}: cannot execute: {reason}", EXIT_NOT_EXECUTABLE,
                       "check that the file is executable (chmod +x) and is a program")


# Staying the parent (SPEC §5): when something must happen after the command ends
# (leases to revoke), keyrun spawns the command and waits, forwarding signals.

FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
# si_code values of signals sent by a process (kill, sigqueue, tkill); a terminal's
# Ctrl-C comes from the kernel and already reached the command's process group.
SENT_BY_PROCESS = (0, -1, -6)


class Supervisor(Protocol):
    """What a supervised run does besides waiting: renew leases, release them at exit."""

    def first_renewal(self) -> float | None:
        """Seconds until the first renewal is due, or None."""

    def renew(self) -> float | None:
        """Renew what needs it; return seconds until the next renewal, or None."""

    def release(self) -> None:
        """Called once, after the command has ended, before keyrun exits."""


def make_undumpable() -> None:
    """No core file and no ptrace by other users' processes while secrets are in memory.

    PR_SET_DUMPABLE does not outlive exec, so the command itself is unaffected."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def supervise(argv: Sequence[str], env: Mapping[str, str], supervisor: Supervisor) -> NoReturn:
    """Run the command as keyrun's child, then exit as it did (status, or the same signal)."""
    try:
        program = find_program(argv[0], env)
    except LaunchError:
        supervisor.release()
        raise
    make_undumpable()
    watched = {getattr(signal, name) for name in FORWARDED if hasattr(signal, name)}
    watched.add(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an inherited SIG_IGN would reap it for us
    defaults = watched | {getattr(signal, name) for name in PYTHON_IGNORED}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        pid = spawn(program, argv, env, setsigmask=(), setsigdef=defaults,
                    file_actions=close_actions())
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        supervisor.release()
        raise launch_error(argv[0], exc, program, env) from None
    try:
        status = _wait(pid, watched, supervisor)
    finally:
        supervisor.release()
    exit_like(status)


def _wait(pid: int, watched: set[int], supervisor: Supervisor) -> int:
    delay = supervisor.first_renewal()
    renew_at = None if delay is None else time.monotonic() + delay
    while True:
        info: signal.struct_siginfo | None
        if renew_at is None:
            info = signal.sigwaitinfo(watched)
        else:
            info = signal.sigtimedwait(watched, max(0.0, renew_at - time.monotonic()))
        if info is None:
            delay = supervisor.renew()
            renew_at = None if delay is None else time.monotonic() + delay
            continue
        if info.si_signo == signal.SIGCHLD:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return status
        elif info.si_code in SENT_BY_PROCESS:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)


def exit_like(status: int) -> NoReturn:
    """Exit with the command's status; if a signal killed it, die of the same signal."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.WIFSIGNALED(status):
        import resource

        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # dying of SIGQUIT must not dump
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's disposition is fixed
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status))
