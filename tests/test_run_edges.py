"""Edge cases of `run` and the configuration found by an independent review: closed
standard streams, scripts without ``#!``, strict ``.env`` details, zero-config mode."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
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
OPENAI_API_KEY = {}

[sources.local]
type = "dotenv"
path = ".env"

[env.dev]
sources = ["local"]
""", {".env": f"OPENAI_API_KEY={CANARY}\n"})


@pytest.mark.parametrize("redirect", ["<&-", ">&-", "2>&-"])
def test_a_closed_standard_stream_stays_closed_for_the_command(
        project: Path, env: dict[str, str], redirect: str) -> None:
    # The command notes which of its fds 0-2 are open, before it opens its report file.
    report = project / "fds.txt"
    probe = ('r=""; for fd in 0 1 2; do [ -e /proc/$$/fd/$fd ] && r="$r $fd"; done; '
             f'echo "$r" > {report}')
    line = f"{PY} -m keyrun -q -- sh -c '{probe}' {redirect}"
    done = subprocess.run(["sh", "-c", line], cwd=project, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    closed = {"<&-": "0", ">&-": "1", "2>&-": "2"}[redirect]
    assert closed not in report.read_text().split()
    assert len(report.read_text().split()) == 2
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr


def test_a_pem_key_with_padding_lines_is_a_closed_quote(project: Path,
                                                         env: dict[str, str]) -> None:
    pem = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
           "KrUQrHW5Z5HoOA==\n-----END PRIVATE KEY-----")
    write(project / ".env", f"OPENAI_API_KEY='{pem}'\n")
    code = "import os, sys; sys.exit(0 if os.environ['OPENAI_API_KEY'].count(chr(10)) == 3 else 9)"
    done = keyrun(["--", PY, "-c", code], cwd=project, env=env)
    assert done.returncode == 0, done.stderr


def test_an_unclosed_quote_is_still_caught(project: Path, env: dict[str, str]) -> None:
    write(project / ".env", "OPENAI_API_KEY='abc\nOTHER=1\nLAST='\n")
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert ".env:1: the quote opened here is not closed" in done.stderr


def test_a_reference_to_an_unset_variable_fails_closed(project: Path,
                                                        env: dict[str, str]) -> None:
    write(project / ".env", "OPENAI_API_KEY=${NOT_SET_ANYWHERE}\n")
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert ("OPENAI_API_KEY's value refers to a variable (its ${…} number 1) that is set "
            "neither earlier in the file nor in the environment") in done.stderr
    assert "NOT_SET_ANYWHERE" not in done.stderr  # part of the value: never quoted
    write(project / ".env", "OPENAI_API_KEY=${NOT_SET_ANYWHERE:-}\n")
    done = keyrun(["--", PY, "-c", "import os; assert os.environ['OPENAI_API_KEY'] == ''"],
                  cwd=project, env=env)
    assert done.returncode == 0, done.stderr


def test_a_name_with_a_trailing_newline_is_not_valid(project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    write(config, config.read_text().replace("OPENAI_API_KEY = {}",
                                             '"OPENAI_API_KEY\\n" = { name = "OPENAI_API_KEY" }'))
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "not a valid environment variable name" in done.stderr


def test_argv_guard_watches_secrets_not_plain_settings(project: Path,
                                                       env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    write(config, config.read_text().replace("OPENAI_API_KEY = {}",
                                             "OPENAI_API_KEY = {}\nDB_USER = {}\nAPP_ENV = {}"))
    write(project / ".env", f"OPENAI_API_KEY={CANARY}\nDB_USER=postgres\nAPP_ENV=production\n")
    plain = keyrun(["--", "echo", "psql", "-U", "postgres", "production-notes.md"],
                   cwd=project, env=env)
    assert plain.returncode == 0, plain.stderr
    secret = keyrun(["--", "echo", f"--key={CANARY}"], cwd=project, env=env)
    assert secret.returncode == 125
    assert "OPENAI_API_KEY appears in the command's arguments" in secret.stderr
    assert_no_leak(CANARY, secret.stdout, secret.stderr)


def test_a_script_without_shebang_runs_with_sh(project: Path, env: dict[str, str]) -> None:
    script = project / "plain"
    write(script, 'echo "ran $1"\n')
    script.chmod(0o755)
    done = keyrun(["--", "./plain", "x"], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran x\n"


def test_a_missing_interpreter_is_127_and_says_so(project: Path, env: dict[str, str]) -> None:
    script = project / "broken"
    write(script, "#!/nonexistent/interpreter\necho x\n")
    script.chmod(0o755)
    done = keyrun(["--", "./broken"], cwd=project, env=env)
    assert done.returncode == 127
    assert "the interpreter its #! line names was not found" in done.stderr


def test_a_nested_switch_is_announced_even_when_quiet(project: Path, env: dict[str, str]) -> None:
    inner = f"{PY} -m keyrun -q -e dev -- true"
    done = keyrun(["-q", "--", "sh", "-c", inner], cwd=project,
                  env=dict(env, KEYRUN_PROFILE="bot/staging"))
    assert done.returncode == 0, done.stderr
    assert "nested inside keyrun profile" in done.stderr


def test_environment_too_large_in_total_is_125_naming_the_largest(
        project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    keys = "\n".join(f"K{i} = {{}}" for i in range(30))
    write(config, config.read_text().replace("OPENAI_API_KEY = {}", keys))
    write(project / ".env", "".join(f"K{i}={'x' * (100_000 + i)}\n" for i in range(30)))
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "too large for exec; the largest variables: K29" in done.stderr


def test_usage_mistakes(project: Path, env: dict[str, str]) -> None:
    only = keyrun(["run", "--only"], cwd=project, env=env)
    assert only.returncode == 2
    assert "--only needs a value" in only.stderr
    missing = keyrun(["list", "-e"], cwd=project, env=env)
    assert missing.returncode == 2
    assert "--env needs a value" in missing.stderr
    version = keyrun(["list", "--version"], cwd=project, env=env)
    assert version.returncode == 0
    assert version.stdout.startswith("keyrun ")


def test_a_zero_duration_says_why(project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    write(config, config.read_text().replace('sources = ["local"]',
                                             'sources = ["local"]\ntimeout = "0s"'))
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    assert "'0s' must be longer than zero" in done.stderr


def test_access_log_user_is_the_account_not_USER(project: Path, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    done = keyrun(["--", "true"], cwd=project, env=dict(env, USER="someone-else"))
    assert done.returncode == 0, done.stderr
    entry = json.loads((tmp_path / "access.log").read_text().splitlines()[-1])
    assert entry["user"] == pwd.getpwuid(os.getuid()).pw_name


def test_zero_config_refuses_unknown_environments(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "bare"
    write(root / ".env", f"OPENAI_API_KEY={CANARY}\n")
    write(root / ".env.example", "OPENAI_API_KEY=sk-your-key-here\n")
    write(root / ".env.staging", "OPENAI_API_KEY=sk-staging-000000\n")
    typo = keyrun(["-e", "stagng", "--", "true"], cwd=root, env=env)
    assert typo.returncode == 125
    assert "did you mean 'staging'" in typo.stderr
    example = keyrun(["-e", "example", "list"], cwd=root, env=env)
    assert example.returncode == 125
    assert ".env.example holds placeholders" in example.stderr
    staging = keyrun(["-e", "staging", "--", PY, "-c",
                      "import os; print(os.environ['OPENAI_API_KEY'])"], cwd=root, env=env)
    assert staging.stdout == "sk-staging-000000\n"


def test_reserved_names_found_in_files_are_left_out_with_a_warning(
        tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "bare"
    write(root / ".env", "PYTHONPATH=/somewhere\nA_SETTING=value-1\n")
    listing = keyrun(["list"], cwd=root, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "PYTHONPATH is a reserved name; left out" in listing.stderr
    done = keyrun(["--", PY, "-c", "import os; print(os.environ.get('PYTHONPATH'), "
                   "os.environ['A_SETTING'])"], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "None value-1\n"


def test_a_config_without_keys_takes_what_its_sources_hold(project: Path,
                                                           env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    write(config, config.read_text().replace("[keys]\nOPENAI_API_KEY = {}\n", ""))
    write(project / ".env", "FIRST=one-value\nSECOND=two-value\n")
    done = keyrun(["--", PY, "-c", "import os; print(os.environ['FIRST'], os.environ['SECOND'])"],
                  cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "one-value two-value\n"


def test_set_creates_the_folder_and_keeps_export(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "p"
    write(root / "keyrun.toml", """
[keys]
A = {}
[sources.local]
type = "dotenv"
path = "secrets/.env"
[env.dev]
sources = ["local"]
""")
    done = keyrun(["set", "A"], cwd=root, env=env, input="first-value")
    assert done.returncode == 0, done.stderr
    assert (root / "secrets").stat().st_mode & 0o077 == 0
    write(root / "secrets" / ".env", "export A=old\n")
    done = keyrun(["set", "A"], cwd=root, env=env, input="second-value")
    assert done.returncode == 0, done.stderr
    assert (root / "secrets" / ".env").read_text() == "export A='second-value'\n"


def test_scan_cannot_run_with_an_unknown_environment(project: Path, env: dict[str, str]) -> None:
    write(project / "notes.txt", f"leaked: {CANARY}\n")
    found = keyrun(["scan", "notes.txt"], cwd=project, env=env)
    assert found.returncode == 1, found.stderr
    assert "profile-value" in found.stdout
    assert_no_leak(CANARY, found.stdout, found.stderr)
    unknown = keyrun(["-e", "nope", "scan", "notes.txt"], cwd=project, env=env)
    assert unknown.returncode == 125
    assert "unknown environment 'nope'" in unknown.stderr


def test_scan_says_which_values_it_could_not_read(project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    write(config, config.read_text() + '\n[sources.kc]\ntype = "keyring"\n'
          '[env.other]\nsources = ["kc"]\n')
    write(project / "notes.txt", "nothing here\n")
    done = keyrun(["-e", "other", "scan", "notes.txt"], cwd=project,
                  env=dict(env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"))
    assert done.returncode == 0, done.stderr
    assert "could not read OPENAI_API_KEY, so their values are not searched for" in done.stderr


def test_many_keys_failing_alike_share_one_line(project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    keys = "\n".join(f"MISSING_{i} = {{}}" for i in range(8))
    write(config, config.read_text().replace("OPENAI_API_KEY = {}", f"OPENAI_API_KEY = {{}}\n{keys}"))
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    names = ", ".join(f"MISSING_{i}" for i in range(8))
    assert f"\n  {names}: missing from local" in done.stderr
    assert done.stderr.count("missing from local") == 1


def test_init_leaves_out_odd_names_and_a_missing_keychain(
        tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "fresh"
    write(root / ".env.example", "my.key=x\nPATH=/x\nOPENAI_API_KEY=y\n")
    done = keyrun(["init", "-p", "renamed"], cwd=root, env=dict(
        env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"))
    assert done.returncode == 0, done.stderr
    assert "with 1 key from .env.example" in done.stderr
    assert "left out my.key, PATH" in done.stderr
    text = (root / "keyrun.toml").read_text()
    assert 'project = "renamed"' in text
    assert "my.key" not in text
    assert 'sources = ["local"]' in text
    write(root / ".env", "OPENAI_API_KEY=sk-some-value-1234\n")
    listed = keyrun(["list"], cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr


def test_log_skips_a_damaged_line_and_names_an_unreadable_log(
        project: Path, env: dict[str, str], tmp_path: Path) -> None:
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 0
    log = tmp_path / "access.log"
    with log.open("a") as handle:
        handle.write('{"time": "2026-01-0')  # cut short
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 0
    shown = keyrun(["log", "--json"], cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) == 1  # the damaged line swallowed the second entry
    assert "skipped 1 line that is not an access-log entry (line 2)" in shown.stderr
    folder = keyrun(["log"], cwd=project, env=dict(env, KEYRUN_ACCESS_LOG=str(tmp_path)))
    assert folder.returncode == 125
    assert "the access log is not a regular file (a directory)" in folder.stderr


def test_sources_says_a_missing_keychain_is_unusable(tmp_path: Path, env: dict[str, str]) -> None:
    done = keyrun(["sources", "--json"], cwd=tmp_path, env=dict(
        env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"))
    assert done.returncode == 0, done.stderr
    rows = {row["type"]: row for row in json.loads(done.stdout)["sources"]}
    assert rows["keyring"]["usable"] is False
    assert "no keychain was found" in rows["keyring"]["reason"]
    assert rows["dotenv"]["usable"] is True


def test_config_errors_point_at_the_line_of_the_option_or_key(project: Path,
                                                              env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    text = config.read_text()
    write(config, text.replace('path = ".env"', 'paht = ".env"'))
    typo = keyrun(["list"], cwd=project, env=env)
    assert typo.returncode == 125
    line = next(n for n, t in enumerate(config.read_text().splitlines(), 1) if "paht" in t)
    assert f"keyrun.toml:{line}: [sources.local] paht: unknown option 'paht'" in typo.stderr
    write(config, text.replace("OPENAI_API_KEY = {}", 'OPENAI_API_KEY = { version = "3" }'))
    pinned = keyrun(["--", "true"], cwd=project, env=env)
    line = next(n for n, t in enumerate(config.read_text().splitlines(), 1) if "version" in t)
    assert f"keyrun.toml:{line}: [keys] OPENAI_API_KEY: OPENAI_API_KEY pins version" in pinned.stderr


def test_a_base_environment_without_sources_may_be_extended(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    root = tmp_path / "based"
    write(root / "keyrun.toml", """
default_env = "dev"
[keys]
A = {}
[sources.l]
type = "dotenv"
path = ".env"
[env.base]
rotate_after = "90d"
[env.dev]
extends = "base"
sources = ["l"]
""")
    write(root / ".env", "A=value-0001\n")
    every = keyrun(["list", "--all-envs", "--json"], cwd=root, env=env)
    assert every.returncode == 0, every.stderr
    assert list(json.loads(every.stdout)["envs"]) == ["dev"]
    base = keyrun(["-e", "base", "--", "true"], cwd=root, env=env)
    assert base.returncode == 125
    assert "environment 'base' is a base for dev, with no sources of its own" in base.stderr
    assert "choose one of them: -e dev" in base.stderr
    doctor = keyrun(["doctor", "-e", "base"], cwd=root, env=env)
    assert doctor.returncode == 125
    typo = keyrun(["-e", "bsae", "--", "true"], cwd=root, env=env)
    assert "environments: dev" in typo.stderr


def test_set_warns_when_run_would_not_see_the_new_value(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    root = tmp_path / "two"
    write(root / "keyrun.toml", """
default_env = "dev"
[keys]
A = {}
[sources.first]
type = "dotenv"
path = ".env"
[sources.second]
type = "dotenv"
path = "second.env"
[env.dev]
sources = ["first", "second"]
""")
    write(root / ".env", "A=old-value-1\n")
    shadowed = keyrun(["set", "A", "--source", "second"], cwd=root, env=env, input="new-value-2")
    assert shadowed.returncode == 0, shadowed.stderr
    assert "first comes first in dev and also holds A, so run keeps its value" in shadowed.stderr
    assert "new-value-2" not in shadowed.stderr
    plain = keyrun(["set", "A"], cwd=root, env=env, input="new-value-3")
    assert "warning" not in plain.stderr


def test_missing_key_hint_writes_where_the_run_reads(project: Path, env: dict[str, str],
                                                     tmp_path: Path) -> None:
    write(project / ".env", "OTHER=1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = keyrun(["-c", str(project), "-p", "renamed", "--", "true"], cwd=elsewhere, env=env)
    assert done.returncode == 125
    assert (f"set it with: keyrun set OPENAI_API_KEY -e dev -c {project / 'keyrun.toml'} "
            "-p renamed") in done.stderr


def test_a_refused_run_is_logged_too(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    write(project / ".env", "OTHER=1\n")
    done = keyrun(["--", "true"], cwd=project, env=env)
    assert done.returncode == 125
    entry = json.loads((tmp_path / "access.log").read_text().splitlines()[-1])
    assert entry["action"] == "run-refused"
    assert entry["missing"] == ["OPENAI_API_KEY"]
    assert entry["command"] == "true"
    assert entry["reason"] == "keys missing or unreadable"
    write(project / ".env", f"OPENAI_API_KEY={CANARY}\n")
    guarded = keyrun(["--", "echo", CANARY], cwd=project, env=env)
    assert guarded.returncode == 125
    log = (tmp_path / "access.log").read_text()
    entry = json.loads(log.splitlines()[-1])
    assert (entry["action"], entry["reason"]) == ("run-refused",
                                                  "a secret in the command's arguments")
    assert_no_leak(CANARY, log)


def test_argv_guard_values_by_shape(project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    names = ["OPENAI_API_KEY", "SLACK_WEBHOOK_URL", "ADMIN_PW", "OPENAI_MODEL", "DB_HOST"]
    write(config, config.read_text().replace("OPENAI_API_KEY = {}",
                                             "\n".join(f"{n} = {{}}" for n in names)))
    values = {"OPENAI_API_KEY": CANARY,
              "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0A1B2/B0E4F5/aZ3kP9qW2xR7tY5u",
              "ADMIN_PW": "correcthorsebatterystaple", "OPENAI_MODEL": "gpt-4o-2024-08-06",
              "DB_HOST": "db-prod-01.internal.example.com"}
    write(project / ".env", "".join(f"{k}={v}\n" for k, v in values.items()))
    for name in ("SLACK_WEBHOOK_URL", "ADMIN_PW"):
        done = keyrun(["--", "echo", values[name]], cwd=project, env=env)
        assert done.returncode == 125, name
        assert f"{name} appears in the command's arguments" in done.stderr
    plain = keyrun(["--", "echo", "--model", values["OPENAI_MODEL"], values["DB_HOST"]],
                   cwd=project, env=env)
    assert plain.returncode == 0, plain.stderr


def test_dollar_brace_around_no_name_is_refused_without_quoting_it(
        project: Path, env: dict[str, str]) -> None:
    # python-dotenv would drop ${d0r!x}; keeping it would be a third value (SPEC §5)
    write(project / ".env", 'OPENAI_API_KEY="Tr0ub4${d0r!x}&9q"\n')
    done = keyrun(["--", PY, "-c", "import os; print(os.environ['OPENAI_API_KEY'])"],
                  cwd=project, env=env)
    assert done.returncode == 125
    assert f"{project / '.env'}:1: OPENAI_API_KEY's value holds a ${{ that is not" in done.stderr
    assert "Tr0ub4" not in done.stderr + done.stdout
    assert "d0r" not in done.stderr + done.stdout


def test_no_keys_and_a_source_that_cannot_list_them_is_an_error(
        tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "kr"
    write(root / "keyrun.toml", '[sources.k]\ntype = "keyring"\n[env.dev]\nsources = ["k"]\n')
    done = keyrun(["--", "true"], cwd=root, env=env)
    assert done.returncode == 125
    assert "declares no keys, and k (keyring) cannot list the keys it holds" in done.stderr


@pytest.mark.parametrize("command", [["list"], ["doctor"], ["--help"]])
def test_a_reader_gone_ends_like_gnu_tools(project: Path, env: dict[str, str],
                                           command: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([PY, "-m", "keyrun", *command], cwd=project, env=env,
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == -13, done.stderr  # SIGPIPE, as the shell's 141; not doctor's 1


def test_list_shows_a_name_run_would_refuse_as_a_row(project: Path, env: dict[str, str]) -> None:
    config = project / "keyrun.toml"
    write(config, config.read_text().replace("OPENAI_API_KEY = {}",
                                             "OPENAI_API_KEY = {}\nLD_PRELOAD = {}"))
    write(project / ".env", f"OPENAI_API_KEY={CANARY}\nLD_PRELOAD=/tmp/x.so\n")
    done = keyrun(["list", "--json"], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["keys"]}
    assert rows["OPENAI_API_KEY"]["status"] == "ok"
    assert rows["LD_PRELOAD"]["status"] == "error"
    assert "reserved name" in rows["LD_PRELOAD"]["error"]
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 125


def test_preserve_env_never_keeps_keyruns_own_token(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "tok"
    write(root / "keyrun.toml", """
[keys]
DOPPLER_TOKEN = {}
[sources.l]
type = "dotenv"
path = ".env"
[sources.d]
type = "doppler"
api_host = "http://127.0.0.1:9"
[env.dev]
sources = ["l", "d"]
""")
    write(root / ".env", "DOPPLER_TOKEN=dp.st.from-the-profile\n")
    done = keyrun(["run", "--preserve-env", "--", PY, "-c",
                   "import os; print(os.environ['DOPPLER_TOKEN'])"], cwd=root,
                  env=dict(env, DOPPLER_TOKEN="dp.st.keyruns-own"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "dp.st.from-the-profile\n"
