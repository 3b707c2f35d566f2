"""Helpers for the Kafka tests: per-test settings, worker subprocesses, topic readers."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import orjson

from fixtures_broker import free_port
from straycode.settings import load_settings
from straycode.streams.app import create_app
from straycode.streams.faust_compat import ExactCommitConsumer
from streams_events import T0, DAY, iso

PARTITIONS = 4


def stream_env(broker, app_id: str, geo_dbs=None, **over) -> dict[str, str]:
    """STRAYCODE__ overrides giving a test its own group, topics and changelogs."""
    env = {
        "STRAYCODE__KAFKA__BROKER": broker.url,
        "STRAYCODE__KAFKA__APP_ID": app_id,
        "STRAYCODE__KAFKA__PARTITIONS": str(PARTITIONS),
        "STRAYCODE__KAFKA__ADVANCE_INTERVAL_S": "0.5",
        "STRAYCODE__ALERTS__FORMAT": "native",
        # Tansu 0.6 reports the high watermark as (first offset of the last batch) + 1;
        # one record per batch keeps it right, which Faust's table recovery relies on.
        "STRAYCODE__KAFKA__PRODUCER_MAX_BATCH_SIZE": "1",
        # Tansu answers a fetch only when its max wait expires: keep the wait short
        "STRAYCODE__KAFKA__FETCH_MAX_WAIT_MS": "50",
    }
    for key in ("logins", "codes", "events", "alerts", "scores", "dead_letters", "network_ops",
                "ticks"):
        env[f"STRAYCODE__KAFKA__TOPICS__{key.upper()}"] = f"{app_id}.{key}"
    if geo_dbs is not None:
        env["STRAYCODE__GEOIP__CITY_DB"] = str(geo_dbs[0])
        env["STRAYCODE__GEOIP__ASN_DB"] = str(geo_dbs[1])
    env.update({k: str(v) for k, v in over.items()})
    return env


def settings_for(env: dict[str, str]) -> dict:
    return load_settings(env=env)


class Worker:
    """`straycode worker` in a subprocess with its own web port and data dir."""

    def __init__(self, env: dict[str, str], datadir: Path, name: str = "w"):
        self.env = dict(os.environ, **env)
        self.datadir = datadir
        self.port = free_port()
        self.log_path = datadir.parent / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "straycode.cli", "worker", "--web-port", str(self.port),
             "--datadir", str(self.datadir), "--loglevel", "info"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return orjson.loads(exc.read())
        except OSError:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()

    def wait_ready(self, timeout: float = 60, partitions: int | None = None) -> dict:
        """Until /healthz says ok (and, if given, the worker owns that many partitions)."""
        deadline = time.monotonic() + timeout
        body = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker died:\n{self.tail()}"
            body = self.health()
            if body and body["ok"] and (partitions is None or len(body["partitions"]) == partitions):
                return body
            time.sleep(0.2)
        raise AssertionError(f"worker not ready: {body}\n{self.tail()}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def read_topic(broker, topic: str, done: Callable[[list], bool], timeout: float = 60) -> list:
    """Every record of `topic` from the beginning, polling until done(records) or timeout."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             enable_auto_commit=False)
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while not parts and time.monotonic() < deadline:
            consumer.topics()
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        assert parts, f"topic {topic} never appeared"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if done(records):
                return records
        return records
    finally:
        consumer.close()


def values(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


def write_jsonl(path: Path, events: list) -> Path:
    with open(path, "wb") as out:
        for e in events:
            out.write(e if isinstance(e, bytes) else orjson.dumps(e))
            out.write(b"\n")
    return path


def partition_of(user: str, partitions: int = PARTITIONS) -> int:
    from straycode.streams.topics import expected_partition
    return expected_partition(user.encode(), partitions)


def closing_events(t: float, partitions: int = PARTITIONS, tag: str = "close") -> list[dict]:
    """One neutral event per partition at event time `t`: a stream never ends, so this is
    what moves every partition's clock past the pending codes' windows (replay: flush())."""
    out, n = [], 0
    covered: set[int] = set()
    while len(covered) < partitions:
        user = f"clock-{tag}-{n}"
        p = partition_of(user, partitions)
        if p not in covered:
            covered.add(p)
            out.append({"event_id": f"{user}-fb", "type": "user_feedback", "ts": iso(t),
                        "user_id": user, "code_event_id": "none", "verdict": "me"})
        n += 1
    return out


def replay_alerts(tmp: Path, events_file: Path, env: dict) -> tuple[list[dict], list[dict]]:
    """(alerts, scores) of `straycode replay` on the same file with the same settings."""
    alerts, scores = tmp / "replay-alerts.jsonl", tmp / "replay-scores.jsonl"
    subprocess.run([sys.executable, "-m", "straycode.cli", "replay", str(events_file),
                    "--alerts", str(alerts), "--scores", str(scores), "--no-progress"],
                   env=dict(os.environ, **env), check=True, capture_output=True)
    read = lambda p: [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()]
    return read(alerts), read(scores)


def stream_and_read(broker, env: dict, tmp: Path, events: list, closing: list, *,
                    scores: int, alerts: int, split: bool = True,
                    ordered: bool = True) -> tuple[dict, list[dict], list[dict]]:
    """Publish `events`, then (once every record of them is written) the `closing` traffic:
    a watermark cannot wait for records that no producer has written yet. Then read back at
    least `scores` score and `alerts` alert records. Returns (sent per topic, scores, alerts)."""
    from straycode.streams.produce_cli import publish

    kcfg = settings_for(env)["kafka"]
    sent = publish(kcfg, str(write_jsonl(tmp / "main.jsonl", events)), split=split,
                   ordered=ordered)
    sent_later = publish(kcfg, str(write_jsonl(tmp / "later.jsonl", closing)), split=split)
    assert sum(sent.values()) + sum(sent_later.values()) == len(events) + len(closing)
    got_scores = values(read_topic(broker, kcfg["topics"]["scores"],
                                   lambda r: len(r) >= scores, timeout=90))
    got_alerts = values(read_topic(broker, kcfg["topics"]["alerts"],
                                   lambda r: len(r) >= alerts, timeout=10))
    return sent, got_scores, got_alerts


__all__ = ["T0", "DAY"]


def wait_committed(broker, group: str, topics: list[str], partitions: set[int],
                   timeout: float = 60) -> None:
    """Until `group` has committed every message of these topic-partitions. Faust commits
    an event only after its agent finished it (state written), so this means 'persisted'."""
    from kafka import KafkaConsumer, TopicPartition

    tps = [TopicPartition(t, p) for t in topics for p in sorted(partitions)]
    # committed() only fetches the group's offsets: this consumer never joins the group
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        while True:
            ends = consumer.end_offsets(tps)
            behind = {tp: (consumer.committed(tp), end) for tp, end in ends.items()
                      if end and (consumer.committed(tp) or 0) < end}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{group} has not committed (committed, end): {behind}")
            time.sleep(0.25)
    finally:
        consumer.close()


def worker_consumer(tmp_path: Path, topic: str, streams, **env: str):
    """The real consumer object of a worker app (no broker: nothing here talks to one),
    subscribed to `topic` with acks as the agents' topics are; `streams` stands in for
    Faust's conductor (the callback it delivers to)."""
    settings = load_settings(env={"STRAYCODE__KAFKA__STORE": "memory://",
                                  "STRAYCODE__KAFKA__TOPICS__EVENTS": topic, **env})
    app = create_app(settings, datadir=str(tmp_path / "data"))
    app.topics.add(app.topic(topic))
    asyncio.run(app.topics._update_indices())
    consumer = app.consumer
    assert isinstance(consumer, ExactCommitConsumer)
    consumer._streams_callback = streams
    return consumer
