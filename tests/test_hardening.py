"""A checkout's configuration must not turn keyrun against its user (issue 12, SPEC §5
"Trust", "Reserved names (complete)", "No core file, ever", "What keyrun writes is its own").

Every test here plays the attacker against keyrun run as a real process, and fails on the
code before the fix it covers."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keyrun.environ import is_reserved
from tests.helpers import CANARY, keyrun, write

# -- reserved names ----------------------------------------------------------------------------


def _git_repository(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


FSMONITOR = ("GIT_CONFIG_COUNT=1\nGIT_CONFIG_KEY_0=core.fsmonitor\n"
             "GIT_CONFIG_VALUE_0=\"touch {marker}; false\"\n")


def test_a_dotenv_cannot_make_git_status_run_code(tmp_path: Path, env: dict[str, str]) -> None:
    """core.fsmonitor through GIT_CONFIG_COUNT: the names are left out (zero-config) and
    refused (declared), so `git status` never runs the planted command."""
    project = _git_repository(tmp_path / "checkout")
    marker = tmp_path / "pwned"
    write(project / ".env", FSMONITOR.format(marker=marker) + f"API_TOKEN={CANARY}\n")
    done = keyrun(["--", "git", "status", "--short"], cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    for name in ("GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"):
        assert f"{name} is a reserved name; left out" in done.stderr

    write(project / "keyrun.toml", '[keys]\nGIT_CONFIG_COUNT = {}\nGIT_CONFIG_KEY_0 = {}\n'
          'GIT_CONFIG_VALUE_0 = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    refused = keyrun(["-e", "dev", "--", "git", "status"], cwd=project, env=env)
    assert refused.returncode == 125
    assert "GIT_CONFIG_COUNT is a reserved name" in refused.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", [
    "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_12", "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG", "GIT_SSH", "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT", "GIT_ASKPASS", "GIT_EXEC_PATH", "GIT_PROXY_COMMAND", "GIT_PAGER",
    "GIT_DIR", "GIT_TEMPLATE_DIR", "SSH_ASKPASS", "PAGER", "MANPAGER", "LESSOPEN", "LESSCLOSE",
    "EDITOR", "VISUAL", "BROWSER", "PROMPT_COMMAND", "OPENSSL_CONF", "PYTHONWARNINGS",
    "PYTHONHOME", "PYTHONBREAKPOINT", "PERL5OPT", "RUBYOPT", "GOFLAGS", "GOPROXY",
    "RUSTC_WRAPPER", "DOTNET_STARTUP_HOOKS", "JAVA_TOOL_OPTIONS", "HTTP_PROXY", "https_proxy",
    "ALL_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED", "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL", "NPM_CONFIG_REGISTRY", "npm_config_script_shell",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "SSLKEYLOGFILE", "XDG_CONFIG_HOME",
    "ZDOTDIR", "GLIBC_TUNABLES", "VAULT_ADDR", "DOPPLER_API_HOST", "KEYRUN_TRUSTED_HOSTS",
    "LD_AUDIT", "DYLD_INSERT_LIBRARIES",
])
def test_reserved(name: str) -> None:
    assert is_reserved(name)


@pytest.mark.parametrize("name", [
    "OPENAI_API_KEY", "DATABASE_URL", "GITHUB_TOKEN", "AWS_ACCESS_KEY_ID", "KUBECONFIG",
    "GOOGLE_APPLICATION_CREDENTIALS", "NPM_TOKEN", "CARGO_REGISTRY_TOKEN", "PROXY_URL",
    "VAULT_TOKEN", "DOPPLER_TOKEN",
])
def test_not_reserved(name: str) -> None:
    assert not is_reserved(name)


# -- ownership: another user's configuration is not trusted ---------------------------------

STRANGER = 1234  # a uid with no account here: "another user" (the tests run as root)


def _attacker_python(bin_dir: Path, marker: Path) -> None:
    write(bin_dir / "python3", f"#!/bin/sh\ntouch {marker}\n", mode=0o755)


def test_a_config_planted_in_a_shared_directory_is_refused(tmp_path: Path,
                                                           env: dict[str, str]) -> None:
    """The issue's attack: a world-writable shared directory, another user's keyrun.toml in
    it with allow_reserved = ["PATH"], the victim's project below."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    marker = tmp_path / "pwned"
    _attacker_python(shared / "bin", marker)
    planted = write(shared / "keyrun.toml", '[keys]\nPATH = {}\n[sources.evil]\ntype = "dotenv"\n'
                    'path = "evil.env"\n[env.dev]\nsources = ["evil"]\nallow_reserved = ["PATH"]\n',
                    mode=0o644)
    write(shared / "evil.env", f"PATH={shared / 'bin'}:/usr/bin:/bin\n", mode=0o644)
    for path in (planted, shared / "evil.env", shared / "bin", shared / "bin" / "python3"):
        os.chown(path, STRANGER, STRANGER)
    victim = shared / "victim"
    victim.mkdir()
    write(victim / ".env", f"API_TOKEN={CANARY}\n")
    done = keyrun(["--", "python3", "-c", "import os; print(os.environ['API_TOKEN'][:3])"],
                  cwd=victim, env=env)
    assert done.returncode == 125, done.stderr
    assert not marker.exists()
    assert done.stderr == (
        f"keyrun: error: {planted}: keyrun.toml belongs to uid {STRANGER}, not to you; keyrun "
        "does not read what another user controls\n"
        f"  hint: if you trust it, make it yours: chown root {planted}; otherwise delete it\n")
    assert CANARY not in done.stdout + done.stderr


def test_discovery_stops_at_another_users_directory(tmp_path: Path, env: dict[str, str]) -> None:
    write(tmp_path / "keyrun.toml", 'project = "above"\n[keys]\nA = {}\n[sources.s]\n'
          'type = "dotenv"\n[env.dev]\nsources = ["s"]\n')
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, STRANGER, STRANGER)
    mine = theirs / "mine"
    mine.mkdir()
    write(mine / ".env", f"A={CANARY}\n")
    listing = keyrun(["list", "--json"], cwd=mine, env=env)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["project"] == "mine"  # zero-config, not "above"

    write(theirs / "keyrun.toml", "")
    found = keyrun(["list"], cwd=mine, env=env)
    assert found.returncode == 125
    assert found.stderr == (
        f"keyrun: error: {theirs / 'keyrun.toml'} was not read: {theirs} belongs to uid "
        f"{STRANGER}, not to you, and keyrun reads no configuration another user controls\n"
        f"  hint: if you trust it, make it yours: chown -R root {theirs}; or create your own "
        "keyrun.toml where you run keyrun (keyrun init), or name one with -c PATH\n")


@pytest.mark.parametrize("name", ["keyrun.toml", ".env", ".env.example", "token", "ca.pem"])
def test_files_another_user_owns_or_may_write_are_refused(tmp_path: Path, env: dict[str, str],
                                                          name: str) -> None:
    project = tmp_path / "project"
    vault = ('[sources.vault]\ntype = "vault"\nurl = "http://127.0.0.1:9"\n'
             'auth = { method = "token", token_file = "token" }\n[env.v]\nsources = ["vault"]\n'
             '[sources.tls]\ntype = "vault"\nurl = "https://127.0.0.1:9"\nca_cert = "ca.pem"\n'
             '[env.c]\nsources = ["tls"]\n')
    write(project / "keyrun.toml", '[keys]\nA = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n' + vault)
    write(project / ".env", f"A={CANARY}\n")
    write(project / ".env.example", "A=\n")
    write(project / "token", "s.not-a-real-token\n")
    write(project / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    target = project / name
    args = ["-e", {"token": "v", "ca.pem": "c"}.get(name, "dev"), "--", "true"]
    kinds = {"keyrun.toml": "keyrun.toml", ".env": "this .env file",
             ".env.example": ".env.example", "token": "this Vault credential file",
             "ca.pem": "the CA certificate ca_cert names"}
    what = kinds[name]

    os.chown(target, STRANGER, STRANGER)
    owned = keyrun(args, cwd=project, env=env)
    assert owned.returncode == 125
    assert (f"{target}: {what} belongs to uid {STRANGER}, not to you; keyrun does not read "
            "what another user controls") in owned.stderr
    assert f"if you trust it, make it yours: chown root {target}" in owned.stderr

    os.chown(target, 0, 0)
    target.chmod(0o602)
    writable = keyrun(args, cwd=project, env=env)
    assert writable.returncode == 125
    assert (f"{target}: {what} may be written by every user (mode o+w), so they could "
            "change what keyrun does") in writable.stderr
    assert f"chmod go-w {target}" in writable.stderr

    os.chown(target, 0, STRANGER)
    target.chmod(0o620)
    group = keyrun(args, cwd=project, env=env)
    assert group.returncode == 125
    assert f"{what} may be written by the members of group gid {STRANGER} (mode g+w)" \
        in group.stderr
    assert CANARY not in owned.stderr + writable.stderr + group.stderr

    target.chmod(0o600)
    if name not in ("token", "ca.pem"):  # no Vault server: the file is read, the rest fails
        assert keyrun(args, cwd=project, env=env).returncode == 0


def test_a_directory_others_may_write_is_refused_unless_sticky(tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    """Another user who may rename what is in the project directory could swap keyrun.toml
    or .env for another file of yours; /tmp's sticky bit forbids that, so it is fine."""
    project = tmp_path / "project"
    write(project / "keyrun.toml", '[keys]\nA = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    write(project / ".env", f"A={CANARY}\n")
    project.chmod(0o777)
    shared = keyrun(["--", "true"], cwd=project, env=env)
    assert shared.returncode == 125
    assert (f"keyrun: error: {project / 'keyrun.toml'}: keyrun.toml is in {project}, which "
            "every user (mode o+w) may write, so they could put another file in its place\n"
            f"  hint: chmod go-w {project}\n") == shared.stderr
    project.chmod(0o1777)
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 0
    project.chmod(0o755)
    os.chown(project, STRANGER, STRANGER)
    theirs = keyrun(["-c", str(project / "keyrun.toml"), "--", "true"], cwd=tmp_path, env=env)
    assert theirs.returncode == 125
    assert (f"{project / 'keyrun.toml'}: keyrun.toml is in {project}, which belongs to uid "
            f"{STRANGER}, who could put another file in its place") in theirs.stderr
    assert CANARY not in shared.stdout + shared.stderr + theirs.stdout + theirs.stderr


def test_a_symlink_another_user_planted_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    mine = write(tmp_path / "elsewhere.env", f"A={CANARY}\n")
    write(project / "keyrun.toml", '[keys]\nA = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    (project / ".env").symlink_to(mine)
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 0
    os.lchown(project / ".env", STRANGER, STRANGER)
    planted = keyrun(["--", "true"], cwd=project, env=env)
    assert planted.returncode == 125
    assert f"{project / '.env'}: this .env file belongs to uid {STRANGER}" in planted.stderr


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_example_file_that_is_no_file_is_refused_at_once(tmp_path: Path,
                                                            env: dict[str, str],
                                                            kind: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(project / ".env", f"A={CANARY}\n")
    example = project / ".env.example"
    if kind == "fifo":
        os.mkfifo(example, 0o600)
    else:
        example.symlink_to("/dev/zero")
    done = keyrun(["--", "true"], cwd=project, env=env, timeout=20)
    assert done.returncode == 125
    what = "a FIFO" if kind == "fifo" else "a character device"
    assert f"{example}: .env.example is not a regular file ({what})" in done.stderr


# -- a stripped token cannot come back ------------------------------------------------------

TOKEN = "hvs.CAESIJ" + "kq3Zt0Yd8pWm2vX7"


@pytest.mark.parametrize(("variable", "written"), [
    ("BAO_TOKEN", "${BAO_TOKEN}"),
    ("VAULT_TOKEN", '"Bearer ${VAULT_TOKEN}"'),
    ("DOPPLER_TOKEN", "${DOPPLER_TOKEN:-none}"),
])
def test_a_token_cannot_come_back_through_a_dotenv_value(
        tmp_path: Path, env: dict[str, str], variable: str, written: str) -> None:
    project = tmp_path / "project"
    write(project / ".env", f"API_KEY={written}\nOTHER=plain-value\n")
    env[variable] = TOKEN
    for flags in ([], ["--clean-env"]):
        done = keyrun([*flags, "--", "env"], cwd=project, env=env)
        assert done.returncode == 125, done.stderr
        assert (f"API_KEY: .env: holds the value of {variable}, a secret-manager token that "
                "keyrun keeps from the command") in done.stderr
        assert TOKEN not in done.stdout + done.stderr
    listing = keyrun(["list", "--json"], cwd=project, env=env)
    row = {r["name"]: r for r in json.loads(listing.stdout)["keys"]}["API_KEY"]
    assert (row["status"], row["preview"]) == ("error", None)
    assert TOKEN not in listing.stdout + listing.stderr

    write(project / "keyrun.toml", '[keys]\nAPI_KEY = {}\n[sources.local]\ntype = "dotenv"\n'
          f'[env.dev]\nsources = ["local"]\npass_env = ["{variable}"]\n')
    allowed = keyrun(["--clean-env", "--", "env"], cwd=project, env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert TOKEN in allowed.stdout


# -- no core file, ever ----------------------------------------------------------------------


class StallingServer:
    """An HTTP server on loopback that takes a request and never answers it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.asked = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)
            connection.recv(65536)
            self.asked.set()

    def close(self) -> None:
        for connection in self.held:
            connection.close()
        self.listener.close()


def _unlimited_cores() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _cores(*directories: Path) -> list[Path]:
    return [path for directory in directories for path in directory.glob("core*")]


@pytest.mark.parametrize("command", [["--", "true"], ["list"], ["doctor"],
                                     ["set", "B", "--source", "doppler"]])
def test_no_core_file_when_keyrun_aborts_mid_fetch(tmp_path: Path, env: dict[str, str],
                                                   command: list[str]) -> None:
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    elsewhere = [Path(pattern).parent] if pattern.startswith("/") else []
    server = StallingServer()
    project = tmp_path / "project"
    write(project / "keyrun.toml", '[keys]\nA = {}\nB = {}\n[sources.local]\ntype = "dotenv"\n'
          f'[sources.doppler]\ntype = "doppler"\nproject = "p"\nconfig = "c"\n'
          f'api_host = "{server.url}"\n[env.dev]\nsources = ["local", "doppler"]\n')
    write(project / ".env", f"A={CANARY}\n")
    env["DOPPLER_TOKEN"] = TOKEN
    before = {path: path.stat().st_mtime for path in _cores(*elsewhere)}
    process = subprocess.Popen([sys.executable, "-m", "keyrun", *command], cwd=project,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=_unlimited_cores)
    try:
        assert process.stdin is not None
        process.stdin.write(b"new-value-0123456789")
        process.stdin.close()
        assert server.asked.wait(30), "keyrun never asked the server"
        process.send_signal(signal.SIGABRT)
        assert process.wait(30) == -signal.SIGABRT
    finally:
        process.kill()
        server.close()
    assert _cores(project) == []
    for path in _cores(*elsewhere):
        if before.get(path) != path.stat().st_mtime:
            data = path.read_bytes()
            assert CANARY.encode() not in data, path
            assert TOKEN.encode() not in data, path


def test_the_command_keeps_its_own_core_limit(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    write(project / ".env", f"A={CANARY}\n")
    for flags in ([], ["--mask"]):
        done = subprocess.run([sys.executable, "-m", "keyrun", *flags, "--", "sh", "-c",
                               "ulimit -c"], cwd=project, env=env, capture_output=True,
                              text=True, timeout=60, preexec_fn=_unlimited_cores, check=False)
        assert (done.returncode, done.stdout) == (0, "unlimited\n"), done.stderr


def _core_limits(soft: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, resource.RLIM_INFINITY))
    return apply


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/limits")
@pytest.mark.parametrize("soft", [0, resource.RLIM_INFINITY])
def test_keyrun_holds_a_core_limit_of_one_byte_while_it_fetches(
        tmp_path: Path, env: dict[str, str], soft: int) -> None:
    # 1 byte is what keeps a core from a core_pattern pipe; an unlimited hard limit
    # (RLIM_INFINITY, -1 to Python) must neither leave it unlimited nor raise a soft 0
    server = StallingServer()
    project = tmp_path / "project"
    write(project / "keyrun.toml", '[keys]\nA = {}\n[sources.doppler]\ntype = "doppler"\n'
          f'project = "p"\nconfig = "c"\napi_host = "{server.url}"\n'
          '[env.dev]\nsources = ["doppler"]\n')
    env["DOPPLER_TOKEN"] = TOKEN
    process = subprocess.Popen([sys.executable, "-m", "keyrun", "list"], cwd=project, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=_core_limits(soft))
    try:
        assert server.asked.wait(30), "keyrun never asked the server"
        limits = Path(f"/proc/{process.pid}/limits").read_text()
    finally:
        process.kill()
        process.wait(10)
        server.close()
    line = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert line.split()[4:6] == ["1", "unlimited"], line


# -- SIGKILL: the command dies with keyrun --------------------------------------------------

SUPERVISE = """
import os, sys
from keyrun.launch import make_undumpable, supervise

class Keeper:
    def first_renewal(self): return None
    def renew(self): return None
    def release(self): pass

make_undumpable()
supervise(sys.argv[1:], dict(os.environ), Keeper())
"""


def _gone(pid: int, within: float = 10) -> bool:
    """Whether ``pid`` has ended (a zombie nobody reaps yet counts as ended)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _command_pid(path: Path) -> int:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if path.exists() and path.read_text().endswith("\n"):
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the command never started")


@pytest.mark.parametrize("how", ["mask-pipes", "mask-terminal", "leases"])
def test_the_command_dies_when_keyrun_is_killed(tmp_path: Path, env: dict[str, str],
                                                how: str) -> None:
    project = tmp_path / "project"
    write(project / ".env", f"A={CANARY}\n")
    pid_file = tmp_path / "command.pid"
    # A command that ignores the hangup a terminal's end sends, as nohup'd jobs do.
    command = ["sh", "-c", f"trap '' HUP TERM; echo $$ > {pid_file}; exec sleep 120"]
    if how == "leases":  # what a profile with Vault leases runs: keyrun.launch.supervise
        argv = [sys.executable, "-c", SUPERVISE, *command]
    else:
        argv = [sys.executable, "-m", "keyrun", "--mask", "--", *command]
    terminal = how == "mask-terminal"
    master, slave = os.openpty() if terminal else (None, None)
    process = subprocess.Popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL,
                               stdout=slave if terminal else subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        pid = _command_pid(pid_file)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        assert _gone(pid), f"the command ({how}) outlived keyrun"
    finally:
        process.kill()
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)


# -- what Python code is handed shows names only -----------------------------------------------

FAILING_TESTS = '''
import os
import keyrun

def test_arguments(keyrun_secrets):
    assert not keyrun_secrets

def test_equality(keyrun_secrets):
    assert keyrun_secrets == {"OPENAI_API_KEY": "something else"}

def test_value(keyrun_secrets):
    value = keyrun_secrets["OPENAI_API_KEY"]
    assert value == "something else"

def test_printed(keyrun_secrets):
    print(os.environ.get("OPENAI_API_KEY"), keyrun_secrets["OPENAI_API_KEY"])
    assert False

def test_loaded():
    values = keyrun.load()
    assert values is None

def test_pydantic_source():
    from pydantic_settings import BaseSettings
    from keyrun.pydantic import KeyrunSettingsSource

    class Settings(BaseSettings):
        openai_api_key: str

    source = KeyrunSettingsSource(Settings)
    assert not source.env_vars

def test_values_stay_plain_strings(keyrun_secrets):
    value = keyrun_secrets["OPENAI_API_KEY"]
    assert type(value) is str and value.startswith("sk-") and isinstance(keyrun_secrets, dict)
    assert type(keyrun.load()["OPENAI_API_KEY"]) is str
'''


@pytest.mark.parametrize("session", [[], ["--keyrun-env", "dev"]])
@pytest.mark.parametrize("verbosity", [[], ["-vv"]])
def test_a_failing_pytest_run_shows_no_value(tmp_path: Path, env: dict[str, str],
                                             session: list[str], verbosity: list[str]) -> None:
    root = tmp_path / "app"
    write(root / "keyrun.toml", '[keys]\nOPENAI_API_KEY = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    write(root / ".env", f"OPENAI_API_KEY=sk-{CANARY}\n")
    write(root / "test_app.py", FAILING_TESTS)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-l",
                           *verbosity, *session], cwd=root,
                          env=dict(env, CI="1"), capture_output=True, text=True, timeout=120,
                          check=False)
    assert "6 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    for part in (CANARY, CANARY[:12], CANARY[-8:]):  # whole, or shortened by pytest
        assert part not in done.stdout + done.stderr
    assert "<keyrun values: OPENAI_API_KEY>" in done.stdout


LOADING_TESTS = '''
import warnings
import keyrun

def test_compares():
    value = keyrun.load()["OPENAI_API_KEY"]
    assert value == "something else"

def test_passes_and_prints():
    print(keyrun.load()["OPENAI_API_KEY"])

def test_warns():
    warnings.warn("the key " + keyrun.load()["OPENAI_API_KEY"] + " is old")
'''


def test_values_a_test_loads_itself_are_shown_nowhere(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    # no fixture and no --keyrun-env: keyrun.load in a test, in a module that fails to
    # import, in a passing test's output (-rA shows it) and in a warning
    root = tmp_path / "app"
    write(root / "keyrun.toml", '[keys]\nOPENAI_API_KEY = {}\n[sources.local]\ntype = "dotenv"\n'
          '[env.dev]\nsources = ["local"]\n')
    write(root / ".env", f"OPENAI_API_KEY=sk-{CANARY}\n")
    write(root / "test_app.py", LOADING_TESTS)
    write(root / "test_broken.py", 'import keyrun\nVALUE = keyrun.load()["OPENAI_API_KEY"]\n'
          'assert VALUE == "x", VALUE\n')
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-l",
                           "-vv", "-rA", "--continue-on-collection-errors"], cwd=root, env=dict(env, CI="1"), capture_output=True,
                          text=True, timeout=120, check=False)
    assert "1 failed, 2 passed, 1 warning, 1 error" in done.stdout, done.stdout + done.stderr
    for part in (CANARY, CANARY[:12], CANARY[-8:]):
        assert part not in done.stdout + done.stderr
    assert "the key <OPENAI_API_KEY> is old" in done.stdout


def test_keyrun_error_is_importable_from_keyrun() -> None:
    import keyrun
    from keyrun import errors

    assert keyrun.KeyrunError is errors.KeyrunError
    for name in ("ConfigError", "SourceError", "ResolutionError", "UsageError", "LaunchError",
                 "MissingSdkError"):
        assert issubclass(getattr(keyrun, name), keyrun.KeyrunError)


# -- smaller ways out ------------------------------------------------------------------------

GITHUB_TOKEN = "ghp_" + "R7x2Kq9LmZ4vT1sW8yB3nC6dF0gH5jP2aE7u"
DASHED_TOKEN = "sk-proj-" + "Ab12Cd34Ef56Gh78Ij90Kl12Mn34"


def test_init_never_takes_a_pasted_token_for_a_name(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "fresh"
    write(root / ".env.example", f"OPENAI_API_KEY=\n{DASHED_TOKEN}\nGITHUB_TOKEN=\n"
          f"{GITHUB_TOKEN}\n")
    done = keyrun(["init"], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    text = (root / "keyrun.toml").read_text()
    assert "OPENAI_API_KEY = {}" in text
    assert "GITHUB_TOKEN = {}" in text
    assert "left out line 2 (a value without a name), line 4 (a value without a name)" \
        in done.stderr
    for token in (DASHED_TOKEN, GITHUB_TOKEN):
        assert token not in text + done.stderr
    listing = keyrun(["list", "--json"], cwd=root, env=env)
    assert GITHUB_TOKEN not in listing.stdout + listing.stderr
    doctor = keyrun(["doctor", "--json"], cwd=root, env=env)
    check = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["example-placeholders"]
    assert check["status"] == "fail"
    assert "line 2 (a value on a line of its own), line 4" in check["message"]
    assert GITHUB_TOKEN not in doctor.stdout + doctor.stderr


def test_a_value_given_as_the_command_is_never_logged_or_echoed(tmp_path: Path,
                                                                env: dict[str, str]) -> None:
    project = tmp_path / "project"
    write(project / ".env", f"API_TOKEN={GITHUB_TOKEN}\n")
    refused = keyrun(["--", GITHUB_TOKEN], cwd=project, env=env)
    assert refused.returncode == 125
    allowed = keyrun(["--allow-argv-secrets", "--", GITHUB_TOKEN, "x"], cwd=project, env=env)
    assert allowed.returncode == 127
    assert allowed.stderr.startswith("keyrun: error: <API_TOKEN>: command not found")
    log = (tmp_path / "access.log").read_text()
    assert [json.loads(line)["command"] for line in log.splitlines()] == ["<API_TOKEN>"] * 2
    assert GITHUB_TOKEN not in refused.stderr + allowed.stderr + log


@pytest.mark.parametrize("kind", ["another user's", "fifo"])
def test_the_access_log_is_only_a_file_of_ones_own(tmp_path: Path, env: dict[str, str],
                                                   kind: str) -> None:
    project = tmp_path / "project"
    write(project / ".env", f"A={CANARY}\n")
    log = tmp_path / "access.log"
    if kind == "fifo":
        os.mkfifo(log, 0o600)
    else:
        write(log, "theirs\n", mode=0o666)
        os.chown(log, STRANGER, STRANGER)
    done = keyrun(["--", "true"], cwd=project, env=env, timeout=20)
    assert done.returncode == 0
    problem = "not a regular file" if kind == "fifo" else f"owned by uid {STRANGER}, not by you"
    assert f"cannot write the access log {log} ({problem})" in done.stderr
    if kind != "fifo":
        assert log.read_text() == "theirs\n"
        assert log.stat().st_mode & 0o777 == 0o666
    shown = keyrun(["log"], cwd=project, env=env, timeout=20)  # not read, nor waited on
    assert shown.returncode == 125
    what = "is not a regular file (a FIFO)" if kind == "fifo" else f"belongs to uid {STRANGER}"
    assert f"keyrun: error: {log}: the access log {what}" in shown.stderr


def test_a_variable_name_inside_a_value_is_never_quoted(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    project = tmp_path / "project"
    write(project / ".env", 'PASSWORD="pa${Zq9xK2w}rd-1234"\n')
    run = keyrun(["--", "true"], cwd=project, env=env)
    assert run.returncode == 125
    assert "PASSWORD's value refers to a variable (its ${…} number 1) that is set neither" \
        in run.stderr
    listing = keyrun(["list", "--json"], cwd=project, env=env)
    doctor = keyrun(["doctor", "--json"], cwd=project, env=env)
    for done in (run, listing, doctor):
        assert "Zq9xK2w" not in done.stdout + done.stderr


ESCAPE = "\x1b]0;owned\x07\x1b[2J\u202e"


def test_names_from_outside_are_printed_with_control_characters_escaped(
        tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / f"proj{ESCAPE}"
    write(project / ".env", f"A={CANARY}\n")
    write(project / f"notes{ESCAPE}.txt", f"key = {GITHUB_TOKEN}\n")
    outputs = [keyrun(args, cwd=project, env=env) for args in (
        ["list"], ["list", "--json"], ["doctor"], ["doctor", "--json"], ["--", "true"],
        ["log"], ["log", "--json"], ["scan", "."], ["scan", "--format", "json", "."],
        ["--", "sh", "-c", "exit 3"], ["set", "B"])]
    shown = "".join(done.stdout + done.stderr for done in outputs)
    for character in "\x1b\x07\u202e":
        assert character not in shown
    assert "proj\\x1b]0;owned\\x07\\x1b[2J\\u202e" in shown
    assert "proj\\u001b]0;owned\\u0007\\u001b[2J\\u202e" in shown  # in JSON, still JSON
    assert "notes\\x1b]0;owned" in shown


def test_doctor_fails_what_run_refuses_before_exec(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_bytes(b"NUL=a\x00b-value\nBIG=" + b"x" * 140_000 + b"\n")
    (project / ".env").chmod(0o600)
    assert keyrun(["--", "true"], cwd=project, env=env).returncode == 125
    doctor = keyrun(["doctor", "--json"], cwd=project, env=env)
    assert doctor.returncode == 1
    check = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}["missing-keys"]
    assert check["status"] == "fail"
    assert "cannot pass NUL holds a NUL character" in check["message"]
    assert "carry; cannot pass BIG is 140005 bytes" in check["message"]
    assert check["keys"] == ["NUL", "BIG"]


@pytest.mark.parametrize("value", [
    "${\nFOO=bar", "x\n${Y}\nNAME=1", "a'b\"c\\d", "line one\nOTHER=two", "tab\there",
    "carriage\rreturn", "quote at end'", "back\\", "#not a comment", " spaces ", "$HOME",
    "\u2028separator\x85next",
])
def test_set_writes_what_the_next_read_gives_back_or_refuses(tmp_path: Path,
                                                             env: dict[str, str],
                                                             value: str) -> None:
    project = tmp_path / "project"
    write(project / ".env", "OTHER=kept\n")
    done = keyrun(["set", "KEY"], cwd=project, env=env, input=value.encode() + b"\n")
    read = keyrun(["--", sys.executable, "-c",
                   "import os, json; print(json.dumps([os.environ.get('KEY'), "
                   "os.environ['OTHER']]))"], cwd=project, env=env)
    assert read.returncode == 0, read.stderr  # the file stays readable, whatever was given
    expected = [value if done.returncode == 0 else None, "kept"]
    assert json.loads(read.stdout) == expected


@pytest.mark.parametrize("name", ["keyrun.toml", ".gitignore"])
def test_init_never_writes_through_a_symlink(tmp_path: Path, env: dict[str, str],
                                             name: str) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    target = write(tmp_path / "victim-file", "mine\n")
    (root / name).symlink_to(target)
    done = keyrun(["init", "--force"], cwd=root, env=env)
    assert done.returncode == 125
    assert (f"{root / name} is a symbolic link, not a file, or another user's; keyrun writes "
            "only a file of its own") in done.stderr
    assert target.read_text() == "mine\n"
