"""A fake Doppler API over HTTP, with switchable failures.

It implements the endpoints keyrun calls, with Doppler's shapes: ``GET
/v3/configs/config/secrets/download?project=P&config=C&format=json`` (a flat JSON object,
with Doppler's own ``DOPPLER_PROJECT``/``DOPPLER_CONFIG``/``DOPPLER_ENVIRONMENT``),
``GET /v3/configs/config/secrets/names`` (``{"names": [...]}``) and ``POST
/v3/configs/config/secrets`` (``{"secrets": {NAME: value}}``), bearer tokens scoped to
configs, and errors as ``{"messages": [...], "success": false}``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# A token the tests grant, and a keyrun.toml reading two keys from the fake at {url}
# under {timeout}.
TOKEN = "dp.st.dev.fake0123456789abcdefTOKEN"
CONFIG = """
project = "bot"
default_env = "dev"

[keys]
OPENAI_API_KEY = {{}}
ANTHROPIC_API_KEY = {{}}

[sources.doppler]
type = "doppler"
api_host = "{url}"

[env.dev]
sources = ["doppler"]
timeout = "{timeout}"
"""


@dataclass(frozen=True)
class Grant:
    configs: frozenset[tuple[str, str]] | None  # None: every project and config
    write: bool = True


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    status: int


class FakeDoppler:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # _send records under it, also from locked paths
        self.projects: dict[str, dict[str, dict[str, str]]] = {}
        self.grants: dict[str, Grant] = {}
        self.seen: list[Seen] = []
        self.failures: list[tuple[int, str | None, str | None]] = []
        self.hang = 0.0
        self.server = _Server(("127.0.0.1", 0), _Handler, self)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-doppler",
                                       daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.projects.clear()
            self.grants.clear()
            self.seen.clear()
            self.failures.clear()
            self.hang = 0.0

    def grant(self, token: str, *configs: tuple[str, str], write: bool = True) -> None:
        """Let ``token`` use ``configs`` (every config when none are named)."""
        with self.lock:
            self.grants[token] = Grant(frozenset(configs) if configs else None, write)

    def add_config(self, project: str, config: str) -> None:
        with self.lock:
            self.projects.setdefault(project, {}).setdefault(config, {})

    def put(self, project: str, config: str, name: str, value: str) -> None:
        with self.lock:
            self.projects.setdefault(project, {}).setdefault(config, {})[name] = value

    def secrets(self, project: str, config: str) -> dict[str, str]:
        with self.lock:
            return dict(self.projects[project][config])

    def fail(self, status: int, times: int = 1, retry_after: str | None = None,
             message: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``message``, else a
        text body for 5xx and Doppler's rate-limit message otherwise)."""
        with self.lock:
            self.failures.extend([(status, retry_after, message)] * times)

    def requests(self, path: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if path is None or s.path == path]

    def stop(self) -> None:
        self.hang = 0.0
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 doppler: FakeDoppler) -> None:
        super().__init__(address, handler)
        self.doppler = doppler

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # Without TCP_NODELAY every keep-alive request stalls ~44 ms (Nagle + delayed ACK).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def doppler(self) -> FakeDoppler:
        return self.server.doppler

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen = Seen(method, url.path, query, self.headers.get("Authorization"), 0)
        self._answer(method, url.path, query, body)

    def _answer(self, method: str, path: str, query: dict[str, str], body: bytes) -> int:
        if self.doppler.hang:
            time.sleep(self.doppler.hang)
        with self.doppler.lock:
            failure = self.doppler.failures.pop(0) if self.doppler.failures else None
        if failure is not None:
            status, retry_after, message = failure
            headers = {"Retry-After": retry_after} if retry_after else {}
            if message is None and status >= 500:
                return self._text(status, "upstream failure", headers)
            return self._error(status, message or "You are being rate limited", headers)
        grant = self._grant()
        if grant is None:
            return self._error(401, "Invalid Auth token")
        payload: dict[str, Any] = {}
        if method == "POST":
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return self._error(400, "Invalid JSON body")
        project = str(payload.get("project") or query.get("project") or "")
        config = str(payload.get("config") or query.get("config") or "")
        found = self._config(project, config, grant, write=method == "POST")
        if isinstance(found, int):
            return found
        if method == "GET" and path == "/v3/configs/config/secrets/download":
            if query.get("format") != "json":
                return self._error(400, "This endpoint needs format=json here")
            meta = {"DOPPLER_PROJECT": project, "DOPPLER_CONFIG": config,
                    "DOPPLER_ENVIRONMENT": config.split("_")[0]}
            return self._json(200, {**found, **meta})
        if method == "GET" and path == "/v3/configs/config/secrets/names":
            return self._json(200, {"names": sorted(found), "success": True})
        if method == "POST" and path == "/v3/configs/config/secrets":
            return self._update(found, payload)
        return self._error(404, "Not found")

    def _grant(self) -> Grant | None:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            return None
        with self.doppler.lock:
            return self.doppler.grants.get(header[len("Bearer "):])

    def _config(self, project: str, config: str, grant: Grant, write: bool
                ) -> dict[str, str] | int:
        if not project or not config:
            return self._error(400, "You must specify a project and config")
        allowed = grant.configs is None or (project, config) in grant.configs
        if not allowed:
            return self._error(403, f"This token does not have access to requested project "
                                    f"'{project}' and config '{config}'")
        if write and not grant.write:
            return self._error(403, "This token does not have write access")
        with self.doppler.lock:
            configs = self.doppler.projects.get(project)
            if configs is None:
                return self._error(404, f"Could not find requested project '{project}'")
            secrets = configs.get(config)
            if secrets is None:
                return self._error(404, f"Could not find requested config '{config}'")
            return dict(secrets)

    def _update(self, current: dict[str, str], payload: dict[str, Any]) -> int:
        changes = payload.get("secrets")
        if not isinstance(changes, dict) or not all(isinstance(v, str) for v in changes.values()):
            return self._error(400, "secrets must be an object of names to strings")
        project, config = str(payload["project"]), str(payload["config"])
        with self.doppler.lock:
            stored = self.doppler.projects[project][config]
            stored.update(changes)
            merged = dict(stored)
        return self._json(200, {"secrets": {k: {"raw": v, "computed": v}
                                            for k, v in merged.items()}, "success": True})

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> int:
        return self._json(status, {"messages": [message], "success": False}, headers)

    def _json(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> int:
        return self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8",
                          headers)

    def _text(self, status: int, text: str, headers: dict[str, str] | None = None) -> int:
        return self._send(status, text.encode(), "text/plain", headers)

    def _send(self, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None) -> int:
        seen = self.seen  # recorded before the answer leaves, so a test never races it
        with self.doppler.lock:
            self.doppler.seen.append(Seen(seen.method, seen.path, seen.query,
                                          seen.authorization, status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)
        return status
