"""Unit tests of the pieces of straycode.streams that need no broker."""
from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import pytest

from straycode.detector.state import NetworkState, UserState
from straycode.settings import ConfigError, load_settings
from straycode.streams.publisher import dead_letter_record
from straycode.streams.topics import expected_partition
from straycode.streams.clock import PartitionClock, ReorderBuffer
from straycode.streams.connection import bootstrap_servers, client_kwargs, faust_credentials
from straycode.streams.checkpoint import Checkpoint, Dirty
from straycode.streams.tables import (NetworkStore, RecordingNetworkState, UserStore,
                                      apply_ops, encode_user)
from streams_events import T0

TP = SimpleNamespace


def tp(topic, p):
    return TP(topic=topic, partition=p)


class FakeConsumer:
    def __init__(self):
        self.ends: dict = {}
        self.polls: dict = {}       # (topic, partition) -> when its end was last learned

    def polled(self, t):
        return self.polls.get((t.topic, t.partition))

    def highwater(self, t):
        return self.ends.get((t.topic, t.partition))

    def committed(self, t):
        return None


def test_watermark_is_held_by_a_lagging_topic_partition():
    c = FakeConsumer()
    clock = PartitionClock(["logins", "codes"], c.highwater, c.committed)
    clock.assign([tp("logins", 0), tp("codes", 0), tp("codes", 1)])
    c.ends.update({("logins", 0): 10, ("codes", 0): 10, ("codes", 1): 0})
    clock.seen(tp("codes", 0), 9, 1000.0)             # codes p0 read to the end
    clock.seen(tp("logins", 0), 4, 500.0)             # logins p0 still has 5 unread
    assert clock.watermark(0) == 500.0
    clock.seen(tp("logins", 0), 9, 990.0)             # caught up
    assert clock.watermark(0) == 1000.0
    c.ends[("logins", 0)] = 12                        # new logins arrived, not read yet
    assert clock.watermark(0) == 990.0
    assert clock.watermark(1) == float("-inf")    # nothing read on partition 1
    assert clock.lag()[("logins", 0)] == 2


def test_unknown_highwater_holds_the_watermark():
    c = FakeConsumer()
    clock = PartitionClock(["logins", "codes"], c.highwater, c.committed)
    clock.assign([tp("logins", 0), tp("codes", 0)])
    c.ends[("codes", 0)] = 1
    clock.seen(tp("codes", 0), 0, 100.0)
    assert clock.watermark(0) == float("-inf")    # logins p0 never fetched
    c.ends[("logins", 0)] = 0                          # fetched: empty
    assert clock.watermark(0) == 100.0


def test_stale_end_of_a_caught_up_topic_holds_the_watermark():
    """codes p0 looked caught up at the last fetch that included it (poll 1000); the
    code_verified was fetched later (poll 2000): its code_issued may have been stored in
    between, so codes p0 holds until a fetch at least as recent has looked at it."""
    c = FakeConsumer()
    clock = PartitionClock(["codes", "events"], c.highwater, c.committed, c.polled)
    clock.assign([tp("codes", 0), tp("events", 0)])
    c.ends.update({("codes", 0): 5, ("events", 0): 0})
    c.polls.update({("codes", 0): 1000, ("events", 0): 1000})
    clock.seen(tp("codes", 0), 4, 100.0)
    assert clock.watermark(0) == 100.0
    c.polls[("events", 0)] = 2000
    c.ends[("events", 0)] = 3
    clock.seen(tp("events", 0), 2, 300.0)             # the code_verified
    assert clock.watermark(0) == 100.0                # codes p0 last looked at before it
    c.polls[("codes", 0)] = 2000                      # the next fetch: still nothing new
    assert clock.watermark(0) == 300.0
    c.polls[("codes", 0)] = 2500
    c.ends[("codes", 0)] = 6                          # ...or it found the code_issued
    assert clock.watermark(0) == 100.0


def test_reorder_buffer_releases_in_event_time_once_the_watermark_passes():
    buf = ReorderBuffer(max_events=100)
    for t, item in ((30.0, "verified"), (10.0, "login"), (20.0, "code"), (40.0, "later")):
        buf.push(0, t, item)
    buf.push(1, 5.0, "other partition")
    assert buf.release(0, 5.0) == [] and not buf.due(0, 5.0)
    assert buf.due(0, 30.0)
    assert buf.release(0, 30.0) == ["login", "code", "verified"]   # time order, not read order
    assert buf.size == 2 and buf.release(0, 35.0) == []
    assert buf.drop(0) == 1 and buf.size == 1                      # revoked: forgotten
    assert buf.release(1, 5.0) == ["other partition"] and buf.forced == 0


def test_reorder_buffer_full_releases_the_oldest_early():
    buf = ReorderBuffer(max_events=2)
    for t in (3.0, 1.0, 2.0, 4.0):
        buf.push(0, t, t)
    assert buf.release(0, 0.0) == [1.0, 2.0]          # over the bound: oldest first
    assert buf.forced == 2 and buf.size == 2
    assert buf.release(0, 3.0) == [3.0] and buf.forced == 2


def test_recorded_network_ops_rebuild_the_same_state():
    direct = RecordingNetworkState()
    for i, user in enumerate(["a", "b", "a", "c"]):
        direct.observe(user, int(T0) + 60 * i, 3600, login_ok=i % 2 == 0, code=i > 1)
    direct.outcome(int(T0) + 400, verified=False)
    replayed = apply_ops(NetworkState(), [op.to_wire() for op in direct.ops])
    assert replayed.to_bytes() == direct.to_bytes()
    assert replayed.distinct_users(int(T0) + 400, 3600) == 3


def test_network_store_reads_own_writes_until_the_view_moves():
    view: dict = {}
    store = NetworkStore(view)                 # a dict stands in for the GlobalTable
    state = store.get("ip:1.2.3.4")
    assert isinstance(state, RecordingNetworkState) and state.distinct_users(0, 10) == 0
    state.observe("alice", 100, 3600, code=True)
    store["ip:1.2.3.4"] = state
    assert store.take_outbox() == {"ip:1.2.3.4": [["o", "alice", 100, 3600, None, True]]}
    assert store.get("ip:1.2.3.4").distinct_users(100, 3600) == 1      # local copy
    other = NetworkState()
    other.observe("bob", 101, 3600)
    other.observe("alice", 100, 3600)
    view[b"ip:1.2.3.4"] = other.to_bytes()                              # network agent wrote
    assert store.get("ip:1.2.3.4").distinct_users(101, 3600) == 1      # same batch: as read
    store.begin_batch()
    assert store.get("ip:1.2.3.4").distinct_users(101, 3600) == 2      # view wins now
    with pytest.raises(TypeError):
        store["ip:9.9.9.9"] = NetworkState()


# --------------------------------------------------------------------------- checkpoints
class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def held(partition, name):
    """A stand-in for a held Faust event (only its message's partition is read)."""
    return SimpleNamespace(name=name, message=SimpleNamespace(partition=partition))


def batch(ckpt, partition, keys, name=None):
    """One batch: `keys` of `partition` changed, and (with a name) one message held."""
    ckpt.next_generation()
    for key in keys:
        ckpt.changed(partition, key)
    if name is not None:
        event = held(partition, name)
        ckpt.hold(event)
        return event


def names(events):
    return [e.name for e in events]


def test_checkpoint_acknowledges_a_message_only_once_every_state_it_changed_is_written():
    clock = FakeClock()
    ckpt = Checkpoint(5.0, clock=clock)
    batch(ckpt, 0, ["a", "b"], "m1")
    batch(ckpt, 0, ["c"], "m2")
    batch(ckpt, 1, [], "m3")              # changed nothing, but after m1 and m2's changes
    assert ckpt.release() == [] and ckpt.held_count == 3
    assert ckpt.written([Dirty(0, "a")]) == []           # m1 still waits for b
    assert names(ckpt.written([Dirty(0, "b")])) == ["m1"]
    assert ckpt.held_count == 2
    assert names(ckpt.written([Dirty(0, "c")])) == ["m2", "m3"]
    assert ckpt.held_count == 0 and not ckpt.changes
    batch(ckpt, 1, [], "m4")                          # nothing unwritten: free at once
    assert names(ckpt.release()) == ["m4"]


def test_checkpoint_slices_are_oldest_first_and_spread_over_the_interval():
    clock = FakeClock()
    ckpt = Checkpoint(5.0, clock=clock)
    batch(ckpt, 0, [f"k{i}" for i in range(8)], "m1")
    batch(ckpt, 1, ["x"], "m2")
    clock.t += 3
    batch(ckpt, 0, ["late"], "m3")
    clock.t += 1
    assert ckpt.slice() == []                          # nothing unwritten for 5 s yet
    assert ckpt.overdue() == set()
    clock.t += 1                                       # k0-k7, x: 5 s; late: 2 s
    assert ckpt.overdue() == {0, 1}
    # one second since the last slice: a fifth of the 10 unwritten states, oldest first
    first = ckpt.slice()
    assert first == [Dirty(0, "k0"), Dirty(0, "k1")]
    assert ckpt.written(first) == []                   # m1 waits for k2-k7
    clock.t += 2.5                                     # half an interval: half of the 8 left
    second = ckpt.slice()
    assert second == [Dirty(0, f"k{i}") for i in range(2, 6)]
    assert ckpt.written(second) == []
    clock.t += 5                                       # a whole interval: all that are due
    rest = ckpt.slice()
    assert rest == [Dirty(0, "k6"), Dirty(0, "k7"), Dirty(1, "x"), Dirty(0, "late")]
    assert names(ckpt.written(rest)) == ["m1", "m2", "m3"]


def test_checkpoint_writes_changes_two_intervals_old_whatever_the_bound():
    clock = FakeClock()
    ckpt = Checkpoint(5.0, clock=clock)
    batch(ckpt, 0, [f"k{i}" for i in range(10)], "m1")
    clock.t += 7
    ckpt.sliced = clock.t - 0.01                       # a slice a moment ago
    assert ckpt.slice() == [Dirty(0, "k0")]           # bound: 1
    clock.t += 3.5
    ckpt.sliced = clock.t - 0.01
    keys = ckpt.slice()                                # 10.5 s old: all of them
    assert keys == [Dirty(0, f"k{i}") for i in range(10)]
    assert names(ckpt.written(keys)) == ["m1"]


def test_checkpoint_coalesces_repeated_changes_into_one_write_per_interval():
    clock = FakeClock()
    ckpt = Checkpoint(5.0, clock=clock)
    for i in range(4):                                 # a hot key, changed every second
        batch(ckpt, 0, ["hot"], f"m{i}")
        clock.t += 1
    assert ckpt.slice() == []                          # first change 4 s ago
    clock.t += 1
    assert ckpt.slice() == [Dirty(0, "hot")]           # one write for four changes
    assert names(ckpt.written([Dirty(0, "hot")])) == ["m0", "m1", "m2", "m3"]
    batch(ckpt, 0, ["hot"], "m4")                      # changed again: a new interval
    clock.t += 4.9
    assert ckpt.slice() == [] and ckpt.release() == []
    clock.t += 0.1
    assert ckpt.slice() == [Dirty(0, "hot")]


def test_checkpoint_interval_zero_writes_everything_every_batch():
    ckpt = Checkpoint(0.0, clock=FakeClock())
    batch(ckpt, 0, ["a", "b", "c"], "m1")
    keys = ckpt.slice()
    assert keys == [Dirty(0, "a"), Dirty(0, "b"), Dirty(0, "c")]
    assert names(ckpt.written(keys)) == ["m1"]


def test_checkpoint_writes_everything_when_too_many_messages_are_held():
    ckpt = Checkpoint(5.0, max_held=3, clock=FakeClock())
    batch(ckpt, 0, ["a"], "m1")
    batch(ckpt, 0, ["b"], "m2")
    assert ckpt.slice() == []
    batch(ckpt, 0, ["c"], "m3")
    assert ckpt.slice() == [Dirty(0, "a"), Dirty(0, "b"), Dirty(0, "c")]


def test_checkpoint_drops_revoked_partitions_and_frees_what_waited_on_them():
    clock = FakeClock()
    ckpt = Checkpoint(5.0, clock=clock)
    batch(ckpt, 1, ["a"], "p1-first")
    ckpt.hold(held(2, "p2-first"))                    # same batch, another partition
    batch(ckpt, 2, ["b"], "p2-second")
    ckpt.touch(held(1, "tick"))
    assert ckpt.anchor(1).name == "tick"
    assert ckpt.drop({1}) == 1                         # p1-first: read again by the new owner
    assert ckpt.anchor(1) is None and list(ckpt.changes) == [Dirty(2, "b")]
    # p2-first waited only on p1's key, which is gone: free at the next release
    assert names(ckpt.release()) == ["p2-first"]
    clock.t += 5
    assert ckpt.overdue() == {2}
    assert ckpt.drop({2}) == 1 and ckpt.held_count == 0 and not ckpt.held
    assert ckpt.release() == [] and ckpt.overdue() == set()


def test_checkpoint_wakes_a_partition_whose_messages_could_be_acknowledged():
    # messages freed by a drop (no unwritten key holds them back) on a quiet input: the
    # timer must still wake their partition, or they would stay held
    clock = FakeClock()
    ckpt = Checkpoint(5.0, clock=clock)
    batch(ckpt, 1, ["a"], "p1")
    ckpt.hold(held(3, "p3"))
    ckpt.drop({1})
    assert ckpt.overdue() == set()                     # held for less than the interval
    clock.t += 5
    assert ckpt.overdue() == {3}


def test_user_store_writes_the_users_asked_for_and_lists_fresh_changes():
    table: dict = {}
    store = UserStore(table, 2)
    states = {u: UserState() for u in ("alice", "bob", "carol")}
    for user, state in states.items():
        store[user] = state
    store["alice"] = states["alice"]                   # dirty already: not fresh again
    assert store.take_fresh() == ["alice", "bob", "carol"] and store.take_fresh() == []
    store.begin()
    store["dave"] = UserState()
    assert store.rollback() == []                      # never read: nothing put back
    store.begin()
    _ = store["carol"]
    store.dirty.pop("carol")                           # as a rollback of a new user does
    assert store.write(["bob", "carol", "erin"]) == 1  # only bob had a buffered state
    assert table == {b"bob": encode_user(2, states["bob"])}
    assert set(store.dirty) == {"alice", "dave"} and store.cache == {"bob": states["bob"]}
    assert store["bob"] is states["bob"]               # read back from the cache


def test_dead_letter_record_keeps_where_and_what():
    msg = SimpleNamespace(topic="t", partition=3, offset=42, timestamp=1.5, key=b"u1",
                          value=b"\xff\xfe\x00binary")
    rec = __import__("orjson").loads(dead_letter_record(msg, "malformed_json", "bad").to_bytes())
    assert rec["source"] == {"topic": "t", "partition": 3, "offset": 42, "timestamp": 1.5,
                             "key": "u1"}
    assert rec["reason"] == "malformed_json" and rec["size"] == 9
    assert base64.b64decode(rec["excerpt_b64"]) == b"\xff\xfe\x00binary" and "excerpt" not in rec
    msg.value = b'{"a": 1}'
    assert __import__("orjson").loads(dead_letter_record(msg, "r", "d").to_bytes())["excerpt"] == '{"a": 1}'
    # a value of any size gives a dead letter of bounded size, with the digest of all of it
    msg.value, msg.key = b"x" * 3_000_000, b"k" * 100_000
    big = dead_letter_record(msg, "too_large", "3000000 bytes > limit 65536")
    assert len(big.to_bytes()) < 2048
    assert big.size == 3_000_000 and big.sha256 == hashlib.sha256(msg.value).hexdigest()


def test_expected_partition_is_kafkas_murmur2():
    from aiokafka.partitioner import DefaultPartitioner      # what Faust's producer uses
    for key in (b"alice", b"bob", b"u17", b"user000042"):
        assert expected_partition(key, 4) == DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])


def test_sasl_password_comes_from_env_and_is_not_shown():
    kcfg = dict(load_settings(env={})["kafka"], broker="kafka://h1:9092;h2:9093",
                security_protocol="SASL_PLAINTEXT", sasl_username="svc",
                sasl_mechanism="SCRAM-SHA-512")
    env = {"STRAYCODE_SASL_PASSWORD": "s3cr3t-pw"}
    assert bootstrap_servers(kcfg) == ["h1:9092", "h2:9093"]
    kw = client_kwargs(kcfg, env)
    assert kw["sasl_plain_password"] == "s3cr3t-pw" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    creds = faust_credentials(kcfg, env)
    assert creds.password == "s3cr3t-pw" and "s3cr3t" not in repr(creds)
    with pytest.raises(ConfigError):
        client_kwargs(kcfg, {})
    assert faust_credentials(dict(kcfg, security_protocol="PLAINTEXT"), env) is None
