"""Whose files keyrun reads (SPEC §5 "Trust"), as git refuses a repository owned by someone
else (CVE-2022-24765).

A keyrun.toml decides which programs run with which variables and where credentials go, and
the files it names hold secrets: keyrun reads them only when they are its user's (or root's)
and no other user may write them. Config discovery does not look past a directory another
user owns. Files are opened without blocking and read only when they are regular files of a
bounded size, so a FIFO or a link to ``/dev/zero`` cannot hang keyrun or fill its memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keyrun.errors import ConfigError

MAX_FILE_BYTES = 4 << 20  # a keyrun.toml or .env file larger than this is refused, unread


def _mine(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def owner_name(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def foreign_directory(directory: Path) -> int | None:
    """The owner of ``directory`` when it is another user's (not root's): config discovery
    stops there. None when it is the user's own, root's, or cannot be looked at."""
    try:
        uid = os.stat(directory).st_uid
    except OSError:
        return None
    return None if _mine(uid) else uid


def refuse_foreign_directory(directory: Path, uid: int, found: Path) -> ConfigError:
    return ConfigError(
        f"{found} was not read: {directory} belongs to {owner_name(uid)}, not to you, and "
        "keyrun reads no configuration another user controls",
        f"if you trust it, make it yours: chown -R {_me()} {directory}; or create your own "
        "keyrun.toml where you run keyrun (keyrun init), or name one with -c PATH")


def check_owner(path: Path, info: os.stat_result, what: str) -> None:
    """Refuse ``path`` (``info`` is its stat) unless it is the user's or root's and neither
    others nor a group with other members may write it. A symbolic link is judged by its
    own owner too: one another user planted cannot lend them a file of yours."""
    link = _link_owner(path)
    uid = info.st_uid if link is None or _mine(link) else link
    if not _mine(uid):
        raise ConfigError(
            f"{path}: {what} belongs to {owner_name(uid)}, not to you; keyrun does not read "
            "what another user controls",
            f"if you trust it, make it yours: chown {_me()} {path}; otherwise delete it")
    writers = _other_writers(info)
    if writers:
        raise ConfigError(
            f"{path}: {what} may be written by {writers}, so they could change what keyrun "
            "does", f"chmod go-w {path}")
    _check_directory(path, what)


def _check_directory(path: Path, what: str) -> None:
    """Refuse ``path`` when the directory holding it lets another user rename or remove
    what is in it (another user's, or writable by others without the sticky bit that
    ``/tmp`` has): they could put another of your files in its place."""
    directory = Path(os.path.abspath(path)).parent
    try:
        info = os.stat(directory)
    except OSError:
        return
    if info.st_mode & stat.S_ISVTX:
        return
    if not _mine(info.st_uid):
        raise ConfigError(
            f"{path}: {what} is in {directory}, which belongs to {owner_name(info.st_uid)}, "
            "who could put another file in its place",
            f"move it to a directory of your own, or if you trust {directory}, make it yours: "
            f"chown {_me()} {directory}")
    writers = _other_writers(info)
    if writers:
        raise ConfigError(
            f"{path}: {what} is in {directory}, which {writers} may write, so they could "
            "put another file in its place", f"chmod go-w {directory}")


def _link_owner(path: Path) -> int | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_uid if stat.S_ISLNK(info.st_mode) else None


def _other_writers(info: os.stat_result) -> str | None:
    if info.st_mode & stat.S_IWOTH:
        return "every user (mode o+w)"
    if info.st_mode & stat.S_IWGRP and not _private_group(info):
        return f"the members of group {_group_name(info.st_gid)} (mode g+w)"
    return None


def _private_group(info: os.stat_result) -> bool:
    """A user private group (the owner's own, named after them, no other member): what a
    umask of 002 on Debian-like systems gives every file, writable by its owner alone."""
    import grp
    import pwd

    try:
        owner = pwd.getpwuid(info.st_uid)
        group = grp.getgrgid(info.st_gid)
    except KeyError:
        return False
    return (group.gr_name == owner.pw_name and owner.pw_gid == info.st_gid
            and set(group.gr_mem) <= {owner.pw_name})


def _group_name(gid: int) -> str:
    import grp

    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def read_trusted(path: Path, what: str, *, limit: int = MAX_FILE_BYTES
                 ) -> tuple[bytes, os.stat_result] | None:
    """The bytes of ``path`` and its stat, or None when it does not exist. Refused
    (ConfigError) unless it is a regular file of at most ``limit`` bytes that ``check_owner``
    accepts; opened without blocking, so a FIFO is refused instead of waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})",
                          "check the file and its permissions") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: {what} is not a regular file ({_kind(info)})",
                              f"replace {path} with an ordinary file")
        check_owner(path, info, what)
        data = _read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{path}: {what} is larger than {limit >> 20} MiB",
                          f"{path} is not what keyrun expects there: check it")
    return data, info


def _read_at_most(fd: int, size: int) -> bytes:
    os.set_blocking(fd, True)
    chunks = []
    while size > 0 and (chunk := os.read(fd, min(size, 1 << 20))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _kind(info: os.stat_result) -> str:
    mode = info.st_mode
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def write_own(path: Path, text: str, *, append: bool = False) -> None:
    """Write ``text`` to ``path`` (or append it), only as a regular file of keyrun's own
    user, never through a symbolic link (SPEC §5 "What keyrun writes is its own"): a link
    planted in a shared directory cannot make ``keyrun init`` write where it points."""
    import errno

    flags = (os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
             | os.O_CLOEXEC | (os.O_APPEND if append else 0))
    refusal = ConfigError(f"{path} is a symbolic link, not a file, or another user's; keyrun "
                          "writes only a file of its own", f"remove {path}, then run again")
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise refusal from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise refusal
        if not append:
            os.ftruncate(fd, 0)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
