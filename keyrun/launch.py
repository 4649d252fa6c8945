"""Starting the command: exec when keyrun can step aside, supervise when it must stay.

Everything that touches the command's process lives here (STYLE.md).
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping, Sequence
from typing import NoReturn

from keyrun.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, LaunchError

# Signals whose disposition Python changes at start-up and exec would pass on.
_PYTHON_IGNORED = ("SIGPIPE", "SIGXFSZ")


def restore_signals() -> None:
    """Undo what CPython did to signal handling, so the command starts as from a shell."""
    for name in _PYTHON_IGNORED:
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
    try:
        os.execve(program, list(argv), dict(env))
    except OSError as exc:
        raise _launch_error(argv[0], exc) from None


def _launch_error(program: str, exc: OSError) -> LaunchError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return LaunchError(f"{program}: no such file", EXIT_NOT_FOUND)
    if exc.errno == errno.E2BIG:
        return LaunchError(f"{program}: the environment and arguments are too large for exec",
                           EXIT_NOT_EXECUTABLE, "pass fewer or smaller keys (--only KEY)")
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return LaunchError(f"{program}: cannot execute: {reason}", EXIT_NOT_EXECUTABLE,
                       "check that the file is executable (chmod +x) and is a program")
