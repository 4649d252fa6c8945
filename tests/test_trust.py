"""The trust boundary (SPEC §5 "Trust"): a checkout's keyrun.toml cannot send the user's
tokens to a host the user did not choose.

Each remote source is pointed at a sniffer listening on a NON-loopback address of this
machine that records every connection and every request's headers. Refused, it must see
nothing at all; once the host is trusted (over https, with the sniffer's own CA) it must see
the request and the token — so the refusal came from the trust rule, not from a host that
could not be reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from keyrun.sources import Source
from keyrun.sources.azure import AzureKeyVaultSource
from keyrun.sources.doppler import DopplerSource
from keyrun.sources.gcp import GcpSecretManagerSource
from keyrun.sources.vault import VaultSource
from keyrun.trust import TrustError, is_loopback, normalize_host
from tests.azure_server import make_certificate
from tests.gcp_server import service_account
from tests.helpers import (
    assert_no_leak,
    build_source,
    clean_env,
    keyrun,
    unavailable,
    write,
    write_project,
)

VAULT_TOKEN = "hvs.kr-trust-vault-" + "0b9c1d2e3f4a"
DOPPLER_TOKEN = "dp.st.kr-trust-doppler-" + "7a6b5c4d3e2f"
AZURE_TOKEN = "kr-trust-azure-" + "91a2b3c4d5e6"
TEAM_VAULT = "https://vault.team.example:8200"  # the user's own VAULT_ADDR
_ADDED = "198.18.0.77"  # RFC 2544's benchmarking range: routed nowhere


# a non-loopback address of this machine


def _global_address() -> str | None:
    try:
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                               capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return None
    for line in shown.splitlines():
        words = line.split()
        if "inet" in words:
            address = words[words.index("inet") + 1].split("/")[0]
            if not is_loopback(address) and _bindable(address):
                return address
    return None


def _bindable(address: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _added_address() -> str | None:
    """A benchmarking-range address added to ``lo``: not a loopback address (keyrun judges
    the address, not the interface), which the kernel delivers locally."""
    command = ["ip", "addr", "add", f"{_ADDED}/32", "dev", "lo"]
    if subprocess.run(command, capture_output=True, timeout=10, check=False).returncode:
        return None
    return _ADDED if _bindable(_ADDED) else None


@pytest.fixture(scope="session")
def outside() -> Iterator[str]:
    """An IPv4 address of this machine that is not loopback: an interface's, or one added
    (and removed afterwards) when the machine has only 127.0.0.1."""
    address = _global_address()
    added = address is None
    if added:
        address = _added_address()
    try:
        if address is None:
            unavailable("no non-loopback address here, and none could be added (ip addr add "
                        "needs root)")
        yield address
    finally:
        if added:
            subprocess.run(["ip", "addr", "del", f"{_ADDED}/32", "dev", "lo"],
                           capture_output=True, timeout=10, check=False)


class Tls(NamedTuple):
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls(outside: str, tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls(*make_certificate(tmp_path_factory.mktemp("trust-tls"), (outside,)))


# sniffers


class Seen(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]


class Sniffer:
    """HTTP, or HTTPS with ``tls``: counts connections, records every request. It answers
    404, except a Key Vault challenge (401) to a request without a token when ``azure``,
    and managed-identity tokens on ``/msi/token``."""

    def __init__(self, address: str, tls: Tls | None = None, *, azure: bool = False,
                 redirect: str | None = None) -> None:
        self.connections = 0
        self.seen: list[Seen] = []
        self.azure = azure
        self.redirect = redirect  # answer every request with a 307 to this base URL
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
        self.server = _SniffingServer((address, 0), _Sniff, self, context)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://{address}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def tokens(self, header: str) -> list[str]:
        return [seen.headers[header] for seen in self.seen if header in seen.headers]

    def silent(self) -> bool:
        """Not even a connection."""
        return self.connections == 0 and not self.seen

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _SniffingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 sniffer: Sniffer, context: ssl.SSLContext | None) -> None:
        super().__init__(address, handler)
        self.sniffer = sniffer
        self.context = context

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.sniffer.connections += 1
        sock.settimeout(10)
        if self.context is None:
            return sock, address
        return self.context.wrap_socket(sock, server_side=True), address


class _Sniff(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SniffingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_GET

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        sniffer = self.server.sniffer
        headers = {name.lower(): value for name, value in self.headers.items()}
        sniffer.seen.append(Seen(self.command, self.path, headers))
        if sniffer.redirect:
            self._send(307, {}, {"Location": sniffer.redirect + self.path})
        elif self.path.startswith("/msi/token"):
            self._send(200, {"access_token": AZURE_TOKEN, "token_type": "Bearer",
                             "expires_on": str(int(time.time()) + 3600), "resource": ""})
        elif sniffer.azure and "authorization" not in headers:
            host = str(self.server.server_address[0]).split(".", 1)[1]  # a dot-suffix of it
            self._send(401, {"error": {"code": "Unauthorized", "message": "no token"}}, {
                "WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/'
                                    f'common", resource="https://{host}:{sniffer.port}"'})
        else:
            self._send(404, {"errors": ["sniffed"], "messages": ["sniffed"],
                             "error": {"code": "NotFound", "message": "sniffed"}})

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
              ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json",
                            "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class GrpcSniffer:
    """A gRPC server over TLS that records the metadata of every call (and answers
    UNIMPLEMENTED)."""

    def __init__(self, address: str, tls: Tls) -> None:
        import grpc

        self.seen: list[dict[str, str]] = []
        sniffer = self

        class Record(grpc.GenericRpcHandler):  # type: ignore[misc]
            def service(self, details: Any) -> None:
                sniffer.seen.append({k: str(v) for k, v in details.invocation_metadata})

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((Record(),))
        credentials = grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])
        self.port = self.server.add_secure_port(f"{address}:0", credentials)
        self.endpoint = f"{address}:{self.port}"
        self.server.start()

    def silent(self) -> bool:
        return not self.seen

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)


@pytest.fixture
def plain(outside: str) -> Iterator[Sniffer]:
    sniffer = Sniffer(outside)
    yield sniffer
    sniffer.stop()


@pytest.fixture
def https(outside: str, tls: Tls) -> Iterator[Sniffer]:
    sniffer = Sniffer(outside, tls)
    yield sniffer
    sniffer.stop()


@pytest.fixture
def azure_https(outside: str, tls: Tls) -> Iterator[Sniffer]:
    sniffer = Sniffer(outside, tls, azure=True)
    yield sniffer
    sniffer.stop()


@pytest.fixture
def grpc_sniffer(outside: str, tls: Tls) -> Iterator[GrpcSniffer]:
    try:
        sniffer = GrpcSniffer(outside, tls)
    except Exception as exc:  # grpcio missing: a failure under CI
        unavailable(f"the gRPC sniffer cannot start: {exc}")
    yield sniffer
    sniffer.stop()


# projects


def project(tmp_path: Path, source: str, more: str = "") -> Path:
    """A checkout whose keyrun.toml reads OPENAI_API_KEY from ``[sources.team]`` in dev;
    ``more`` adds tables."""
    return write_project(tmp_path / "checkout", f"""\
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}

[sources.team]
{source}

[env.dev]
sources = ["team"]
timeout = "5s"
{more}""")


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "config"), **extra)


COMMANDS = {"run": ["--", sys.executable, "-c", "pass"], "list": ["list"],
            "doctor": ["doctor", "--json"]}


def refused(command: str, root: Path, env: dict[str, str], sniffer: Sniffer | GrpcSniffer,
            message: str, hint: str) -> None:
    """``command`` sends nothing to ``sniffer``, and says so: 125 with the refusal for run
    and list; for doctor, a failing sources check whose fix is the hint."""
    done = keyrun(COMMANDS[command], cwd=root, env=env)
    assert sniffer.silent(), sniffer.seen
    if command == "doctor":
        assert done.returncode == 1, done.stderr
        checks = {c["id"]: c for c in json.loads(done.stdout)["checks"]}
        assert checks["sources"] == {"id": "sources", "status": "fail",
                                     "message": f"team: {message}", "fix": hint, "keys": []}
        assert checks["missing-keys"]["status"] == "fail"
        return
    assert done.returncode == 125, done.stderr
    assert done.stderr == f"keyrun: error: team: {message}\n  hint: {hint}\n"


def untrusted(host: str, credential: str, root: Path, option: str) -> tuple[str, str]:
    return (f"refused to send {credential} to {host}: {root / 'keyrun.toml'} ([sources.team] "
            f"{option}) names it, and you have not trusted that host",
            f"if you trust {host} with it, run: keyrun trust {host}")


def trust(root: Path, env: dict[str, str], *hosts: str) -> None:
    done = keyrun(["trust", *hosts], cwd=root, env=env)
    assert done.returncode == 0, done.stderr


# Vault


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("token_from", ["file", "variable"])
def test_vault_token_goes_to_no_host_the_user_did_not_choose(
        command: str, token_from: str, tmp_path: Path, https: Sniffer, tls: Tls,
        outside: str) -> None:
    root = project(tmp_path, f'type = "vault"\nurl = "{https.url}"')
    env = environ(tmp_path, VAULT_ADDR=TEAM_VAULT, VAULT_CACERT=str(tls.cert))
    if token_from == "file":
        write(Path(env["HOME"]) / ".vault-token", VAULT_TOKEN)
    else:
        env["VAULT_TOKEN"] = VAULT_TOKEN
    refused(command, root, env, https, *untrusted(outside, "your Vault token", root, "url"))

    trust(root, env, outside)
    done = keyrun(COMMANDS[command], cwd=root, env=env)
    assert https.tokens("x-vault-token")[:1] == [VAULT_TOKEN]
    assert_no_leak(VAULT_TOKEN, done.stdout, done.stderr, root=tmp_path / "checkout")


@pytest.mark.parametrize("command", ["run", "list"])
def test_plain_http_is_refused_off_loopback_even_when_trusted(
        command: str, tmp_path: Path, plain: Sniffer, outside: str) -> None:
    root = project(tmp_path, f'type = "vault"\nurl = "{plain.url}"')
    env = environ(tmp_path, VAULT_ADDR=TEAM_VAULT)
    write(Path(env["HOME"]) / ".vault-token", VAULT_TOKEN)
    message = (f"refused to send your Vault token to {outside} over plain http: "
               f"{root / 'keyrun.toml'} ([sources.team] url) names {plain.url}, and anyone on "
               "the network between could read it")
    hint = (f"use https://{outside}:{plain.port}; plain http is allowed only on loopback, "
            "trusted host or not")
    refused(command, root, env, plain, message, hint)
    trust(root, env, outside)
    refused(command, root, env, plain, message, hint)
    env["KEYRUN_TRUSTED_HOSTS"] = outside
    refused(command, root, env, plain, message, hint)


def test_a_redirect_to_a_host_the_user_did_not_choose_is_not_followed(
        tmp_path: Path, https: Sniffer, tls: Tls, outside: str) -> None:
    local = Sniffer("127.0.0.1", redirect=https.url)  # loopback: allowed, then redirects
    try:
        root = project(tmp_path, f'type = "vault"\nurl = "{local.url}"')
        env = environ(tmp_path, VAULT_CACERT=str(tls.cert), VAULT_TOKEN=VAULT_TOKEN)
        done = keyrun(["--", sys.executable, "-c", "pass"], cwd=root, env=env)
        assert (done.returncode, done.stderr) == (125, (
            f"keyrun: error: team: refused to send your Vault token to {outside}: a redirect "
            f"from {local.url} names it, and you have not trusted that host\n"
            f"  hint: if you trust {outside} with it, run: keyrun trust {outside}\n"))
        assert local.tokens("x-vault-token")[:1] == [VAULT_TOKEN]
        assert https.silent()
        trust(root, env, outside)
        keyrun(["--", sys.executable, "-c", "pass"], cwd=root, env=env)
        assert https.tokens("x-vault-token")[:1] == [VAULT_TOKEN]
    finally:
        local.stop()


def test_a_host_named_by_vault_addr_needs_no_trust(tmp_path: Path, https: Sniffer, tls: Tls,
                                                   outside: str) -> None:
    root = project(tmp_path, f'type = "vault"\nurl = "{https.url}"')
    env = environ(tmp_path, VAULT_ADDR=TEAM_VAULT, VAULT_CACERT=str(tls.cert),
                  VAULT_TOKEN=VAULT_TOKEN)
    refused("list", root, env, https, *untrusted(outside, "your Vault token", root, "url"))
    env["VAULT_ADDR"] = https.url  # the user's own choice: the config's url names it too
    keyrun(["list"], cwd=root, env=env)
    assert https.tokens("x-vault-token")[:1] == [VAULT_TOKEN]
    assert not (tmp_path / "config" / "keyrun" / "trust.toml").exists()


# Doppler


@pytest.mark.parametrize("command", COMMANDS)
def test_doppler_token_goes_to_no_host_the_user_did_not_choose(
        command: str, tmp_path: Path, https: Sniffer, tls: Tls, outside: str) -> None:
    root = project(tmp_path, f'type = "doppler"\napi_host = "{https.url}"')
    env = environ(tmp_path, DOPPLER_TOKEN=DOPPLER_TOKEN, SSL_CERT_FILE=str(tls.cert))
    refused(command, root, env, https,
            *untrusted(outside, "your Doppler token", root, "api_host"))

    env["KEYRUN_TRUSTED_HOSTS"] = f"ci.example.org, {outside}"
    done = keyrun(COMMANDS[command], cwd=root, env=env)
    assert https.tokens("authorization")[:1] == [f"Bearer {DOPPLER_TOKEN}"]
    assert_no_leak(DOPPLER_TOKEN, done.stdout, done.stderr, root=tmp_path / "checkout")


def test_set_writes_to_no_host_the_user_did_not_choose(tmp_path: Path, https: Sniffer,
                                                        tls: Tls, outside: str) -> None:
    root = project(tmp_path, f'type = "doppler"\napi_host = "{https.url}"')
    env = environ(tmp_path, DOPPLER_TOKEN=DOPPLER_TOKEN, SSL_CERT_FILE=str(tls.cert))
    done = keyrun(["set", "OPENAI_API_KEY"], cwd=root, env=env, input="sk-new-value-0001")
    assert https.silent()
    message, hint = untrusted(outside, "your Doppler token", root, "api_host")
    assert (done.returncode, done.stderr) == (
        125, f"keyrun: error: team: {message}\n  hint: {hint}\n")
    env["KEYRUN_TRUSTED_HOSTS"] = outside
    keyrun(["set", "OPENAI_API_KEY"], cwd=root, env=env, input="sk-new-value-0001")
    assert [seen.method for seen in https.seen] == ["POST"]
    assert https.tokens("authorization") == [f"Bearer {DOPPLER_TOKEN}"]


# Google Secret Manager


@pytest.mark.parametrize("command", COMMANDS)
def test_google_access_token_goes_to_no_host_the_user_did_not_choose(
        command: str, tmp_path: Path, grpc_sniffer: GrpcSniffer, tls: Tls,
        outside: str) -> None:
    credentials, _, _ = service_account(tmp_path)
    root = project(tmp_path, 'type = "gcp-secret-manager"\ngcp_project = "acme"\n'
                             f'endpoint = "{grpc_sniffer.endpoint}"')
    env = environ(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(credentials),
                  GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(tls.cert))
    refused(command, root, env, grpc_sniffer,
            *untrusted(outside, "your Google access token", root, "endpoint"))

    trust(root, env, outside)
    keyrun(COMMANDS[command], cwd=root, env=env)
    bearers = [m["authorization"] for m in grpc_sniffer.seen if "authorization" in m]
    assert bearers
    assert bearers[0].startswith("Bearer ey")  # a signed JWT


# Azure Key Vault


@pytest.mark.parametrize("command", COMMANDS)
def test_azure_access_token_goes_to_no_host_the_user_did_not_choose(
        command: str, tmp_path: Path, azure_https: Sniffer, tls: Tls, outside: str) -> None:
    root = project(tmp_path, f'type = "azure-key-vault"\nvault_url = "{azure_https.url}"')
    env = environ(tmp_path, IDENTITY_ENDPOINT=f"{azure_https.url}/msi/token",
                  IDENTITY_HEADER="kr-identity", REQUESTS_CA_BUNDLE=str(tls.cert))
    refused(command, root, env, azure_https,
            *untrusted(outside, "your Azure access token", root, "vault_url"))

    trust(root, env, outside)
    done = keyrun(COMMANDS[command], cwd=root, env=env)
    assert f"Bearer {AZURE_TOKEN}" in azure_https.tokens("authorization"), done.stderr
    assert_no_leak(AZURE_TOKEN, done.stdout, done.stderr, root=tmp_path / "checkout")


# -v


def test_verbose_names_the_config_file_and_every_host(tmp_path: Path, https: Sniffer,
                                                      tls: Tls, outside: str) -> None:
    root = project(tmp_path, f'type = "vault"\nurl = "{https.url}"')
    env = environ(tmp_path, VAULT_CACERT=str(tls.cert), VAULT_TOKEN=VAULT_TOKEN)
    trust(root, env, outside)
    contacts = (f"keyrun: team: contacts {https.url} (from [sources.team] url; trusted with "
                "keyrun trust)")
    for command in (["-v", "list"], ["run", "-v", "--", sys.executable, "-c", "pass"]):
        done = keyrun(command, cwd=root, env=env)
        lines = done.stderr.splitlines()
        assert lines[:2] == [f"keyrun: config: {root / 'keyrun.toml'} (profile bot/dev)",
                             contacts], done.stderr
    done = keyrun(["doctor", "-v"], cwd=root, env=env)
    assert done.stderr.splitlines()[:2] == [f"keyrun: config: {root / 'keyrun.toml'}",
                                            contacts]


# keyrun trust


def test_trust_add_list_remove(tmp_path: Path) -> None:
    env = environ(tmp_path)
    root = tmp_path
    store = tmp_path / "config" / "keyrun" / "trust.toml"

    def trust_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return keyrun(["trust", *args], cwd=root, env=env)

    done = trust_cli("--list")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "", "keyrun: no trusted hosts; trust one with: keyrun trust HOST\n")
    done = trust_cli("192.0.2.10", "https://Vault.Example.COM:8200/v1/x", "127.0.0.1")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", (
        "keyrun: 127.0.0.1 is loopback: it needs no trust\n"
        f"keyrun: trusted 192.0.2.10 (kept in {store})\n"
        f"keyrun: trusted vault.example.com (kept in {store})\n"))
    assert store.stat().st_mode & 0o777 == 0o600
    done = trust_cli("192.0.2.10")
    assert (done.returncode, done.stderr) == (0, "keyrun: 192.0.2.10 was already trusted\n")
    env["KEYRUN_TRUSTED_HOSTS"] = "ci.example.org"
    done = trust_cli("--list")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "192.0.2.10\nvault.example.com\nci.example.org (KEYRUN_TRUSTED_HOSTS)\n", "")
    done = trust_cli("--remove", "192.0.2.10")
    assert (done.returncode, done.stderr) == (0, "keyrun: no longer trusted: 192.0.2.10\n")
    assert trust_cli("--list").stdout == "vault.example.com\nci.example.org (KEYRUN_TRUSTED_HOSTS)\n"
    done = trust_cli("--remove", "192.0.2.10")
    assert (done.returncode, done.stderr) == (
        2, "keyrun: error: 192.0.2.10 is not a trusted host\n"
           "  hint: keyrun trust --list shows them\n")
    done = trust_cli("--remove", "ci.example.org")
    assert (done.returncode, done.stderr) == (
        2, f"keyrun: error: ci.example.org is trusted by $KEYRUN_TRUSTED_HOSTS, not by {store}\n"
           "  hint: remove it from KEYRUN_TRUSTED_HOSTS\n")
    done = trust_cli("not a host")
    assert done.returncode == 2
    assert done.stderr.startswith("keyrun: error: 'not a host' is not a host name")


def test_trust_file_is_never_written_through_a_symlink_nor_read_from_another_user(
        tmp_path: Path) -> None:
    env = environ(tmp_path)
    store = tmp_path / "config" / "keyrun" / "trust.toml"
    target = write(tmp_path / "elsewhere.toml", 'hosts = ["evil.example"]\n')
    store.parent.mkdir(parents=True)
    store.symlink_to(target)
    done = keyrun(["trust", "192.0.2.10"], cwd=tmp_path, env=env)
    assert (done.returncode, done.stderr) == (125, (
        f"keyrun: error: {store}: is a symlink; keyrun writes its trust list only as a file of "
        f"its own, never through a link\n  hint: replace the link with the file: rm {store}, "
        "then keyrun trust HOST\n"))
    assert target.read_text() == 'hosts = ["evil.example"]\n'
    store.unlink()
    write(store, 'hosts = ["evil.example"]\n')
    os.chown(store, 12345, 12345)
    done = keyrun(["trust", "--list"], cwd=tmp_path, env=env)
    assert done.returncode == 125
    assert done.stderr.startswith(f"keyrun: error: {store}: the trust list belongs to uid "
                                  "12345, not to you")
    os.chown(store, os.getuid(), os.getgid())
    store.chmod(0o666)
    done = keyrun(["trust", "--list"], cwd=tmp_path, env=env)
    assert done.returncode == 125
    assert done.stderr.startswith(f"keyrun: error: {store}: the trust list may be written by "
                                  "every user (mode o+w)")


def test_trust_without_a_host_trusts_what_the_config_names(tmp_path: Path, outside: str
                                                            ) -> None:
    root = project(tmp_path, f'type = "vault"\nurl = "https://{outside}:8200"', f"""
[sources.lan]
type = "vault"
url = "http://{outside}:8201"

[sources.local]
type = "vault"
url = "http://127.0.0.1:8200"

[sources.cloud]
type = "azure-key-vault"
vault_url = "https://acme-{{env}}.vault.azure.net"

[env.prod]
sources = ["lan", "local", "cloud"]
""")
    env = environ(tmp_path)
    store = tmp_path / "config" / "keyrun" / "trust.toml"
    done = keyrun(["trust"], cwd=root, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", (
        f"keyrun: warning: not trusted: lan: refused to send your Vault token to {outside} "
        f"over plain http: {root / 'keyrun.toml'} ([sources.lan] url) names "
        f"http://{outside}:8201, and anyone on the network between could read it — use "
        f"https://{outside}:8201; plain http is allowed only on loopback, trusted host or not\n"
        f"keyrun: trusted {outside} for source team (kept in {store})\n"))
    done = keyrun(["trust", "-e", "dev"], cwd=root, env=env)
    assert (done.returncode, done.stderr) == (0, (
        f"keyrun: nothing to trust: every host {root / 'keyrun.toml'} names is loopback, a "
        "service's own endpoint, named by your environment, or trusted already\n"))


# the rule itself


@pytest.mark.parametrize(("text", "host"), [
    ("Vault.Example.COM.", "vault.example.com"), ("https://h.example:8200/v1", "h.example"),
    ("h.example:443", "h.example"), ("[2001:DB8::1]:8200", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"), ("https://[::1]:8200", "::1"), ("10.0.0.1", "10.0.0.1"),
    # as requests and httpx ask DNS for them (UTS #46), not as IDNA 2003 maps them
    ("https://vault.straße.example:8200", "vault.xn--strae-oqa.example"),
    ("Bücher.example", "xn--bcher-kva.example"),
])
def test_hosts_are_compared_normalized(text: str, host: str) -> None:
    assert normalize_host(text) == host


def test_a_host_is_judged_as_the_one_the_request_goes_to(tmp_path: Path) -> None:
    # IDNA 2003 maps straße to strasse, so the user's own VAULT_ADDR seemed to name this
    # host; requests asks DNS for vault.xn--strae-oqa.example, another domain
    root = project(tmp_path, 'type = "vault"\nurl = "https://vault.straße.example:8200"')
    env = environ(tmp_path, VAULT_ADDR="https://vault.strasse.example:8200",
                  VAULT_TOKEN=VAULT_TOKEN)
    done = keyrun(["list"], cwd=root, env=env)
    message, hint = untrusted("vault.xn--strae-oqa.example", "your Vault token", root, "url")
    assert (done.returncode, done.stderr) == (125, f"keyrun: error: team: {message}\n"
                                                   f"  hint: {hint}\n")
    done = keyrun(["trust", "vault.straße.example"], cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    assert "vault.xn--strae-oqa.example" in done.stderr


@pytest.mark.parametrize("text", ["https://vault.azure.net@evil.example", "a b", "",
                                  "https://evil.example\\@vault.azure.net", "http://[::1"])
def test_a_url_naming_no_single_host_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a"):
        normalize_host(text)


def test_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.9.8.7", "::1", "localhost",
                                 "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["10.0.0.1", "localhost.example", "0.0.0.0"]))  # noqa: S104


def _source(cls: type[Any], settings: dict[str, Any], tmp_path: Path,
            environ: dict[str, str] | None = None) -> Any:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), **(environ or {})}
    return build_source(cls, "s", settings, project="bot", root=tmp_path, environ=env,
                        config=tmp_path / "keyrun.toml")


@pytest.mark.parametrize("url", [
    "https://acme.vault.azure.net", "https://acme.vault.azure.cn",
    "https://acme.vault.usgovcloudapi.net", "https://acme.vault.microsoftazure.de:443/"])
def test_key_vaults_of_every_cloud_need_no_trust(url: str, tmp_path: Path) -> None:
    assert _source(AzureKeyVaultSource, {"vault_url": url}, tmp_path).endpoints()


@pytest.mark.parametrize(("cls", "settings"), [
    (AzureKeyVaultSource, {"vault_url": "https://acme.vault.azure.net.evil.example"}),
    (AzureKeyVaultSource, {"vault_url": "https://evilvault.azure.net"}),
    (AzureKeyVaultSource, {"vault_url": "https://acme.vault.azure.net@evil.example"}),
    (GcpSecretManagerSource, {"endpoint": "googleapis.com.evil.example:443"}),
    (DopplerSource, {"api_host": "https://api.doppler.com.evil.example"}),
    (VaultSource, {"url": "https://vault.azure.net"}),  # another service's public host
])
def test_look_alikes_of_public_endpoints_are_refused(cls: type[Any], settings: dict[str, Any],
                                                     tmp_path: Path) -> None:
    with pytest.raises(TrustError):
        _source(cls, settings, tmp_path).endpoints()


@pytest.mark.parametrize("endpoint", ["secretmanager.googleapis.com",
                                      "secretmanager.europe-west1.rep.googleapis.com:443",
                                      "secretmanager-psc1.p.googleapis.com"])
def test_google_endpoints_need_no_trust(endpoint: str, tmp_path: Path) -> None:
    assert _source(GcpSecretManagerSource, {"endpoint": endpoint}, tmp_path).endpoints()


def test_doppler_public_api_and_user_named_hosts(tmp_path: Path) -> None:
    assert _source(DopplerSource, {}, tmp_path).endpoints()
    named = {"DOPPLER_API_HOST": "https://doppler.corp.example"}
    assert _source(DopplerSource, {}, tmp_path, named).endpoints()
    with pytest.raises(TrustError):
        _source(DopplerSource, {"api_host": "https://doppler.corp.example"}, tmp_path)\
            .endpoints()
    assert _source(DopplerSource, {"api_host": "https://doppler.corp.example:8443"}, tmp_path,
                   named).endpoints()


def _call(source: Source, method: str) -> object:
    from keyrun.secret import Secret
    from keyrun.sources import Deadline, Request

    request, deadline = Request("K", "K"), Deadline(3)
    calls: dict[str, Callable[[], object]] = {"fetch": lambda: source.fetch([request], deadline),
        "describe": lambda: source.describe([request], deadline),
        "check": lambda: source.check(deadline),
        "names": lambda: source.names(deadline),
        "write": lambda: source.write(request, Secret("v"), deadline)}
    return calls[method]()


_OPTION = {VaultSource: "url", DopplerSource: "api_host", AzureKeyVaultSource: "vault_url",
           GcpSecretManagerSource: "endpoint"}
_CONTACTING = [(cls, method) for cls in _OPTION
               for method in ("fetch", "describe", "check", "names", "write")
               if getattr(cls, method) is not getattr(Source, method)]  # the base's send nothing


@pytest.mark.parametrize(("cls", "method"), _CONTACTING)
def test_no_request_before_the_check(cls: type[Source], method: str, tmp_path: Path,
                                     outside: str) -> None:
    """Every path a remote source sends through stops at the check, also for a source
    used without the core's pass over every endpoint first."""
    option = _OPTION[cls]
    with contextlib.closing(socket.socket()) as listener:
        listener.bind((outside, 0))
        listener.listen(8)
        listener.settimeout(0.2)
        where = f"{outside}:{listener.getsockname()[1]}"
        source = _source(cls, {option: where if option == "endpoint" else f"https://{where}"},
                         tmp_path, {"VAULT_TOKEN": VAULT_TOKEN, "DOPPLER_TOKEN": DOPPLER_TOKEN})
        with pytest.raises(TrustError, match="you have not trusted that host"):
            _call(source, method)
        with pytest.raises(TimeoutError):
            listener.accept()


def test_trust_for_an_unknown_environment_says_so(tmp_path: Path) -> None:
    root = project(tmp_path, 'type = "vault"\nurl = "https://vault.example:8200"')
    done = keyrun(["trust", "-e", "prod"], cwd=root, env=environ(tmp_path))
    assert (done.returncode, done.stderr) == (125, (
        f"keyrun: error: {root / 'keyrun.toml'}: unknown environment 'prod'\n"
        "  hint: environments: dev\n"))


def test_trust_help_shows_its_hosts_as_optional(tmp_path: Path) -> None:
    done = keyrun(["trust", "--help"], cwd=tmp_path, env=environ(tmp_path))
    assert done.stdout.startswith("Usage: keyrun trust [OPTIONS] [HOST]...\n"), done.stdout
