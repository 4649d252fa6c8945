"""Keys as files (SPEC §2 "A key as a file"): ``KEY = { as = "file" }`` gives the command a
path in ``KEY`` instead of the value; reading the path yields the value, byte for byte.

Each value goes into an in-memory file (Linux ``memfd_create``: never on a disk-backed
filesystem), made read-only for its owner and sealed against change. A small *holder*
process keeps the files open and the command gets ``/proc/<holder>/fd/<n>``: a path any
process of the user can open, including one that closed every inherited descriptor, in a
directory only the user (and root) can enter.

Why a holder, and why this one:

- keyrun itself cannot serve the path: it is non-dumpable, and the kernel then lets no one
  but root into its ``/proc/<pid>/fd``; in exec mode it is not even there any more.
- The command's own descriptor (``/proc/<command>/fd/<n>``) breaks as soon as the command
  closes its inherited descriptors (OpenSSH does at start) or makes itself non-dumpable.
- A forked copy of keyrun would be non-dumpable too, and would carry every value in its
  memory; so the holder is a fresh interpreter (``python -I -S -c``) that knows only the
  descriptors it is handed: nothing to read in its memory, dumpable, its ``fd`` directory
  open to the user.
- It is no child of the command (it double-forks into its own session): a command that
  waits for all its children, or a terminal's Ctrl-C to the command's process group, never
  meets it. It watches keyrun's process through a pidfd, which exec does not change, so it
  ends when keyrun ends: with the command in exec mode, after it when keyrun stays the
  parent (``--mask``, leases). Where pidfds are missing (Linux before 5.3, a seccomp filter
  that forbids them) it looks every 0.2 s whether that process (pid and start
  time) still runs.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from keyrun.environ import Unfit, exec_value_problems, unfit_hint
from keyrun.errors import EXIT_KEYRUN_FAILED, LaunchError, ResolutionError

if TYPE_CHECKING:
    from keyrun.profile import Profile

FILE = "file"
_NOEXEC_SEAL = getattr(os, "MFD_NOEXEC_SEAL", 0x0008)  # Linux 6.3; older kernels say EINVAL
_SEALS = ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE")
_PLATFORMS = {"darwin": "macOS", "win32": "Windows"}

# The holder's whole program. It forks once more so that it is nobody's child (the
# intermediate exits at once and keyrun reaps it), reports its pid, then waits for the
# process it watches to end. Its comm name makes it recognisable in ps and top.
_HOLDER = """\
import os, sys
pidfd, pid, start, report = sys.argv[1:5]
if os.fork():
    os._exit(0)
try:
    with open("/proc/self/comm", "w") as comm:
        comm.write("keyrun-keyfiles")
except OSError:
    pass
os.write(int(report), str(os.getpid()).encode())
os.close(int(report))
if pidfd != "-1":
    import select
    select.select([int(pidfd)], [], [])
else:
    import time
    def alive():
        try:
            with open("/proc/" + pid + "/stat") as stat:
                return stat.read().rpartition(")")[2].split()[19] == start
        except (OSError, IndexError):
            return False
    while alive():
        time.sleep(0.2)
"""


def file_keys(profile: Profile) -> tuple[str, ...]:
    """The profile's keys that the command gets as files."""
    return tuple(binding.key for binding in profile.bindings if binding.spec.as_file)


def unavailable() -> str | None:
    """Why this system cannot hold a key as a file, or None when it can."""
    if not hasattr(os, "memfd_create"):
        system = _PLATFORMS.get(sys.platform, sys.platform)
        return f"this system ({system}) has no in-memory files (memfd_create, a Linux call)"
    if not os.path.isdir("/proc/self/fd"):
        return "/proc is not mounted, so no path can reach an in-memory file"
    try:
        os.close(os.memfd_create("keyrun-probe", os.MFD_CLOEXEC))
    except OSError as exc:
        return f"in-memory files cannot be made here (memfd_create: {exc.strerror})"
    return None


def refuse_unless_possible(keys: Sequence[str]) -> None:
    """Refuse, naming the keys, where they cannot be given as files."""
    why = unavailable() if keys else None
    if why is None:
        return
    names = " and ".join((", ".join(keys[:-1]), keys[-1])) if len(keys) > 1 else keys[0]
    files = "a file" if len(keys) == 1 else "files"
    raise ResolutionError(
        f'{names}: to be given to the command as {files} (as = "file"), but {why}, '
        "and keyrun never writes a value to disk",
        f'run the command on Linux (a container or a VM will do), or remove as = "file" from '
        f"{names} to pass {'it' if len(keys) == 1 else 'them'} in the environment instead")


def value_problems(values: Mapping[str, str], files: Collection[str]) -> list[Unfit]:
    """What cannot be delivered, a problem per key: for a key in the environment, what
    execve would reject or mangle; for a key as a file, only a value that is not text (a
    file holds NUL bytes, newlines, any size)."""
    problems = exec_value_problems({name: value for name, value in values.items()
                                    if name not in files})
    for name in files:
        try:
            values.get(name, "").encode("utf-8")
        except UnicodeEncodeError:
            problems.append(Unfit(name, f"{name} is not valid text (it holds an unpaired "
                                  "surrogate)"))
    return problems


def check_values(values: Mapping[str, str], files: Collection[str]) -> None:
    """Refuse, by name, what ``value_problems`` finds."""
    problems = value_problems(values, files)
    if problems:
        raise ResolutionError(
            "cannot pass these keys to the command: "
            + "; ".join(problem.message for problem in problems), unfit_hint(problems))


def with_paths(values: Mapping[str, str], profile: Profile, watched: int) -> dict[str, str]:
    """``values`` with each key as a file replaced by its path, held until ``watched``
    ends."""
    files = {name: value for name, value in values.items() if name in file_keys(profile)}
    return {**values, **hold(files, watched)} if files else dict(values)


def hold(values: Mapping[str, str], watched: int) -> dict[str, str]:
    """Put each value in an in-memory file held until process ``watched`` ends; return
    each key's path. Raises LaunchError when the holder cannot be started."""
    fds: list[int] = []
    try:
        for name, value in values.items():
            fds.append(_memory_file(name, value.encode("utf-8")))
        holder = _start_holder(fds, watched)
    except OSError as exc:
        raise LaunchError(
            f"cannot hold {', '.join(values)} in memory for the command: {exc.strerror or exc}",
            EXIT_KEYRUN_FAILED, 'remove as = "file" from these keys to pass them in the '
            "environment instead") from None
    finally:
        for fd in fds:
            os.close(fd)
    return {name: f"/proc/{holder}/fd/{fd}" for name, fd in zip(values, fds, strict=True)}


def _memory_file(name: str, data: bytes) -> int:
    """A sealed, owner-read-only in-memory file holding ``data``."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    label = f"keyrun:{name}"[:200]
    try:
        fd = os.memfd_create(label, flags | _NOEXEC_SEAL)
    except OSError:
        fd = os.memfd_create(label, flags)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o400)  # ssh and others refuse a key file that others may read
        seals = 0
        for seal in _SEALS:
            seals |= getattr(fcntl, seal)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _start_holder(fds: Sequence[int], watched: int) -> int:
    """Start the holder with ``fds`` (same numbers); return its pid once it holds them."""
    import subprocess  # only where a key is a file: 3 ms of every start otherwise

    start = _start_time(watched)
    pidfd = _pidfd(watched)
    report_read, report_write = os.pipe()
    argv = [sys.executable, "-I", "-S", "-c", _HOLDER, str(pidfd), str(watched), start,
            str(report_write)]
    try:
        process = subprocess.Popen(
            argv, pass_fds=(*fds, report_write, *([pidfd] if pidfd >= 0 else [])),
            start_new_session=True, cwd="/", env={},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except BaseException:
        os.close(report_read)
        raise
    finally:
        os.close(report_write)
        if pidfd >= 0:
            os.close(pidfd)
    reported = _read_all(report_read)
    process.wait()
    if not reported.isdigit():
        raise OSError(0, f"the process holding them did not start (status {process.returncode})")
    return int(reported)


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: with the pid, names the process even if the pid is
    reused after it ends."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[19]


def _read_all(fd: int) -> bytes:
    """Everything until every writer has closed the pipe; closes ``fd``."""
    chunks = []
    try:
        while chunk := os.read(fd, 64):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
