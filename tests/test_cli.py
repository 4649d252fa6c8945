"""list, doctor, set, init and log through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from keyrun.cli.grammar import COMMANDS
from tests.helpers import CANARY, assert_no_leak, checks, keyrun, write, write_project

CONFIG = """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {}
PINECONE_API_KEY = { optional = true }

[sources.local]
type = "dotenv"
path = ".env.{env}"

[sources.base]
type = "dotenv"
path = ".env"

[env.dev]
sources = ["local", "base"]

[env.staging]
sources = ["local"]
rotate_after = "30d"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", CONFIG, {
        ".env.dev": f"OPENAI_API_KEY={CANARY}\n",
        ".env.staging": "OPENAI_API_KEY=sk-staging-0123456789abcdef\n"})


def test_list_json(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    done = keyrun(["list", "--json"], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["project"], data["env"]) == ("bot", "dev")
    first, second = data["keys"]
    assert first["name"] == "OPENAI_API_KEY"
    assert first["status"] == "ok"
    assert first["source"] == "local"
    assert first["location"] == ".env.dev#OPENAI_API_KEY"
    assert first["preview"] == "kr-…"  # at most a quarter of the canary's 26 characters
    assert first["error"] is None
    assert first["updated"] is not None
    assert set(first) == {"name", "source", "location", "status", "preview", "version",
                          "updated", "error", "as"}
    assert first["as"] == "env"
    assert second["name"] == "PINECONE_API_KEY"
    assert second["status"] == "optional"
    assert second["preview"] is None
    assert_no_leak(CANARY, done.stdout, done.stderr, (tmp_path / "access.log").read_text())


def test_list_shows_problems_as_rows_and_exits_0(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OTHER=1\n")
    done = keyrun(["list"], cwd=project, env=env)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == "project bot, environment dev"
    assert lines[1].split() == ["KEY", "SOURCE", "LOCATION", "STATUS", "PREVIEW", "VERSION", "AGE"]
    assert lines[2].split()[:4] == ["OPENAI_API_KEY", "local", ".env.dev#OPENAI_API_KEY", "missing"]
    assert "OPENAI_API_KEY: local: not found in .env.dev; base: .env does not exist" in done.stdout


def test_list_all_envs(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["list", "--all-envs", "--json"], cwd=project, env=env)
    data = json.loads(done.stdout)
    assert list(data["envs"]) == ["dev", "staging"]
    assert data["envs"]["staging"][0]["preview"] == "sk-…"  # 6 of 27 characters at most
    plain = keyrun(["list", "--all-envs"], cwd=project, env=env)
    assert plain.stdout.splitlines()[1].split() == ["KEY", "dev", "staging"]
    assert plain.stdout.splitlines()[2].split() == ["OPENAI_API_KEY", "ok", "(local)", "ok", "(local)"]


def test_list_cannot_run_is_125(project: Path, env: dict[str, str]) -> None:
    assert keyrun(["list", "-e", "nope"], cwd=project, env=env).returncode == 125
    write(project / "keyrun.toml", CONFIG + "\nbogus = 1\n")
    assert keyrun(["list"], cwd=project, env=env).returncode == 125


def test_doctor_healthy_project(project: Path, env: dict[str, str]) -> None:
    write(project / ".env", "# values kept elsewhere\n")  # a name here would be undeclared
    write(project / ".env.dev", f"OPENAI_API_KEY={CANARY}\nPINECONE_API_KEY=pc-0123456789ab\n")
    done = keyrun(["doctor", "--json"], cwd=project, env=env)
    assert done.returncode == 0, done.stdout
    data = json.loads(done.stdout)
    assert data["ok"] is True
    assert data["env"] == "dev"
    ids = [check["id"] for check in data["checks"]]
    assert ids == ["config", "sources", "missing-keys", "gitignore", "file-permissions",
                   "example-placeholders", "shared-values", "rotation", "shadowed", "names",
                   "short-values"]
    assert all(set(c) == {"id", "status", "message", "fix", "keys"} for c in data["checks"])
    assert {c["status"] for c in data["checks"]} == {"pass"}
    assert_no_leak(CANARY, done.stdout, done.stderr)


def test_doctor_finds_problems(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OTHER=abc\nPINECONE_API_KEY=short\n", mode=0o644)
    write(project / ".env", "PINECONE_API_KEY=also-here-123\n")
    write(project / ".env.example", "OPENAI_API_KEY=sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7z" + "\n")
    done = keyrun(["doctor", "--json"], cwd=project, env=dict(env, PINECONE_API_KEY="shell"))
    assert done.returncode == 1
    found = checks(done)
    assert found["missing-keys"]["status"] == "fail"
    assert found["missing-keys"]["keys"] == ["OPENAI_API_KEY"]
    assert found["missing-keys"]["fix"] == "keyrun set OPENAI_API_KEY -e dev"
    assert found["file-permissions"]["status"] == "warn"
    assert found["file-permissions"]["fix"] == "chmod 600 .env.dev"
    assert found["example-placeholders"]["status"] == "fail"
    assert found["shadowed"]["status"] == "warn"
    assert "PINECONE_API_KEY is in local and base (local wins)" in found["shadowed"]["message"]
    assert "already set in this shell" in found["shadowed"]["message"]
    assert found["short-values"]["status"] == "warn"
    assert found["short-values"]["keys"] == ["PINECONE_API_KEY"]


def test_doctor_shared_values_and_rotation(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.staging", f"OPENAI_API_KEY={CANARY}\n")
    old = 40 * 86400
    stat = (project / ".env.staging").stat()
    os.utime(project / ".env.staging", (stat.st_atime - old, stat.st_mtime - old))
    done = keyrun(["doctor", "-e", "staging", "--json"], cwd=project, env=env)
    found = checks(done)
    assert found["shared-values"]["status"] == "warn"
    assert found["shared-values"]["message"].startswith(
        "same value in another environment: OPENAI_API_KEY equals dev")
    assert found["rotation"]["status"] == "warn"
    assert "older than rotate_after (30d): OPENAI_API_KEY (local, 40d old)" in found["rotation"]["message"]
    assert done.returncode == 0
    strict = keyrun(["doctor", "-e", "staging", "--strict"], cwd=project, env=env)
    assert strict.returncode == 1
    assert_no_leak(CANARY, done.stdout, strict.stdout)


def test_doctor_rotation_unknown_for_keyring(project: Path, env: dict[str, str]) -> None:
    write(project / "keyrun.toml", CONFIG.replace('[env.staging]\nsources = ["local"]',
                                                  '[env.staging]\nsources = ["kc"]')
          + '\n[sources.kc]\ntype = "keyring"\n')
    done = keyrun(["doctor", "-e", "staging", "--json"], cwd=project, env=env)
    found = checks(done)
    assert found["sources"]["status"] == "fail"
    assert "null backend" in found["sources"]["message"]


def test_doctor_gitignore(project: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    done = keyrun(["doctor", "--json"], cwd=project, env=env)
    assert checks(done)["gitignore"]["status"] == "fail"
    assert "not ignored by git: .env.dev, .env.staging" in checks(done)["gitignore"]["message"]
    write(project / ".gitignore", ".env\n.env.*\n!.env.example\n")
    assert checks(keyrun(["doctor", "--json"], cwd=project, env=env))["gitignore"]["status"] == "pass"
    subprocess.run(["git", "add", "-f", ".env.dev"], cwd=project, check=True)
    tracked = checks(keyrun(["doctor", "--json"], cwd=project, env=env))["gitignore"]
    assert tracked["status"] == "fail"
    assert tracked["message"] == "tracked by git: .env.dev"


def test_doctor_names_and_config(project: Path, env: dict[str, str]) -> None:
    write(project / "keyrun.toml", CONFIG.replace(
        "PINECONE_API_KEY = { optional = true }",
        'PINECONE_API_KEY = { optional = true, name = "OPENAI_API_KEY" }\n"BAD-NAME" = {}')
          + '\n[sources.unused]\ntype = "dotenv"\nfile = "x"\n')
    done = keyrun(["doctor", "--json"], cwd=project, env=env)
    found = checks(done)
    assert found["config"]["status"] == "fail"
    assert "unknown option 'file' for a dotenv source" in found["config"]["message"]
    assert found["names"]["status"] == "fail"
    assert "'BAD-NAME' is not a valid environment variable name" in found["names"]["message"]
    assert "OPENAI_API_KEY and PINECONE_API_KEY both map to .env.dev#OPENAI_API_KEY in local" in found["names"]["message"]


def test_doctor_text_output(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OTHER=1\n")
    done = keyrun(["doctor"], cwd=project, env=env)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "keyrun doctor: bot/dev"
    assert any(line.startswith("fail    missing-keys") for line in lines)
    assert "fix: keyrun set OPENAI_API_KEY -e dev" in done.stdout
    assert lines[-1].startswith("problems found: 1 failing")


def test_doctor_all_envs(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["doctor", "--all-envs", "--json"], cwd=project, env=env)
    data = json.loads(done.stdout)
    assert [report["env"] for report in data["envs"]] == ["dev", "staging"]


def test_set_from_stdin(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    done = keyrun(["set", "PINECONE_API_KEY", "-e", "staging"], cwd=project, env=env,
                  input=CANARY + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "keyrun: set PINECONE_API_KEY in local (.env.staging) for staging\n"
    assert (project / ".env.staging").read_text() == (
        f"OPENAI_API_KEY=sk-staging-0123456789abcdef\nPINECONE_API_KEY='{CANARY}'\n")
    log = json.loads((tmp_path / "access.log").read_text().splitlines()[-1])
    assert log["action"] == "set"
    assert_no_leak(CANARY, done.stdout, done.stderr, json.dumps(log))


def test_set_refuses_argv_values_and_empty_input(project: Path, env: dict[str, str]) -> None:
    in_argv = keyrun(["set", "OPENAI_API_KEY", "s3cr3t-in-argv"], cwd=project, env=env)
    assert in_argv.returncode == 2
    assert "never from the command line" in in_argv.stderr
    assert "s3cr3t-in-argv" not in in_argv.stderr
    empty = keyrun(["set", "OPENAI_API_KEY"], cwd=project, env=env, input="")
    assert empty.returncode == 2
    assert "empty value; nothing was written" in empty.stderr
    reserved = keyrun(["set", "PATH"], cwd=project, env=env, input="x\n")
    assert reserved.returncode == 2


def test_set_undeclared_key_notes_it(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["set", "NEW_KEY", "--source", "base"], cwd=project, env=env, input="v\n")
    assert done.returncode == 0
    assert "NEW_KEY is not one of dev's keys, so run does not pass it yet" in done.stderr
    assert (project / ".env").read_text() == "NEW_KEY='v'\n"


def test_init(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "fresh"
    write(root / ".env.example", "OPENAI_API_KEY=your-key\nSERPAPI_KEY=\n")
    write(root / ".gitignore", "__pycache__/\n")
    done = keyrun(["init"], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    text = (root / "keyrun.toml").read_text()
    assert 'project = "fresh"' in text
    assert "OPENAI_API_KEY = {}\nSERPAPI_KEY = {}" in text
    assert (root / ".gitignore").read_text() == (
        "__pycache__/\n# secrets: keyrun reads them, git must not\n.env\n.env.*\n!.env.example\n")
    again = keyrun(["init"], cwd=root, env=env)
    assert again.returncode == 125
    assert "already exists" in again.stderr
    write(root / ".env", "OPENAI_API_KEY=sk-x-123456789\nSERPAPI_KEY=serp-123456\n")
    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    assert checks(doctor)["missing-keys"]["status"] == "pass", doctor.stdout


def test_log(project: Path, env: dict[str, str]) -> None:
    keyrun(["--", "true"], cwd=project, env=env)
    keyrun(["-e", "staging", "--", "true"], cwd=project, env=env)
    done = keyrun(["log", "--json"], cwd=project, env=env)
    entries = json.loads(done.stdout)
    assert [e["env"] for e in entries] == ["staging", "dev"]
    assert entries[0]["command"] == "true"
    assert set(entries[0]) == {"time", "user", "host", "directory", "action", "project", "env",
                               "command", "keys", "missing"}
    text = keyrun(["log", "-n", "1"], cwd=project, env=env)
    assert text.stdout.splitlines()[1].split() == ["TIME", "ACTION", "PROFILE", "COMMAND", "KEYS"]
    assert len(text.stdout.splitlines()) == 3


def test_global_options_after_the_command(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["list", "--json", "-e", "staging"], cwd=project, env=env)
    assert json.loads(done.stdout)["env"] == "staging"


def test_version_and_help(project: Path, env: dict[str, str]) -> None:
    from keyrun import __version__

    assert keyrun(["--version"], cwd=project, env=env).stdout == f"keyrun {__version__}\n"
    for command in COMMANDS:
        done = keyrun([command, "--help"], cwd=project, env=env)
        assert done.returncode == 0
        assert "Example: keyrun" in done.stdout, command


def test_sources_command(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["sources", "--json"], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    rows = {row["type"]: row for row in json.loads(done.stdout)["sources"]}
    assert rows["dotenv"]["usable"] is True
    assert rows["dotenv"]["provider"] == "keyrun"
    assert rows["dotenv"]["extra"] is None
    assert set(rows) >= {"dotenv", "keyring"}
    plain = keyrun(["sources"], cwd=project, env=env)
    assert plain.stdout.splitlines()[0].split() == ["TYPE", "PROVIDER", "EXTRA", "USABLE", "NOTE"]


def test_shell_completion_of_environments_and_keys(project: Path, env: dict[str, str]) -> None:
    def complete(words: str) -> list[str]:
        completion = dict(env, _KEYRUN_COMPLETE="complete_bash", COMP_WORDS=words,
                          COMP_CWORD=str(len(words.split(" ")) - 1))
        return keyrun([], cwd=project, env=completion).stdout.split()

    assert complete("keyrun -e ") == ["dev", "staging"]
    assert complete("keyrun -e st") == ["staging"]
    assert complete("keyrun set OP") == ["OPENAI_API_KEY"]
    assert complete("keyrun run --only P") == ["PINECONE_API_KEY"]


def test_doctor_example_placeholders(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.example", "A=your-openai-key-here-xxxxxxxx\nB=changeme\nC=<your key>\n"
          "D=${SOME_VAR}\n")
    assert checks(keyrun(["doctor", "--json"], cwd=project, env=env))[
        "example-placeholders"]["status"] == "pass"
    write(project / ".env.example", "A=your-key\nB=9f8e7d6c5b4a39281706f5e4d3c2b1a0Zq\n"
          f"OPENAI_API_KEY={CANARY}\n")
    found = checks(keyrun(["doctor", "--json"], cwd=project, env=env))["example-placeholders"]
    assert found["status"] == "fail"
    assert found["keys"] == ["B", "OPENAI_API_KEY"]
    assert CANARY not in found["message"]
