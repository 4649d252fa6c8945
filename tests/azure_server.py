"""A fake Azure Key Vault over real HTTPS, for the official azure-keyvault-secrets client.

It speaks the wire protocol the SDK uses: the bearer challenge (a first request without
a token gets 401 and ``WWW-Authenticate: Bearer authorization=…, resource=…``),
``GET``/``PUT /secrets/{name}[/{version}]``, ``GET /secrets`` and
``/secrets/{name}/versions`` with ``nextLink`` paging, and Key Vault's error bodies. Tokens
come from an App Service style managed-identity endpoint on the same server
(``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``), so DefaultAzureCredential works unchanged;
``REQUESTS_CA_BUNDLE`` names the certificate made at start-up.

For a vault at ``https://127.0.0.1:PORT`` the challenge names the resource
``https://0.0.1:PORT``: the SDK accepts a resource whose host is a dot-suffix of the
vault's host, so no test-only option is needed in keyrun.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TENANT = "72f988bf-0000-4000-8000-2d7cd011db47"
NAME_RULE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
MAX_VALUE = 25 * 1024
PAGE_SIZE = 25


def make_certificate(directory: Path, addresses: Sequence[str] = ("127.0.0.1",)
                     ) -> tuple[Path, Path]:
    """A self-signed certificate for ``addresses`` (and localhost) that is its own CA;
    returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyrun test vault")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [*(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
             x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "vault-cert.pem"
    key_path = directory / "vault-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Version:
    id: str
    value: str
    created: int
    updated: int
    enabled: bool = True
    expires: int | None = None
    not_before: int | None = None
    content_type: str | None = None


@dataclass
class Record:
    name: str  # as first written (Key Vault names are case-insensitive)
    versions: list[Version] = field(default_factory=list)


@dataclass
class Seen:
    method: str
    path: str
    authorized: bool
    status: int


class FakeKeyVault:
    """The vault's state, switches for failures, and the HTTPS server."""

    def __init__(self, directory: Path) -> None:
        self.cert, self.key = make_certificate(directory)
        self.identity_header = secrets.token_hex(16)
        self.lock = threading.RLock()  # _send records under it, also from locked paths
        self.records: dict[str, Record] = {}
        self.tokens: dict[str, float] = {}
        self.seen: list[Seen] = []
        self.reset()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self.server = _Server(("127.0.0.1", 0), _Handler, context, self)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-key-vault",
                                       daemon=True)
        self.thread.start()

    # switches

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.seen.clear()
            self.denied: set[str] = set()  # secret names (lower case) this identity may not use
            self.deny_list = False
            self.deny_all = False
            self.identity_fails = False
            self.reject_tokens = False  # answer 401 even to valid tokens
            self.failures: list[int] = []  # statuses for the next vault requests
            self.retry_after: str | None = None  # the Retry-After header sent with them
            self.challenge_resource: str | None = None  # a resource other than the vault's
            self.hang = 0.0  # seconds to stall each vault request
            self.token_requests = 0

    def env(self) -> dict[str, str]:
        """What DefaultAzureCredential and requests need to reach this vault."""
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token",
                "IDENTITY_HEADER": self.identity_header,
                "REQUESTS_CA_BUNDLE": str(self.cert)}

    # state

    def put(self, name: str, value: str, *, enabled: bool = True,
            expires: dt.datetime | None = None, not_before: dt.datetime | None = None,
            updated: dt.datetime | None = None, content_type: str | None = None) -> str:
        """Add a version of ``name`` (the exact Key Vault name) and return its id."""
        stamp = int((updated or dt.datetime.now(dt.UTC)).timestamp())
        version = Version(secrets.token_hex(16), value, stamp, stamp, enabled,
                          _epoch(expires), _epoch(not_before), content_type)
        with self.lock:
            record = self.records.setdefault(name.lower(), Record(name))
            record.versions.append(version)
        return version.id

    def value(self, name: str, version: str | None = None) -> str | None:
        with self.lock:
            record = self.records.get(name.lower())
            if record is None:
                return None
            found = _version(record, version)
            return found.value if found else None

    def names(self) -> list[str]:
        with self.lock:
            return sorted(record.name for record in self.records.values())

    def stop(self) -> None:
        self.hang = 0.0
        self.server.shutdown()
        self.server.server_close()

    # the protocol

    def issue_token(self) -> str:
        token = "fake-kv-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + 3600
            self.token_requests += 1
        return token

    def token_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self.lock:
            return self.tokens.get(header[len("Bearer "):], 0) > time.time()

    def bundle(self, record: Record, version: Version) -> dict[str, Any]:
        body: dict[str, Any] = {"value": version.value,
                                "id": f"{self.url}/secrets/{record.name}/{version.id}",
                                "attributes": _attributes(version), "tags": {}}
        if version.content_type:
            body["contentType"] = version.content_type
        return body

    def item(self, record: Record, version: Version, with_version: bool) -> dict[str, Any]:
        suffix = f"/{version.id}" if with_version else ""
        body: dict[str, Any] = {"id": f"{self.url}/secrets/{record.name}{suffix}",
                                "attributes": _attributes(version), "tags": {}}
        if version.content_type:
            body["contentType"] = version.content_type
        return body


def _epoch(when: dt.datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def _attributes(version: Version) -> dict[str, Any]:
    attributes: dict[str, Any] = {"enabled": version.enabled, "created": version.created,
                                  "updated": version.updated,
                                  "recoveryLevel": "Recoverable+Purgeable",
                                  "recoverableDays": 90}
    if version.expires is not None:
        attributes["exp"] = version.expires
    if version.not_before is not None:
        attributes["nbf"] = version.not_before
    return attributes


def _version(record: Record, version: str | None) -> Version | None:
    if not version:
        return record.versions[-1] if record.versions else None
    return next((v for v in record.versions if v.id == version), None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext, vault: FakeKeyVault) -> None:
        super().__init__(address, handler)
        self.context = context
        self.vault = vault

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # Without TCP_NODELAY every keep-alive request stalls ~44 ms (Nagle + delayed ACK).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(30)
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.close_connection = True
            self.rfile = _Empty()  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def vault(self) -> FakeKeyVault:
        return self.server.vault

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        self.seen: Seen | None = None
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:2] == ["msi", "token"]:
            self._token(query)
            return
        authorized = self.vault.token_ok(self.headers.get("Authorization"))
        self.seen = Seen(method, url.path, authorized, 0)
        if authorized and self.vault.reject_tokens:
            self._error(401, "Unauthorized", "AKV10032: Invalid issuer.")
            return
        self._vault(method, parts, query, body, authorized)

    def _token(self, query: dict[str, str]) -> None:
        if self.headers.get("X-IDENTITY-HEADER") != self.vault.identity_header:
            self._send(401, {"statusCode": 401, "message": "Unauthorized: bad identity header"})
            return
        if self.vault.identity_fails:
            self._send(400, {"statusCode": 400, "message": "No managed identity is assigned "
                                                           "to this resource"})
            return
        token = self.vault.issue_token()
        self._send(200, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                         "resource": query.get("resource", ""), "token_type": "Bearer"})

    def _vault(self, method: str, parts: list[str], query: dict[str, str], body: bytes,
               authorized: bool) -> int:
        if not authorized:
            return self._challenge()
        if self.vault.hang:
            time.sleep(self.vault.hang)
        with self.vault.lock:
            failure = self.vault.failures.pop(0) if self.vault.failures else None
        if failure is not None:
            after = self.vault.retry_after
            return self._error(failure, "InternalServerError" if failure >= 500 else "Throttled",
                               "Injected failure", headers={"Retry-After": after} if after else None)
        if self.vault.deny_all:
            return self._forbidden("get")
        if parts[0] != "secrets":
            return self._error(404, "NotFound", "Unknown path")
        name = parts[1] if len(parts) > 1 else ""
        if method == "GET" and not name:
            return self._list(query)
        if method == "GET" and len(parts) > 2 and parts[2] == "versions":
            return self._list(query, name)
        if method == "GET":
            return self._get(name, parts[2] if len(parts) > 2 else "")
        if method == "PUT" and len(parts) == 2:
            return self._set(name, body)
        return self._error(405, "BadRequest", f"{method} is not supported here")

    def _challenge(self) -> int:
        resource = self.vault.challenge_resource or f"https://0.0.1:{self.vault.port}"
        challenge = (f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                     f'resource="{resource}"')
        body = {"error": {"code": "Unauthorized",
                          "message": "AKV10000: Request is missing a Bearer or PoP token."}}
        self._send(401, body, {"WWW-Authenticate": challenge})
        return 401

    def _get(self, name: str, version: str) -> int:
        if name.lower() in self.vault.denied:
            return self._forbidden("get")
        with self.vault.lock:
            record = self.vault.records.get(name.lower())
            found = _version(record, version) if record else None
            body = self.vault.bundle(record, found) if record and found else None
        if body is None or found is None:
            what = f"({name}) with version ({version})" if version else f"({name})"
            return self._error(404, "SecretNotFound",
                               f"A secret with (name/id) {what} was not found in this key vault.")
        if not found.enabled:
            return self._error(403, "Forbidden", "Operation get is not allowed on a disabled "
                                                 "secret.", inner="SecretDisabled")
        self._send(200, body)
        return 200

    def _set(self, name: str, raw: bytes) -> int:
        if not NAME_RULE.match(name):
            return self._error(400, "BadParameter",
                               f"The request URI contains an invalid name: {name}")
        if name.lower() in self.vault.denied:
            return self._forbidden("set")
        try:
            payload = json.loads(raw)
        except ValueError:
            return self._error(400, "BadParameter", "The request body is not JSON")
        value = payload.get("value")
        if not isinstance(value, str):
            return self._error(400, "BadParameter", "Property 'value' is required")
        if len(value.encode()) > MAX_VALUE:
            return self._error(400, "BadParameter", "Secret value is too large (over 25 KB)")
        attributes = payload.get("attributes") or {}
        self.vault.put(name, value, enabled=attributes.get("enabled", True),
                       content_type=payload.get("contentType"))
        with self.vault.lock:
            record = self.vault.records[name.lower()]
            body = self.vault.bundle(record, record.versions[-1])
        self._send(200, body)
        return 200

    def _list(self, query: dict[str, str], name: str | None = None) -> int:
        if self.vault.deny_list or (name and name.lower() in self.vault.denied):
            return self._forbidden("list")
        size = min(int(query.get("maxresults") or PAGE_SIZE), PAGE_SIZE)
        skip = int(query.get("$skiptoken") or 0)
        with self.vault.lock:
            if name is None:
                items = [self.vault.item(r, r.versions[-1], False)
                         for r in sorted(self.vault.records.values(), key=lambda r: r.name)
                         if r.versions]
            else:
                record = self.vault.records.get(name.lower())
                if record is None:
                    return self._error(404, "SecretNotFound",
                                       f"A secret with (name/id) ({name}) was not found in this "
                                       "key vault.")
                items = [self.vault.item(record, v, True) for v in record.versions]
        page = items[skip:skip + size]
        path = "/secrets" if name is None else f"/secrets/{name}/versions"
        next_link = None
        if skip + size < len(items):
            next_link = (f"{self.vault.url}{path}?api-version={query.get('api-version', '7.6')}"
                         f"&$skiptoken={skip + size}&maxresults={size}")
        self._send(200, {"value": page, "nextLink": next_link})
        return 200

    def _forbidden(self, operation: str) -> int:
        return self._error(403, "Forbidden",
                           f"The user, group or application 'appid=fake-app' does not have "
                           f"secrets {operation} permission on key vault 'fake-vault'.",
                           inner="AccessDenied")

    def _error(self, status: int, code: str, message: str, inner: str | None = None,
               headers: dict[str, str] | None = None) -> int:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        self._send(status, {"error": error}, headers)
        return status

    def _send(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        seen = getattr(self, "seen", None)
        if seen is not None:  # recorded before the answer leaves, so a test never races it
            with self.vault.lock:
                self.vault.seen.append(Seen(seen.method, seen.path, seen.authorized, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", secrets.token_hex(8))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)


class _Empty:
    def readline(self, *args: Any) -> bytes:
        return b""

    def read(self, *args: Any) -> bytes:
        return b""

    def close(self) -> None:
        pass
