"""faust_compat.take_batches: an agent's input in batches, read straight from its channel
queue (the default) or through Faust's stream.take_events; run on a real Faust agent with
`agent.test_context()` (no broker)."""
from __future__ import annotations

import asyncio
import time

import pytest
from faust.types.tuples import ConsumerMessage

from straycode.settings import load_settings
from straycode.streams.app import create_app
from straycode.streams.faust_compat import Batching, take_batches
from streams_harness import WAIT_S, until


class Rig:
    """One app, one agent reading one topic through take_batches; what each batch held
    and whether its messages were acknowledged while the body ran. With `gated`, the body
    waits for `self.gate` (made by the test, in the running loop) after each batch."""

    def __init__(self, tmp_path, direct: bool, max_: int = 3, within: float = 0.05,
                 gated: bool = False):
        settings = load_settings(env={"STRAYCODE__KAFKA__STORE": "memory://",
                                      "STRAYCODE__KAFKA__APP_ID": "batches-test"})
        self.app = create_app(settings, datadir=str(tmp_path / "data"))
        self.app.finalize()
        self.topic = self.app.topic("batches-in", key_serializer="raw", value_serializer="raw")
        self.batches: list[list[bytes]] = []
        self.acked_in_body: list[bool] = []
        self.offsets = 0
        self.gate: asyncio.Event | None = None

        async def body(stream):
            async for events in take_batches(stream, Batching(max_, within, direct)):
                self.batches.append([e.message.value for e in events])
                self.acked_in_body += [e.message.acked for e in events]
                if gated:
                    await self.gate.wait()

        self.agent = self.app.agent(self.topic, name="batches", concurrency=1)(body)

    async def put(self, agent, value: bytes, generation: int | None = None) -> ConsumerMessage:
        msg = ConsumerMessage(topic="batches-in", partition=0, offset=self.offsets,
                              timestamp=time.time(), timestamp_type=0, headers=None, key=None,
                              value=value, checksum=b"",
                              generation_id=(self.app.consumer_generation_id
                                             if generation is None else generation))
        self.offsets += 1
        msg.incref()                  # as Faust's conductor does: one reference per stream
        channel = agent.stream().channel
        await channel.put(await channel.decode(msg))
        return msg

    async def until(self, agent, done, what: str) -> None:
        await until(agent, done, what)


@pytest.mark.parametrize("direct", [True, False])
def test_batches_of_at_most_max_then_what_came_within(tmp_path, direct):
    rig = Rig(tmp_path, direct, max_=3, within=0.05)

    async def run():
        async with rig.agent.test_context() as agent:
            msgs = [await rig.put(agent, b"m%d" % i) for i in range(7)]
            await rig.until(agent, lambda: sum(map(len, rig.batches)) == 7, "7 events")
            await rig.until(agent, lambda: all(m.acked for m in msgs), "every message acked")
            return msgs

    asyncio.run(run())
    assert [v for batch in rig.batches for v in batch] == [b"m%d" % i for i in range(7)]
    assert all(1 <= len(b) <= 3 for b in rig.batches)
    assert not any(rig.acked_in_body)              # acknowledged after the body, not before


@pytest.mark.parametrize("direct", [True, False])
def test_a_batch_is_acknowledged_only_once_its_body_is_done(tmp_path, direct):
    rig = Rig(tmp_path, direct, max_=2, within=0.01, gated=True)

    async def run():
        rig.gate = asyncio.Event()
        async with rig.agent.test_context() as agent:
            first = await rig.put(agent, b"a")
            await rig.until(agent, lambda: rig.batches == [[b"a"]], "the first batch")
            await asyncio.sleep(0.05)
            held = first.acked
            rig.gate.set()
            await rig.until(agent, lambda: first.acked, "the first message acked")
            return held

    assert asyncio.run(run()) is False             # not acknowledged while the body ran


def test_a_message_of_an_earlier_consumer_generation_is_dropped_unacknowledged(tmp_path):
    rig = Rig(tmp_path, direct=True, max_=10, within=0.01)

    async def run():
        async with rig.agent.test_context() as agent:
            stale = await rig.put(agent, b"stale", generation=rig.app.consumer_generation_id - 1)
            fresh = await rig.put(agent, b"fresh")
            await rig.until(agent, lambda: fresh.acked, "the fresh message acked")
            return stale

    stale = asyncio.run(run())
    assert [v for batch in rig.batches for v in batch] == [b"fresh"]
    assert not stale.acked                          # read again by whoever owns it now


def test_an_error_thrown_into_the_channel_reaches_the_agent(tmp_path):
    rig = Rig(tmp_path, direct=True, max_=10, within=0.01)

    async def run():
        async with rig.agent.test_context() as agent:
            channel = agent.stream().channel
            await channel.throw(ValueError("undecodable"))
            deadline = time.monotonic() + WAIT_S
            while agent.crash_reason is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            return agent.crash_reason

    reason = asyncio.run(run())
    assert isinstance(reason, ValueError) and "undecodable" in str(reason)
