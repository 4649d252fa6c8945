"""Shell completion after `--` offers programs, then file names, not keyrun's commands;
the help names arguments by their metavar alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, keyrun, write


@pytest.fixture
def path_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    for name in ("kr-prog-one", "kr-prog-two"):
        write(folder / name, "#!/bin/sh\n", mode=0o755)
    write(folder / "kr-prog-data", "not a program\n", mode=0o644)
    (folder / "kr-prog-dir").mkdir()
    return folder


def complete(words: str, tmp_path: Path, path_dir: Path) -> list[str]:
    """What bash gets for the command line ``words`` (the cursor at its end)."""
    count = len(words.split())
    cword = count if words.endswith(" ") else count - 1
    env = clean_env(tmp_path, _KEYRUN_COMPLETE="complete_bash", COMP_WORDS=words,
                    COMP_CWORD=str(cword), PATH=str(path_dir))
    done = subprocess.run([sys.executable, "-m", "keyrun"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(("words", "expected"), [
    ("keyrun -- kr-", ["kr-prog-one", "kr-prog-two"]),
    ("keyrun -e dev -- kr-prog-o", ["kr-prog-one"]),
    ("keyrun run kr-", ["kr-prog-one", "kr-prog-two"]),
    ("keyrun run --mask -- kr-", ["kr-prog-one", "kr-prog-two"]),
    ("keyrun -- kr-prog-one ", []),  # its arguments: the shell completes file names
    ("keyrun run kr-prog-one --", []),
    ("keyrun -- ./kr", []),  # a path: the shell's own
    ("keyrun li", ["list"]),  # keyrun's commands where a command belongs
    ("keyrun run --ma", ["--mask"]),
])
def test_completion(words: str, expected: list[str], tmp_path: Path, path_dir: Path) -> None:
    assert complete(words, tmp_path, path_dir) == expected


def test_help_names_arguments_by_their_metavar(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for command in ("set", "scan", "run", "list", "doctor", "init", "log", "sources", "trust"):
        done = keyrun([command, "--help"], cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert "{KEY}" not in done.stdout
        assert "<list[str]>" not in done.stdout
        assert "<str>" not in done.stdout
    usage = keyrun(["set", "--help"], cwd=tmp_path, env=env).stdout.splitlines()
    assert usage[0] == "Usage: keyrun set [OPTIONS] KEY"
    assert "  KEY  The variable to write.  [required]" in usage
    scan = keyrun(["scan", "--help"], cwd=tmp_path, env=env).stdout.splitlines()
    assert "  [PATH]...  Files or directories (default: the git work tree)." in scan
