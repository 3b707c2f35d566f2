"""A real local webhook endpoint for the hooks tests: http.server on 127.0.0.1, verifies every
request with standardwebhooks' own verifier, dedups by webhook-id like a correct receiver,
records everything, and can be scripted to answer 500/429/4xx or to stall (timeouts); plus
DripServer, an endpoint that dribbles its answer out byte by byte."""
from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    echo_path: bool = False          # put the request path (with its query) in the body


@dataclass
class Seen:
    webhook_id: str | None
    verified: bool
    status: int
    payload: dict | None
    duplicate: bool = False
    observed: object = None          # HookServer.observe() at the time of the request


class HookServer:
    """Start/stop/restart on a fixed port; `script` replies are used first, then 200."""

    def __init__(self, secrets: list[str], port: int | None = None):
        self.verifiers = [Webhook(s) for s in secrets]
        self.port = port or free_port()
        self.script: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.accepted: Counter = Counter()    # webhook-id -> times acted upon (should be 1)
        self.observe = lambda: None           # a test may record something per request
        self.lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "HookServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = None
                for wh in owner.verifiers:
                    try:
                        payload = wh.verify(body, headers)
                        break
                    except WebhookVerificationError:
                        pass
                with owner.lock:
                    reply = owner.script.popleft() if owner.script else Reply()
                    status = reply.status if payload is not None else 401
                    seen = Seen(headers.get("webhook-id"), payload is not None, status, payload,
                                observed=owner.observe())
                    if payload is not None and 200 <= status < 300:
                        seen.duplicate = owner.accepted[seen.webhook_id] > 0
                        owner.accepted[seen.webhook_id] += 0 if seen.duplicate else 1
                    owner.requests.append(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    answer = {"status": status}
                    if reply.echo_path:
                        answer["path"] = self.path
                    out = json.dumps(answer).encode()
                    self.send_response(status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def ids(self, verified_only: bool = True) -> list[str]:
        return [r.webhook_id for r in self.requests if r.verified or not verified_only]

    def actions_accepted(self) -> Counter:
        """action -> how many distinct webhook-ids were accepted for it."""
        out: Counter = Counter()
        for r in self.requests:
            if r.verified and 200 <= r.status < 300 and not r.duplicate:
                out[r.payload["data"].get("action") or r.payload["type"]] += 1
        return out


@dataclass
class DripConn:
    webhook_id: str | None
    sent: int = 0                    # body bytes sent before the end
    finished: bool = False           # the connection's handling is over


class DripServer:
    """An endpoint that answers `200` at once but then drips its body one byte every
    `interval` seconds (`size` bytes in all), like the slow endpoint of issue #10. Records
    each connection, how many bytes it got out before the client hung up, and the most
    connections open at once. stop() ends every drip immediately.

    With `gated`, each request instead waits until the test calls `gate.release()`, then is
    answered in full at once (counted as closed before the answer goes out, so the count of
    open connections never lags behind the client)."""

    def __init__(self, size: int = 40, interval: float = 0.1, gated: bool = False):
        self.size, self.interval = size, interval
        self.gate = threading.Semaphore(0) if gated else None
        self.port = free_port()
        self.conns: list[DripConn] = []
        self.max_open = 0
        self._open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/drip"

    def start(self) -> "DripServer":
        self._sock = socket.create_server(("127.0.0.1", self.port), backlog=64)
        self._sock.settimeout(0.05)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            self._sock.close()

    def started(self) -> int:
        with self._lock:
            return len(self.conns)

    def all_finished(self) -> bool:
        with self._lock:
            return all(c.finished for c in self.conns)

    def wait(self, predicate, timeout: float = 30.0) -> bool:
        """Poll `predicate` until true (a bound, not a measurement)."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            time.sleep(0.02)
        return True

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._open += 1
            self.max_open = max(self.max_open, self._open)
        rec = DripConn(None)
        counted = True
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            headers = dict(line.split(": ", 1) for line in
                           head.decode("latin-1").split("\r\n")[1:] if ": " in line)
            headers = {k.lower(): v for k, v in headers.items()}
            while len(body) < int(headers.get("content-length", 0)):
                body += conn.recv(65536)
            rec.webhook_id = headers.get("webhook-id")
            with self._lock:
                self.conns.append(rec)
            head = (f"HTTP/1.1 200 OK\r\ncontent-length: {self.size}\r\n"
                    "connection: close\r\n\r\n").encode()
            if self.gate is not None:
                while not self.gate.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                with self._lock:
                    self._open -= 1
                    counted = False
                conn.sendall(head + b"x" * self.size)
                rec.sent = self.size
                return
            conn.sendall(head)
            while rec.sent < self.size and not self._stop.is_set():
                conn.sendall(b"x")
                rec.sent += 1
                self._stop.wait(self.interval)
        except OSError:
            pass                      # the client hung up: that is the point
        finally:
            conn.close()
            with self._lock:
                self._open -= 1 if counted else 0
                rec.finished = True


class FakeClock:
    """Injectable wall clock that starts at the real time (signature timestamps stay within
    the receiver's 5-minute tolerance) and only moves when told to."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.now += seconds
