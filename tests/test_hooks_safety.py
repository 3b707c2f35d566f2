"""Safety rails of the hooks: dry run, never_lock, password-flow guardrail, the lockout
circuit breaker, and secrets that never reach logs or files."""
from __future__ import annotations

import base64
import logging

import pytest

from alert_factory import make_alert
from hook_server import FakeClock, HookServer, Reply, new_secret
from hooks_helpers import SECRET_ENV, dead_letters, hook_settings, iam
from straycode.hooks import Dispatcher
from straycode.hooks.outbox import HELD, PENDING
from straycode.settings import ConfigError


def test_dry_run_calls_nothing(tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="straycode.hooks")
    settings = hook_settings(tmp_path, [iam(server.url)], dry_run=True)
    with Dispatcher(settings, env={}) as d:             # no secret needed to dry-run
        assert d.submit(make_alert()) == 0
        stats = d.run_until_idle(2)
        assert d.outbox.all() == []
    assert stats["delivered"] == 0
    assert server.requests == []
    would = [r.getMessage() for r in caplog.records if "would POST" in r.getMessage()]
    assert len(would) == 3
    assert any("force_password_reset to iam (http://127.0.0.1:" in m for m in would)


def test_dry_run_sends_nothing_already_queued(tmp_path, server, secret):
    settings = hook_settings(tmp_path, [iam(server.url)])
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        d.submit(make_alert())                          # queued, not yet sent
    settings["hooks"]["dry_run"] = True
    with Dispatcher(settings, env={}) as d:
        d.run_until_idle(1)
        assert len(d.outbox.all(PENDING)) == 3
    assert server.requests == []


def test_never_lock_is_honoured(tmp_path, server, secret, caplog):
    caplog.set_level(logging.WARNING, logger="straycode.hooks")
    settings = hook_settings(tmp_path, [iam(server.url)], never_lock=["u-ceo"])
    alert = make_alert(user_id="u-ceo", severity="critical",
                       actions=["force_password_reset", "revoke_sessions", "lock_account",
                                "notify_user"])
    with Dispatcher(settings, env={SECRET_ENV: secret}) as d:
        assert d.submit(alert) == 1
        d.run_until_idle(5)
        assert d.submit(make_alert(code_event_id="evt-other", user_id="u-bob")) == 3
    assert server.actions_accepted()["notify_user"] == 1
    assert not any(r.payload["data"]["user_id"] == "u-ceo" and
                   r.payload["data"]["action"] != "notify_user" for r in server.requests)
    refused = [r.getMessage() for r in caplog.records if "never_lock" in r.getMessage()]
    assert len(refused) == 3 and all("u-ceo" in m for m in refused)


@pytest.mark.parametrize("flow", ["no_password", "no_session", "login_missing"])
def test_password_actions_only_for_password_verified_flow(tmp_path, server, secret, caplog,
                                                          flow):
    caplog.set_level(logging.WARNING, logger="straycode.hooks")
    # an alert that (wrongly) claims lockout actions for a flow with no proven password
    alert = make_alert(flow=flow, severity="critical",
                       actions=["force_password_reset", "lock_account", "revoke_sessions",
                                "notify_user"])
    with Dispatcher(hook_settings(tmp_path, [iam(server.url)]), env={SECRET_ENV: secret}) as d:
        assert d.submit(alert) == 1
        d.run_until_idle(5)
    assert server.actions_accepted() == {"notify_user": 1}
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "force_password_reset" in msgs and f"flow is {flow}" in msgs


def _lockout(i):
    return make_alert(code_event_id=f"evt-burst-{i}", user_id=f"u-{i}",
                      actions=["force_password_reset"])


def test_breaker_trips_at_configured_rate_and_raises_one_loud_alert(tmp_path, server, secret,
                                                                    caplog):
    caplog.set_level(logging.INFO, logger="straycode.hooks")
    clock = FakeClock()
    endpoints = [iam(server.url, actions=["force_password_reset", "lock_account"]),
                 {"name": "soc", "url": server.url, "actions": ["breaker_tripped"]}]
    settings = hook_settings(tmp_path, endpoints, breaker={"max_per_minute": 3, "cooldown_s": 90})
    env = {SECRET_ENV: secret}
    d = Dispatcher(settings, env=env, clock=clock, sleep=clock.sleep)
    for i in range(3):                      # 3 within the minute: allowed
        clock.advance(5)
        d.submit(_lockout(i))
    assert [r.state for r in d.outbox.all()] == [PENDING] * 3
    criticals = lambda: [r for r in caplog.records if r.levelno == logging.CRITICAL]  # noqa: E731
    assert criticals() == []

    for i in range(3, 6):                   # the 4th trips the breaker; all are held
        clock.advance(1)
        d.submit(_lockout(i))
    held = d.outbox.all(HELD)
    assert sorted(r.user_id for r in held) == ["u-3", "u-4", "u-5"]
    assert len(criticals()) == 1 and "CIRCUIT BREAKER" in criticals()[0].getMessage()
    notices = [n for n in dead_letters(tmp_path) if n["kind"] == "breaker_tripped"]
    assert len(notices) == 1 and notices[0]["trigger"]["user_id"] == "u-3"

    d.run_until_idle(5)
    assert server.actions_accepted() == {"force_password_reset": 3,
                                         "straycode.breaker_tripped": 1}
    d.close()

    # a restart does not reset an open breaker
    d = Dispatcher(settings, env=env, clock=clock, sleep=clock.sleep)
    clock.advance(30)
    d.submit(_lockout(6))
    assert d.outbox.get("iam", d.outbox.all(HELD)[-1].msg_id).state == HELD
    assert len(d.outbox.all(HELD)) == 4 and len(criticals()) == 1

    clock.advance(90)                       # cooldown over: automation resumes
    assert d.submit(_lockout(7)) == 1
    assert d.outbox.all(PENDING)[0].user_id == "u-7"
    d.run_until_idle(5)
    assert server.actions_accepted()["force_password_reset"] == 4
    assert len(d.outbox.all(HELD)) == 4     # held ones wait for a human ...
    assert d.release_held() == 4            # ... who releases them
    d.run_until_idle(5)
    d.close()
    assert server.actions_accepted()["force_password_reset"] == 8
    assert len(criticals()) == 1


def test_breaker_window_slides(tmp_path, server, secret):
    clock = FakeClock()
    settings = hook_settings(tmp_path, [iam(server.url)], breaker={"max_per_minute": 2})
    with Dispatcher(settings, env={SECRET_ENV: secret}, clock=clock) as d:
        for i in range(6):                  # one lockout every 31 s never exceeds 2/min
            d.submit(_lockout(i))
            clock.advance(31)
        assert d.outbox.all(HELD) == []
        assert len(d.outbox.all(PENDING)) == 6


def test_resubmitted_alert_does_not_consume_breaker_budget(tmp_path, server, secret):
    clock = FakeClock()
    settings = hook_settings(tmp_path, [iam(server.url)], breaker={"max_per_minute": 2})
    with Dispatcher(settings, env={SECRET_ENV: secret}, clock=clock) as d:
        alert = _lockout(0)
        for _ in range(5):
            d.submit(alert)
        assert d.submit(_lockout(1)) == 1
        assert d.outbox.all(HELD) == []


def _secret_forms(secret):
    body = secret[len("whsec_"):]
    return [secret.encode(), body.encode(), base64.b64decode(body)]


def test_secrets_never_in_logs_or_files(tmp_path, secret, caplog):
    caplog.set_level(logging.DEBUG)
    old = new_secret()
    srv = HookServer([secret]).start()
    try:
        srv.script.extend([Reply(500), Reply(429, headers={"Retry-After": "0"}), Reply(400)])
        endpoints = [iam(srv.url), {"name": "soc", "url": srv.url, "actions": ["breaker_tripped"]}]
        settings = hook_settings(tmp_path, endpoints, breaker={"max_per_minute": 1})
        with Dispatcher(settings, env={SECRET_ENV: f"{secret} {old}"}) as d:
            for i in range(3):
                d.submit(make_alert(code_event_id=f"evt-s-{i}"))
            d.run_until_idle(10)
            repr(d.signer)
    finally:
        srv.stop()
    assert any(n["kind"] == "delivery_failed" for n in dead_letters(tmp_path))
    assert any(n["kind"] == "breaker_tripped" for n in dead_letters(tmp_path))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"outbox.sqlite3", "dead.jsonl"}
    for s in (secret, old):
        for form in _secret_forms(s):
            assert form.decode("latin-1") not in caplog.text
            for p in files:
                assert form not in p.read_bytes(), p


def test_bad_or_missing_secret_is_a_config_error_without_the_secret(tmp_path):
    settings = hook_settings(tmp_path, [iam("http://127.0.0.1:9/hooks")])
    with pytest.raises(ConfigError, match=SECRET_ENV):
        Dispatcher(settings, env={})
    bad = "whsec_not*base64*at*all-" + "x" * 20
    with pytest.raises(ConfigError) as err:
        Dispatcher(settings, env={SECRET_ENV: bad})
    assert bad not in str(err.value) and "not*base64" not in str(err.value)


@pytest.mark.parametrize("endpoint", [
    {"name": "x", "url": "ftp://x/", "actions": ["notify_user"]},
    {"name": "x", "url": "http://x/", "actions": ["delete_user"]},
    {"name": "x", "url": "http://x/", "actions": ["notify_user"], "min_severity": "urgent"},
    {"url": "http://x/", "actions": ["notify_user"]},
])
def test_bad_endpoint_config_rejected(tmp_path, secret, endpoint):
    with pytest.raises(ConfigError):
        Dispatcher(hook_settings(tmp_path, [endpoint]), env={SECRET_ENV: secret})
