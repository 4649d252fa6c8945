"""Starting the command: exec when keyrun can step aside, supervise when it must stay.

Everything that touches the command's process lives here (STYLE.md).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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
        give_back_core_limit()
        execute(program, argv, env)
    except OSError as exc:
        make_undumpable()
        raise launch_error(argv[0], exc, program, env) from None


def execute(program: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """execve, with execvp's fallback for a script without ``#!``; raises OSError."""
    try:
        os.execve(program, list(argv), dict(env))
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        os.execve(*as_shell_script(program, argv), dict(env))


def as_shell_script(program: str, argv: Sequence[str]) -> tuple[str, list[str]]:
    """An executable file without a ``#!`` line is a shell script, as execvp and env(1)
    treat it."""
    return "/bin/sh", ["/bin/sh", program, *argv[1:]]


def spawn(program: str, argv: Sequence[str], env: Mapping[str, str], *,
          file_actions: Sequence[tuple[int, ...]] = (), setsigdef: Iterable[int] = ()) -> int:
    """Start the command as keyrun's child, as ``os.posix_spawn`` would with these
    ``file_actions`` and signal defaults and an empty signal mask; with execvp's fallback
    for a script without ``#!``; raises OSError if it cannot be started.

    On Linux the child is forked, so that it can ask to die with keyrun (``die_with``)
    before exec: posix_spawn cannot."""
    if not _LINUX:
        give_back_core_limit()  # for posix_spawn to pass on; keyrun's own is lowered again
        try:
            return _posix_spawn(program, argv, env, file_actions=file_actions,
                                setsigmask=(), setsigdef=tuple(setsigdef))
        finally:
            make_undumpable()
    parent = os.getpid()
    defaults = tuple(setsigdef)
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        def prepare() -> None:
            die_with(parent)
            _apply(file_actions)
            for number in defaults:
                signal.signal(number, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])

        exec_or_report(program, argv, env, report_write, prepare)
    os.close(report_write)
    failure = read_all(report_read)
    if failure:
        os.waitpid(pid, 0)
        raise OSError(int(failure), os.strerror(int(failure)))
    return pid


def exec_or_report(program: str, argv: Sequence[str], env: Mapping[str, str], report: int,
                   prepare: Callable[[], None]) -> NoReturn:
    """In a child keyrun forked: ``prepare``, then exec the command with keyrun's original
    core limit; a failure is written to ``report`` as an errno, and the child ends."""
    try:
        prepare()
        give_back_core_limit()
        execute(program, argv, env)
    except OSError as exc:
        os.write(report, str(exc.errno or errno.EIO).encode())
    except BaseException:
        os.write(report, str(errno.EIO).encode())
    finally:
        os._exit(127)


def _posix_spawn(program: str, argv: Sequence[str], env: Mapping[str, str],
                 **options: Any) -> int:
    try:
        return os.posix_spawn(program, list(argv), dict(env), **options)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        shell, shell_argv = as_shell_script(program, argv)
        return os.posix_spawn(shell, shell_argv, dict(env), **options)


def _apply(file_actions: Sequence[tuple[int, ...]]) -> None:
    """posix_spawn's file actions, in the forked child."""
    for action in file_actions:
        if action[0] == os.POSIX_SPAWN_DUP2:
            os.dup2(action[1], action[2])
        elif action[0] == os.POSIX_SPAWN_CLOSE:
            with contextlib.suppress(OSError):
                os.close(action[1])


def read_all(fd: int) -> bytes:
    """Everything until the other side is closed (a child's report of a failed exec: its
    end is close-on-exec, so a successful exec reads as nothing); closes ``fd``."""
    chunks = []
    while chunk := os.read(fd, 64):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


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


# No core file, ever (SPEC §5): from keyrun's first instruction, in every command.

_LINUX = sys.platform.startswith("linux")
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
# A core size limit of 1 byte, not 0: too small for any core file, and the kernel's sign
# that a core must not go to a core_pattern pipe either (fs/coredump.c), which ignores the
# limit otherwise and, with fs.suid_dumpable = 2, takes even a non-dumpable process's core.
NO_CORE = 1
_core_limit: tuple[int, int] | None = None  # keyrun's limits as it started: the command's


def make_undumpable() -> None:
    """No core file and no ptrace by other users' processes: PR_SET_DUMPABLE 0 (Linux) and
    a core size limit too small for a core. ``keyrun.cli.main`` calls it before anything
    else, so no command ever dumps a core holding a token or a value. The command gets the
    original limit back before exec (``give_back_core_limit``), and exec makes it dumpable
    again, so the command itself is unaffected."""
    global _core_limit
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if _core_limit is None:
        _core_limit = (soft, hard)
    # RLIM_INFINITY is -1 to Python: min() alone would make the limit unlimited
    wanted = NO_CORE if hard == resource.RLIM_INFINITY else min(NO_CORE, hard)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (wanted, hard))
    _prctl(PR_SET_DUMPABLE, 0)


def give_back_core_limit() -> None:
    """The core size limit keyrun started with, for the command about to be exec'd."""
    if _core_limit is not None:
        import resource

        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, _core_limit)


def die_with(parent: int) -> None:
    """In a child keyrun forked: be killed when ``parent`` dies, even of SIGKILL (Linux's
    parent-death signal, which exec keeps); if it already died, end now."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # died before the request took effect: never run orphaned
        os._exit(EXIT_KEYRUN_FAILED)


def _prctl(option: int, value: int) -> bool:
    function = _prctl_function()
    if function is None:
        return False
    import _ctypes

    return bool(_ctypes.call_function(function, (option, value, 0, 0, 0)) == 0)


@functools.cache
def _prctl_function() -> int | None:
    """prctl's address in libc, through ``_ctypes`` alone: the ctypes package would cost
    about 2 ms of every keyrun start."""
    if not _LINUX:
        return None
    try:
        import _ctypes

        libc = _ctypes.dlopen(None, os.RTLD_LAZY)  # type: ignore[arg-type]  # None: the program
        return int(_ctypes.dlsym(libc, "prctl"))
    except (ImportError, AttributeError, OSError):
        return None


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




def supervise(argv: Sequence[str], env: Mapping[str, str], supervisor: Supervisor) -> NoReturn:
    """Run the command as keyrun's child, then exit as it did (status, or the same signal)."""
    try:
        program = find_program(argv[0], env)
    except LaunchError:
        supervisor.release()
        raise
    watched = {getattr(signal, name) for name in FORWARDED if hasattr(signal, name)}
    watched.add(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an inherited SIG_IGN would reap it for us
    defaults = watched | {getattr(signal, name) for name in PYTHON_IGNORED}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        pid = spawn(program, argv, env, setsigdef=defaults, file_actions=close_actions())
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
