"""`straycode hook-receiver`: an example endpoint for the IAM side.

It verifies every request with standardwebhooks' own verifier (signature + 5-minute
timestamp tolerance), acknowledges duplicates by webhook-id without acting twice, and prints
one JSON line per action. Replace `on_action` with the call into your IAM system.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from straycode.logs import escape
from straycode.settings import ConfigError, load_settings


def _print_action(event: dict) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


def make_server(host: str, port: int, secrets: list[str],
                on_action: Callable[[dict], None] = _print_action) -> ThreadingHTTPServer:
    """An HTTP server that verifies Standard Webhooks signatures and dedups by webhook-id."""
    if not secrets:
        raise ConfigError("the receiver needs at least one whsec_ secret")
    verifiers = [Webhook(s) for s in secrets]
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            payload = None
            for wh in verifiers:
                try:
                    payload = wh.verify(body, headers)
                    break
                except WebhookVerificationError:
                    continue
            if payload is None:
                self._answer(401, {"error": "signature did not verify"})
                return
            msg_id = headers["webhook-id"]
            with lock:
                duplicate = msg_id in seen
                seen.add(msg_id)
            if not duplicate:
                data = payload.get("data") or {}
                on_action({"webhook_id": msg_id, "type": payload.get("type"),
                           "action": data.get("action"), "user_id": data.get("user_id"),
                           "alert_id": data.get("alert_id"), "flow": data.get("flow")})
            self._answer(200, {"ok": True, "duplicate": duplicate})

        def _answer(self, status: int, obj: dict) -> None:
            out = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, fmt: str, *args) -> None:  # keep stdout for actions only
            sys.stderr.write("hook-receiver: " + escape(fmt % args) + "\n")

    return ThreadingHTTPServer((host, port), Handler)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--host", default="127.0.0.1")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(getattr(args, "config", None))
    var = settings["hooks"]["secret_env"]
    secrets = (os.environ.get(var) or "").split()
    if not secrets:
        print(f"hook-receiver: set ${var} to the whsec_ secret(s) shared with the dispatcher",
              file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, secrets)
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
