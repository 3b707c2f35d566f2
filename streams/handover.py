"""Hand a saved detector state (straycode/statedir.py) to the Kafka workers.

`straycode load-state DIR` writes the state into the topics Faust recovers its tables
from, exactly as the workers would have written them, so a worker started afterwards
recovers a warm `users` table and `network-view`, re-arms the carried-over pending codes
(Pipeline._build -> Detector.rebuild_index) and seeds its population frequencies:

* ``<app_id>-users-changelog`` (Faust names a table's changelog ``<app id>-<table>-changelog``;
  raw bytes): key = user_id, value = ``b"<p>:" + UserState.to_bytes()``, written to
  partition p = murmur2(user_id) (``agents.expected_partition``): the partition of the
  user's input events, whose worker owns that changelog partition;
* ``<app_id>-network-view-changelog``: key = "ip:<addr>" / "net:<network>", value =
  ``NetworkState.to_bytes()``, written to the key's murmur2 partition, as the network
  agent (owner of that network-ops partition) writes it;
* ``<app_id>-warm-start`` (compacted, one partition): the population frequencies in
  chunks, then a manifest record naming them. Faust has no table for a shared
  approximation such as the population; a worker reads this topic once at start
  (:func:`seed_population`, called by `straycode worker`) and learns on from there.

Refused (one line, exit 2): a state directory without a state or of another format, a
state built under other detector settings, topics that exist with another partition count
than ``kafka.partitions``, and changelogs that already hold records (a deployment has run,
or a state was loaded before) unless ``--force``.
"""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Mapping

import orjson

from straycode.detector.population import Population
from straycode.detector.snapshot import population_from_bytes
from straycode.detector.state import NetworkState
from straycode.statedir import (NETWORKS, POPULATION, USERS, StateError, check_settings,
                                iter_records, read_blob, read_manifest)

from .connection import client_kwargs

log = logging.getLogger("straycode.streams.handover")

CHUNK_BYTES = 256 * 1024
WARM_MANIFEST_KEY = b"manifest"


def topic_names(kcfg: Mapping) -> dict[str, str]:
    """The changelog topics Faust recovers the two tables from, and the warm-start topic.
    (Faust: ``f"{app.conf.id}-{table.name}-changelog"``; the app id is kafka.app_id as
    long as the app version is 1, which create_app never changes.)"""
    app_id = kcfg["app_id"]
    return {"users": f"{app_id}-users-changelog",
            "networks": f"{app_id}-network-view-changelog",
            "warm": f"{app_id}-warm-start"}


def _partition(key: bytes, partitions: int) -> int:
    from .topics import expected_partition
    return expected_partition(key, partitions)


def check_topics(admin, consumer, kcfg: Mapping, force: bool) -> dict[str, int]:
    """Refuse topics with another partition count, and changelogs holding records unless
    `force`. Returns {topic: records already held} for the topics that exist."""
    from kafka import TopicPartition

    from .topics import input_topic_names

    partitions = int(kcfg["partitions"])
    names = topic_names(kcfg)
    existing = set(admin.list_topics())
    held: dict[str, int] = {}
    for topic in [names["users"], names["networks"], *input_topic_names(kcfg)]:
        if topic not in existing:
            continue
        parts = consumer.partitions_for_topic(topic) or set()
        if len(parts) != partitions:
            raise StateError(
                f"topic {topic} has {len(parts)} partitions but kafka.partitions is {partitions}: "
                "the workers' tables must have the input topics' partition count (use the "
                "deployment's kafka.partitions and kafka.app_id)")
        if topic in (names["users"], names["networks"]):
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = consumer.end_offsets(tps)
            starts = consumer.beginning_offsets(tps)
            held[topic] = sum(ends[tp] - starts[tp] for tp in tps)
    busy = {t: n for t, n in held.items() if n}
    if busy and not force:
        topic, n = next(iter(busy.items()))
        raise StateError(
            f"changelog {topic} already holds {n} records (a worker has run, or a state was "
            "loaded): refusing to mix states; pass --force to write over it (stop the "
            "workers and empty their --datadir first)")
    return held


def _create(admin, kcfg: Mapping, existing: set[str]) -> list[str]:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    names = topic_names(kcfg)
    partitions, replication = int(kcfg["partitions"]), int(kcfg["replication_factor"])
    compact = {"cleanup.policy": "compact"}
    wanted = [NewTopic(names["users"], partitions, replication, topic_configs=compact),
              NewTopic(names["networks"], partitions, replication, topic_configs=compact),
              NewTopic(names["warm"], 1, replication, topic_configs=compact)]
    missing = [t for t in wanted if t.name not in existing]
    if missing:
        try:
            admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass
    return [t.name for t in missing]


class _Sender:
    """Sends records and checks every acknowledgement: a record the broker does not take
    fails the load (nothing is dropped silently)."""

    def __init__(self, producer):
        self.producer = producer
        self.futures: list = []
        self.per_partition: dict[tuple[str, int], int] = {}

    def send(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        self.futures.append(self.producer.send(topic, key=key, value=value, partition=partition))
        self.per_partition[(topic, partition)] = self.per_partition.get((topic, partition), 0) + 1
        if len(self.futures) >= 2000:
            self.wait()

    def wait(self) -> None:
        self.producer.flush()
        for future in self.futures:
            future.get(timeout=60)          # raises the broker's error
        self.futures.clear()


def load_state(settings: Mapping, state_dir: str, *, force: bool = False,
               accept_settings_change: bool = False, progress: bool = True,
               env: Mapping[str, str] | None = None) -> dict:
    """Write the state in `state_dir` into the deployment's changelogs; returns a summary."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from tqdm import tqdm

    manifest = read_manifest(state_dir)
    if manifest is None:
        raise StateError(f"state {state_dir}: no saved state there (run `straycode backfill "
                         "... --state DIR` or `straycode replay ... --state DIR` first)")
    check_settings(state_dir, manifest, settings, accept_settings_change)
    kcfg = settings["kafka"]
    partitions = int(kcfg["partitions"])
    names = topic_names(kcfg)
    started = time.perf_counter()
    kwargs = client_kwargs(kcfg, env)
    admin = KafkaAdminClient(**kwargs)
    consumer = KafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False)
    try:
        held = check_topics(admin, consumer, kcfg, force)
        created = _create(admin, kcfg, set(admin.list_topics()))
    finally:
        consumer.close()
        admin.close()
    producer = KafkaProducer(**kwargs, acks="all", linger_ms=5,
                             batch_size=int(kcfg["producer_max_batch_size"]),
                             max_request_size=8 * 1024 * 1024)
    sender = _Sender(producer)
    counts = manifest["counts"]
    bar = tqdm(total=counts["users"] + counts["networks"], unit="rec", desc="load-state",
               disable=not progress, mininterval=0.5)
    try:
        users = 0
        for user_id, raw in iter_records(manifest, USERS):
            key = user_id.encode()
            p = _partition(key, partitions)
            sender.send(names["users"], key, b"%d:" % p + raw, p)
            users += 1
            bar.update()
        networks = 0
        for net_key, raw in iter_records(manifest, NETWORKS):
            key = net_key.encode()
            sender.send(names["networks"], key, NetworkState.from_bytes(raw).to_bytes(),
                        _partition(key, partitions))
            networks += 1
            bar.update()
        blob = read_blob(manifest, POPULATION)
        load_id = uuid.uuid4().hex
        chunks = [blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
        for i, chunk in enumerate(chunks):
            sender.send(names["warm"], f"population/{load_id}/{i}".encode(), chunk, 0)
        sender.wait()                       # everything else is on the broker first
        warm = {"load_id": load_id, "app_id": kcfg["app_id"], "partitions": partitions,
                "state_generation": manifest["generation"], "watermark": manifest["watermark"],
                "watermark_ts": manifest["watermark_ts"],
                "settings_sha256": manifest["settings_sha256"],
                "population_chunks": len(chunks),
                "population_sha256": hashlib.sha256(blob).hexdigest(),
                "users": users, "networks": networks,
                "pending_codes": counts["pending_codes"],
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        sender.send(names["warm"], WARM_MANIFEST_KEY, orjson.dumps(warm), 0)
        sender.wait()
    finally:
        bar.close()
        producer.close()
    return {"state": str(state_dir), "state_generation": manifest["generation"],
            "watermark": manifest["watermark_ts"], "app_id": kcfg["app_id"],
            "partitions": partitions, "topics_created": created,
            "records_already_held": held, "users": users, "networks": networks,
            "pending_codes": counts["pending_codes"],
            "population_values": counts["population_values"],
            "population_chunks": len(chunks),
            "users_per_partition": [sender.per_partition.get((names["users"], p), 0)
                                    for p in range(partitions)],
            "topics": names, "seconds": round(time.perf_counter() - started, 3)}


def read_warm_start(kcfg: Mapping, env: Mapping[str, str] | None = None,
                    timeout: float = 60.0) -> tuple[dict, Population] | None:
    """(warm-start manifest, population) loaded by `straycode load-state`, or None when
    this deployment has none. Raises RuntimeError when it is there but incomplete."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    topic = topic_names(kcfg)["warm"]
    kwargs = client_kwargs(kcfg, env)
    admin = KafkaAdminClient(**kwargs)
    try:
        if topic not in set(admin.list_topics()):
            return None
    finally:
        admin.close()
    consumer = KafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-start topic {topic}: not read to its end "
                                   f"({consumer.position(tp)} of {end}) within {timeout:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    latest[record.key] = record.value
    finally:
        consumer.close()
    if WARM_MANIFEST_KEY not in latest:
        if latest:
            raise RuntimeError(f"warm-start topic {topic} holds no manifest: a `straycode "
                               "load-state` did not finish; run it again")
        return None
    warm = orjson.loads(latest[WARM_MANIFEST_KEY])
    parts = [latest.get(f"population/{warm['load_id']}/{i}".encode())
             for i in range(warm["population_chunks"])]
    if any(part is None for part in parts):
        raise RuntimeError(f"warm-start topic {topic}: population chunks of load "
                           f"{warm['load_id']} are missing")
    blob = b"".join(parts)
    if hashlib.sha256(blob).hexdigest() != warm["population_sha256"]:
        raise RuntimeError(f"warm-start topic {topic}: population of load {warm['load_id']} "
                           "does not match its manifest")
    return warm, population_from_bytes(blob)


def seed_population(settings: Mapping, population: Population,
                    env: Mapping[str, str] | None = None) -> dict | None:
    """At worker start: fill the (empty) shared population from the warm-start topic, if
    the deployment was loaded from a state. Returns the warm-start manifest or None."""
    kcfg = settings["kafka"]
    found = read_warm_start(kcfg, env)
    if found is None:
        log.info("no warm start for %s (topic %s absent): population starts empty",
                 kcfg["app_id"], topic_names(kcfg)["warm"])
        return None
    warm, loaded = found
    if warm.get("partitions") != int(kcfg["partitions"]):
        raise RuntimeError(f"warm start of {kcfg['app_id']} was loaded for "
                           f"{warm.get('partitions')} partitions, kafka.partitions is "
                           f"{kcfg['partitions']}")
    population.counts.clear()
    population.totals.clear()
    population.counts.update(loaded.counts)
    population.totals.update(loaded.totals)
    values = sum(len(t) for t in loaded.counts.values())
    log.info("warm start: population of %d values from %s (state generation %s, watermark "
             "%s, load %s)", values, topic_names(kcfg)["warm"], warm.get("state_generation"),
             warm.get("watermark_ts"), warm.get("load_id"))
    return warm
