"""`keyrun scan` as a process: baselines, keyrun.toml's [scan] table, the pre-commit message.

Keys are built at run time (a documented prefix and random characters)."""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, dotenv_project, git, keyrun, write

ALNUM = string.ascii_letters + string.digits


def token(seed: int) -> str:
    rng = random.Random(seed)
    return "gh" + "p_" + "".join(rng.choice(ALNUM) for _ in range(36))


def run(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return keyrun(["scan", *args], cwd=cwd, env=clean_env(tmp_path))


def test_baseline_accepts_what_it_recorded_and_new_findings_still_fail(
        repo: Path, tmp_path: Path) -> None:
    first, second = token(1), token(2)
    write(repo / "tests" / "fixture.py", f'TOKEN = "{first}"\n')
    baseline = repo / ".keyrun-baseline.json"
    created = run(["--baseline", str(baseline)], repo, tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout == ""
    assert f"{baseline}: recorded 1 finding (1 in all)" in created.stderr
    data = json.loads(baseline.read_text())
    (entry,) = data["accepted"]
    assert (data["keyrun_baseline"], entry["rule"], entry["path"]) == (
        1, "github-token", "tests/fixture.py")
    assert len(entry["fingerprint"]) == 32
    text = baseline.read_text()
    for part in (first, first[4:12], first[-4:]):
        assert part not in text
    again = run(["--baseline", str(baseline)], repo, tmp_path)
    assert (again.returncode, again.stdout) == (0, "")
    assert "1 accepted finding skipped (baseline)" in again.stderr
    from_below = run(["--baseline", str(baseline)], repo / "tests", tmp_path)
    assert from_below.returncode == 0, from_below.stdout
    write(repo / "tests" / "fixture.py", f'# moved down\n\nTOKEN = "{first}"\n')
    assert run(["--baseline", str(baseline)], repo, tmp_path).returncode == 0
    write(repo / "app.py", f'KEY = "{second}"\n')
    new = run(["--baseline", str(baseline), "--format", "json"], repo, tmp_path)
    assert new.returncode == 1
    assert [(f["path"], f["rule"]) for f in json.loads(new.stdout)["findings"]] == [
        ("app.py", "github-token")]
    updated = run(["--baseline", str(baseline), "--update-baseline"], repo, tmp_path)
    assert updated.returncode == 0
    assert len(json.loads(baseline.read_text())["accepted"]) == 2
    assert run(["--baseline", str(baseline)], repo, tmp_path).returncode == 0
    for output in (created, again, new, updated):
        assert first not in output.stdout + output.stderr
        assert second not in output.stdout + output.stderr


def test_the_same_secret_elsewhere_is_a_new_finding(repo: Path, tmp_path: Path) -> None:
    secret = token(3)
    write(repo / "a.py", f"A = '{secret}'\n")
    baseline = tmp_path / "baseline.json"
    assert run(["--baseline", str(baseline)], repo, tmp_path).returncode == 0
    write(repo / "b.py", f"B = '{secret}'\n")
    done = run(["--baseline", str(baseline)], repo, tmp_path)
    assert (done.returncode, done.stdout.split()[:2]) == (1, ["b.py:1", "github-token"])


def test_scan_table_skips_accepts_and_names_its_baseline(repo: Path, tmp_path: Path) -> None:
    write(repo / "fixtures" / "keys.txt", f"{token(4)}\n")
    write(repo / "web" / "app.min.js", f"var t='{token(5)}';\n")
    write(repo / "src" / "app.py", f"T = '{token(6)}'\n")
    write(repo / "keyrun.toml", '[scan]\nskip = ["fixtures", "*.min.js"]\n')
    done = run(["--format", "json"], repo, tmp_path)
    assert [f["path"] for f in json.loads(done.stdout)["findings"]] == ["src/app.py"]
    write(repo / "keyrun.toml", '[scan]\nskip = ["fixtures", "*.min.js"]\n'
                                'baseline = "scan-baseline.json"\n')
    missing = run([], repo, tmp_path)
    assert missing.returncode == 125
    assert "scan-baseline.json does not exist" in missing.stderr
    recorded = run(["--update-baseline"], repo, tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    assert (repo / "scan-baseline.json").is_file()
    assert run([], repo / "src", tmp_path).returncode == 0
    (entry,) = json.loads((repo / "scan-baseline.json").read_text())["accepted"]
    write(repo / "keyrun.toml", f'[scan]\nskip = ["fixtures", "*.min.js"]\n'
                                f'accepted = ["{entry["fingerprint"]}"]\n')
    assert run([], repo, tmp_path).returncode == 0
    write(repo / "keyrun.toml", '[scan]\nskip = "fixtures"\n')
    broken = run([], repo, tmp_path)
    assert broken.returncode == 125
    assert "keyrun.toml:2: [scan] skip: must be a list of strings" in broken.stderr


def test_update_baseline_needs_a_file(repo: Path, tmp_path: Path) -> None:
    done = run(["--update-baseline"], repo, tmp_path)
    assert done.returncode == 2
    assert "--update-baseline needs a baseline file" in done.stderr


def test_a_malformed_baseline_is_an_error(repo: Path, tmp_path: Path) -> None:
    write(repo / "a.py", f"A = '{token(7)}'\n")
    (tmp_path / "b.json").write_text('{"accepted": "all"}')
    done = run(["--baseline", str(tmp_path / "b.json")], repo, tmp_path)
    assert done.returncode == 125
    assert f"{tmp_path / 'b.json'}: not a keyrun baseline" in done.stderr


def test_pre_commit_message_names_the_rule_and_the_way_out(repo: Path, tmp_path: Path) -> None:
    secret = token(8)
    write(repo / "deploy.sh", f"export GH_TOKEN={secret}\n")
    git(repo, "add", "deploy.sh")
    done = run(["--staged"], repo, tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("deploy.sh:1 github-token ghp_…")
    lines = done.stderr.splitlines()
    assert lines[0] == "keyrun: scanned 1 file, 1 finding"
    assert lines[1] == ("keyrun: the commit is stopped: 1 leaked credential: github-token "
                        "(GitHub token (personal, OAuth, user-to-server, server-to-server, "
                        "refresh))")
    assert "fix: remove it, load it at run time with keyrun" in lines[2]
    assert "`git add` the file again" in lines[2]
    assert "keyrun:allow" in lines[3]
    assert "keyrun scan --staged --baseline .keyrun-baseline.json --update-baseline" in lines[3]
    assert secret not in done.stdout + done.stderr


def test_archive_findings_and_bombs_through_the_cli(repo: Path, tmp_path: Path) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pkg/settings.py", f"TOKEN = '{token(9)}'\n")
    (repo / "dist").mkdir()
    (repo / "dist" / "pkg-1.0-py3-none-any.whl").write_bytes(buffer.getvalue())
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.bin", b"\0" * (100 * 2**20))
    (repo / "dist" / "bomb.zip").write_bytes(bomb.getvalue())
    done = run(["--format", "json"], repo, tmp_path)
    assert done.returncode == 1
    assert [(f["path"], f["line"]) for f in json.loads(done.stdout)["findings"]] == [
        ("dist/pkg-1.0-py3-none-any.whl!pkg/settings.py", 1)]
    assert "keyrun: warning: dist/bomb.zip: big.bin expands to 100 MiB" in done.stderr


def test_a_commit_never_creates_its_own_baseline(repo: Path, tmp_path: Path) -> None:
    write(repo / "deploy.sh", f"export GH_TOKEN={token(10)}\n")
    git(repo, "add", "deploy.sh")
    done = run(["--staged", "--baseline", str(tmp_path / "new.json")], repo, tmp_path)
    assert done.returncode == 125
    assert f"--baseline: {tmp_path / 'new.json'} does not exist" in done.stderr
    assert "keyrun scan --baseline" in done.stderr
    assert not (tmp_path / "new.json").exists()


SHOW_HEAVY = ("import atexit, sys\n"
              "atexit.register(lambda: print(sorted(m for m in ('typer', 'rich', 'click') "
              "if m in sys.modules), file=sys.stderr))\n"
              "from keyrun.cli import main\n")


@pytest.mark.parametrize(("args", "stdout", "stderr"), [
    (["scan", "--staged"], "app.py:2 profile-value sk-…0001 [A_KEY]\n",
     "keyrun: scanned 1 file, 1 finding"),
    (["-q", "scan", "app.py", "--format", "json"], None, "[]"),
    (["scan", "-e", "dev", "--", "app.py"], "app.py:2 profile-value sk-…0001 [A_KEY]\n",
     "keyrun: scanned 1 file, 1 finding"),
])
def test_scan_runs_without_typer_or_rich(repo: Path, tmp_path: Path, args: list[str],
                                        stdout: str | None, stderr: str) -> None:
    """The pre-commit hook's path is parsed by the grammar's fast route, and the profile's
    values are still found (fetched lazily), never printed."""
    value = "sk-bench-" + "q7Zp" * 6 + "0001"
    dotenv_project(repo, {"A_KEY": value})
    write(repo / ".gitignore", ".env\n")
    write(repo / "app.py", f"import os\nFALLBACK = {value!r}\n")
    git(repo, "add", "app.py")
    done = subprocess.run([sys.executable, "-c", SHOW_HEAVY + f"main({args!r})"], cwd=repo,
                          env=clean_env(tmp_path), capture_output=True, text=True, check=False)
    assert done.returncode == 1
    if stdout is None:
        assert json.loads(done.stdout)["findings"][0]["key"] == "A_KEY"
    else:
        assert done.stdout == stdout
    lines = done.stderr.splitlines()
    assert (lines[0], lines[-1]) == (stderr, "[]")
    assert value not in done.stdout + done.stderr
