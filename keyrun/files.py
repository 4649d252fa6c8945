"""Replacing a file whole or not at all: a temporary file beside it, fsync, rename. Every
file keyrun writes for the user goes through here (``keyrun set`` into a .env file,
``keyrun trust``'s list, ``keyrun mcp protect``'s configurations and profiles)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory (created
    0600, given ``mode`` once written), flushed to disk before it is renamed over ``path``,
    so that a crash leaves the old file or the new one, never half of either. The rename
    replaces a symbolic link at ``path``; it never writes through one."""
    # hidden; beside .env files ".env.keyrun-PID.tmp", which the ".env.*" keyrun init
    # ignores still matches
    hidden = path.name if path.name.startswith(".") else f".{path.name}"
    partial = path.with_name(f"{hidden}.keyrun-{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (not every filesystem lets a directory be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def private_directory(path: Path) -> None:
    """``path`` and its missing parents, the new ones readable by the user alone."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
