"""Hardening of the user agent (issue #10), broker-free (tests/streams_harness.py):

* an output the broker refuses is sent again, then stops its input partition loudly
  (held, never committed past; /healthz not ok; a metric; an ERROR log) instead of the
  agent crashing and its batch being acknowledged;
* an event whose time is far from its partition's clock is a `clock_skew` dead letter
  and moves nothing; contract-impossible times are `bad_timestamp`;
* a ContractError raised by the core is dead-lettered with its own reason.
"""
from __future__ import annotations


import asyncio
import time
import logging

import orjson
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from straycode.detector.alerts import Alert, ScoreRecord
from straycode.detector.contract import ContractError, parse_event
from straycode.streams.topics import expected_partition
from streams_events import DAY, T0, iso, user_stream
from streams_harness import PARTITIONS, Harness, detector_outputs, stored_user, user_on

FAST_RETRY = {"STRAYCODE__KAFKA__PUBLISH_ATTEMPTS": 3, "STRAYCODE__KAFKA__PUBLISH_BACKOFF_S": 0.001}


def failing_send(h: Harness, name: str, error, times: int | None = None) -> list:
    """Make `send` on that output topic fail (all calls, or the first `times`): raised at
    once when `error` is an exception class, else as a failed delivery future. Returns the
    list of calls made."""
    topic = getattr(h.pipe.topics, name)
    recorded = topic.send
    calls: list = []

    async def send(key=None, value=None, partition=None, **kw):
        calls.append(value)
        if times is not None and len(calls) > times:
            return await recorded(key=key, value=value, partition=partition, **kw)
        if isinstance(error, type):
            raise error("refused")
        done = asyncio.get_running_loop().create_future()
        done.set_exception(error)
        return done
    topic.send = send
    return calls


def merged(*streams: list[dict]) -> list[dict]:
    return sorted((e for s in streams for e in s), key=lambda e: (e["ts"], e["event_id"]))


def closing(user: str, t: float) -> dict:
    return {"event_id": f"{user}-close", "type": "user_feedback", "ts": iso(t), "user_id": user,
            "code_event_id": "none", "verdict": "me"}


# --------------------------------------------------------------------------- publishing
def test_a_dead_letter_that_cannot_be_sent_stops_its_partition_loudly(tmp_path, geo_dbs, caplog):
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true", **FAST_RETRY)
    h.pipe.recovered = True                                  # as after table recovery
    alice, bob = user_on(1, "alice"), user_on(2, "bob")
    p, q = 1, 2
    a_login, a_code, a_verified = user_stream(alice, 1, days=1, attacked=False)
    b_day = user_stream(bob, 2, days=1, attacked=False)
    calls = failing_send(h, "dead_letters", MessageSizeTooLargeError)
    events_topic = h.topic["events"]

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            await h.put_event(agent, a_login)
            await h.handled_all(agent, 1)
            healthy = h.pipe.health()
            bad = await h.put(agent, events_topic, b"{not json", alice.encode(), p)
            await h.handled_all(agent, 2)
            after_bad = h.pipe.health()
            later = [await h.put_event(agent, e) for e in (a_code, a_verified)]
            for e in b_day + [closing(bob, T0 + 2 * DAY)]:
                await h.put_event(agent, e)
            await h.handled_all(agent, 4 + len(b_day) + 1)
            return healthy, bad, after_bad, later

    with caplog.at_level(logging.ERROR, logger="straycode.streams"):
        healthy, bad, after_bad, later = asyncio.run(run())

    assert healthy["ok"] is True and healthy["stopped"] == {}
    # bounded retries, then the partition is stopped: health says which and why
    assert len(calls) == 3
    assert after_bad["ok"] is False and list(after_bad["stopped"]) == [p]
    assert "MessageSizeTooLargeError" in after_bad["stopped"][p]
    assert h.pipe.health()["stopped"] == after_bad["stopped"]
    assert h.sample("straycode_partition_stops_total") == 1
    assert h.sample("straycode_partitions_stopped") == 1
    assert h.sample("straycode_publish_errors_total", output="dead_letters") == 3
    assert h.sample("straycode_dead_letters_total", reason="malformed_json") == 0   # not sent
    assert any(r.levelno == logging.ERROR and f"partition {p} stopped" in r.getMessage()
               for r in caplog.records)
    # nothing is committed past the message whose dead letter was not sent, nor past the
    # partition's later messages (held, not processed)
    assert not bad.acked and not any(m.acked for m in later)
    assert h.commit_position(events_topic, p) == bad.offset == 0
    assert h.commit_position(h.topic["codes"], p) == later[0].offset
    assert h.commit_position(h.topic["logins"], p) == 1                 # the login before: done
    _raw, _part, state = stored_user(h, alice)
    assert list(state.pending) == [] and state.code_times == []         # its code never ran
    # the other partitions keep going: bob's code was scored, his offsets committed
    scores = [orjson.loads(v) for _k, v, _p in h.sent["scores"]]
    assert [s["code_event_id"] for s in scores] == [b_day[1]["event_id"]]
    for topic in (h.topic["logins"], h.topic["codes"], h.topic["events"]):
        assert h.commit_position(topic, q) == h.produced[(topic, q)] > 0
    assert h.sent["dead_letters"] == []


def test_an_alert_refused_twice_is_sent_again_and_nothing_stops(tmp_path, geo_dbs):
    h = Harness(tmp_path, geo_dbs, **FAST_RETRY)
    h.pipe.recovered = True
    user = user_on(0)
    p = expected_partition(user.encode(), PARTITIONS)
    history = user_stream(user, 3, days=6, attacked=True)
    end = closing(user, T0 + 8 * DAY)
    expected = [a for a in detector_outputs(h, history + [end]) if isinstance(a, Alert)]
    calls = failing_send(h, "alerts", KafkaTimeoutError("no broker ack"), times=2)

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            msgs = []
            for e in history + [end]:
                msgs.append(await h.put_event(agent, e))
                await h.handled_all(agent, h.handled + 1)
            return msgs

    msgs = asyncio.run(run())
    assert len(calls) == 3 and [a.code_event_id for a in expected] == [f"{user}-evil-code"]
    assert [orjson.loads(v)["alert_id"] for _k, v, _p in h.sent["alerts"]] == [
        a.alert_id for a in expected]
    assert h.sample("straycode_publish_errors_total", output="alerts") == 2
    assert h.sample("straycode_alerts_total", kind="created", severity=expected[0].severity) == 1
    assert h.pipe.health()["ok"] and h.sample("straycode_partition_stops_total") == 0
    assert all(m.acked for m in msgs)
    assert h.commit_position(h.topic["events"], p) == sum(
        1 for e in history + [end] if e["type"] not in ("login", "code_issued"))
    assert stored_user(h, user)[2].pending == {}


def test_an_unexpected_error_in_a_batch_stops_its_partition_instead_of_crashing(
        tmp_path, geo_dbs, monkeypatch):
    # Faust's take_events acknowledges a batch even when the agent's body raised: a crash
    # would commit past every message of that batch. It stops the partition instead.
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    h.pipe.recovered = True
    alice, bob = user_on(0, "alice"), user_on(3, "bob")
    a_login, a_code, a_verified = user_stream(alice, 1, days=1, attacked=False)
    b_day = user_stream(bob, 2, days=1, attacked=False)
    real = h.pipe.scoring.release

    def release(partition, handled, outbox):
        before = len(handled)
        real(partition, handled, outbox)
        if any(e.message.value == orjson.dumps(a_code) for e in handled[before:]):
            raise RuntimeError("table write failed")
    monkeypatch.setattr(h.pipe.scoring, "release", release)

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            msgs = []
            for e in (a_login, a_code, a_verified) + tuple(b_day):
                msgs.append(await h.put_event(agent, e))
                await h.handled_all(agent, len(msgs))
            return msgs

    msgs = asyncio.run(run())
    health = h.pipe.health()
    assert health["ok"] is False and "table write failed" in health["stopped"][0]
    assert list(health["stopped"]) == [0]
    assert msgs[0].acked and not msgs[1].acked and not msgs[2].acked
    assert h.commit_position(h.topic["codes"], 0) == msgs[1].offset
    assert h.sample("straycode_partition_stops_total") == 1
    assert [orjson.loads(v)["code_event_id"] for _k, v, _p in h.sent["scores"]] == [
        b_day[1]["event_id"]]


# --------------------------------------------------------------------------- event time
def test_impossible_and_skewed_times_change_no_other_users_scores(tmp_path, geo_dbs):
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    alice, bob, mallory = user_on(3, "alice"), user_on(3, "bob"), user_on(3, "mallory")
    p = 3
    flows = merged(user_stream(alice, 1, days=4, attacked=True),
                   user_stream(bob, 2, days=4, attacked=False))
    flows.append(closing(alice, T0 + 6 * DAY))
    login = {"type": "login", "user_id": mallory, "session_id": "m", "password_ok": True,
             "ip": "81.2.69.160"}
    odd = [(dict(login, event_id="y9999", ts="9999-12-31T23:59:59Z"), "bad_timestamp"),
           # +2 years past the stream and past when it was written (the harness stamps
           # records with the wall clock, as a real-time producer does)
           (dict(login, event_id="plus2y", ts=iso(max(T0, time.time()) + 2 * 365 * DAY)),
            "clock_skew"),
           (dict(login, event_id="y0001", ts="0001-01-01T00:00:00Z"), "bad_timestamp")]
    expected = [o.to_dict() for o in detector_outputs(h, flows) if isinstance(o, ScoreRecord)]
    expected_alerts = [o.alert_id for o in detector_outputs(h, flows) if isinstance(o, Alert)]
    where = {e["event_id"]: i for i, e in enumerate(flows)}
    insert_before = where[f"{alice}-c2"]                  # mid-stream, codes pending after

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            for i, e in enumerate(flows):
                if i == insert_before:
                    for bad, _reason in odd:
                        await h.put_event(agent, bad)
                        await h.handled_all(agent, h.handled + 1)
                    clock_after = h.pipe.clock.watermark(p)
                await h.put_event(agent, e)
                await h.handled_all(agent, h.handled + 1)
            return clock_after

    clock_after = asyncio.run(run())
    assert clock_after < T0 + 3 * DAY, clock_after        # the clock did not move
    dead = h.dead_letters()
    assert [(d["reason"], d["source"]["key"]) for d in dead] == [(r, mallory) for _e, r in odd]
    assert "ahead of the clock" in dead[1]["detail"]
    scores = [orjson.loads(v) for _k, v, _p in h.sent["scores"]]
    assert scores == expected
    assert [orjson.loads(v)["alert_id"] for _k, v, _p in h.sent["alerts"]] == expected_alerts
    assert stored_user(h, mallory) is None                  # none of them reached the core
    # dead letters count as read: every offset of the partition is committable
    assert h.commit_position(h.topic["logins"], p) == sum(
        1 for e in flows if e["type"] == "login") + len(odd)


def test_a_contract_error_from_the_core_is_dead_lettered_with_its_reason(tmp_path, geo_dbs,
                                                                          monkeypatch):
    h = Harness(tmp_path, geo_dbs)
    user = user_on(2)
    p = expected_partition(user.encode(), PARTITIONS)
    login, code, verified = user_stream(user, 1, days=1, attacked=False)

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            det = h.pipe.scoring.detector(p)
            real = det.process

            def process(ev):
                if ev.event_id == code["event_id"]:
                    raise ContractError("conflicting_duplicate", "event_id seen with other fields")
                return real(ev)
            monkeypatch.setattr(det, "process", process)
            for e in (login, code, verified):
                await h.put_event(agent, e)
            await h.handled_all(agent, 3)

    asyncio.run(run())
    (dead,) = h.dead_letters()
    assert (dead["reason"], dead["detail"]) == ("conflicting_duplicate",
                                                "event_id seen with other fields")
    assert dead["source"]["topic"] == h.topic["codes"] and dead["excerpt"] == orjson.dumps(
        code).decode()
    assert h.sample("straycode_dead_letters_total", reason="conflicting_duplicate") == 1
    assert parse_event(login).event_id != code["event_id"]
