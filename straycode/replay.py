"""`straycode replay`: the embedded pipeline. JSONL events in, alerts and scores out, no broker.

Same input, same output: the detector uses event time only, and outputs are written in
the order the detector produces them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson
from tqdm import tqdm

from .detector.alerts import Alert, ScoreRecord
from .detector.contract import ContractError, decode_line
from .detector.deadletter import DeadLetter
from .detector.engine import Detector
from .detector.ocsf import render_alert
from .detector.timecheck import SKEW_REASON, TimeBounds
from .components import build_enricher, load_learned
from .jsonl import DeadLetters, open_input, read_lines
from .runtime import tune_gc
from .settings import detector_settings, load_settings


def build_detector(settings: dict, geoip_db: str | None = None, asn_db: str | None = None) -> Detector:
    return Detector(detector_settings(settings), build_enricher(settings, geoip_db, asn_db),
                    learned=load_learned(settings))


def run_replay(events_path: str, alerts_path: str | Path, scores_path: str | Path,
               dead_letter_path: str | Path | None, settings: dict, geoip_db: str | None = None,
               asn_db: str | None = None, progress: bool = True, dispatch: bool = False) -> dict:
    """Replay a JSONL file through the detector; returns the closing summary.

    With `dispatch`, alerts are also handed to the hooks dispatcher (durable outbox) and
    delivered before returning. Off by default: replaying history must not lock anyone out.
    """
    detector = build_detector(settings, geoip_db, asn_db)
    tune_gc()
    dispatcher = None
    if dispatch:
        from .hooks.dispatcher import Dispatcher
        dispatcher = Dispatcher(settings)
        counts_extra = {"hook_deliveries_queued": 0}
    else:
        counts_extra = {}
    fmt = settings["alerts"]["format"]
    max_bytes = settings["input"]["max_line_bytes"]
    bounds = TimeBounds.from_settings(settings["input"])
    dead = DeadLetters(dead_letter_path)
    counts = {"lines": 0, "events": 0, "scores": 0, "alerts": 0, "alert_updates": 0, **counts_extra}
    started = time.perf_counter()
    source = open_input(events_path)
    total = Path(events_path).stat().st_size if events_path != "-" else None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay", disable=not progress,
               file=sys.stderr, mininterval=0.5)
    with open(alerts_path, "wb") as alerts_out, open(scores_path, "wb") as scores_out:
        def emit(outputs: list) -> None:
            for item in outputs:
                if isinstance(item, ScoreRecord):
                    counts["scores"] += 1
                    scores_out.write(orjson.dumps(item.to_dict()) + b"\n")
                elif isinstance(item, Alert):
                    counts["alerts" if item.kind == "created" else "alert_updates"] += 1
                    native = item.to_dict()
                    alerts_out.write(orjson.dumps(render_alert(native, fmt)) + b"\n")
                    if dispatcher is not None:
                        counts["hook_deliveries_queued"] += dispatcher.submit(native)

        try:
            for number, line, size in read_lines(source, max_bytes):
                counts["lines"] += 1
                bar.update(size)
                where = {"line": number}
                if line is None:          # not held in memory: its size says what it was
                    dead.put(DeadLetter.of("too_large", f"{size} bytes > limit {max_bytes}",
                                           where, None, size=size))
                    continue
                try:
                    event = decode_line(line, max_bytes)
                    skew = bounds.problem(event.t, detector.watermark)
                    if skew is not None:  # one wild clock must not decide everyone's codes
                        raise ContractError(SKEW_REASON, skew)
                    outputs = detector.process(event)   # may refuse before changing anything
                except ContractError as exc:
                    dead.put(DeadLetter.of(exc.reason, exc.detail, where, line))
                    continue
                counts["events"] += 1
                emit(outputs)
            emit(detector.flush())
            if dispatcher is not None:
                delivered = dispatcher.run_until_idle(settings["hooks"]["timeout_s"] * 6)
                counts["hooks"] = {k: v for k, v in sorted(delivered.items())}
        finally:
            if dispatcher is not None:
                dispatcher.close()
            bar.close()
            dead.close()
            if source is not sys.stdin.buffer:
                source.close()
            detector.enricher.close()
    elapsed = time.perf_counter() - started
    stats = detector.stats
    return dict(counts, dead_letters=dead.total, dead_letter_reasons=dict(sorted(dead.counts.items())),
                duplicates=stats["duplicates"], feedback_unmatched=stats["feedback_unmatched"],
                verified_unmatched=stats["verified_unmatched"],
                verified_early=stats["verified_early"], users=len(detector.users),
                geoip_lookups=detector.enricher.lookups, seconds=round(elapsed, 3),
                events_per_s=round(counts["events"] / elapsed, 1) if elapsed else None)


def print_summary(summary: dict, out=sys.stdout) -> None:
    print("replay summary", file=out)
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value}", file=out)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", help="JSONL events file, '-' for stdin")
    parser.add_argument("--alerts", required=True, help="alerts output (JSONL)")
    parser.add_argument("--scores", required=True, help="one line per code_issued (JSONL)")
    parser.add_argument("--dead-letter", help="bad input lines with line number and reason (JSONL)")
    parser.add_argument("--geoip-db", help="GeoIP2/DB-IP City .mmdb (default: config, then DB-IP City Lite)")
    parser.add_argument("--asn-db", help="GeoIP2/GeoLite2 ASN .mmdb (optional)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dispatch", action="store_true",
                        help="also deliver alert actions to the configured webhooks (hooks.endpoints)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        summary = run_replay(args.events, args.alerts, args.scores, args.dead_letter, settings,
                             args.geoip_db, args.asn_db, progress=not args.no_progress,
                             dispatch=args.dispatch)
    except FileNotFoundError as exc:
        print(f"straycode replay: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0
