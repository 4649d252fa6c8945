"""A fake Google Secret Manager that speaks the real gRPC protocol, over TLS.

Built with grpcio's generic handlers and the proto-plus message types that
google-cloud-secret-manager ships, so the official client reaches it unchanged through
keyrun's ``endpoint`` option. It checks the client's self-signed JWT against the public key
of a throwaway service account, keeps secrets per project (reachable by project id or
number, and answering with the number as the real service does), resolves ``latest`` to
the newest version even when that one is disabled (FAILED_PRECONDITION, as the real
service does), and has switches for every failure keyrun must handle.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from google.cloud.secretmanager_v1 import types

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
PROJECT = "keyrun-test"
PROJECT_NUMBER = "123456789012"
_NAME = re.compile(r"^projects/([^/]+)/secrets/([^/]+)(?:/versions/([^/]+))?$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Version:
    number: int
    data: bytes
    created: dt.datetime
    state: str = "ENABLED"
    destroyed: dt.datetime | None = None


@dataclass
class StoredSecret:
    id: str
    created: dt.datetime
    versions: list[Version] = field(default_factory=list)
    expire_time: dt.datetime | None = None
    next_rotation: dt.datetime | None = None


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend:
    """The fake's state, with switches for failures; ``reset`` between tests."""

    def __init__(self, client_email: str, public_key_pem: bytes) -> None:
        self.client_email = client_email
        self.public_key = serialization.load_pem_public_key(public_key_pem)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.secrets: dict[str, StoredSecret] = {}
            self.denied: set[str] = set()  # secret ids whose every call is PERMISSION_DENIED
            self.corrupt: set[str] = set()  # secret ids answered with a wrong CRC32C
            self.unavailable = 0  # how many calls still answer UNAVAILABLE
            self.delay = 0.0  # seconds each call waits before answering
            self.interleave: list[tuple[str, bytes]] = []  # versions someone else adds first
            self.reject_tokens = False
            # Google words FAILED_PRECONDITION in more than one way: "is in DESTROYED
            # state." and "is not in ENABLED state." have both been seen
            self.not_enabled_text = "is in {state} state."
            self.metadata_denied = False  # secretAccessor only: Get*/List* are denied
            self.calls: list[tuple[str, str]] = []
            self.tokens: list[dict[str, Any]] = []

    # what tests use

    def put(self, secret_id: str, value: str | bytes, *, state: str = "ENABLED",
            created: dt.datetime | None = None) -> int:
        """Add a version (creating the secret); return its number."""
        data = value.encode() if isinstance(value, str) else value
        with self.lock:
            secret = self.secrets.setdefault(secret_id, StoredSecret(secret_id, now()))
            number = len(secret.versions) + 1
            secret.versions.append(Version(number, data, created or now(), state))
            return number

    def set_state(self, secret_id: str, number: int, state: str) -> None:
        with self.lock:
            version = self.secrets[secret_id].versions[number - 1]
            version.state = state
            if state == "DESTROYED":
                version.data, version.destroyed = b"", now()

    def value(self, secret_id: str, version: int | None = None) -> bytes:
        secret = self.secrets[secret_id]
        return secret.versions[(version or len(secret.versions)) - 1].data

    def accessed(self) -> list[str]:
        return [name for method, name in self.calls if method == "AccessSecretVersion"]

    # the service

    def authenticate(self, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        header = str(metadata.get("authorization", ""))
        if self.reject_tokens or not header.startswith("Bearer "):
            raise Abort(grpc.StatusCode.UNAUTHENTICATED,
                        "Request had invalid authentication credentials. Expected OAuth 2 "
                        "access token, login cookie or other valid authentication credential.")
        claims = verify_jwt(header.removeprefix("Bearer "), self.public_key)
        if claims is None:
            raise Abort(grpc.StatusCode.UNAUTHENTICATED,
                        "Request had invalid authentication credentials (bad signature).")
        if claims.get("iss") != self.client_email or claims.get("exp", 0) < time.time():
            raise Abort(grpc.StatusCode.UNAUTHENTICATED,
                        "Request had invalid authentication credentials (issuer or expiry).")
        self.tokens.append(claims)

    def gate(self, method: str, name: str) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.calls.append((method, name))
            if self.unavailable > 0:
                self.unavailable -= 1
                raise Abort(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")

    def _parse(self, name: str, permission: str) -> tuple[str, str | None]:
        match = _NAME.match(name)
        if self.metadata_denied and permission.endswith((".get", ".list")):
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"Permission '{permission}' denied for resource '{name}' "
                        "(or it may not exist).")
        if not match:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource name [{name}].")
        project, secret_id, version = match.groups()
        if project not in (PROJECT, PROJECT_NUMBER):
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"Permission '{permission}' denied for resource '{name}' "
                        "(or it may not exist).")
        if not _SECRET_ID.match(secret_id):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"Secret ID [{secret_id}] is invalid.")
        if secret_id in self.denied:
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"Permission '{permission}' denied for resource '{name}' "
                        "(or it may not exist).")
        return secret_id, version

    def _secret(self, secret_id: str) -> StoredSecret:
        secret = self.secrets.get(secret_id)
        if secret is None:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        f"Secret [projects/{PROJECT_NUMBER}/secrets/{secret_id}] not found.")
        return secret

    def _version(self, secret_id: str, wanted: str) -> Version:
        secret = self.secrets.get(secret_id)
        missing = Abort(grpc.StatusCode.NOT_FOUND,
                        f"Secret [projects/{PROJECT_NUMBER}/secrets/{secret_id}] not found or "
                        "has no versions.")
        if secret is None or not secret.versions:
            raise missing
        if wanted == "latest":
            return secret.versions[-1]
        if not wanted.isdigit() or not 0 < int(wanted) <= len(secret.versions):
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        f"Secret Version [projects/{PROJECT_NUMBER}/secrets/{secret_id}/"
                        f"versions/{wanted}] not found.")
        return secret.versions[int(wanted) - 1]

    def access(self, request: types.AccessSecretVersionRequest) -> types.AccessSecretVersionResponse:
        secret_id, wanted = self._parse(request.name, "secretmanager.versions.access")
        with self.lock:
            version = self._version(secret_id, wanted or "latest")
            name = f"projects/{PROJECT_NUMBER}/secrets/{secret_id}/versions/{version.number}"
            if version.state != "ENABLED":
                text = self.not_enabled_text.format(state=version.state)
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"Secret Version [{name}] {text}")
            crc = crc32c(version.data) ^ (1 if secret_id in self.corrupt else 0)
            return types.AccessSecretVersionResponse(
                name=name, payload=types.SecretPayload(data=version.data, data_crc32c=crc))

    def get_secret(self, request: types.GetSecretRequest) -> types.Secret:
        secret_id, _ = self._parse(request.name, "secretmanager.secrets.get")
        with self.lock:
            return self._secret_message(self._secret(secret_id))

    def _secret_message(self, secret: StoredSecret) -> types.Secret:
        message = types.Secret(
            name=f"projects/{PROJECT_NUMBER}/secrets/{secret.id}",
            create_time=secret.created,
            replication=types.Replication(automatic=types.Replication.Automatic()))
        if secret.expire_time:
            message.expire_time = secret.expire_time
        if secret.next_rotation:
            message.rotation = types.Rotation(next_rotation_time=secret.next_rotation,
                                              rotation_period=dt.timedelta(days=30))
        return message

    def get_version(self, request: types.GetSecretVersionRequest) -> types.SecretVersion:
        secret_id, wanted = self._parse(request.name, "secretmanager.versions.get")
        with self.lock:
            version = self._version(secret_id, wanted or "latest")
            return self._version_message(secret_id, version)

    def _version_message(self, secret_id: str, version: Version) -> types.SecretVersion:
        message = types.SecretVersion(
            name=f"projects/{PROJECT_NUMBER}/secrets/{secret_id}/versions/{version.number}",
            create_time=version.created,
            state=types.SecretVersion.State[version.state])
        if version.destroyed:
            message.destroy_time = version.destroyed
        return message

    def create_secret(self, request: types.CreateSecretRequest) -> types.Secret:
        self._parse(f"{request.parent}/secrets/{request.secret_id}", "secretmanager.secrets.create")
        with self.lock:
            if request.secret_id in self.secrets:
                raise Abort(grpc.StatusCode.ALREADY_EXISTS,
                            f"Secret [projects/{PROJECT_NUMBER}/secrets/{request.secret_id}] "
                            "already exists.")
            replication = request.secret.replication
            if "automatic" not in replication and "user_managed" not in replication:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "Replication is required.")
            secret = self.secrets[request.secret_id] = StoredSecret(request.secret_id, now())
            return self._secret_message(secret)

    def add_version(self, request: types.AddSecretVersionRequest) -> types.SecretVersion:
        secret_id, _ = self._parse(request.parent, "secretmanager.versions.add")
        payload = request.payload
        if "data_crc32c" in payload and payload.data_crc32c != crc32c(payload.data):
            raise Abort(grpc.StatusCode.DATA_LOSS, "Checksum mismatch.")
        if not payload.data:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "Field [payload] is required.")
        if len(payload.data) > 64 * 1024:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "Payload exceeds 65536 bytes.")
        with self.lock:
            secret = self._secret(secret_id)
            for other, data in self.interleave:
                self.secrets[other].versions.append(
                    Version(len(self.secrets[other].versions) + 1, data, now()))
            self.interleave = []
            version = Version(len(secret.versions) + 1, payload.data, now())
            secret.versions.append(version)
            return self._version_message(secret_id, version)

    def list_secrets(self, request: types.ListSecretsRequest) -> types.ListSecretsResponse:
        self._parse(f"{request.parent}/secrets/any", "secretmanager.secrets.list")
        with self.lock:
            chosen = sorted(self.secrets.values(), key=lambda s: s.id)
            size = request.page_size or len(chosen)
            return types.ListSecretsResponse(
                secrets=[self._secret_message(s) for s in chosen[:size]],
                total_size=len(chosen))


def verify_jwt(token: str, key: Any) -> dict[str, Any] | None:
    """The claims of an RS256 JWT signed by the key, else None."""
    try:
        header, claims, signature = token.split(".")
        if json.loads(_b64(header)).get("alg") != "RS256":
            return None
        key.verify(_b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(),
                   hashes.SHA256())
        decoded: dict[str, Any] = json.loads(_b64(claims))
        return decoded
    except (ValueError, InvalidSignature):
        return None


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def _handler(backend: Backend, method: str, request_type: Any, response_type: Any,
             serve: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            backend.authenticate(context)
            backend.gate(method, str(getattr(request, "name", "") or
                                     getattr(request, "parent", "")))
            return serve(request)
        except Abort as failure:
            context.abort(failure.code, failure.message)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=request_type.deserialize,
        response_serializer=response_type.serialize)


def _handlers(backend: Backend) -> grpc.GenericRpcHandler:
    table = {
        "AccessSecretVersion": (types.AccessSecretVersionRequest,
                                types.AccessSecretVersionResponse, backend.access),
        "GetSecret": (types.GetSecretRequest, types.Secret, backend.get_secret),
        "GetSecretVersion": (types.GetSecretVersionRequest, types.SecretVersion,
                             backend.get_version),
        "CreateSecret": (types.CreateSecretRequest, types.Secret, backend.create_secret),
        "AddSecretVersion": (types.AddSecretVersionRequest, types.SecretVersion,
                             backend.add_version),
        "ListSecrets": (types.ListSecretsRequest, types.ListSecretsResponse,
                        backend.list_secrets),
    }
    return grpc.method_handlers_generic_handler(SERVICE, {
        method: _handler(backend, method, request, response, serve)
        for method, (request, response, serve) in table.items()})


# certificates and credentials made at test time


def tls_material(directory: Path) -> tuple[Path, bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert path, cert, key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyrun fake Secret Manager")])
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(minutes=5))
        .not_valid_after(now() + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path = directory / "fake-gcp-ca.pem"
    path.write_bytes(cert_pem)
    return path, cert_pem, key_pem


def service_account(directory: Path) -> tuple[Path, str, bytes]:
    """A throwaway service-account key file: (path, client email, public key PEM). Its
    token_uri leads nowhere: the client must sign its own JWTs."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"keyrun-test@{PROJECT}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": "https://127.0.0.1:9/token",
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, email, public


class FakeSecretManager:
    """The fake, served on a free port of 127.0.0.1 with TLS."""

    def __init__(self, directory: Path) -> None:
        self.ca_path, cert_pem, key_pem = tls_material(directory)
        self.credentials_path, email, public = service_account(directory)
        self.backend = Backend(email, public)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers((_handlers(self.backend),))
        credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
        self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        if not self.port:
            raise RuntimeError("the fake Secret Manager could not bind a port")
        self.endpoint = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the fake with the real client."""
        return {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(self.ca_path),
                "GOOGLE_APPLICATION_CREDENTIALS": str(self.credentials_path)}


class SilentServer:
    """Accepts TCP connections and never answers: a dead endpoint."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.endpoint = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.socket.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            self.connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for connection in self.connections:
            connection.close()
        self.socket.close()
