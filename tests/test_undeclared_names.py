"""Names a .env file holds that no key declares (list -v, doctor), and invalid names
left out in zero-config mode (warned even under -q)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CANARY, assert_no_leak, clean_env, dotenv_project, keyrun, write


def test_list_verbose_and_doctor_name_what_the_env_file_holds_undeclared(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    root = dotenv_project(tmp_path / "proj", {"OPENAI_API_KEY": CANARY})
    with (root / ".env").open("a") as handle:
        handle.write(f"FORGOTTEN_KEY={CANARY}x\nALSO_NEW=1\n")
    listed = keyrun(["list", "-v"], cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    assert (".env also holds FORGOTTEN_KEY, ALSO_NEW, which no key declares: not passed "
            "(declare them in keyrun.toml's [keys] or .env.example to pass them)"
            in listed.stderr)
    quiet = keyrun(["list"], cwd=root, env=env)
    assert "FORGOTTEN_KEY" not in quiet.stdout + quiet.stderr  # -v only
    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    names = next(c for c in json.loads(doctor.stdout)["checks"] if c["id"] == "names")
    assert names["status"] == "warn"
    assert names["message"] == (".env holds FORGOTTEN_KEY, ALSO_NEW, which no key declares "
                                "(not passed)")
    for done in (listed, quiet, doctor):
        assert_no_leak(CANARY, done.stdout, done.stderr)


def test_nothing_is_undeclared_when_nothing_is_declared(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    write(tmp_path / "zero" / ".env", "A_KEY=value-one\nB_KEY=value-two\n")
    doctor = keyrun(["doctor", "--json"], cwd=tmp_path / "zero", env=env)
    names = next(c for c in json.loads(doctor.stdout)["checks"] if c["id"] == "names")
    assert names["status"] == "pass"


def test_an_invalid_name_left_out_is_warned_even_under_quiet(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    write(tmp_path / "zero" / ".env", f"GOOD_KEY={CANARY}\nbad-name=1\n")
    done = keyrun(["-q", "--", "python3", "-c", "import os; print(len(os.environ['GOOD_KEY']))"],
                  cwd=tmp_path / "zero", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{len(CANARY)}\n"
    assert done.stderr == ("keyrun: warning: 'bad-name' is not a valid environment variable "
                           "name; left out\n")
