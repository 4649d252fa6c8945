"""`keyrun run` as a real process: exit statuses, signals, stdin, argv, safety rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CANARY, assert_no_leak, keyrun, write, write_project

PY = sys.executable


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = { description = "LLM key" }
PINECONE_API_KEY = { optional = true }

[sources.local]
type = "dotenv"
path = ".env.{env}"

[env.dev]
sources = ["local"]

[env.staging]
sources = ["local"]
""", {".env.dev": f"OPENAI_API_KEY={CANARY}\n",
      ".env.staging": "OPENAI_API_KEY=sk-staging-value-000000\n"})


def test_value_reaches_the_command_and_nowhere_else(project: Path, env: dict[str, str],
                                                    tmp_path: Path) -> None:
    code = "import os, hashlib; print(hashlib.sha256(os.environ['OPENAI_API_KEY'].encode()).hexdigest())"
    done = keyrun(["--", PY, "-c", code], cwd=project, env=env)
    import hashlib

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hashlib.sha256(CANARY.encode()).hexdigest()
    log = (tmp_path / "access.log").read_text()
    assert_no_leak(CANARY, done.stdout, done.stderr, log, root=tmp_path)
    entry = json.loads(log.splitlines()[-1])
    assert entry["project"] == "bot"
    assert entry["env"] == "dev"
    assert entry["action"] == "run"
    assert entry["command"] == os.path.basename(PY)
    assert entry["keys"] == [{"name": "OPENAI_API_KEY", "source": "local", "version": None}]
    assert entry["missing"] == ["PINECONE_API_KEY"]
    assert (tmp_path / "access.log").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("status", [0, 1, 42, 255])
def test_exit_status_is_the_commands(project: Path, env: dict[str, str], status: int) -> None:
    done = keyrun(["--", PY, "-c", f"raise SystemExit({status})"], cwd=project, env=env)
    assert done.returncode == status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_command_killed_by_a_signal(project: Path, env: dict[str, str], sig: int) -> None:
    done = keyrun(["--", PY, "-c", f"import os; os.kill(os.getpid(), {sig})"], cwd=project,
                  env=env)
    assert done.returncode == -sig


def test_both_command_forms(project: Path, env: dict[str, str]) -> None:
    code = "import os; print(os.environ['KEYRUN_PROFILE'])"
    forms = (["-e", "staging", "--", PY, "-c", code],
             ["run", "-e", "staging", "--", PY, "-c", code],
             ["-e", "staging", "run", PY, "-c", code],
             ["--env=staging", "run", "--", PY, "-c", code])
    for args in forms:
        done = keyrun(args, cwd=project, env=env)
        assert (done.returncode, done.stdout) == (0, "bot/staging\n"), (args, done.stderr)


def test_keyrun_env_and_default_env(project: Path, env: dict[str, str]) -> None:
    code = "import os; print(os.environ['OPENAI_API_KEY'][:10])"
    assert keyrun(["--", PY, "-c", code], cwd=project, env=env).stdout == CANARY[:10] + "\n"
    staged = dict(env, KEYRUN_ENV="staging")
    assert keyrun(["--", PY, "-c", code], cwd=project, env=staged).stdout == "sk-staging\n"


def test_flags_after_the_separator_reach_the_command(project: Path, env: dict[str, str]
                                                     ) -> None:
    args = ["-e", "dev", "--only", "X", "--", "-v", "--help", "--", "run"]
    done = keyrun(["--", PY, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *args],
                  cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == args


def test_stdin_passes_through(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["--", PY, "-c", "import sys; print(sys.stdin.read()[::-1])"], cwd=project,
                  env=env, input="hello\n")
    assert done.stdout == "\nolleh\n"


def test_sigpipe_behaves_as_without_keyrun(project: Path, env: dict[str, str]) -> None:
    started = time.monotonic()
    done = keyrun(["--", "sh", "-c", "yes | head -1; echo done"], cwd=project, env=env,
                  timeout=20)
    assert (done.returncode, done.stdout) == (0, "y\ndone\n")
    assert time.monotonic() - started < 10


def test_signal_dispositions_and_mask_are_clean(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["--", "sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"], cwd=project,
                  env=env)
    fields = dict(line.split() for line in done.stdout.splitlines())
    ignored = int(fields["SigIgn:"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))
    assert int(fields["SigBlk:"], 16) == 0


def test_command_not_found_is_127(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["--", "no-such-command-keyrun"], cwd=project, env=env)
    assert done.returncode == 127
    assert "no-such-command-keyrun: command not found" in done.stderr


def test_not_executable_is_126(project: Path, env: dict[str, str]) -> None:
    script = write(project / "script.sh", "#!/bin/sh\necho hi\n", mode=0o644)
    done = keyrun(["--", str(script)], cwd=project, env=env)
    assert done.returncode == 126
    done = keyrun(["--", str(project)], cwd=project, env=env)
    assert done.returncode == 126


def test_missing_required_key_fails_closed(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OTHER=1\n")
    done = keyrun(["--", PY, "-c", "print('ran')"], cwd=project, env=env)
    assert done.returncode == 125
    assert "ran" not in done.stdout
    assert "OPENAI_API_KEY: missing from local (not found in .env.dev)" in done.stderr
    assert "keyrun set OPENAI_API_KEY -e dev" in done.stderr


def test_allow_missing_runs_with_a_warning(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OTHER=1\n")
    code = "import os; print('OPENAI_API_KEY' in os.environ)"
    done = keyrun(["run", "--allow-missing", "--", PY, "-c", code], cwd=project, env=env)
    assert (done.returncode, done.stdout) == (0, "False\n")
    assert "OPENAI_API_KEY is missing" in done.stderr


def test_optional_key_missing_is_a_warning(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["--", PY, "-c", "print(1)"], cwd=project, env=env)
    assert done.returncode == 0
    assert "PINECONE_API_KEY is optional and missing" in done.stderr
    quiet = keyrun(["-q", "--", PY, "-c", "print(1)"], cwd=project, env=env)
    assert quiet.stderr == ""


def test_empty_value_is_a_value(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OPENAI_API_KEY=\nPINECONE_API_KEY=''\n")
    code = "import os; print(repr(os.environ['OPENAI_API_KEY']), repr(os.environ['PINECONE_API_KEY']))"
    done = keyrun(["--", PY, "-c", code], cwd=project, env=env)
    assert done.stdout == "'' ''\n"


def test_bare_name_is_refused_never_empty(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", "OPENAI_API_KEY\n")
    done = keyrun(["--", PY, "-c", "print(1)"], cwd=project, env=env)
    assert done.returncode == 125
    assert f"{project / '.env.dev'}:1: this line has no '='" in done.stderr


def test_precedence_profile_wins_then_preserve_then_clean(project: Path, env: dict[str, str]
                                                          ) -> None:
    inherited = dict(env, OPENAI_API_KEY="from-the-shell", UNRELATED="kept")
    code = "import os; print(os.environ.get('OPENAI_API_KEY', '-')[:10], os.environ.get('UNRELATED', '-'))"
    done = keyrun(["-v", "--", PY, "-c", code], cwd=project, env=inherited)
    assert done.stdout == f"{CANARY[:10]} kept\n"
    assert "OPENAI_API_KEY: the profile's value replaces the inherited one" in done.stderr
    done = keyrun(["run", "--preserve-env", "--", PY, "-c", code], cwd=project, env=inherited)
    assert done.stdout == "from-the-s kept\n"
    done = keyrun(["run", "--clean-env", "--", PY, "-c",
                   "import os; print(sorted(k for k in os.environ if k not in ('LC_CTYPE',)))"],
                  cwd=project, env=inherited)
    names = json.loads(done.stdout.replace("'", '"'))
    assert "UNRELATED" not in names
    assert {"OPENAI_API_KEY", "KEYRUN_PROFILE", "PATH", "HOME"} <= set(names)
    both = keyrun(["run", "--clean-env", "--preserve-env", "--", "true"], cwd=project, env=env)
    assert both.returncode == 2


def test_only_limits_the_keys(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", f"OPENAI_API_KEY={CANARY}\nPINECONE_API_KEY=pc-value-123456\n")
    code = "import os; print(sorted(k for k in os.environ if k.endswith('_API_KEY')))"
    done = keyrun(["run", "--only", "PINECONE_API_KEY", "--", PY, "-c", code], cwd=project,
                  env=env)
    assert done.stdout == "['PINECONE_API_KEY']\n"
    bad = keyrun(["run", "--only", "NOPE", "--", "true"], cwd=project, env=env)
    assert bad.returncode == 2
    assert "--only NOPE: not a key of environment 'dev'" in bad.stderr


def test_argv_guard(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["--", "echo", f"--key={CANARY}"], cwd=project, env=env)
    assert done.returncode == 125
    assert "OPENAI_API_KEY appears in the command's arguments" in done.stderr
    assert "sh -c 'tool --key \"$OPENAI_API_KEY\"'" in done.stderr
    assert_no_leak(CANARY, done.stdout, done.stderr)
    allowed = keyrun(["run", "--allow-argv-secrets", "--", "true", CANARY], cwd=project, env=env)
    assert allowed.returncode == 0


def test_reserved_name_refused_unless_allowed(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", f"OPENAI_API_KEY={CANARY}\nLD_PRELOAD=/tmp/evil.so\n")
    config = project / "keyrun.toml"
    write(config, config.read_text() + '\n[keys.LD_PRELOAD]\n')
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "LD_PRELOAD is a reserved name" in done.stderr
    assert 'allow_reserved = ["LD_PRELOAD"]' in done.stderr


def test_invalid_values_refused_by_name_before_exec(project: Path, env: dict[str, str]) -> None:
    big = "x" * 140_000
    write(project / ".env.dev", f"OPENAI_API_KEY={big}\n")
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "OPENAI_API_KEY is 140016 bytes" in done.stderr
    assert "E2BIG" in done.stderr


def test_nested_keyrun_says_when_it_switches(project: Path, env: dict[str, str]) -> None:
    inner = f"{PY} -m keyrun -e staging -- true"
    done = keyrun(["--", "sh", "-c", inner], cwd=project, env=env)
    assert done.returncode == 0
    assert "nested inside keyrun profile bot/dev; this command gets bot/staging" in done.stderr


def test_access_log_off(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    done = keyrun(["--", "true"], cwd=project, env=dict(env, KEYRUN_ACCESS_LOG="off"))
    assert done.returncode == 0
    assert not (tmp_path / "access.log").exists()
    assert not (tmp_path / "state").exists()


def test_default_access_log_location(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    del env["KEYRUN_ACCESS_LOG"]
    keyrun(["--", "true"], cwd=project, env=env)
    path = tmp_path / "state" / "keyrun" / "access.log"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_usage_errors_exit_2(project: Path, env: dict[str, str]) -> None:
    assert keyrun(["run", "--bogus", "--", "true"], cwd=project, env=env).returncode == 2
    assert keyrun(["run"], cwd=project, env=env).returncode == 2
    assert keyrun(["--"], cwd=project, env=env).returncode == 2
    assert keyrun(["lst"], cwd=project, env=env).returncode == 2


def test_config_errors_exit_125(project: Path, env: dict[str, str]) -> None:
    done = keyrun(["-e", "prod", "--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "unknown environment 'prod'" in done.stderr


def test_no_traceback_and_no_locals_on_errors(project: Path, env: dict[str, str]) -> None:
    write(project / ".env.dev", f"OPENAI_API_KEY='{CANARY}\nBROKEN=\"\n")
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "Traceback" not in done.stderr
    assert_no_leak(CANARY, done.stdout, done.stderr)


def test_sigint_from_a_process_reaches_the_exec_d_command(project: Path, env: dict[str, str]
                                                          ) -> None:
    code = ("import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(7)); "
            "print('ready', flush=True); time.sleep(30)")
    process = subprocess.Popen([PY, "-m", "keyrun", "--", PY, "-c", code], cwd=project,
                               env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 7
