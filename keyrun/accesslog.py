"""The access log: one JSON line per resolution, never a value (SPEC §5)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyrun.errors import ConfigError
from keyrun.reporter import default

if TYPE_CHECKING:
    from keyrun.resolve import Resolution


def log_path(environ: Mapping[str, str]) -> Path | None:
    """``$KEYRUN_ACCESS_LOG`` (``off`` disables it), else the XDG state directory."""
    setting = environ.get("KEYRUN_ACCESS_LOG", "")
    if setting.lower() in ("off", "0", "false", "no", "none"):
        return None
    if setting:
        return Path(setting).expanduser()
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
) -> Path | None:
    """Append one entry; return where, or None when logging is off."""
    path = log_path(environ)
    if path is None:
        return None
    entry: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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
    return record(environ, action=action, project=profile.project, env=profile.env.name,
                  keys=keys, missing=missing, command=command, reason=reason)


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def read_entries(environ: Mapping[str, str], warn: Callable[[str], None] | None = None
                 ) -> tuple[Path | None, list[dict[str, Any]]]:
    """Every entry, newest first; damaged lines are skipped with a warning to ``warn``."""
    path = log_path(environ)
    if path is None:
        return None, []
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return path, []
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the access log ({exc.strerror})",
                          "set KEYRUN_ACCESS_LOG to the log file's path") from None
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
