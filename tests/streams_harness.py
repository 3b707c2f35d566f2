"""The Faust agents without a broker: faust-streaming's ``Agent.test_context()`` runs an
agent on a local channel, tables live in ``memory://`` stores, and the pipeline's output
topics have their ``send`` replaced by a recorder (there is no producer to send with).

Messages are put on the channel with the topic, key and partition a broker would have
given them (``AgentTestWrapper.put`` can only name the agent's own topic, and the user
agent reads several), and ``PartitionClock`` asks a fake high watermark: the number of
messages put on that topic-partition so far (plus what a test says is still unread).
Each message is also counted as in flight by the worker's real consumer
(``ExactCommitConsumer.track``), so ``commit_position(tp)`` says what a commit would name.
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import orjson
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from straycode.detector.contract import parse_event
from straycode.detector.engine import Detector
from straycode.components import build_enricher
from straycode.settings import detector_settings, load_settings
from straycode.streams.topics import expected_partition
from straycode.streams.tables import decode_user
from straycode.streams.worker_cli import build

PARTITIONS = 4
WAIT_S = 5.0


class Harness:
    """One app + Pipeline per test, its outputs recorded per topic as (key, value, partition)."""

    def __init__(self, tmp_path, geo_dbs, **over):
        env = {"STRAYCODE__KAFKA__STORE": "memory://",
               "STRAYCODE__KAFKA__PARTITIONS": str(PARTITIONS),
               "STRAYCODE__KAFKA__APP_ID": "agents-test",
               "STRAYCODE__ALERTS__FORMAT": "native",
               "STRAYCODE__GEOIP__CITY_DB": str(geo_dbs[0]),
               "STRAYCODE__GEOIP__ASN_DB": str(geo_dbs[1]),
               # state written and input acknowledged after every batch (as before
               # checkpoints); tests of the checkpoint interval set their own
               "STRAYCODE__KAFKA__CHECKPOINT_INTERVAL_S": "0"}
        env.update({k: str(v) for k, v in over.items()})
        self.settings = load_settings(env=env)
        self.app, self.pipe = build(self.settings, datadir=str(tmp_path / "data"))
        self.app.finalize()
        self.app.conf.store = "memory://"
        kt = self.settings["kafka"]["topics"]
        self.topic = dict(kt)                        # logical name -> topic name
        self.sent: dict[str, list[tuple]] = defaultdict(list)
        for name in ("alerts", "scores", "dead_letters", "network_ops", "events", "ticks"):
            self._capture(name)
        # fake consumer positions: (topic, partition) -> messages put / extra unread
        self.produced: dict[tuple[str, int], int] = defaultdict(int)
        self.unread: dict[tuple[str, int], int] = defaultdict(int)
        self.pipe.clock.highwater = lambda tp: (self.produced[(tp.topic, tp.partition)]
                                                + self.unread[(tp.topic, tp.partition)])
        self.pipe.clock.committed = lambda tp: 0
        # count the input messages whose batch was handled (or raised)
        self.handled = 0
        self.batches: list[list[str]] = []
        real = self.pipe.scoring.handle_batch

        async def handle_batch(events):
            try:
                await real(events)
            finally:                # counted also when it raised (the agent goes on)
                self.batches.append([e.message.topic for e in events])
                self.handled += len(events)
        self.pipe.scoring.handle_batch = handle_batch

    def _capture(self, name: str) -> None:
        topic = getattr(self.pipe.topics, name)
        records = self.sent[name]

        async def send(key=None, value=None, partition=None, **_kw):
            records.append((key, value, partition))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        topic.send = send

    def dead_letters(self) -> list[dict]:
        return [orjson.loads(v) for _k, v, _p in self.sent["dead_letters"]]

    async def put(self, agent, topic: str, value: bytes, key: bytes | None, partition: int):
        """What the consumer would hand the agent: the next offset of that topic-partition."""
        offset = self.produced[(topic, partition)]
        self.produced[(topic, partition)] += 1
        msg = ConsumerMessage(topic=topic, partition=partition, offset=offset,
                              timestamp=time.time(), timestamp_type=0, headers=None, key=key,
                              value=value, checksum=b"",
                              generation_id=self.app.consumer_generation_id)
        self.app.consumer.track(msg)   # as the consumer does before handing it over
        msg.incref()                # as Faust's conductor does: one reference per stream
        channel = agent.stream().channel
        await channel.put(await channel.decode(msg))
        return msg

    def commit_position(self, topic: str, partition: int) -> int | None:
        """The offset the worker's consumer would commit for that topic-partition now."""
        return self.app.consumer.commit_position(TP(topic, partition))

    def sample(self, name: str, **labels) -> float:
        """A metric of the pipeline as /metrics would show it (0 when never set)."""
        value = self.pipe.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def put_event(self, agent, event: dict, topic: str | None = None,
                        key: bytes | None = None, partition: int | None = None):
        """An input event on the topic a producer would use (split by type), keyed by user."""
        if topic is None:
            topic = {"login": self.topic["logins"], "code_issued": self.topic["codes"]}.get(
                event["type"], self.topic["events"])
        user = event["user_id"].encode()
        return await self.put(
            agent, topic, orjson.dumps(event), user if key is None else key,
            expected_partition(user, PARTITIONS) if partition is None else partition)

    async def tick(self, agent, partition: int):
        await self.put(agent, self.topic["ticks"], b"tick", None, partition)

    async def until(self, agent, done, what: str):
        await until(agent, done, what)

    async def handled_all(self, agent, n: int):
        await self.until(agent, lambda: self.handled >= n, f"{n} handled input messages")


async def until(agent, done, what: str) -> None:
    """Wait (at most WAIT_S) until done(); fails at once if the agent crashed."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        if agent.crash_reason is not None:
            raise AssertionError(f"agent crashed: {agent.crash_reason!r}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def user_on(partition: int, prefix: str = "user") -> str:
    """A user id whose messages belong on `partition`."""
    n = 0
    while expected_partition(f"{prefix}{n}".encode(), PARTITIONS) != partition:
        n += 1
    return f"{prefix}{n}"


def stored_user(h: Harness, user: str):
    raw = h.pipe.users.get(user.encode())   # outside a stream: the memory store's own get
    return None if raw is None else (raw, *decode_user(raw))


def detector_outputs(h: Harness, events: list[dict]) -> list:
    """What the batch detector (straycode replay's core) decides on the same events."""
    det = Detector(detector_settings(h.settings), build_enricher(h.settings))
    out = []
    for e in events:
        out += det.process(parse_event(e))
    return out
