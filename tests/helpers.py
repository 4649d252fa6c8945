"""Shared test helpers: a scrubbed environment, keyrun run as a real subprocess, and a
source built and asked as the core does."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from keyrun.sources import (
    Context,
    Deadline,
    Item,
    Outcome,
    Problem,
    Request,
    Source,
    check_settings,
)

# A value that must never appear in keyrun's own output, logs or files.
CANARY = "kr-canary-" + "5e1f0c2a9d7b4386"

_SCRUB_PREFIXES = ("AWS_", "VAULT_", "BAO_", "DOPPLER_", "GOOGLE_", "AZURE_", "KEYRUN_",
                   "CLOUDSDK_", "GCLOUD_", "MSI_", "IDENTITY_")


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The inherited environment without any cloud or keyrun setting, HOME and the access
    log inside ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), KEYRUN_ACCESS_LOG=str(tmp / "access.log"),
               XDG_STATE_HOME=str(tmp / "state"), PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    env.update(extra)
    return env


# A command (python -c) printing a digest (``digest``) of each variable named in its
# arguments, of "-" for one it lacks: what the command got, without printing a value.
PRINT_DIGESTS = ("import hashlib, os, sys; print(' '.join(hashlib.sha256(os.environ.get(k, '-')"
                 ".encode()).hexdigest()[:16] for k in sys.argv[1:]))")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checks(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    """``keyrun doctor --json``'s checks by id."""
    return {check["id"]: check for check in json.loads(done.stdout)["checks"]}


def log_entries(tmp: Path, secret: str | None = None) -> list[dict[str, object]]:
    """The entries of the access log clean_env(tmp) sets (none when there is no log);
    ``secret`` asserted absent from it."""
    log = tmp / "access.log"
    if not log.exists():
        return []
    text = log.read_text()
    if secret is not None:
        assert secret not in text
    return [json.loads(line) for line in text.splitlines()]


def keyrun(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    input: bytes | str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m keyrun ARGS`` as a real process."""
    data = input.encode() if isinstance(input, str) else input
    done = subprocess.run([sys.executable, "-m", "keyrun", *args], cwd=cwd, env=dict(env),
                          input=data, capture_output=True, timeout=timeout, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def assert_no_leak(value: str, *texts: str, root: Path | None = None) -> None:
    """``value`` appears in none of ``texts`` and in no file under ``root`` except .env
    files (where the test itself put it)."""
    for text in texts:
        assert value not in text
    if root is None:
        return
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith(".env") and "site-packages" not in str(path):
            assert value.encode() not in path.read_bytes(), f"{value!r} leaked into {path}"


def unavailable(message: str) -> NoReturn:
    """A server or program a test needs is missing: the test fails under CI (which must
    have everything) and skips elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A loopback port nobody listens on (closed again at once: a refused connection)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# git as a test runs it: a fixed author, no system or user configuration.
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def read_to_end(fd: int, timeout: float = 60) -> bytes:
    """Everything a pseudo-terminal's master (or a pipe) gives until its other side is
    closed (EIO or EOF), at most ``timeout`` seconds."""
    import select
    import time

    output = bytearray()  # bytes += would copy all so far at every read
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    return bytes(output)


def write_project(root: Path, config: str, files: Mapping[str, str] | None = None) -> Path:
    """A checkout at ``root``: ``config`` as its keyrun.toml, and ``files`` (name → text)
    beside it."""
    write(root / "keyrun.toml", config)
    for name, text in (files or {}).items():
        write(root / name, text)
    return root


def dotenv_project(root: Path, values: Mapping[str, str], extra: str = "") -> Path:
    """A project at ``root`` whose environment ``dev`` (the default) reads ``values`` from
    its .env file; ``extra`` is appended to its keyrun.toml."""
    keys = "".join(f"{name} = {{}}\n" for name in values)
    return write_project(root, 'default_env = "dev"\n[keys]\n' + keys
                         + '[sources.local]\ntype = "dotenv"\n[env.dev]\nsources = ["local"]\n'
                         + extra,
                         {".env": "".join(f"{name}={value}\n" for name, value in values.items())})


def keyrun_on_terminal(args: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                       terminal: str = "stdout", columns: int = 80, input: str = "",
                       timeout: float = 60) -> tuple[int, str, str]:
    """``python -m keyrun ARGS`` with ``terminal`` (stdout or stderr) on a pseudo-terminal
    of ``columns`` columns, the other stream a pipe: (status, stdout, stderr)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, terminal: slave}
    process = subprocess.Popen([sys.executable, "-m", "keyrun", *args], cwd=cwd,
                               env={**env, "TERM": "xterm"}, stdin=subprocess.PIPE,
                               stdout=streams["stdout"], stderr=streams["stderr"])
    os.close(slave)
    assert process.stdin is not None
    process.stdin.write(input.encode())
    process.stdin.close()
    shown = read_to_end(master, timeout).decode("utf-8", "replace").replace("\r\n", "\n")
    os.close(master)
    piped = process.stdout if terminal == "stderr" else process.stderr
    assert piped is not None
    other = piped.read().decode("utf-8", "replace")
    status = process.wait(timeout)
    return (status, other, shown) if terminal == "stderr" else (status, shown, other)


S = TypeVar("S", bound=Source)


def build_source(cls: type[S], name: str, settings: Mapping[str, Any], *, project: str = "proj",
                 env: str = "dev", root: Path = Path("."), environ: Mapping[str, str] | None = None,
                 where: str | None = None, **context: Any) -> S:
    """A ``cls`` source named ``name`` as the core makes it: ``settings`` checked (errors
    name ``where``, ``[sources.NAME]`` by default), read for ``project``/``env`` with
    ``environ`` (a copy of this process's by default) as its environment; ``context`` sets
    the Context's other fields (interactive, warn, config…)."""
    environ = dict(os.environ) if environ is None else environ
    checked = check_settings(cls, name, dict(settings), where or f"[sources.{name}]")
    return cls(name, checked, Context(project, env, root, environ, **context))


def fetch(source: Source, *requests: Request | str, seconds: float = 10) -> dict[str, Outcome]:
    """What ``source`` gives for each request within ``seconds`` (a plain key asks for its
    backend name), a key it left out as missing."""
    asked = [r if isinstance(r, Request) else Request(r, source.backend_name(r))
             for r in requests]
    outcomes = source.fetch(asked, Deadline(seconds))
    return {r.key: outcomes.get(r.key) or Problem.missing() for r in asked}


def value(outcome: object) -> str:
    assert isinstance(outcome, Item), f"expected a value, got {outcome!r}"
    return outcome.value.reveal()


def as_problem(outcome: object) -> Problem:
    assert isinstance(outcome, Problem), f"expected a problem, got {outcome!r}"
    return outcome


def problem(outcome: object, kind: str) -> str:
    """The message of ``outcome``, a problem of ``kind``."""
    found = as_problem(outcome)
    assert found.kind == kind, found
    return found.message
