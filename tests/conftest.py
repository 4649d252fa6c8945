from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import clean_env, git, unavailable

# Server fixtures (openbao, redis_server, moto_server, aws…) for every test module.
pytest_plugins = ["tests.aws_server", "tests.vault_server"]

# gRPC (the Google tests' client and fake) logs a line into any process the suite forks
# while its threads run, from its fork handlers; the terminal tests compare a
# pseudo-terminal's bytes exactly. (GRPC_VERBOSITY must stay unset: a test checks that
# keyrun's own setting of it does not reach the command.)
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def require_tool(path_or_name: str) -> None:
    """A test needing a missing program fails under CI and skips elsewhere."""
    import shutil

    if shutil.which(path_or_name) is None:
        unavailable(f"{path_or_name} is not installed (bash .ci/run installs it)")


class SecretService:
    """A private D-Bus session with gnome-keyring's Secret Service, unlocked."""

    def __init__(self, root: Path) -> None:
        require_tool("dbus-daemon")
        require_tool("gnome-keyring-daemon")
        self.home = root / "home"
        self.runtime = root / "run"
        self.home.mkdir()
        self.runtime.mkdir(mode=0o700)
        env = dict(os.environ, HOME=str(self.home), XDG_RUNTIME_DIR=str(self.runtime))
        env.pop("PYTHON_KEYRING_BACKEND", None)
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        assert self.bus.stdout is not None
        self.address = self.bus.stdout.readline().decode().strip()
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        self.daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--unlock", "--components=secrets", "--foreground"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True)
        assert self.daemon.stdin is not None
        self.daemon.stdin.write(b"keyrun-test-password")
        self.daemon.stdin.close()
        self.env = {"HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.runtime),
                    "DBUS_SESSION_BUS_ADDRESS": self.address}

    def wait_ready(self) -> None:
        import keyring
        import keyring.core

        error: Exception | None = None
        for _ in range(100):
            try:
                keyring.core.init_backend()
                keyring.set_password("keyrun-test", "ready", "yes")
                return
            except Exception as exc:
                error = exc
                time.sleep(0.05)
        raise RuntimeError(f"gnome-keyring did not start: {error}")

    def stop(self) -> None:
        for process in (self.daemon, self.bus):
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a keyrun subprocess: scrubbed, HOME and the access log in tmp_path."""
    return clean_env(tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git repository (branch main)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    return root


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretService]:
    service = SecretService(tmp_path_factory.mktemp("secret-service"))
    saved = {k: os.environ.get(k) for k in (*service.env, "PYTHON_KEYRING_BACKEND")}
    try:
        os.environ.update(service.env)
        os.environ.pop("PYTHON_KEYRING_BACKEND", None)
        service.wait_ready()
        yield service
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        service.stop()
        import contextlib

        import keyring.core

        with contextlib.suppress(Exception):  # no session bus any more: keyring may complain
            keyring.core.init_backend()
