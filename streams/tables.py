"""State stores for the Detector, backed by Faust tables.

users   Table 'users' keyed by user_id; value = b"<partition>:" + UserState.to_bytes().
        The partition prefix lets a worker that just got partitions re-register the
        pending codes of exactly those users (Detector.rebuild_index) with public Faust
        API only (the store does not expose per-partition iteration).
network GlobalTable 'network-view' keyed by "ip:<addr>" / "net:<network>", value =
        NetworkState.to_bytes(). Only the network agent writes it (one writer per key:
        the owner of that key's network-ops partition); every worker reads all of it.

The user agent never writes NetworkState: the Detector's observe()/outcome() calls are
recorded as operations and shipped through the network-ops repartition topic, so the
counts of users living on different workers add up instead of overwriting each other.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Iterator, Mapping

import faust

from straycode.detector.state import NetworkOp, NetworkState, UserState, network_op_from_wire

RAW = {"key_type": bytes, "value_type": bytes}   # raw bytes in the changelog


def user_table(app: faust.App, kcfg: Mapping) -> faust.Table:
    return app.Table("users", partitions=int(kcfg["partitions"]), **RAW)


def network_view(app: faust.App, kcfg: Mapping) -> faust.GlobalTable:
    return app.GlobalTable("network-view", partitions=int(kcfg["partitions"]), **RAW)


def encode_user(partition: int, state: UserState) -> bytes:
    return b"%d:" % partition + state.to_bytes()


def decode_user(raw: bytes) -> tuple[int, UserState]:
    head, _, body = raw.partition(b":")
    return int(head), UserState.from_bytes(body)


class UserStore(MutableMapping):
    """The `users` mapping of one partition's Detector.

    Changed states stay in `dirty` until the agent writes them (write(), at checkpoints,
    streams/checkpoint.py), which it does only after the alerts of the events they reflect
    were acknowledged by the broker: a crash in between re-delivers those events to a
    state that has not seen them, so the alerts are re-sent (same ids), never lost. A user
    changed several times before its write is written once. `fresh` lists the users that
    became dirty since the agent last took it (take_fresh()).

    begin()/rollback() bracket one event: rollback() puts back the states that event
    read as they were before it (an event whose processing raised must not leave a
    half-applied state behind, nor undo the other events of its batch).
    """

    def __init__(self, table: faust.Table, partition: int, cache_size: int = 20_000):
        self.table = table
        self.partition = partition
        self.dirty: dict[str, UserState] = {}
        self.fresh: list[str] = []             # became dirty since take_fresh()
        # decoded states of recently active users: this store is the only writer of its
        # partition, so a cached object is always the latest (saves a decode per event)
        self.cache: dict[str, UserState] = {}
        self.cache_size = cache_size
        # per event: user -> encoded state before the event (None: as stored in the table)
        self.undo: dict[str, bytes | None] = {}

    def __getitem__(self, user_id: str) -> UserState:
        if user_id not in self.undo:
            state = self.dirty.get(user_id)
            self.undo[user_id] = None if state is None else state.to_bytes()
        state = self.dirty.get(user_id) or self.cache.get(user_id)
        if state is not None:
            return state
        raw = self.table.get(user_id.encode())
        if raw is None:
            raise KeyError(user_id)
        return decode_user(raw)[1]

    def __setitem__(self, user_id: str, state: UserState) -> None:
        if user_id not in self.dirty:
            self.fresh.append(user_id)
        self.dirty[user_id] = state

    def __delitem__(self, user_id: str) -> None:
        raise NotImplementedError("user state is aged, not deleted")

    def __iter__(self) -> Iterator[str]:
        for key, raw in self.table.items():
            if int(raw.partition(b":")[0]) == self.partition:
                yield key.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def begin(self) -> None:
        """Start of one event: what it reads from now on can be rolled back."""
        self.undo.clear()

    def rollback(self) -> list[str]:
        """Undo the current event's changes (cached objects may have been mutated in place);
        returns the users put back, whose pending codes the caller must re-arm."""
        for user_id, before in self.undo.items():
            self.cache.pop(user_id, None)
            if before is None:
                self.dirty.pop(user_id, None)
            else:
                self.dirty[user_id] = UserState.from_bytes(before)
        restored = list(self.undo)
        self.undo.clear()
        return restored

    def take_fresh(self) -> list[str]:
        """The users that became dirty since the last call (a user rolled back meanwhile
        may be among them: writing it then writes nothing)."""
        fresh, self.fresh = self.fresh, []
        return fresh

    def write(self, user_ids) -> int:
        """Write these users' buffered states to the table (the current Faust event must
        be one of this partition's: the changelog partition and the RocksDB shard are taken
        from it); users without a buffered state are skipped. Returns the writes made."""
        n = 0
        cache, dirty = self.cache, self.dirty
        for user_id in user_ids:
            state = dirty.pop(user_id, None)
            if state is None:
                continue
            self.table[user_id.encode()] = encode_user(self.partition, state)
            cache.pop(user_id, None)
            cache[user_id] = state                      # most recent last
            n += 1
        while len(cache) > self.cache_size:
            cache.pop(next(iter(cache)))
        return n


def scan_users(table: faust.Table, partitions: set[int]) -> Iterator[tuple[int, str, UserState]]:
    """(partition, user_id, state) for every stored user of the given partitions."""
    for key, raw in table.items():
        partition, state = decode_user(raw)
        if partition in partitions:
            yield partition, key.decode(), state


class RecordingNetworkState(NetworkState):
    """A NetworkState that also records the operations applied to it, for the repartition.
    Every change of a NetworkState goes through `apply` (detector/state.py), so whatever
    the core does to it is recorded."""
    __slots__ = ("ops",)

    def __init__(self):
        super().__init__()
        self.ops: list[NetworkOp] = []

    def apply(self, op: NetworkOp) -> None:
        self.ops.append(op)
        super().apply(op)


def apply_ops(state: NetworkState, ops: list[list]) -> NetworkState:
    """Replay shipped operations (their wire form) on a NetworkState (network agent)."""
    for op in ops:
        state.apply(network_op_from_wire(op))
    return state


class NetworkStore(MutableMapping):
    """The Detector's `networks` mapping: reads the global view, records writes as ops.

    Read-your-writes: a key this worker changed keeps its local copy until the view's
    value for that key changes (i.e. the network agent applied an update), so a spray of
    codes inside one worker is counted at once rather than after the round trip.

    Within one batch (begin_batch() to the next) a key is read from the view once: the
    view only changes when the event loop applies its changelog, which a batch does not
    wait for, and a GlobalTable read costs several store lookups.
    """

    def __init__(self, view: faust.GlobalTable, max_local: int = 100_000):
        self.view = view
        self.local: dict[str, tuple[bytes | None, RecordingNetworkState]] = {}
        self.outbox: dict[str, list[list]] = {}       # key -> operations' wire forms
        self.max_local = max_local
        self.reads: dict[str, NetworkState] = {}
        self.marks: dict[str, int] = {}        # per event: key -> outbox length before it

    def begin_batch(self) -> None:
        self.reads.clear()

    def begin(self) -> None:
        """Start of one event: the operations it records can be rolled back."""
        self.marks.clear()

    def rollback(self) -> None:
        """Drop the current event's operations; its keys are read from the view again
        (their local copies were changed in place)."""
        for key, length in self.marks.items():
            ops = self.outbox.get(key)
            if ops is not None:
                del ops[length:]
                if not ops:
                    del self.outbox[key]
            self.local.pop(key, None)
            self.reads.pop(key, None)
        self.marks.clear()

    def __getitem__(self, key: str) -> NetworkState:
        if key not in self.marks:
            self.marks[key] = len(self.outbox.get(key, ()))
        state = self.reads.get(key)
        if state is None:
            state = self.reads[key] = self._read(key)
        return state

    def _read(self, key: str) -> NetworkState:
        raw = self.view.get(key.encode())
        mine = self.local.get(key)
        if mine is not None and mine[0] == raw:
            return mine[1]
        if mine is not None:
            del self.local[key]
        if raw is None:
            raise KeyError(key)
        return RecordingNetworkState.from_bytes(raw)

    def get(self, key, default=None):
        """Never None: an unseen key yields an empty recording state, which scores exactly
        like a missing one and lets the Detector's first observe() be recorded too."""
        try:
            return self[key]
        except KeyError:
            return RecordingNetworkState()

    def __setitem__(self, key: str, state: NetworkState) -> None:
        if not isinstance(state, RecordingNetworkState):
            raise TypeError("NetworkStore only accepts states it handed out (networks.get())")
        if state.ops:
            ops = self.outbox.setdefault(key, [])
            if key not in self.marks:
                self.marks[key] = len(ops)
            ops.extend(op.to_wire() for op in state.ops)
            state.ops = []
        self.reads[key] = state
        if key not in self.local:
            if len(self.local) >= self.max_local:
                self.local.pop(next(iter(self.local)))
            self.local[key] = (self.view.get(key.encode()), state)
        else:
            self.local[key] = (self.local[key][0], state)

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("network state decays, it is not deleted")

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.view.keys())

    def __len__(self) -> int:
        return len(self.view)

    def take_outbox(self) -> dict[str, list[list]]:
        out, self.outbox = self.outbox, {}
        return out

