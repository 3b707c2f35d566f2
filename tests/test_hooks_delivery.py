"""Dispatcher against a real local HTTP endpoint: signatures, retries, idempotency,
dead letters and durability across restarts."""
from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from alert_factory import make_alert
from hook_server import FakeClock, HookServer, Reply, new_secret
from hooks_helpers import SECRET_ENV, dead_letters, hook_settings, iam, schedule
from straycode.hooks import Dispatcher
from straycode.hooks.outbox import DEAD, DELIVERED, PENDING
from straycode.hooks.signing import message_id


def dispatcher(tmp_path, server, secret, **kw):
    endpoints = kw.pop("endpoints", None) or [iam(server.url)]
    return Dispatcher(hook_settings(tmp_path, endpoints, **kw), env={SECRET_ENV: secret},
                      **{k: kw.pop(k) for k in list(kw) if k in ("clock", "sleep")})


def test_signed_deliveries_verify_with_standardwebhooks(tmp_path, server, secret):
    alert = make_alert()
    with dispatcher(tmp_path, server, secret) as d:
        assert d.submit(alert) == 3
        stats = d.run_until_idle(10)
    assert stats["delivered"] == 3 and stats["pending"] == 0
    assert all(r.verified for r in server.requests)
    assert server.actions_accepted() == {"force_password_reset": 1, "revoke_sessions": 1,
                                         "notify_user": 1}
    by_action = {r.payload["data"]["action"]: r for r in server.requests}
    reset = by_action["force_password_reset"]
    assert reset.webhook_id == message_id(alert["alert_id"], "force_password_reset")
    assert reset.payload["type"] == "straycode.force_password_reset"
    assert reset.payload["data"]["user_id"] == "u-alice"
    assert reset.payload["data"]["idempotency_key"] == reset.webhook_id
    # a receiver holding a different secret rejects the same request
    other = HookServer([new_secret()]).start()
    try:
        with dispatcher(tmp_path / "b", other, secret) as d:
            d.submit(alert)
            assert d.run_once()["dead"] == 3          # 401 is a permanent 4xx
        assert [r.status for r in other.requests] == [401, 401, 401]
    finally:
        other.stop()


def test_rotation_signs_with_every_secret(tmp_path):
    old, new = new_secret(), new_secret()
    for receiver_secret in (old, new):
        srv = HookServer([receiver_secret]).start()
        try:
            settings = hook_settings(tmp_path / receiver_secret[-8:].replace("/", "_"),
                                     [iam(srv.url, actions=["notify_user"])])
            with Dispatcher(settings, env={SECRET_ENV: f"{new} {old}"}) as d:
                d.submit(make_alert())
                assert d.run_until_idle(10)["delivered"] == 1
            assert [r.verified for r in srv.requests] == [True]
        finally:
            srv.stop()


def test_500_then_success_delivers_exactly_once_per_key(tmp_path, server, secret):
    server.script.extend([Reply(500), Reply(503), Reply(502)])
    alerts = [make_alert(code_event_id=f"evt-{i}") for i in range(3)]
    with dispatcher(tmp_path, server, secret) as d:
        assert sum(d.submit(a) for a in alerts) == 9
        stats = d.run_until_idle(20)
        assert stats["delivered"] == 9 and stats["retry"] == 3 and stats["dead"] == 0
        # the same alerts again (replay, Kafka redelivery): nothing new is queued or sent
        assert sum(d.submit(a) for a in alerts) == 0
        assert d.run_until_idle(5)["delivered"] == 0
    accepted = server.accepted
    assert len(accepted) == 9 and set(accepted.values()) == {1}
    assert len(server.requests) == 12
    # each retried key was re-sent with the same webhook-id
    failed_ids = [r.webhook_id for r in server.requests if r.status >= 500]
    for wid in failed_ids:
        assert [r.status for r in server.requests if r.webhook_id == wid][-1] == 200


def test_timeout_is_retried_and_receiver_dedups_by_webhook_id(tmp_path, server, secret):
    # the first attempt is processed by the receiver but answers too late: the retry must
    # carry the same webhook-id so the receiver can tell it is the same action
    server.script.append(Reply(200, delay=1.5))
    with dispatcher(tmp_path, server, secret, timeout_s=0.5,
                    endpoints=[iam(server.url, actions=["lock_account"])]) as d:
        alert = make_alert(actions=["lock_account"])
        assert d.submit(alert) == 1
        stats = d.run_until_idle(20)
    assert stats["delivered"] == 1 and stats["retry"] >= 1 and stats["dead"] == 0
    assert len(server.requests) == stats["retry"] + 1
    assert len({r.webhook_id for r in server.requests}) == 1
    assert [r.duplicate for r in server.requests] == [False] + [True] * stats["retry"]
    assert sum(server.accepted.values()) == 1


def test_429_retried_honouring_retry_after(tmp_path, server, secret):
    clock = FakeClock()
    server.script.append(Reply(429, headers={"Retry-After": "30"}))
    with dispatcher(tmp_path, server, secret, clock=clock, sleep=clock.sleep,
                    endpoints=[iam(server.url, actions=["notify_user"])]) as d:
        d.submit(make_alert())
        assert d.run_once() == {"delivered": 0, "retry": 1, "dead": 0, "retry_after_capped": 0,
                                "abandoned": 0}
        (row,) = d.outbox.all()
        assert row.state == PENDING and row.attempts == 1 and "HTTP 429" in row.last_error
        assert row.next_attempt_at >= clock.now + 30     # jitter alone would be <= 0.05 s
        assert d.run_once()["delivered"] == 0           # not due yet: no request sent
        assert len(server.requests) == 1
        clock.advance(30)
        assert d.run_once()["delivered"] == 1
    assert len(server.requests) == 2


def test_4xx_not_retried_and_dead_lettered_with_last_error(tmp_path, server, secret):
    server.script.append(Reply(422))
    with dispatcher(tmp_path, server, secret,
                    endpoints=[iam(server.url, actions=["notify_user", "revoke_sessions"])]) as d:
        alert = make_alert()
        d.submit(alert)
        stats = d.run_until_idle(10)
        states = sorted(r.state for r in d.outbox.all())
    assert stats["dead"] == 1 and stats["delivered"] == 1 and stats["retry"] == 0
    assert states == [DEAD, DELIVERED]
    assert len(server.requests) == 2
    (dl,) = dead_letters(tmp_path)
    assert dl["kind"] == "delivery_failed" and dl["attempts"] == 1
    assert dl["last_error"].startswith("HTTP 422")
    assert dl["alert_id"] == alert["alert_id"] and dl["webhook_id"] == server.requests[0].webhook_id
    assert dl["payload"]["data"]["action"] in ("notify_user", "revoke_sessions")


def test_5xx_until_max_attempts_then_dead_letter(tmp_path, server, secret):
    server.script.extend([Reply(500)] * 10)
    with dispatcher(tmp_path, server, secret, retry_schedule_s=schedule(3),
                    endpoints=[iam(server.url, actions=["notify_user"])]) as d:
        d.submit(make_alert())
        stats = d.run_until_idle(20)
    assert stats["dead"] == 1 and stats["retry"] == 2 and stats["pending"] == 0
    assert len(server.requests) == 3
    assert dead_letters(tmp_path)[0]["last_error"].startswith("HTTP 500")


def test_endpoint_down_then_up_nothing_lost_across_restart(tmp_path, secret):
    server = HookServer([secret])                 # port reserved, nothing listening yet
    alerts = [make_alert(code_event_id=f"evt-down-{i}") for i in range(4)]
    settings = hook_settings(tmp_path, [iam(server.url)], retry_schedule_s=schedule(50, 0.02))
    first = Dispatcher(settings, env={SECRET_ENV: secret})
    for a in alerts:
        first.submit(a)
    stats = first.run_until_idle(0.3)              # connection refused: keep retrying
    assert stats["delivered"] == 0 and stats["pending"] == 12 and stats["dead"] == 0
    row = first.outbox.all()[0]
    assert row.attempts >= 1 and "connection error" in row.last_error
    first.close()                                  # dispatcher "crashes"/restarts

    server.start()
    try:
        second = Dispatcher(settings, env={SECRET_ENV: secret})
        assert sum(second.submit(a) for a in alerts) == 0   # already queued durably
        stats = second.run_until_idle(20)
        second.close()
    finally:
        server.stop()
    assert stats["delivered"] == 12 and stats["pending"] == 0
    assert len(server.accepted) == 12 and set(server.accepted.values()) == {1}
    expected = {message_id(a["alert_id"], act) for a in alerts
                for act in ("force_password_reset", "revoke_sessions", "notify_user")}
    assert set(server.accepted) == expected


def test_min_severity_per_endpoint(tmp_path, server, secret):
    eps = [iam(server.url, actions=["notify_user"], min_severity="critical", name="pager"),
           iam(server.url, actions=["notify_user"], min_severity="medium", name="ticket")]
    with dispatcher(tmp_path, server, secret, endpoints=eps) as d:
        assert d.submit(make_alert(severity="high")) == 1
        assert {r.endpoint for r in d.outbox.all()} == {"ticket"}
        assert d.submit(make_alert(code_event_id="evt-crit", severity="critical")) == 2


def test_body_is_what_was_signed(tmp_path, server, secret):
    with dispatcher(tmp_path, server, secret,
                    endpoints=[iam(server.url, actions=["notify_user"])]) as d:
        d.submit(make_alert())
        (row,) = d.outbox.all()
        headers = d.signer.headers(row.msg_id, row.body, d.clock())
    assert Webhook(secret).verify(row.body, headers) == json.loads(row.body)
    tampered = row.body.replace("u-alice", "u-bob")
    with pytest.raises(Exception):
        Webhook(secret).verify(tampered, headers)
