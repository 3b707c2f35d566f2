"""What a :class:`~straycode.detector.engine.Detector` holds besides its two stores, as
plain data, exactly: so that a run which saves it and a later run which restores it score
the rest of the stream byte for byte like one run over all of it.

Pure (no files): ``straycode/statedir.py`` writes these to a state directory.

* the clock, the pending codes' timers and the counters: ``Detector.export_core()`` /
  ``restore_core()`` (in the engine, which owns them);
* the population frequencies (they stand in for p(value | attacker) in every score).

Network states are saved with ``NetworkState.to_bytes(exact=True)`` (every counter as the
float it is): the rounded form a Faust table holds would make a restored run score a few
codes differently in the last digits.
"""
from __future__ import annotations

import orjson

from .population import Population


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


