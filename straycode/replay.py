"""`straycode replay`: the embedded pipeline. JSONL events in, alerts and scores out, no broker.

Same input, same output: the detector uses event time only, and outputs are written in
the order the detector produces them.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from tqdm import tqdm

from .detector.alerts import Alert, ScoreRecord
from .detector.contract import ContractError, decode_line, utc_iso
from .detector.deadletter import DeadLetter
from .detector.engine import Detector
from .detector.ocsf import render_alert
from .detector.timecheck import SKEW_REASON, TimeBounds
from . import statedir
from .components import build_enricher, load_learned
from .jsonl import DeadLetters, open_input, read_lines
from .runtime import tune_gc
from .settings import detector_settings, load_settings


def build_detector(settings: dict, geoip_db: str | None = None, asn_db: str | None = None,
                   users=None, networks=None) -> Detector:
    return Detector(detector_settings(settings), build_enricher(settings, geoip_db, asn_db),
                    users=users, networks=networks, learned=load_learned(settings))


class Feeder:
    """Hands input lines to a detector the one way replay and backfill share: decode,
    event-time sanity against the detector's clock, process; bad input goes to the dead
    letters with its reason and changes nothing."""

    def __init__(self, detector: Detector, settings: dict, dead: DeadLetters, emit):
        self.detector = detector
        self.max_bytes = settings["input"]["max_line_bytes"]
        self.bounds = TimeBounds.from_settings(settings["input"])
        self.dead = dead
        self.emit = emit
        self.events = 0

    def line(self, where: dict, line: bytes | None, size: int, event=None) -> None:
        """One input line (None: too long to hold); `event` when already decoded (a
        ContractError instance when decoding failed)."""
        if line is None:              # not held in memory: its size says what it was
            self.dead.put(DeadLetter.of("too_large", f"{size} bytes > limit {self.max_bytes}",
                                        where, None, size=size))
            return
        detector = self.detector
        try:
            if event is None:
                event = decode_line(line, self.max_bytes)
            elif isinstance(event, ContractError):
                raise event
            skew = self.bounds.problem(event.t, detector.watermark)
            if skew is not None:      # one wild clock must not decide everyone's codes
                raise ContractError(SKEW_REASON, skew)
            outputs = detector.process(event)   # may refuse before changing anything
        except ContractError as exc:
            self.dead.put(DeadLetter.of(exc.reason, exc.detail, where, line))
            return
        self.events += 1
        self.emit(outputs)


def open_state(state_dir: str | None, settings: dict, accept_settings_change: bool) -> dict | None:
    """The manifest of the state to continue (None: start empty), checked before any work."""
    if state_dir is None:
        return None
    manifest = statedir.read_manifest(state_dir)
    if manifest is not None:
        statedir.check_settings(state_dir, manifest, settings, accept_settings_change)
    return manifest


def state_summary(state_dir: str, manifest: dict, carried: int) -> dict:
    counts = manifest["counts"]
    return {"state": state_dir, "state_generation": manifest["generation"],
            "state_watermark": manifest["watermark_ts"], "state_users": counts["users"],
            "state_networks": counts["networks"], "pending_carried_over": carried}


def run_replay(events_path: str, alerts_path: str | Path, scores_path: str | Path,
               dead_letter_path: str | Path | None, settings: dict, geoip_db: str | None = None,
               asn_db: str | None = None, progress: bool = True, dispatch: bool = False,
               state_dir: str | None = None, flush_pending: bool | None = None,
               accept_settings_change: bool = False) -> dict:
    """Replay a JSONL file through the detector; returns the closing summary.

    With `dispatch`, alerts are also handed to the hooks dispatcher (durable outbox) and
    delivered before returning. Off by default: replaying history must not lock anyone out.

    With `state_dir`, the detector starts from the state saved there (when there is one)
    and its state is saved there at the end (statedir.py), so that replaying January and
    then February gives February the outputs one run over both would. Codes still waiting
    for their entry at the end are then carried over in the state, not decided
    (`flush_pending` decides them anyway, as a run without a state does at its end).
    """
    manifest = open_state(state_dir, settings, accept_settings_change)
    if flush_pending is None:
        flush_pending = state_dir is None
    detector = build_detector(settings, geoip_db, asn_db)
    enrichment = statedir.enrichment_fingerprint(detector)
    if manifest is not None:
        statedir.restore(detector, manifest)
        statedir.check_enrichment(state_dir, manifest, enrichment)
    stats_before = Counter(detector.stats)
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

        feeder = Feeder(detector, settings, dead, emit)
        try:
            for number, line, size in read_lines(source, max_bytes):
                counts["lines"] += 1
                bar.update(size)
                feeder.line({"line": number}, line, size)
            counts["events"] = feeder.events
            if flush_pending:
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
    extra = {}
    if state_dir is not None:
        run = {"command": "replay", "inputs": [str(events_path)], "events": counts["events"],
               "flushed": flush_pending, "finished_at": utc_iso(time.time())}
        saved = statedir.save(detector, state_dir, settings, run, manifest, enrichment)
        extra = state_summary(state_dir, saved, saved["counts"]["pending_codes"])
    elapsed = time.perf_counter() - started
    stats = detector.stats - stats_before
    return dict(counts, dead_letters=dead.total, dead_letter_reasons=dict(sorted(dead.counts.items())),
                duplicates=stats["duplicates"], feedback_unmatched=stats["feedback_unmatched"],
                verified_unmatched=stats["verified_unmatched"],
                verified_early=stats["verified_early"], users=len(detector.users),
                geoip_lookups=detector.enricher.lookups, seconds=round(elapsed, 3),
                events_per_s=round(counts["events"] / elapsed, 1) if elapsed else None, **extra)


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
    add_state_options(parser)


def add_state_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--state", metavar="DIR", required=required,
                        help="continue from the detector state saved in DIR (when there is one) "
                             "and save it there at the end, atomically")
    parser.add_argument("--flush-pending", action="store_true",
                        help="with --state: decide the codes still waiting for their entry at the "
                             "end, as if their window had passed (default: carry them over to the "
                             "next run, which may still see them entered)")
    parser.add_argument("--accept-settings-change", action="store_true",
                        help="continue a state built under other detector settings (warns)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        summary = run_replay(args.events, args.alerts, args.scores, args.dead_letter, settings,
                             args.geoip_db, args.asn_db, progress=not args.no_progress,
                             dispatch=args.dispatch, state_dir=args.state,
                             flush_pending=True if args.flush_pending else None,
                             accept_settings_change=args.accept_settings_change)
    except FileNotFoundError as exc:
        print(f"straycode replay: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0
