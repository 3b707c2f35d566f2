"""Simulator speed: 10k users x 90 days should be written in under a minute.

Prints events/s, and as a same-run reference the rate at which the contract parser reads
those lines back, so numbers from different machines can be compared as a ratio.

    python -m bench.simulate_bench [--users 10000] [--days 90]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from straycode.detector.contract import parse_event
from straycode.models.sim_config import SimConfig
from straycode.detector.enrich import default_city_db
from straycode.models.sim_geo import build_world
from straycode.models.simulate import simulate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--geoip-db", default=default_city_db())
    args = p.parse_args()

    t = time.perf_counter()
    build_world(args.geoip_db)
    world_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        ev, lb = Path(tmp) / "events.jsonl", Path(tmp) / "labels.jsonl"
        cfg = SimConfig(users=args.users, days=args.days, seed=args.seed, geoip_db=args.geoip_db)
        t = time.perf_counter()
        stats = simulate(cfg, ev, lb)
        sim_s = time.perf_counter() - t
        size_mb = ev.stat().st_size / 1e6
        t = time.perf_counter()
        with open(ev, "rb") as fh:
            parsed = sum(1 for line in fh if parse_event(orjson.loads(line)))
        parse_s = time.perf_counter() - t

    total = world_s + sim_s
    print(f"population         {args.users} users x {args.days} days, seed {args.seed}")
    print(f"geoip world build  {world_s:8.2f} s (once per process, cached)")
    print(f"simulate + write   {sim_s:8.2f} s  {stats['events']} events, {size_mb:.0f} MB, "
          f"{stats['codes']} codes ({stats['attack_codes']} attacks)")
    print(f"simulator rate     {stats['events'] / sim_s:10.0f} events/s")
    print(f"reference: parse   {parsed / parse_s:10.0f} events/s (orjson + contract.parse_event)")
    print(f"ratio sim/parse    {(stats['events'] / sim_s) / (parsed / parse_s):8.2f}")
    print(f"total              {total:8.2f} s  (target < 60 s: {'OK' if total < 60 else 'MISSED'})")


if __name__ == "__main__":
    main()
