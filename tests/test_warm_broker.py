"""Warm start on a real broker (#14): a state built from history by `straycode replay
--state` is written into the deployment by `straycode load-state`; a real worker started
afterwards must decide the rest of the stream as replay does from the same state, with
the users' history, the network view, the carried-over pending code and the population.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from straycode.streams.handover import read_warm_start, topic_names
from straycode.streams.produce_cli import publish
from streams_events import DAY, HOUR, T0, iso, labelled_stream
from streams_helpers import (PARTITIONS, Worker, closing_events, partition_of, read_topic,
                             settings_for, stream_env, values, write_jsonl)

pytestmark = pytest.mark.broker

CUT = T0 + 7 * DAY + 8 * HOUR + 10     # u0 logs in at +0, gets a code at +5, enters it at +30


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "straycode.cli", *args],
                          env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)


def replay(env: dict, tmp: Path, name: str, events: Path, *extra: str) -> tuple[list, list]:
    alerts, scores = tmp / f"{name}.alerts", tmp / f"{name}.scores"
    done = cli(env, "replay", str(events), "--alerts", str(alerts), "--scores", str(scores),
               "--no-progress", *extra)
    assert done.returncode == 0, done.stderr
    read = lambda p: [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()]
    return read(alerts), read(scores)


def split_stream(tmp: Path):
    events, expected = labelled_stream(users=12, days=8)
    a = [e for e in events if e["ts"] < iso(CUT)]
    b = [e for e in events if e["ts"] >= iso(CUT)]
    assert a + b == events
    closing = closing_events(T0 + 10 * DAY)
    return (write_jsonl(tmp / "a.jsonl", a), write_jsonl(tmp / "b.jsonl", b),
            write_jsonl(tmp / "closing.jsonl", closing), b, closing, expected)


def test_worker_from_loaded_state_matches_replay(tansu, geo_dbs, tmp_path):
    app_id = "warm-e2e"
    env = stream_env(tansu, app_id, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    a_file, b_file, closing_file, b, closing, expected = split_stream(tmp_path)
    b_all = write_jsonl(tmp_path / "b_all.jsonl", b + closing)

    state = tmp_path / "state"
    replay(env, tmp_path, "a", a_file, "--state", str(state))
    manifest = orjson.loads(next(state.glob("gen-*/manifest.json")).read_bytes())
    assert manifest["counts"]["pending_codes"] == 1           # u0's code, entered after the cut
    # the reference: replay of B from a copy of the state (the state itself stays as loaded)
    shutil.copytree(state, tmp_path / "state-ref")
    ref_alerts, ref_scores = replay(env, tmp_path, "b-ref", b_all, "--state",
                                    str(tmp_path / "state-ref"))
    assert {a["code_event_id"] for a in ref_alerts} == expected
    assert "u0-c7" in {s["code_event_id"] for s in ref_scores}  # the carried-over code
    # the state matters: replayed cold, B's alerts know no history
    cold_alerts, _ = replay(env, tmp_path, "b-cold", b_all)
    assert [a["baseline"] for a in cold_alerts] != [a["baseline"] for a in ref_alerts]

    loaded = cli(env, "load-state", str(state), "--no-progress")
    assert loaded.returncode == 0, loaded.stderr
    kcfg = settings_for(env)["kafka"]
    warm, population = read_warm_start(kcfg)
    assert warm["users"] == 12 and warm["pending_codes"] == 1
    assert sum(len(t) for t in population.counts.values()) == manifest["counts"]["population_values"]

    worker = Worker(env, tmp_path / "w1").start()
    try:
        worker.wait_ready(timeout=90)
        sent = publish(kcfg, str(b_file))
        sent_later = publish(kcfg, str(closing_file))
        assert sum(sent.values()) + sum(sent_later.values()) == len(b) + len(closing)
        scores = values(read_topic(tansu, f"{app_id}.scores",
                                   lambda r: len(r) >= len(ref_scores), timeout=120))
        alerts = values(read_topic(tansu, f"{app_id}.alerts",
                                   lambda r: len(r) >= len(ref_alerts), timeout=20))
        log = worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()

    assert "warm start: population of" in log
    assert sorted(s["code_event_id"] for s in scores) == sorted(
        s["code_event_id"] for s in ref_scores)
    # the carried-over code was re-armed and decided as replay decides it (the worker's
    # population grows in another order across partitions: scores agree, not to the digit)
    carried = next(s for s in scores if s["code_event_id"] == "u0-c7")
    ref_carried = next(s for s in ref_scores if s["code_event_id"] == "u0-c7")
    for key in ("flow", "severity", "alerted", "actions", "ts"):
        assert carried[key] == ref_carried[key], key
    assert carried["score"] == pytest.approx(ref_carried["score"], abs=0.01)
    assert carried["terms"].keys() == ref_carried["terms"].keys() and "code_verified" in carried["terms"]
    assert Counter(a["alert_id"] for a in alerts).most_common(1)[0][1] == 1
    by_id = {a["alert_id"]: a for a in alerts}
    assert set(by_id) == {a["alert_id"] for a in ref_alerts}
    for ref in ref_alerts:
        got = by_id[ref["alert_id"]]
        assert (got["flow"], got["severity"]) == (ref["flow"], ref["severity"])
        assert got["baseline"] == ref["baseline"]               # the users' history came along


def test_load_state_refuses_other_partition_count_and_written_changelogs(tansu, geo_dbs, tmp_path):
    a_file, *_ = split_stream(tmp_path)
    env = stream_env(tansu, "warm-refuse", geo_dbs)
    state = tmp_path / "state"
    replay(env, tmp_path, "a", a_file, "--state", str(state))

    # a deployment whose changelog has another partition count
    from kafka.admin import KafkaAdminClient, NewTopic
    other = stream_env(tansu, "warm-other", geo_dbs)
    admin = KafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    try:
        admin.create_topics([NewTopic("warm-other-users-changelog", PARTITIONS * 2, 1)])
    finally:
        admin.close()
    done = cli(other, "load-state", str(state), "--no-progress")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("straycode: ")
    assert f"has {PARTITIONS * 2} partitions but kafka.partitions is {PARTITIONS}" in done.stderr

    first = cli(env, "load-state", str(state), "--no-progress")
    assert first.returncode == 0, first.stderr
    again = cli(env, "load-state", str(state), "--no-progress")
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already holds" in again.stderr and "--force" in again.stderr
    forced = cli(env, "load-state", str(state), "--no-progress", "--force")
    assert forced.returncode == 0, forced.stderr

    # every user went to the partition of its input events, with that partition as prefix
    names = topic_names(settings_for(env)["kafka"])
    records = read_topic(tansu, names["users"], lambda r: len(r) >= 24, timeout=30)
    assert len(records) == 24                                  # loaded twice
    for record in records:
        p = partition_of(record.key.decode())
        assert record.partition == p and record.value.startswith(b"%d:" % p)
