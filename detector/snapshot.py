"""What a :class:`~straycode.detector.engine.Detector` holds besides its two stores, as
plain data, exactly: so that a run which saves it and a later run which restores it score
the rest of the stream byte for byte like one run over all of it.

Pure (no files): ``straycode/statedir.py`` writes these to a state directory.

* the clock and the pending codes' timers: ``watermark``, the deadline heap with the
  sequence numbers that order equal deadlines, the next sequence number;
* the population frequencies (they stand in for p(value | attacker) in every score);
* the counters (``stats``: they do not change scores, the state's manifest reports them).

Network states are written with their own exact codec here (every counter as the float it
is): ``NetworkState.to_bytes()`` rounds its counters to 4 digits, which is fine for a Faust
table but would make a restored run score a few codes differently in the last digits.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import orjson

from .population import Population
from .state import NetworkState

if TYPE_CHECKING:                      # pragma: no cover
    from .engine import Detector

CORE_VERSION = 1
NETWORK_FIELDS = tuple(NetworkState.__slots__)


def export_core(det: "Detector") -> dict:
    """The clock, the timers (a sorted list is a heap; entries are unique by sequence
    number, so the restored heap pops in exactly the same order) and the counters."""
    return {"version": CORE_VERSION, "watermark": det.watermark, "seq": det._seq,
            "heap": [list(entry) for entry in sorted(det._heap)],
            "stats": dict(sorted(det.stats.items()))}


def restore_core(det: "Detector", data: dict) -> None:
    if data.get("version") != CORE_VERSION:
        raise ValueError(f"detector core snapshot version {data.get('version')!r}, "
                         f"expected {CORE_VERSION}")
    det.watermark = float(data["watermark"])
    det._seq = int(data["seq"])
    det._heap = [(float(d), int(s), u, c) for d, s, u, c in data["heap"]]   # sorted: a heap
    det.stats = Counter(data["stats"])


def pending_codes(det: "Detector") -> int:
    """Pending codes a saved state carries over (one timer per code that is still pending)."""
    users = det.users
    return sum(1 for _d, _s, user_id, code_id in det._heap
               if (state := users.get(user_id)) is not None and code_id in state.pending)


def population_to_bytes(population: Population) -> bytes:
    """{"counts": {name: [[value, count], ...]}, "totals": {name: n}}, sorted: same
    population, same bytes."""
    return orjson.dumps({
        "version": 1,
        "counts": {name: sorted(table.items()) for name, table in sorted(population.counts.items())},
        "totals": dict(sorted(population.totals.items()))})


def population_from_bytes(data: bytes) -> Population:
    obj = orjson.loads(data)
    if obj.get("version") != 1:
        raise ValueError(f"population snapshot version {obj.get('version')!r}, expected 1")
    population = Population()
    for name, pairs in obj["counts"].items():
        population.counts[name] = {value: count for value, count in pairs}
    for name, total in obj["totals"].items():
        population.totals[name] = total
    return population


def population_size(population: Population) -> int:
    return sum(len(table) for table in population.counts.values())


def network_to_bytes(state: NetworkState) -> bytes:
    """Every field as it is (floats exact, the user map as pairs: its keys are ints)."""
    values = []
    for name in NETWORK_FIELDS:
        value = getattr(state, name)
        values.append(list(value.items()) if isinstance(value, dict) else value)
    return orjson.dumps(values)


def network_from_bytes(data: bytes) -> NetworkState:
    values = orjson.loads(data)
    state = NetworkState()
    for name, value in zip(NETWORK_FIELDS, values, strict=True):
        if isinstance(getattr(state, name), dict):
            value = {k: v for k, v in value}
        setattr(state, name, value)
    return state
