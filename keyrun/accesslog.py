"""The access log: one JSON line per resolution, never a value (SPEC §5).

It is capped: past ``MAX_BYTES`` the log becomes ``access.log.1`` (replacing the previous
one) and a new one is started, both 0600. Where it cannot be written (a read-only
container), the caller says so once, not on every start (:func:`first_failure`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyrun.environ import value_in_program
from keyrun.ownership import read_trusted
from keyrun.reporter import default

if TYPE_CHECKING:
    from keyrun.resolve import Resolution


MAX_BYTES = 5 * 1024 * 1024  # about 10,000 resolutions; one previous file is kept


def log_path(environ: Mapping[str, str], enabled: bool = True) -> Path | None:
    """``$KEYRUN_ACCESS_LOG`` (``off`` disables it), else the XDG state directory, unless
    keyrun.toml says ``access_log = false`` (``enabled``). A path the user names wins over
    the project's file: a checkout cannot silence a log its user asked for."""
    setting = environ.get("KEYRUN_ACCESS_LOG", "")
    if setting.lower() in ("off", "0", "false", "no", "none"):
        return None
    if setting:
        return Path(setting).expanduser()
    if not enabled:
        return None
    state = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME", "~"),
                                                          ".local", "state")
    return Path(state).expanduser() / "keyrun" / "access.log"


def _user() -> str:
    """The account running keyrun, from the password database rather than ``$USER``,
    which any caller can set (the uid when the account has no entry, as in containers)."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _directory() -> str | None:
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def record(
    environ: Mapping[str, str],
    *,
    action: str,
    project: str,
    env: str,
    keys: Sequence[Mapping[str, str | None]],
    missing: Sequence[str] = (),
    command: str | None = None,
    reason: str | None = None,
    enabled: bool = True,
) -> Path | None:
    """Append one entry; return where, or None when logging is off."""
    path = log_path(environ, enabled)
    if path is None:
        return None
    entry: dict[str, Any] = {
        "time": _utc_now(),
        "user": _user(),
        "host": os.uname().nodename,
        "directory": _directory(),
        "action": action,
        "project": project,
        "env": env,
        "command": os.path.basename(command) if command else None,
        "keys": [dict(key) for key in keys],
        "missing": list(missing),
    }
    if reason is not None:
        entry["reason"] = reason  # why a run was refused; never a value
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    _append(path, line.encode("utf-8"))
    return path


def record_resolution(resolution: Resolution, environ: Mapping[str, str], *, action: str,
                      command: str | None = None, reason: str | None = None) -> Path | None:
    """Log which keys a resolution read, from where, at which version."""
    profile = resolution.profile
    keys = [{"name": key, "source": source, "version": item.version}
            for key, (source, item) in resolution.items().items()]
    missing = [key for key, result in resolution.results.items() if result.item is None]
    if command is not None and (holder := value_in_program(command, resolution.values())):
        command = f"<{holder}>"
    return record(environ, action=action, project=profile.project, env=profile.env.name,
                  keys=keys, missing=missing, command=command, reason=reason,
                  enabled=profile.config.access_log)


def previous_path(path: Path) -> Path:
    """Where the log goes when it is full: ``access.log.1``."""
    return path.with_name(f"{path.name}.1")


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = _open(path)
    try:
        if os.fstat(fd).st_size + len(data) > MAX_BYTES:
            fd = _rotate(path, fd)
        os.write(fd, data)
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    """The log for appending, 0600, never through a symlink (SPEC §5), and only a regular
    file of keyrun's own user: another user's file (in a shared directory) is neither
    written nor has its mode changed, and a FIFO does not block keyrun."""
    import errno
    import stat

    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
             | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise OSError(errno.EPERM, "not a regular file") from None
        raise
    info = os.fstat(fd)
    problem = ("not a regular file" if not stat.S_ISREG(info.st_mode)
               else f"owned by uid {info.st_uid}, not by you" if info.st_uid != os.geteuid()
               else None)
    if problem is not None:
        os.close(fd)
        raise OSError(errno.EPERM, problem)
    os.set_blocking(fd, True)
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def _rotate(path: Path, fd: int) -> int:
    """Move the full log (open as ``fd``) to ``access.log.1`` and open a new one. Under an
    exclusive lock, and only while ``path`` is still that file: of two keyruns finding it
    full at once, one moves it and the other appends to the new log."""
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        current, full = os.stat(path, follow_symlinks=False), os.fstat(fd)
        if (current.st_dev, current.st_ino) == (full.st_dev, full.st_ino):
            os.replace(path, previous_path(path))
    except FileNotFoundError:
        pass  # moved by another keyrun; its new log is opened below
    finally:
        os.close(fd)  # and the lock with it
    return _open(path)


def first_failure(path: Path, environ: Mapping[str, str]) -> bool:
    """Whether this is the first time (since the machine or container started) that the
    log at ``path`` could not be written: a marker in the temporary directory remembers
    it. Where even that cannot be written, every failure is the first."""
    import hashlib
    import stat
    import tempfile

    base = Path(environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    folder = base / f"keyrun-{os.getuid()}"
    marker = folder / ("unwritable-log-" + hashlib.sha256(str(path).encode()).hexdigest()[:16])
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o077):
            return True  # not a folder of our own: remember nothing there
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def read_entries(environ: Mapping[str, str], warn: Callable[[str], None] | None = None
                 ) -> tuple[Path | None, list[dict[str, Any]]]:
    """Every entry, newest first; damaged lines are skipped with a warning to ``warn``."""
    path = log_path(environ)
    if path is None:
        return None, []
    text = _read(previous_path(path)) + _read(path)
    entries = []
    damaged: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            damaged.append(number)  # a line cut short by a full disk or a crash
    if damaged:
        lines = ("1 line that is not an" if len(damaged) == 1
                 else f"{len(damaged)} lines that are not")
        (warn or default().warn)(f"{path}: skipped {lines} access-log entr"
                                 f"{'y' if len(damaged) == 1 else 'ies'} "
                                 f"(line {damaged[0]}{' …' if len(damaged) > 1 else ''})")
    entries.reverse()
    return path, entries


def _read(path: Path) -> str:
    """A log file: a regular file of keyrun's user, or of root (a FIFO is not waited on, and
    entries another user could have written are not shown as keyrun's)."""
    read = read_trusted(path, "the access log", limit=2 * MAX_BYTES)
    return "" if read is None else read[0].decode("utf-8", "replace")


def _utc_now() -> str:
    """Now in UTC as ISO 8601 with milliseconds (``2026-12-06T23:30:44.123Z``); through
    ``time``, since the datetime module costs 2 ms of every start."""
    import time

    now = time.time_ns() // 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1000)) + f".{now % 1000:03d}Z"
