"""Archives opened in memory (zip, wheel, jar, tar, tar.gz/.bz2/.xz, gzip): build artifacts
leak too. Each member that holds text is scanned as ``archive!member`` (``a.whl!pkg/x.py``,
nested: ``app.zip!lib/b.jar!config.properties``).

Limits keep a hostile archive from exhausting memory or time: nesting depth, the size of one
member, the bytes one top-level archive may expand to, the number of members, and the ratio
of a zip member's size to its compressed size. An archive that crosses one is reported (a
``Skipped`` with the reason) and not followed further; nothing is extracted to disk.

The archive modules are imported when an archive is met, not by every scan (a commit of
source files holds none).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from keyrun.scan.blob import Blob, Skipped, is_binary

if TYPE_CHECKING:
    import bz2
    import gzip
    import lzma

MAX_DEPTH = 4  # an archive inside an archive inside … this many levels deep is not opened
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 512 * 2**20
MAX_MEMBERS = 20_000
MAX_RATIO = 100  # a member this many times larger than its compressed form is a bomb
RATIO_FROM = 2**20  # … once it is over a MiB (tiny files of zeros compress well, honestly)


class ArchiveLimit(Exception):
    """An archive crossed one of the limits: the reason, for the report."""


@dataclass
class Budget:
    """What one top-level archive may still expand to."""

    bytes: int = MAX_TOTAL_BYTES
    members: int = MAX_MEMBERS

    def spend(self, size: int) -> None:
        self.bytes -= size
        self.members -= 1
        if self.bytes < 0:
            raise ArchiveLimit(f"expands to more than {MAX_TOTAL_BYTES // 2**20} MiB "
                               "(a zip bomb?); the rest is not opened")
        if self.members < 0:
            raise ArchiveLimit(f"holds more than {MAX_MEMBERS} members; the rest is not opened")


def archive_kind(data: bytes) -> str | None:
    """``zip``, ``tar``, ``gzip``, ``bzip2`` or ``xz`` by the data's magic bytes."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[257:262] == b"ustar":
        return "tar"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:3] == b"BZh":
        return "bzip2"
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return None


def texts(path: str, data: bytes, depth: int = 0, budget: Budget | None = None
          ) -> Iterator[Blob | Skipped]:
    """``data`` itself when it is text, the texts inside it when it is an archive, nothing
    when it is other binary data."""
    if not is_binary(data):
        yield Blob(path, data)
        return
    kind = archive_kind(data)
    if kind is None:
        return
    if depth >= MAX_DEPTH:
        yield Skipped(path, f"an archive nested more than {MAX_DEPTH} deep; not opened")
        return
    budget = budget or Budget()
    try:
        for name, member in _members(kind, data, budget):
            name = name or _unwrapped(path)
            yield from texts(f"{path}!{printable(name)}", member, depth + 1, budget)
    except ArchiveLimit as exc:
        yield Skipped(path, str(exc))
    except _damage() as exc:
        yield Skipped(path, f"a damaged {kind} archive ({exc}); not opened")


def _damage() -> tuple[type[Exception], ...]:
    """What opening a damaged archive raises."""
    import lzma
    import tarfile
    import zipfile

    return zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, lzma.LZMAError, ValueError


def _unwrapped(path: str) -> str:
    """The name of what a single-file gzip, bzip2 or xz stream holds: ``notes.txt.gz`` →
    ``notes.txt``."""
    name = path.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and suffix in ("gz", "tgz", "bz2", "xz") else name


def _members(kind: str, data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    if kind == "zip":
        yield from _zip_members(data, budget)
    elif kind == "tar" or _holds_tar(kind, data):
        yield from _tar_members(data, budget)
    else:
        with _decompressed(kind, data) as single:
            content = _read_capped(single, MAX_MEMBER_BYTES)
        budget.spend(len(content))
        yield "", content


def _zip_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            _check_size(info.filename, info.file_size, info.compress_size)
            with archive.open(info) as member:
                content = _read_capped(member, min(MAX_MEMBER_BYTES, budget.bytes))
            budget.spend(len(content))
            yield info.filename, content


def _decompressed(kind: str, data: bytes) -> gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile:
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=io.BytesIO(data))
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(io.BytesIO(data))
    import lzma

    return lzma.LZMAFile(io.BytesIO(data))


def _holds_tar(kind: str, data: bytes) -> bool:
    import lzma

    try:
        with _decompressed(kind, data) as single:
            head = single.read(512)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    return bool(head[257:262] == b"ustar")


def _tar_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for info in archive:
            if not info.isfile():
                continue
            _check_size(info.name, info.size, None)
            if info.size > budget.bytes:
                budget.spend(info.size)
            member = archive.extractfile(info)
            if member is None:
                continue
            content = _read_capped(member, MAX_MEMBER_BYTES)
            budget.spend(len(content))
            yield info.name, content


def _check_size(name: str, size: int, compressed: int | None) -> None:
    if size > MAX_MEMBER_BYTES:
        raise ArchiveLimit(f"{printable(name)} expands to {size // 2**20} MiB, more than "
                           f"{MAX_MEMBER_BYTES // 2**20} MiB; the rest is not opened")
    if compressed is not None and size > RATIO_FROM and size > MAX_RATIO * max(compressed, 1):
        raise ArchiveLimit(f"{printable(name)} expands {size // max(compressed, 1)} times "
                           "(a zip bomb?); the rest is not opened")


def _read_capped(stream: IO[bytes] | gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile,
                 limit: int) -> bytes:
    """At most ``limit`` bytes; more is a bomb whatever the headers claimed."""
    content = stream.read(limit + 1)
    if len(content) > limit:
        raise ArchiveLimit(f"a member expands to more than {limit // 2**20} MiB "
                           "(a zip bomb?); the rest is not opened")
    return content


def printable(name: str) -> str:
    """A member name with control characters escaped (it comes from the archive)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)
