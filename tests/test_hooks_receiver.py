"""The example `hook-receiver` is safe to expose: size checked before reading, timeouts on
slow clients, a bounded number of requests at once, 4xx for malformed requests, and a
webhook-id counts as done only after its action succeeded."""
from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook

from alert_factory import make_alert
from hook_server import free_port
from hooks_helpers import SECRET_ENV, hook_settings, iam, schedule
from straycode.hooks import Dispatcher
from straycode.hooks.receiver import make_server


@pytest.fixture
def receiver(secret):
    """Start a receiver: receiver(on_action=..., **make_server kwargs) -> port."""
    started = []

    def start(on_action=lambda event: None, **kw):
        port = free_port()
        srv = make_server("127.0.0.1", port, [secret], on_action=on_action, **kw)
        thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append(srv)
        return port

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def _exchange(port: int, data: bytes = b"", wait: float = 5.0) -> bytes:
    """Send raw bytes, then read until the server closes (socket timeout = a failed test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        if data:
            sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _signed(secret, body: str, msg_id="msg_test1") -> bytes:
    sig = Webhook(secret).sign(msg_id=msg_id, timestamp=datetime.now(tz=timezone.utc), data=body)
    ts = int(datetime.now(tz=timezone.utc).timestamp())
    return (f"POST / HTTP/1.1\r\nHost: x\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: {sig}\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"
            ).encode()


def test_oversized_post_is_answered_413_before_the_body_is_read(receiver):
    port = receiver(max_body=64 * 1024)
    # 400 MB announced, not a byte of it sent: only an answer without reading can come back
    raw = _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n\r\n")
    assert _status(raw) == 413


def test_malformed_requests_get_a_4xx_answer(receiver, secret):
    acted = []
    port = receiver(on_action=acted.append)
    assert _status(_exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")) == 400
    assert _status(_exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")) == 400
    assert _status(_exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")) == 411
    assert _status(_exchange(port, _signed(secret, "this is not json"))) == 400
    assert _status(_exchange(port, _signed(secret, "[1, 2]", msg_id="msg_list"))) == 400
    forged = _signed(secret, '{"data": {}}').replace(b"v1,", b"v1,AAAA")
    assert _status(_exchange(port, forged)) == 401
    assert _status(_exchange(port, _signed(secret, '{"data": {"action": "review"}}'))) == 200
    assert [e["action"] for e in acted] == ["review"]


def test_slow_clients_are_cut_off_and_cannot_take_every_thread(receiver, secret, tmp_path):
    port = receiver(workers=2, socket_timeout=0.5)
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for sock in slow:
            sock.sendall(b"POST / HT")                 # and then nothing
        # both workers are held: a third client is answered 503 at once, not queued
        busy = _exchange(port)
        assert _status(busy) == 503 and b"Retry-After: 1" in busy
        # the socket timeout frees them: the server closes each slow connection
        for sock in slow:
            assert sock.recv(65536) == b""
    finally:
        for sock in slow:
            sock.close()
    # and the receiver still serves real deliveries
    url = f"http://127.0.0.1:{port}/"
    settings = hook_settings(tmp_path, [iam(url, actions=["notify_user"])],
                             retry_schedule_s=schedule(5, 0.2))
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        d.submit(make_alert())
        assert d.run_until_idle(20)["delivered"] == 1


def test_failed_action_is_answered_5xx_and_performed_on_the_retry(receiver, secret, tmp_path):
    calls, acted = [], []

    def on_action(event):
        calls.append(event["webhook_id"])
        if len(calls) == 1:
            raise ConnectionError("IAM unavailable")
        acted.append(event)

    port = receiver(on_action=on_action)
    settings = hook_settings(tmp_path, [iam(f"http://127.0.0.1:{port}/", actions=["lock_account"])],
                             retry_after_max_s=0.05)     # the receiver asks for 5 s
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        d.submit(make_alert(actions=["lock_account"]))
        stats = d.run_until_idle(20)
        (row,) = d.outbox.all()
    assert stats["retry"] == 1 and stats["delivered"] == 1
    assert [e["action"] for e in acted] == ["lock_account"]
    assert calls == [row.msg_id, row.msg_id]            # the retry acted, same webhook-id
    # a later duplicate is acknowledged without acting again
    body = row.body
    raw = _exchange(port, _signed(secret, body, msg_id=row.msg_id))
    assert _status(raw) == 200 and json.loads(raw.split(b"\r\n\r\n", 1)[1])["duplicate"] is True
    assert len(acted) == 1


def test_receiver_log_lines_carry_no_query_token(receiver, secret, capfd):
    port = receiver()
    request = _signed(secret, '{"data": {"action": "review"}}').replace(
        b"POST / ", b"POST /hooks?token=t0k3nvalue ")
    assert _status(_exchange(port, request)) == 200
    err = capfd.readouterr().err
    assert "POST /hooks?token=***" in err and "t0k3nvalue" not in err
