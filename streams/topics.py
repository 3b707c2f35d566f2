"""Topic declarations. Every value is raw bytes: decoding and contract validation happen
in our code so that a bad message becomes a dead letter instead of a crashed stream.
Keys are the user_id (inputs, alerts, scores) or the network key (network_ops)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

import faust
from kafka.partitioner.default import murmur2

INPUT_KEYS = ("logins", "codes", "events")
RAW = {"key_serializer": "raw", "value_serializer": "raw"}


@dataclass
class Topics:
    inputs: faust.TopicT          # logins + codes + combined events: one co-partitioned source
    events: faust.TopicT          # the combined topic alone (re-keyed messages are sent here)
    alerts: faust.TopicT
    scores: faust.TopicT
    dead_letters: faust.TopicT
    network_ops: faust.TopicT     # repartition stage: user agent -> network agent
    ticks: faust.TopicT           # timer wake-ups, consumed with the inputs (same partitions)


@functools.lru_cache(maxsize=65_536)
def expected_partition(key: bytes, partitions: int) -> int:
    """The Kafka default (murmur2) partition of a key: where all of a user's events and
    state must live for the per-partition table to be complete, and which network-ops
    partition owns a network key. (Cached: murmur2 is pure Python and runs per event.)"""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def input_topic_names(kcfg: Mapping) -> list[str]:
    names = [kcfg["topics"][k] for k in INPUT_KEYS if kcfg["topics"].get(k)]
    return list(dict.fromkeys(names))


def declare_topics(app: faust.App, kcfg: Mapping) -> Topics:
    t = kcfg["topics"]
    n = int(kcfg["partitions"])

    def one(name: str) -> faust.TopicT:
        return app.topic(name, partitions=n, **RAW)

    return Topics(
        inputs=app.topic(*input_topic_names(kcfg), t["ticks"], partitions=n, **RAW),
        events=one(t["events"]), alerts=one(t["alerts"]), scores=one(t["scores"]),
        dead_letters=one(t["dead_letters"]),
        network_ops=app.topic(t["network_ops"], partitions=n, internal=True, **RAW),
        ticks=app.topic(t["ticks"], partitions=n, internal=True, **RAW),
    )


def all_topic_names(kcfg: Mapping) -> list[str]:
    t = kcfg["topics"]
    return input_topic_names(kcfg) + [t["alerts"], t["scores"], t["dead_letters"],
                                      t["network_ops"], t["ticks"]]


def ensure_topics(kcfg: Mapping, names: list[str] | None = None,
                  env: Mapping[str, str] | None = None) -> list[str]:
    """Create missing topics with the configured partition count (kafka-python admin).
    Returns the names created. Input topics must share one partition count with the
    tables, so they are created here rather than left to broker auto-creation."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from .connection import client_kwargs

    names = names or all_topic_names(kcfg)
    admin = KafkaAdminClient(**client_kwargs(kcfg, env))
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(n, int(kcfg["partitions"]),
                                              int(kcfg["replication_factor"])) for n in missing])
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        admin.close()
