"""`straycode hook-receiver`: an example endpoint for the IAM side.

It verifies every request with standardwebhooks' own verifier (signature + 5-minute
timestamp tolerance), acknowledges duplicates by webhook-id without acting twice, and prints
one JSON line per action. Replace `on_action` with the call into your IAM system.

Safe to expose as written: the body size is checked on Content-Length before anything is
read (413; missing 411, garbled 400), every socket read/write has a timeout, at most
`workers` requests are handled at once (more get 503), malformed requests get a 4xx, and a
webhook-id counts as done only once its action succeeded (a failed action answers 503, so
the sender retries and the retry acts).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from straycode.hooks.redact import redact_url
from straycode.logs import escape
from straycode.settings import ConfigError, load_settings


MAX_BODY_BYTES = 1024 * 1024       # straycode's payloads are a few KB
WORKERS = 16                        # requests handled at once; more are answered 503
SOCKET_TIMEOUT_S = 10.0             # per socket read/write: a slow client is cut off
_LENGTH = re.compile(r"[0-9]{1,15}")


def _print_action(event: dict) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


class BoundedHTTPServer(ThreadingHTTPServer):
    """One thread per connection, but at most `workers` at once: a connection beyond that
    is answered 503 (Retry-After: 1) straight away and closed, so slow or malicious clients
    cannot pile up threads."""

    daemon_threads = True

    def __init__(self, address, handler, workers: int):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.slots = threading.BoundedSemaphore(workers)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            _answer_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)     # starts the thread
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _answer_busy(sock: socket.socket) -> None:
    body = b'{"error": "busy"}'
    try:
        sock.settimeout(1.0)
        sock.sendall(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        sock.setblocking(False)
        while sock.recv(65536):        # what already arrived: closing on unread data resets
            pass
    except OSError:
        pass


def make_server(host: str, port: int, secrets: list[str],
                on_action: Callable[[dict], None] = _print_action,
                max_body: int = MAX_BODY_BYTES, workers: int = WORKERS,
                socket_timeout: float = SOCKET_TIMEOUT_S) -> BoundedHTTPServer:
    """An HTTP server that verifies Standard Webhooks signatures and acts once per
    webhook-id: the id is recorded as done only after `on_action` returned; if it raises,
    the answer is 503 so the sender retries, and the retry performs the action."""
    if not secrets:
        raise ConfigError("the receiver needs at least one whsec_ secret")
    verifiers = [Webhook(s) for s in secrets]
    done: set[str] = set()           # use a durable store in a real integration
    in_progress: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        timeout = socket_timeout     # socketserver applies it to each socket read/write;
                                     # the body read has it as one deadline in all

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self._read_body()
            if body is None:
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = False
            for wh in verifiers:
                try:
                    wh.verify(body, headers, json_parse=False)
                    verified = True
                    break
                except UnicodeDecodeError:
                    self._answer(400, {"error": "body is not UTF-8"})
                    return
                except (WebhookVerificationError, ValueError, TypeError):
                    continue         # (a malformed signature header raises ValueError)
            if not verified:
                self._answer(401, {"error": "signature did not verify"})
                return
            try:
                payload = json.loads(body)
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._answer(400, {"error": "signed body is not a JSON object"})
                return
            self._act(headers["webhook-id"], payload)

        def _read_body(self) -> bytes | None:
            """The body, or None after answering: the size is checked before reading."""
            if self.headers.get("transfer-encoding"):
                return self._refuse(411, "send Content-Length, not Transfer-Encoding")
            raw = self.headers.get("content-length")
            if raw is None:
                return self._refuse(411, "Content-Length required")
            if not _LENGTH.fullmatch(raw.strip()):
                return self._refuse(400, "bad Content-Length")
            length = int(raw)
            if length > max_body:
                return self._refuse(413, f"body larger than {max_body} bytes")
            body, left = bytearray(), length
            deadline = time.monotonic() + socket_timeout       # for the whole body
            try:
                while left:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    self.connection.settimeout(remaining)
                    chunk = self.rfile.read1(left)
                    if not chunk:
                        return self._refuse(400, "body shorter than Content-Length")
                    body += chunk
                    left -= len(chunk)
            except (TimeoutError, OSError):
                return self._refuse(408, "body not received in time")
            return bytes(body)

        def _refuse(self, status: int, why: str) -> None:
            self.close_connection = True           # the unread rest is not worth reading
            self._answer(status, {"error": why})
            return None

        def _act(self, msg_id: str, payload: dict) -> None:
            with lock:
                if msg_id in done:
                    self._answer(200, {"ok": True, "duplicate": True})
                    return
                busy = msg_id in in_progress
                in_progress.add(msg_id)
            if busy:                               # the same id is being acted on right now
                self._answer(503, {"error": "in progress, retry"}, {"Retry-After": "1"})
                return
            data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
            try:
                on_action({"webhook_id": msg_id, "type": payload.get("type"),
                           "action": data.get("action"), "user_id": data.get("user_id"),
                           "alert_id": data.get("alert_id"), "flow": data.get("flow")})
            except Exception as exc:               # the action failed: not done, ask again
                sys.stderr.write(f"hook-receiver: action for {msg_id} failed: "
                                 f"{type(exc).__name__}: {exc}\n")
                with lock:
                    in_progress.discard(msg_id)
                self._answer(503, {"error": "action failed, retry"}, {"Retry-After": "5"})
                return
            with lock:
                done.add(msg_id)
                in_progress.discard(msg_id)
            self._answer(200, {"ok": True, "duplicate": False})

        def _answer(self, status: int, obj: dict, extra: dict | None = None) -> None:
            out = json.dumps(obj).encode()
            try:
                self.send_response(status)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                if self.close_connection:
                    self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(out)
            except OSError:                         # the client went away
                self.close_connection = True

        def log_message(self, fmt: str, *args) -> None:  # keep stdout for actions only
            message = fmt % args
            path = getattr(self, "path", "")
            if path:                                 # the query string may hold a token
                message = message.replace(path, redact_url(path))
            sys.stderr.write("hook-receiver: " + escape(message) + "\n")

    return BoundedHTTPServer((host, port), Handler, workers)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-body", type=int, default=MAX_BODY_BYTES,
                        help="larger requests are answered 413 without reading them")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="requests handled at once; more are answered 503")
    parser.add_argument("--socket-timeout", type=float, default=SOCKET_TIMEOUT_S,
                        help="seconds a client may take per read/write before it is cut off")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    var = settings["hooks"]["secret_env"]
    secrets = (os.environ.get(var) or "").split()
    if not secrets:
        print(f"hook-receiver: set ${var} to the whsec_ secret(s) shared with the dispatcher",
              file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, secrets, max_body=args.max_body,
                             workers=args.workers, socket_timeout=args.socket_timeout)
    except (OSError, ValueError) as exc:        # port in use, malformed secret
        print(f"hook-receiver: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"hook-receiver: listening on http://{args.host}:{server.server_address[1]}/",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
