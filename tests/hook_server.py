"""A real local webhook endpoint for the hooks tests: http.server on 127.0.0.1, verifies every
request with standardwebhooks' own verifier, dedups by webhook-id like a correct receiver,
records everything, and can be scripted to answer 500/429/4xx or to stall (timeouts)."""
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


@dataclass
class Seen:
    webhook_id: str | None
    verified: bool
    status: int
    payload: dict | None
    duplicate: bool = False


class HookServer:
    """Start/stop/restart on a fixed port; `script` replies are used first, then 200."""

    def __init__(self, secrets: list[str], port: int | None = None):
        self.verifiers = [Webhook(s) for s in secrets]
        self.port = port or free_port()
        self.script: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.accepted: Counter = Counter()    # webhook-id -> times acted upon (should be 1)
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
                    seen = Seen(headers.get("webhook-id"), payload is not None, status, payload)
                    if payload is not None and 200 <= status < 300:
                        seen.duplicate = owner.accepted[seen.webhook_id] > 0
                        owner.accepted[seen.webhook_id] += 0 if seen.duplicate else 1
                    owner.requests.append(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    out = json.dumps({"status": status}).encode()
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
