"""moto's real server for the AWS tests, and the wire-level tools around it.

- :class:`MotoServer`: ``moto_server -H 127.0.0.1 -p PORT`` in its own session, ready when
  ``GET /moto-api/data.json`` answers 200, SSM warmed (its first call builds moto's public
  parameters, ~1 s), ``POST /moto-api/reset`` between tests, the process group killed in
  a ``finally``.
- :class:`FaultProxy`: an HTTP proxy in front of moto that records every call (operation
  and JSON body) and can answer some calls itself: AWS error responses (throttling,
  expired tokens, KMS failures), crafted bodies, or no answer at all.
- :class:`BlackHole`: a TCP port that accepts connections and never answers.
- :class:`LatencyProxy`: a TCP forwarder that delays every chunk by a fixed time each way
  (the benchmark's "remote" AWS).

The tests talk to moto with boto3 and keyrun, never with a mock of the SDK. The fixtures
``moto_server`` (the shared server) and ``aws`` (a clean backend per test) reach every test
module through ``pytest_plugins`` in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, unavailable

REGION = "us-east-1"
# Dummy credentials: moto accepts anything; no real account can be reached with these.
ACCESS_KEY = "AKIAKEYRUNTESTING000"
SECRET_KEY = "keyrun-testing-secret-access-key-0000000"


def aws_environment(endpoint: str | None = None) -> dict[str, str]:
    """Variables that point boto3 at moto with dummy keys and no AWS config files."""
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def _moto_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    return [*program, "-H", "127.0.0.1", "-p", str(port)]


class MotoServer:
    """moto's HTTP server on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(_moto_command(self.port), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with status {self.process.returncode}")
            if self._answers():
                self.warm()
                return
            time.sleep(0.1)
        raise RuntimeError("moto_server did not answer /moto-api/data.json within 60s")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2) as done:
                return bool(done.status == 200)
        except OSError:
            return False

    def warm(self) -> None:
        """moto builds its public SSM parameters on the first SSM call (~1 s): pay it once."""
        self.client("ssm").get_parameters(Names=["/keyrun/warm-up"])

    def post(self, path: str, data: bytes = b"") -> None:
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as done:
            assert done.status == 200

    def reset(self) -> None:
        self.post("/moto-api/reset")

    def require_auth(self, after: int | float) -> None:
        """moto checks signatures and IAM policies after ``after`` more requests."""
        self.post("/moto-api/reset-auth", str(after).encode())

    def client(self, service: str, **overrides: str) -> Any:
        import boto3

        options = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY,
                   **overrides}
        return boto3.session.Session(region_name=REGION).client(
            service, endpoint_url=self.url, **options)  # type: ignore[call-overload]

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@dataclass
class Rule:
    """Answer matching calls from the proxy instead of moto."""

    operation: str | None  # e.g. "BatchGetSecretValue"; None matches every call
    status: int = 400
    body: dict[str, Any] | None = None
    hang: bool = False
    match: str | None = None  # a substring the request body must contain
    times: int | None = None  # None: every matching call
    headers: dict[str, str] = field(default_factory=dict)
    before: Callable[[], None] | None = None  # run, then forward the call to moto
    delay: float = 0.0  # seconds to wait before forwarding (with before)

    def matches(self, operation: str, body: bytes) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.operation is not None and self.operation != operation:
            return False
        return self.match is None or self.match.encode() in body


@dataclass
class Call:
    operation: str
    body: dict[str, Any]
    started: float
    ended: float = 0.0


class FaultProxy:
    """An HTTP proxy in front of moto: records calls, injects answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                proxy.handle(self)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def error(self, operation: str | None, code: str, message: str = "", *, status: int = 400,
              times: int | None = None, match: str | None = None) -> None:
        """Answer with an AWS JSON-protocol error."""
        self.rules.append(Rule(operation, status, {"__type": code, "message": message},
                               match=match, times=times, headers={"x-amzn-ErrorType": code}))

    def respond(self, operation: str, body: dict[str, Any], *, times: int | None = None,
                match: str | None = None) -> None:
        self.rules.append(Rule(operation, 200, body, match=match, times=times))

    def before(self, operation: str, action: Callable[[], None], *, times: int | None = 1,
               match: str | None = None) -> None:
        """Run ``action`` (say, another writer's change) just before forwarding a call."""
        self.rules.append(Rule(operation, match=match, times=times, before=action))

    def slow(self, operation: str, seconds: float) -> None:
        """Forward ``operation`` calls to moto after ``seconds``."""
        self.rules.append(Rule(operation, before=lambda: None, delay=seconds))

    def hang(self, operation: str | None = None) -> None:
        self.rules.append(Rule(operation, hang=True))

    def clear(self) -> None:
        self.release.set()
        with self.lock:
            self.rules.clear()
            self.calls.clear()
        self.release = threading.Event()

    def operations(self, name: str | None = None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if name is None or c.operation == name]

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        operation = (request.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        call = Call(operation, _json(body), time.monotonic())
        request.keyrun_call = call  # type: ignore[attr-defined]
        with self.lock:
            self.calls.append(call)
            rule = next((r for r in self.rules if r.matches(operation, body)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        try:
            if rule is not None and rule.hang:
                self.release.wait(120)
                return
            if rule is not None and rule.before is not None:
                time.sleep(rule.delay)
                rule.before()
            elif rule is not None:
                self._send(request, rule.status, rule.headers, json.dumps(rule.body).encode())
                return
            self._forward(request, body)
        finally:
            call.ended = call.ended or time.monotonic()

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("connection", "keep-alive")}
            upstream.request(request.command, request.path, body, headers)
            answer = upstream.getresponse()
            data = answer.read()
            kept = {k: v for k, v in answer.getheaders()
                    if k.lower() not in ("connection", "transfer-encoding", "content-length")}
            self._send(request, answer.status, kept, data)
        finally:
            upstream.close()

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
              data: bytes) -> None:
        call = getattr(request, "keyrun_call", None)
        if call is not None:  # ended before the answer leaves, so a test never races it
            call.ended = time.monotonic()
        request.send_response(status)
        headers = {"Content-Type": "application/x-amz-json-1.1", **headers}
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(data)
        request.close_connection = True

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class BlackHole:
    """A listening port that completes TCP handshakes (the kernel's backlog) and never
    reads or answers: what a firewall that swallows responses looks like."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


class LatencyProxy:
    """Forwards TCP to ``upstream`` and delays every chunk by ``delay`` seconds in each
    direction (ordering kept; bandwidth not limited), on its own event-loop thread."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        async def serve() -> None:
            self.server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
            self.port = int(self.server.sockets[0].getsockname()[1])
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        if not ready.wait(10):
            raise RuntimeError("the latency proxy did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def pump() -> None:
            while True:
                try:
                    data = await source.read(65536)
                except ConnectionError:
                    data = b""
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    return

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    sink.close()
                    return
                sink.write(data)
                with contextlib.suppress(ConnectionError):
                    await sink.drain()

        await asyncio.gather(pump(), deliver())

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class AwsBackend:
    """What a test gets: moto behind the fault proxy, clean for each test."""

    def __init__(self, moto: MotoServer, proxy: FaultProxy) -> None:
        self.moto = moto
        self.proxy = proxy
        self.url = proxy.url  # keyrun talks to the proxy, which forwards to moto
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """A boto3 client straight to moto (the test's own hand, not recorded), cached."""
        if service not in self._clients:
            self._clients[service] = self.moto.client(service)
        return self._clients[service]

    def env(self) -> dict[str, str]:
        return aws_environment(self.url)


def clean_backend(shared: tuple[MotoServer, FaultProxy],
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsBackend]:
    """A clean moto, and this process's AWS variables set to dummy credentials (no
    endpoint: tests pass endpoint_url, or set AWS_ENDPOINT_URL themselves)."""
    moto, proxy = shared
    moto.reset()
    proxy.clear()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_environment().items():
        monkeypatch.setenv(name, value)
    try:
        yield AwsBackend(moto, proxy)
    finally:
        proxy.clear()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[tuple[MotoServer, FaultProxy]]:
    """One moto server (and proxy) for the whole session. Under CI a server that cannot
    start fails the tests; elsewhere they are skipped."""
    moto = MotoServer()
    try:
        moto.start()
    except Exception as exc:
        moto.stop()
        unavailable(f"moto_server could not start: {exc} (pip install 'moto[server]')")
    proxy = FaultProxy(moto.port)
    try:
        yield moto, proxy
    finally:
        proxy.stop()
        moto.stop()


@pytest.fixture
def aws(moto_server: tuple[MotoServer, FaultProxy],
        monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsBackend]:
    yield from clean_backend(moto_server, monkeypatch)
