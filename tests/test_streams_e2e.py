"""End to end on a real broker: produce a labelled stream, run a real worker, read the
alert topic, and compare with `straycode replay` on the same events."""
from __future__ import annotations

from collections import Counter

import pytest

from streams_events import DAY, T0, labelled_stream
from streams_helpers import (Worker, closing_events, replay_alerts, stream_and_read, stream_env,
                             write_jsonl)

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("split", [True, False], ids=["split-topics", "combined-topic"])
def test_worker_alerts_match_replay(tansu, geo_dbs, tmp_path, split):
    app_id = f"e2e-{'split' if split else 'combined'}"
    env = stream_env(tansu, app_id, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    events, expected = labelled_stream(users=12, days=8)
    closing = closing_events(T0 + 10 * DAY)
    path = write_jsonl(tmp_path / "events.jsonl", events + closing)
    replay_alerts_, replay_scores = replay_alerts(tmp_path, path, env)
    assert {a["code_event_id"] for a in replay_alerts_} == expected      # the stream is sound

    worker = Worker(env, tmp_path / "w1").start()
    try:
        sent, scores, alerts = stream_and_read(tansu, env, tmp_path, events, closing,
                                               scores=len(replay_scores),
                                               alerts=len(replay_alerts_), split=split,
                                               ordered=split)
        if split:
            assert set(sent) == {f"{app_id}.logins", f"{app_id}.codes", f"{app_id}.events"}
        metrics = worker.metrics()
    finally:
        worker.stop()

    assert sorted(s["code_event_id"] for s in scores) == sorted(
        s["code_event_id"] for s in replay_scores)
    by_id = {a["alert_id"]: a for a in alerts}
    assert Counter(a["alert_id"] for a in alerts).most_common(1)[0][1] == 1     # no duplicates
    assert set(by_id) == {a["alert_id"] for a in replay_alerts_}                # same ids
    for ref in replay_alerts_:
        got = by_id[ref["alert_id"]]
        assert got["code_event_id"] == ref["code_event_id"]
        assert got["flow"] == ref["flow"] == "password_verified"
        assert got["severity"] == ref["severity"]
        assert got["observed"]["login"]["city"] == ref["observed"]["login"]["city"]
    assert 'straycode_alerts_total{kind="created",severity=' in metrics
    assert "straycode_scoring_latency_seconds_count" in metrics
