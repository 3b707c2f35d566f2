"""One oversized message on the real broker (Tansu): it becomes one bounded dead letter
(reason too_large, with the size and SHA-256 of the raw value), and every valid event
around it is still scored, with the same alert ids as `straycode replay` on the valid
events. (It used to crash the user agent: the dead letter carried the whole 2 MB value,
more than the producer may send, and the events around it were never scored.)"""
from __future__ import annotations

import hashlib

import orjson
import pytest

from straycode.detector.deadletter import EXCERPT_BYTES
from straycode.streams.produce_cli import publish
from streams_events import DAY, T0, labelled_stream
from streams_helpers import (Worker, closing_events, partition_of, read_topic, replay_alerts,
                             settings_for, stream_env, values, write_jsonl)

pytestmark = pytest.mark.broker

BIG_BYTES = 2_000_000      # > the worker's 1 MiB producer limit; the test producer allows 2 MiB


def test_a_2mb_message_mid_stream_is_one_bounded_dead_letter(tansu, geo_dbs, tmp_path):
    app_id = "oversized"
    env = stream_env(tansu, app_id, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    events, expected = labelled_stream(users=9, days=4, prefix="big")
    closing = closing_events(T0 + 6 * DAY, tag="big")
    valid = events + closing
    replay_alerts_, replay_scores = replay_alerts(
        tmp_path, write_jsonl(tmp_path / "valid.jsonl", valid), env)
    assert {a["code_event_id"] for a in replay_alerts_} == expected      # the stream is sound

    # a contract-shaped login of a user with flows, padded to 2 MB, in the middle
    victim = events[len(events) // 2]["user_id"]
    head = orjson.dumps({"event_id": "huge", "type": "login", "ts": events[len(events) // 2]["ts"],
                         "user_id": victim, "session_id": "s", "password_ok": True,
                         "ip": "81.2.69.10"})
    big = head[:-1] + b', "padding": "' + b"x" * (BIG_BYTES - len(head) - 16) + b'"}'
    assert len(big) > 1_048_576 and orjson.loads(big)["user_id"] == victim
    half = len(events) // 2
    stream = events[:half] + [big] + events[half:]

    worker = Worker(env, tmp_path / "w").start()
    try:
        kcfg = settings_for(env)["kafka"]
        publish(kcfg, str(write_jsonl(tmp_path / "main.jsonl", stream)), ordered=True)
        publish(kcfg, str(write_jsonl(tmp_path / "later.jsonl", closing)))
        scores = values(read_topic(tansu, f"{app_id}.scores",
                                   lambda r: len(r) >= len(replay_scores), timeout=90))
        alerts = values(read_topic(tansu, f"{app_id}.alerts",
                                   lambda r: len(r) >= len(replay_alerts_), timeout=10))
        dead_records = read_topic(tansu, f"{app_id}.dead_letters", lambda r: len(r) > 1,
                                  timeout=3)
        health = worker.health()
        metrics = worker.metrics()
    finally:
        worker.stop()

    assert len(dead_records) == 1
    (record,) = dead_records
    assert len(record.value) < 4 * EXCERPT_BYTES            # bounded, whatever the input was
    (dead,) = values(dead_records)
    assert dead["reason"] == "too_large" and dead["size"] == len(big)
    assert dead["sha256"] == hashlib.sha256(big).hexdigest() and dead["truncated"] is True
    assert big.startswith(dead["excerpt"].encode()) and len(dead["excerpt"]) <= EXCERPT_BYTES
    assert dead["source"]["topic"] == f"{app_id}.events"
    assert dead["source"]["partition"] == partition_of(victim) and dead["source"]["key"] == victim
    assert dead["source"]["offset"] >= 0 and record.key == victim.encode()

    assert sorted(s["code_event_id"] for s in scores) == sorted(
        s["code_event_id"] for s in replay_scores)
    assert sorted(a["alert_id"] for a in alerts) == sorted(a["alert_id"] for a in replay_alerts_)
    assert health["ok"] and not health["stopped"]
    assert 'straycode_dead_letters_total{reason="too_large"} 1.0' in metrics
