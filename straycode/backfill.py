"""`straycode backfill EVENTS... --state DIR`: build detector state from history, no alerts.

Runs the same detector as `straycode replay` over months of logs and saves its state
(statedir.py), so that `replay --state DIR` or Kafka workers loaded with
`straycode load-state DIR` start warm instead of every user being new.

* Several files are read together in event-time order: a k-way merge that always takes
  the earliest next event among the files, keeping each file's own order (so each file
  should be sorted by time, as logs exported per day or per shard are; one unsorted file
  is processed in its own order, exactly as `replay` would). Equal times go in the order
  the files were given.
* Memory stays bounded: user and network states live in RocksDB (rocksdict) in a work
  directory beside the state, with a bounded cache of decoded states (`--cache-users`).
* Nothing is dropped silently: bad lines go to `--dead-letter` (with file and line) and
  are counted; the alerts the history would have raised are counted, not written.
"""
from __future__ import annotations

import argparse
import heapq
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from . import statedir
from .detector.alerts import Alert, ScoreRecord
from .detector.contract import ContractError, decode_line, utc_iso
from .detector.state import NetworkState, UserState
from .diskstore import DiskStore
from .jsonl import DeadLetters, read_lines
from .replay import Feeder, add_state_options, build_detector, open_state
from .runtime import tune_gc
from .settings import load_settings


def _file_events(index: int, path: str, max_bytes: int, bar) -> Iterator[tuple]:
    """(t, file index, where, line, size, event | ContractError | None) for one file; a
    line that does not decode keeps the time of the last good line before it (it stays
    where it was in its file)."""
    last_t = float("-inf")
    with open(path, "rb") as source:
        for number, line, size in read_lines(source, max_bytes):
            bar.update(size)
            where = {"file": path, "line": number}
            if line is None:
                yield last_t, index, where, None, size, None
                continue
            try:
                event = decode_line(line, max_bytes)
                last_t = event.t
            except ContractError as exc:
                event = exc
            yield last_t, index, where, line, size, event


def merged(paths: list[str], max_bytes: int, bar) -> Iterator[tuple]:
    """Every line of every file, earliest event first (ties: file order, then line order)."""
    streams = [_file_events(i, p, max_bytes, bar) for i, p in enumerate(paths)]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda item: (item[0], item[1]))


def run_backfill(paths: list[str], state_dir: str, settings: dict, *,
                 dead_letter_path: str | None = None, geoip_db: str | None = None,
                 asn_db: str | None = None, cache_users: int = 20_000,
                 cache_networks: int = 50_000, progress: bool = True,
                 flush_pending: bool = False, accept_settings_change: bool = False,
                 work_dir: str | None = None) -> dict:
    """Run the detector over `paths` (merged by event time) starting from the state in
    `state_dir` (if any) and save the result there. Returns the summary."""
    for path in paths:                        # a missing input is reported before any work
        if not Path(path).is_file():
            raise FileNotFoundError(2, "No such file", path)
    manifest = open_state(state_dir, settings, accept_settings_change)
    root = Path(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".backfill-", dir=work_dir or root))
    started = time.perf_counter()
    users = DiskStore(work / "users", UserState.to_bytes, UserState.from_bytes, cache_users)
    networks = DiskStore(work / "networks", _exact_network_bytes, NetworkState.from_bytes,
                         cache_networks)
    detector = build_detector(settings, geoip_db, asn_db, users=users, networks=networks)
    enrichment = statedir.enrichment_fingerprint(detector)
    dead = DeadLetters(dead_letter_path)
    counts = Counter()
    try:
        if manifest is not None:
            statedir.restore(detector, manifest)
            statedir.check_enrichment(state_dir, manifest, enrichment)
        loaded_s = time.perf_counter() - started
        stats_before = Counter(detector.stats)
        tune_gc()

        def emit(outputs: list) -> None:
            for item in outputs:
                if isinstance(item, ScoreRecord):
                    counts["codes_decided"] += 1
                elif isinstance(item, Alert):
                    counts["alerts_not_written" if item.kind == "created"
                           else "alert_updates_not_written"] += 1

        feeder = Feeder(detector, settings, dead, emit)
        total = sum(Path(p).stat().st_size for p in paths)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="backfill", disable=not progress,
                   file=sys.stderr, mininterval=0.5)
        first_t = last_t = None
        processing = time.perf_counter()
        try:
            for _t, _i, where, line, size, event in merged(paths, settings["input"]["max_line_bytes"],
                                                            bar):
                counts["lines"] += 1
                before = feeder.events
                feeder.line(where, line, size, event)
                if feeder.events > before:
                    first_t = event.t if first_t is None else first_t
                    last_t = event.t
            if flush_pending:
                emit(detector.flush())
        finally:
            bar.close()
            dead.close()
            detector.enricher.close()
        processed_s = time.perf_counter() - processing
        run = {"command": "backfill", "inputs": [str(p) for p in paths], "events": feeder.events,
               "first_ts": utc_iso(first_t) if first_t is not None else None,
               "last_ts": utc_iso(last_t) if last_t is not None else None,
               "flushed": flush_pending, "finished_at": utc_iso(time.time())}
        saving = time.perf_counter()
        saved = statedir.save(detector, root, settings, run, manifest, enrichment)
        save_s = time.perf_counter() - saving
    finally:
        users.close()
        networks.close()
        shutil.rmtree(work, ignore_errors=True)
    stats = detector.stats - stats_before
    gen = Path(saved["_generation"])
    size = sum(f.stat().st_size for f in gen.iterdir())
    scount = saved["counts"]
    return {"inputs": len(paths), "lines": counts["lines"], "events": feeder.events,
            "codes_decided": counts["codes_decided"],
            "alerts_not_written": counts["alerts_not_written"],
            "alert_updates_not_written": counts["alert_updates_not_written"],
            "dead_letters": dead.total,
            "dead_letter_reasons": dict(sorted(dead.counts.items())),
            "duplicates": stats["duplicates"],
            "first_event": run["first_ts"], "last_event": run["last_ts"],
            "state": str(root), "state_generation": saved["generation"],
            "state_watermark": saved["watermark_ts"], "state_users": scount["users"],
            "state_networks": scount["networks"],
            "population_values": scount["population_values"],
            "pending_carried_over": scount["pending_codes"],
            "state_bytes": size,
            "seconds_load": round(loaded_s, 3), "seconds_events": round(processed_s, 3),
            "seconds_save": round(save_s, 3),
            "events_per_s": round(feeder.events / processed_s, 1) if processed_s else None,
            "store_reads": users.reads + networks.reads,
            "store_writes": users.writes + networks.writes,
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", nargs="+",
                        help="JSONL event files, each sorted by event time (read together in "
                             "event-time order; equal times in the order given)")
    add_state_options(parser, required=True)
    parser.add_argument("--dead-letter", help="bad input lines with file, line number and reason (JSONL)")
    parser.add_argument("--geoip-db", help="GeoIP2/DB-IP City .mmdb (default: config, then DB-IP City Lite)")
    parser.add_argument("--asn-db", help="GeoIP2/GeoLite2 ASN .mmdb (optional)")
    parser.add_argument("--cache-users", type=int, default=20_000,
                        help="decoded user states kept in memory (the rest are in RocksDB)")
    parser.add_argument("--work-dir", help="where the RocksDB work store goes (default: inside --state)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.cache_users < 1:
        raise statedir.StateError("--cache-users must be at least 1")
    summary = run_backfill(args.events, args.state, settings, dead_letter_path=args.dead_letter,
                           geoip_db=args.geoip_db, asn_db=args.asn_db,
                           cache_users=args.cache_users, progress=not args.no_progress,
                           flush_pending=args.flush_pending,
                           accept_settings_change=args.accept_settings_change,
                           work_dir=args.work_dir)
    print("backfill summary")
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value}")
    return 0


def _exact_network_bytes(state: NetworkState) -> bytes:
    return state.to_bytes(exact=True)
