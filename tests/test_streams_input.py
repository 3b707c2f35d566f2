"""Bad messages become dead letters (with reason, topic, partition, offset and an excerpt
of the raw value) and the worker keeps going; a code read before its login (separate topics) is held
for the grace window instead of being scored blind."""
from __future__ import annotations

import base64

import orjson
import pytest
from kafka import KafkaProducer

from straycode.streams.produce_cli import publish
from streams_events import DAY, T0, iso, user_stream
from streams_helpers import (Worker, closing_events, read_topic, settings_for, stream_env, values,
                             write_jsonl)

pytestmark = pytest.mark.broker

BAD = [
    (b"{not json", "malformed_json"),
    (orjson.dumps({"event_id": "x1", "type": "login", "ts": iso(T0), "user_id": "u"}), "missing_field"),
    (orjson.dumps({"event_id": "x2", "type": "teleport", "ts": iso(T0), "user_id": "u"}), "unknown_type"),
    (b"\xff\xfe\x00binary", "malformed_json"),
]


def test_dead_letters_and_code_before_login(tansu, geo_dbs, tmp_path):
    app_id = "input"
    env = stream_env(tansu, app_id, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    kcfg = settings_for(env)["kafka"]
    history = user_stream("alice", 1, 6, attacked=True)
    evil_login, evil_code = history[-2], history[-1]
    assert evil_login["type"] == "login" and evil_code["type"] == "code_issued"
    history = history[:-2]

    worker = Worker(env, tmp_path / "w").start()
    try:
        producer = KafkaProducer(bootstrap_servers=tansu.bootstrap)
        # bad messages first, keyed and unkeyed, on the combined topic
        publish(kcfg, str(write_jsonl(tmp_path / "h.jsonl", history)))
        for i, (raw, _reason) in enumerate(BAD):
            producer.send(f"{app_id}.events", key=b"u" if i % 2 else None, value=raw)
        # the attacker's code travels faster than its login
        producer.send(f"{app_id}.codes", key=b"alice", value=orjson.dumps(evil_code))
        producer.flush()
        dead = values(read_topic(tansu, f"{app_id}.dead_letters",
                                 lambda r: len(r) >= len(BAD), timeout=60))
        # the code was read (it is pending: no score yet, only the 6 history codes)
        scores = values(read_topic(tansu, f"{app_id}.scores", lambda r: len(r) >= 6, timeout=20))
        assert len(scores) == 6 and evil_code["event_id"] not in {s["code_event_id"] for s in scores}
        assert worker.health()["ok"], "the worker must survive bad input"

        producer.send(f"{app_id}.logins", key=b"alice", value=orjson.dumps(evil_login))
        producer.flush()
        publish(kcfg, str(write_jsonl(tmp_path / "c.jsonl", closing_events(T0 + 8 * DAY))))
        alerts = values(read_topic(tansu, f"{app_id}.alerts", lambda r: len(r) >= 1, timeout=30))
        producer.close()
    finally:
        worker.stop()

    assert sorted(d["reason"] for d in dead) == sorted(r for _, r in BAD)
    for d in dead:
        source = d["source"]
        assert source["topic"] == f"{app_id}.events"
        assert isinstance(source["partition"], int) and isinstance(source["offset"], int)
        assert d["detail"]
        raw = d["excerpt"].encode() if "excerpt" in d else base64.b64decode(d["excerpt_b64"])
        assert raw in {b for b, _ in BAD} and d["size"] == len(raw)
    assert any("excerpt_b64" in d for d in dead)          # the non-UTF-8 one kept its bytes

    assert [a["code_event_id"] for a in alerts] == [evil_code["event_id"]]
    alert = alerts[0]
    assert alert["flow"] == "password_verified"            # not login_missing: it waited
    assert alert["observed"]["login"]["ip"] == evil_login["ip"]
    assert "force_password_reset" in alert["actions"]
