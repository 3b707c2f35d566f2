"""Issue #10 (hooks): deliveries survive a long outage, a huge Retry-After is capped, dead
deliveries can be re-driven, a slow endpoint neither stalls the others nor holds a delivery
past its deadline, `dispatch` stops promptly on SIGTERM and within --timeout, and URL
credentials never reach the dead-letter file or the logs."""
from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from alert_factory import make_alert
from hook_server import DripServer, FakeClock, Reply, free_port
from hooks_helpers import SECRET_ENV, dead_letters, hook_settings, iam, schedule
from straycode import cli
from straycode.hooks import Dispatcher
from straycode.hooks.outbox import DELIVERED, PENDING
from straycode.settings import load_settings

DAY = 24 * 3600


def _notify(url, name="iam"):
    return iam(url, actions=["notify_user"], name=name)


# -- retry horizon ------------------------------------------------------------------------

def test_default_retry_schedule_spans_more_than_a_day():
    from straycode.hooks.delivery import RetryPolicy
    policy = RetryPolicy.from_hooks(load_settings(env={})["hooks"])
    assert policy.schedule[0] == 0                      # the first attempt is immediate
    assert policy.horizon_s() >= DAY
    # the delays actually drawn (jitter only lengthens them) add up to more than a day too
    rng, attempts, waited = random.Random(7), 0, 0.0
    while True:
        attempts += 1
        plan = policy.next_retry(attempts, None, rng)
        if plan.delay is None:
            break
        waited += plan.delay
    assert attempts == policy.max_attempts and waited >= DAY


def test_endpoint_down_longer_than_the_old_retry_window_loses_nothing(tmp_path, server, secret):
    # the old default gave up after 8 attempts; this endpoint answers 503 nine times
    server.script.extend([Reply(503)] * 9)
    settings = hook_settings(tmp_path, [_notify(server.url)], retry_schedule_s=schedule(12, 0.02))
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        d.submit(make_alert())
        stats = d.run_until_idle(30)
        (row,) = d.outbox.all()
    assert stats["delivered"] == 1 and stats["retry"] == 9 and stats["dead"] == 0
    assert row.state == DELIVERED and row.attempts == 10
    assert [r.status for r in server.requests] == [503] * 9 + [200]
    assert len(set(server.ids())) == 1 and dead_letters(tmp_path) == []


def test_huge_retry_after_is_capped_and_logged(tmp_path, server, secret, caplog):
    caplog.set_level(logging.WARNING, logger="straycode.hooks")
    clock = FakeClock()
    server.script.extend([Reply(503, headers={"Retry-After": "999999999"}),
                          Reply(429, headers={"Retry-After": "Fri, 01 Jan 2058 00:00:00 GMT"})])
    eps = [_notify(server.url), _notify(server.url, name="soc")]
    settings = hook_settings(tmp_path, eps, retry_schedule_s=[0, 1, 1], max_in_flight_per_endpoint=1)
    with Dispatcher(settings, env={SECRET_ENV: secret}, clock=clock, sleep=clock.sleep) as d:
        d.submit(make_alert())
        stats = d.run_once()
        rows = d.outbox.all()
        cap = d.retry.retry_after_max_s
    assert cap == load_settings(env={})["hooks"]["retry_after_max_s"] == 3600
    assert stats["retry"] == 2 and stats["retry_after_capped"] == 2
    assert [r.state for r in rows] == [PENDING, PENDING]
    assert [r.next_attempt_at - clock.now for r in rows] == [pytest.approx(cap)] * 2
    capped = [r.getMessage() for r in caplog.records if "capped" in r.getMessage()]
    assert len(capped) == 2 and "999999999s" in " ".join(capped)


# -- redrive ------------------------------------------------------------------------------

def _cli_config(tmp_path, url, **extra):
    hooks = {"outbox": str(tmp_path / "outbox.sqlite3"), "dead_letter": str(tmp_path / "dead.jsonl"),
             "retry_schedule_s": [0, 0.01], "secret_env": SECRET_ENV,
             "endpoints": [_notify(url)], **extra}
    path = tmp_path / "straycode.yaml"
    path.write_text(yaml.safe_dump({"hooks": hooks}))
    return str(path)


def _dispatch(capsys, config, *args):
    assert cli.main(["--config", config, "dispatch", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_redrive_sends_dead_deliveries_again_with_the_same_webhook_id(tmp_path, server, secret,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv(SECRET_ENV, secret)
    server.script.extend([Reply(503)] * 4)           # 2 alerts x 2 attempts: both die
    a1, a2 = make_alert(code_event_id="c1"), make_alert(code_event_id="c2")
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps(a1) + "\n" + json.dumps(a2) + "\n")
    config = _cli_config(tmp_path, server.url)
    first = _dispatch(capsys, config, "--alerts", str(alerts), "--timeout", "20")
    assert first["dead"] == 2 and first["delivered"] == 0
    dead_ids = {x["alert_id"]: x["webhook_id"] for x in dead_letters(tmp_path)}
    # the issue: running dispatch again queues and sends nothing
    again = _dispatch(capsys, config, "--alerts", str(alerts), "--timeout", "20")
    assert again["queued"] == 0 and len(server.requests) == 4

    one = _dispatch(capsys, config, "--redrive", "--alert-id", a1["alert_id"], "--timeout", "20")
    assert one["redriven"] == 1 and one["delivered"] == 1 and one["dead_total"] == 1
    assert server.requests[-1].webhook_id == dead_ids[a1["alert_id"]]
    rest = _dispatch(capsys, config, "--redrive", "--endpoint", "iam", "--timeout", "20")
    assert rest["redriven"] == 1 and rest["delivered"] == 1 and rest["dead_total"] == 0
    assert server.requests[-1].webhook_id == dead_ids[a2["alert_id"]]
    assert dict(server.accepted) == {dead_ids[a1["alert_id"]]: 1, dead_ids[a2["alert_id"]]: 1}
    settings = hook_settings(tmp_path, [_notify(server.url)])
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        assert [(r.state, r.attempts) for r in d.outbox.all()] == [(DELIVERED, 1)] * 2
        assert d.redrive() == 0                          # nothing dead is left


# -- slow endpoints -----------------------------------------------------------------------

def test_dripping_endpoint_is_cut_at_the_deadline_and_does_not_delay_another(tmp_path, server,
                                                                             secret):
    drip = DripServer(size=40, interval=0.1).start()     # 4 s to answer in full
    # at each request to the fast endpoint: is the slow one's answer still unfinished?
    server.observe = lambda: not (drip.started() and drip.all_finished())
    clock = FakeClock()
    eps = [iam(drip.url, actions=["lock_account"], name="slow"),
           iam(server.url, actions=["notify_user"], name="fast")]
    try:
        settings = hook_settings(tmp_path, eps, timeout_s=1)
        with Dispatcher(settings, env={SECRET_ENV: secret}, clock=clock) as d:
            d.submit(make_alert(code_event_id="c-slow", actions=["lock_account"]))
            clock.advance(1)                             # the slow one is due first
            d.submit(make_alert(code_event_id="c-fast", actions=["notify_user"]))
            stats = d.run_once()
            rows = {r.endpoint: r for r in d.outbox.all()}
        assert drip.wait(drip.all_finished)
    finally:
        drip.stop()
    # the fast endpoint got its request while the slow one was still dripping
    (fast,) = server.requests
    assert fast.observed is True and rows["fast"].state == DELIVERED
    # the slow one was cut at the 1 s deadline, long before its 40 bytes were out
    (conn,) = drip.conns
    assert conn.sent < drip.size
    assert stats == {"delivered": 1, "retry": 1, "dead": 0, "retry_after_capped": 0,
                     "abandoned": 0}
    assert rows["slow"].state == PENDING and rows["slow"].last_error.startswith("timeout")


def test_concurrent_deliveries_per_endpoint_are_bounded(tmp_path, secret):
    drip = DripServer(gated=True).start()     # each request waits for the test's go
    settings = hook_settings(tmp_path, [_notify(drip.url)], timeout_s=30,
                             max_in_flight_per_endpoint=2)
    results = []
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        for i in range(5):
            d.submit(make_alert(code_event_id=f"c{i}"))
        runner = threading.Thread(target=lambda: results.append(d.run_once()))
        runner.start()
        try:
            for released in range(5):
                # two requests in flight at once (one while only one is left)
                assert drip.wait(lambda: drip.started() == min(released + 2, 5), timeout=10)
                drip.gate.release()
        finally:
            drip.stop()
            runner.join(30)
    assert results[0]["delivered"] == 5
    assert drip.max_open == 2


# -- stopping -----------------------------------------------------------------------------

def _dispatch_proc(tmp_path, drip, secret, *args):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"hooks": {
        "outbox": str(tmp_path / "outbox.sqlite3"), "dead_letter": str(tmp_path / "dead.jsonl"),
        "secret_env": SECRET_ENV, "timeout_s": 60, "endpoints": [_notify(drip.url)]}}))
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps(make_alert()) + "\n")
    env = dict(os.environ, **{SECRET_ENV: secret})
    return subprocess.Popen([sys.executable, "-m", "straycode.cli", "--config", str(config),
                             "dispatch", "--alerts", str(alerts), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _summary(out):
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_and_ends_dispatch_within_seconds(tmp_path, secret, sig):
    drip = DripServer(size=10_000, interval=0.1).start()   # would take 1000 s
    proc = _dispatch_proc(tmp_path, drip, secret, "--timeout", "600")
    try:
        assert drip.wait(lambda: drip.started() == 1, timeout=60), proc.stderr
        proc.send_signal(sig)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=5)           # TimeoutExpired = the bug
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
        drip.stop()
    assert proc.returncode == 0, err
    assert took < 5
    summary = _summary(out)
    assert summary["stopped"] is True and summary["abandoned"] == 1 and summary["pending"] == 1


def test_timeout_bounds_the_whole_run(tmp_path, secret):
    drip = DripServer(size=10_000, interval=0.1).start()
    proc = _dispatch_proc(tmp_path, drip, secret, "--timeout", "2")
    try:
        assert drip.wait(lambda: drip.started() == 1, timeout=60)
        started = time.monotonic()
        out, err = proc.communicate(timeout=10)           # the old run took >= timeout_s (60 s)
        after_request = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        drip.stop()
    assert proc.returncode == 0, err
    assert after_request < 2 + 3
    summary = _summary(out)
    assert summary["abandoned"] == 1 and summary["pending"] == 1 and summary["delivered"] == 0


# -- URL credentials ----------------------------------------------------------------------

def test_redact_url_and_text():
    from straycode.hooks.redact import redact_text, redact_url
    url = "https://alice:pa55@iam.example:8443/h/k?token=t0k3n&x=&mode=1#frag"
    assert redact_url(url) == "https://***@iam.example:8443/h/k?token=***&x=***&mode=***"
    assert redact_url("http://[::1]:9/p") == "http://[::1]:9/p"
    assert redact_url("/hooks?token=t0k3n") == "/hooks?token=***"
    text = f"POST {url} failed; the server said: bad token t0k3n for alice:pa55"
    clean = redact_text(text, url)
    assert "t0k3n" not in clean and "pa55" not in clean and "alice" not in clean
    assert "https://***@iam.example:8443/h/k?token=***" in clean


def test_url_credentials_never_reach_dead_letters_or_logs(tmp_path, server, secret, caplog):
    caplog.set_level(logging.DEBUG)                       # every logger, httpx included
    secrets_in_urls = ["s3cr3tpw", "t0k3nvalue", "hunter22", "k3yk3yk3y"]
    leaky = server.url.replace("http://", "http://alice:s3cr3tpw@") + "?token=t0k3nvalue&x=1"
    down = f"http://bob:hunter22@127.0.0.1:{free_port()}/x?api_key=k3yk3yk3y"
    server.script.append(Reply(422, echo_path=True))      # the server echoes the query back
    settings = hook_settings(tmp_path, [_notify(leaky), _notify(down, name="down")],
                             retry_schedule_s=schedule(2))
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        d.submit(make_alert())
        stats = d.run_until_idle(20)
        errors = [r.last_error for r in d.outbox.all()]
    assert stats["dead"] == 2
    letters = {x["endpoint"]: x for x in dead_letters(tmp_path)}
    port = server.port
    assert letters["iam"]["url"] == f"http://***@127.0.0.1:{port}/hooks?token=***&x=***"
    assert letters["down"]["url"].startswith("http://***@127.0.0.1:")
    assert letters["iam"]["last_error"].startswith("HTTP 422")
    written = (tmp_path / "dead.jsonl").read_text() + caplog.text + " ".join(errors)
    assert "HTTP 422" in written and "connection error" in written
    for s in secrets_in_urls:
        assert s not in written, s
