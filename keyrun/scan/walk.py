"""What `keyrun scan` reads: the work tree, the index (`--staged`) or every commit (`--history`).

Each mode yields ``Blob``s: a path (relative to the scan's root where it lies under it, posix
separators), the bytes to scan, and for history the commit id and the real line number of
each line of the text (a commit's added lines only, joined).
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from keyrun.errors import KeyrunError
from keyrun.scan.archive import texts
from keyrun.scan.blob import Blob, Skipped

MAX_FILE_BYTES = 256 * 1024 * 1024


class ScanError(KeyrunError):
    """The scan cannot run: git is missing, the directory is not a repository, a path is absent."""


def git(root: Path, *args: str, input: bytes | None = None) -> bytes:
    """Run git in ``root``; a failure is a ``ScanError`` that quotes git's own message."""
    try:
        done = subprocess.run(["git", "-c", "core.quotePath=false", *args], cwd=root,
                              input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise ScanError("git is not installed", "install git, or scan a directory that is "
                        "not a repository") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ScanError(f"git {args[0]} failed in {root}: {message[-1] if message else ''}")
    return done.stdout


def toplevel(root: Path) -> Path | None:
    """The work tree ``root`` lies in, or None when it is not in a git repository."""
    try:
        done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root,
                              capture_output=True, check=False)
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    return Path(os.fsdecode(done.stdout.rstrip(b"\n")))


def require_repository(root: Path, mode: str) -> Path:
    top = toplevel(root)
    if top is None:
        raise ScanError(f"--{mode} needs a git repository, and {root} is not in one",
                        "run it inside the repository, or drop --" + mode)
    return top


def display(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when under it, else as given; posix separators; a name
    that is not UTF-8 shown with replacement characters (reports must encode)."""
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = path.as_posix()
    return shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def display_name(name: str, under: str) -> str:
    """``display`` for a path string that starts with ``under`` (the root and a separator):
    the cheap form, for walks of many thousand files."""
    shown = name[len(under):].replace(os.sep, "/")
    return shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- work tree --------------------------------------------------------------------------


def tree_files(paths: Sequence[Path], root: Path) -> Iterator[str | Path]:
    """Files to scan: git's tracked and untracked-but-not-ignored files under each path
    inside a repository, every file under the others; a file named explicitly is always read."""
    root = root.resolve()
    top = toplevel(root)
    for given in paths or [root]:
        path = given if given.is_absolute() else root / given
        if not path.exists() and not path.is_symlink():
            raise ScanError(f"{given} does not exist", "name a file or directory to scan")
        if path.is_file():
            yield path
        elif top is not None and _is_under(path.resolve(), top):
            yield from _git_files(path.resolve())
        else:
            yield from _walk(path)


def _is_under(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def _git_files(directory: Path) -> Iterator[str]:
    listed = git(directory, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                 "--deduplicate", "--", ".")
    for name in listed.split(b"\0"):
        if name:
            yield os.path.join(directory, os.fsdecode(name))


def _walk(directory: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)


Skip = Callable[[str], bool]  # whether to leave out a path (as displayed)


def read_tree(paths: Sequence[Path], root: Path, skip: Skip | None = None
              ) -> Iterator[Blob | Skipped]:
    root = root.resolve()
    under = os.fspath(root).rstrip(os.sep) + os.sep
    for path in tree_files(paths, root):
        name = os.fspath(path)
        shown = display_name(name, under) if name.startswith(under) else display(Path(name), root)
        if skip is not None and skip(shown):
            continue
        try:
            info = os.lstat(name)
            if not stat.S_ISREG(info.st_mode):
                continue  # a link's target is scanned where it lives; deleted files have nothing
            if info.st_size > MAX_FILE_BYTES:
                yield Skipped(shown, f"larger than {MAX_FILE_BYTES // 2**20} MiB")
                continue
            with open(name, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            yield Skipped(shown, f"cannot be read: {exc.strerror}")
            continue
        yield from texts(shown, data)


# -- index (--staged) ---------------------------------------------------------------------


def read_staged(paths: Sequence[Path], root: Path, skip: Skip | None = None
                ) -> Iterator[Blob | Skipped]:
    """The index's copy of every file the next commit adds or changes; never the work tree."""
    root = root.resolve()
    spec = [os.fspath(p) for p in paths]
    try:  # one git diff names each file with its mode and its blob in the index
        raw = git(root, "diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames",
                  "--diff-filter=ACMRT", "--relative", "--", *spec)
    except ScanError:
        require_repository(root, "staged")  # says so when it is no repository at all
        raise
    fields = raw.split(b"\0")
    entries: dict[str, str] = {}
    for info, raw_name in zip(fields[0:-1:2], fields[1::2], strict=True):
        _old_mode, mode, _old_sha, sha, _status = info.split(b" ")
        name = os.fsdecode(raw_name)
        # not a symlink (120000) or a submodule (160000), and not a path [scan] skips
        if mode.startswith(b"100") and (skip is None or not skip(display(root / name, root))):
            entries[name] = sha.decode("ascii")
    if not entries:
        return
    for name, data in zip(entries, cat_blobs(root, list(entries.values())), strict=True):
        yield from texts(display(root / name, root), data)


def cat_blobs(root: Path, shas: list[str]) -> Iterator[bytes]:
    """The contents of blobs through one ``git cat-file --batch``, in order."""
    with subprocess.Popen(["git", "cat-file", "--batch"], cwd=root, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        writer = threading.Thread(target=_feed, args=(proc.stdin, shas), daemon=True)
        writer.start()
        for sha in shas:
            header = proc.stdout.readline().split()
            if len(header) != 3:
                raise ScanError(f"git cat-file cannot read blob {sha} from the index")
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)
            yield data
        writer.join()


def _feed(stream: IO[bytes], lines: Iterable[str]) -> None:
    try:
        for line in lines:
            stream.write(line.encode("ascii") + b"\n")
    finally:
        stream.close()


# -- history (--history) ---------------------------------------------------------------------

COMMIT_MARK = b"\x01commit "


def read_history(paths: Sequence[Path], root: Path, skip: Skip | None = None
                 ) -> Iterator[Blob | Skipped]:
    """The lines each commit of every branch and tag added, per file, with the commit id."""
    root = root.resolve()
    top = require_repository(root, "history")
    if not git(root, "rev-list", "-n", "1", "--all"):
        return
    spec = [os.fspath(p) for p in paths]
    command = ["git", "-c", "core.quotePath=false", "log", "--all", "-p", "-U0", "--no-color",
               "--no-ext-diff", "--no-textconv", "--diff-filter=ACMRT", "--format=%x01commit %H",
               "--", *spec]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for blob in parse_log(proc.stdout):
            shown = display(top / blob.path, root)
            if skip is None or not skip(shown):
                yield blob._replace(path=shown)
    if proc.returncode not in (0, None):
        raise ScanError(f"git log failed in {root} (exit status {proc.returncode})")


def parse_log(stream: Iterable[bytes]) -> Iterator[Blob]:
    """Added lines per (commit, file) from ``git log -p -U0`` output."""
    commit: str | None = None
    path: str | None = None
    added: list[bytes] = []
    numbers: list[int] = []
    in_header = True
    next_line = 0
    for raw in stream:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.startswith(COMMIT_MARK) or line.startswith(b"diff --git "):
            if commit is not None and path is not None and added:
                yield Blob(path, b"\n".join(added), commit, numbers)
            path, added, numbers, in_header = None, [], [], True
            if line.startswith(COMMIT_MARK):
                commit = line[len(COMMIT_MARK):].decode("ascii")
        elif in_header and line.startswith(b"+++ "):
            path = _diff_path(line[4:])
        elif line.startswith(b"@@ "):
            in_header = False
            next_line = _hunk_start(line)
        elif not in_header and line.startswith(b"+"):
            added.append(line[1:])
            numbers.append(next_line)
            next_line += 1
    if commit is not None and path is not None and added:
        yield Blob(path, b"\n".join(added), commit, numbers)


def _hunk_start(header: bytes) -> int:
    # "@@ -a,b +c,d @@": the new file's lines start at c
    new = header.split(b" ")[2]
    return int(new[1:].split(b",")[0])


def _diff_path(name: bytes) -> str | None:
    name = name.removesuffix(b"\t")  # git ends a name holding a space with a tab
    if name == b"/dev/null":
        return None
    if name.startswith(b'"'):
        name = _unquote(name[1:-1])
    return os.fsdecode(name[2:] if name.startswith(b"b/") else name)


_ESCAPES = {ord("n"): b"\n", ord("t"): b"\t", ord('"'): b'"', ord("\\"): b"\\",
            ord("a"): b"\a", ord("b"): b"\b", ord("f"): b"\f", ord("r"): b"\r", ord("v"): b"\v"}


def _unquote(quoted: bytes) -> bytes:
    """Undo git's C-style quoting of a path (octal escapes for bytes, ``\\n``, ``\\"``…)."""
    out = bytearray()
    i = 0
    while i < len(quoted):
        byte = quoted[i]
        if byte != 0x5C or i + 1 >= len(quoted):
            out.append(byte)
            i += 1
        elif 0x30 <= quoted[i + 1] <= 0x37:
            out.append(int(quoted[i + 1:i + 4], 8))
            i += 4
        else:
            out += _ESCAPES.get(quoted[i + 1], quoted[i + 1:i + 2])
            i += 2
    return bytes(out)
