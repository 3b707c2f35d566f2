"""`straycode dispatch --alerts FILE [--follow]` or `--from-topic`: deliver alert actions.

From a JSONL file (replay output), or from the workers' alert topic (see topic_source.py).

Lines may be in any `alerts.format` (native, ocsf, both); a line that is none of them is
written to the hooks dead-letter file with its reason and skipped, never fatal.
Re-running over the same file is safe: submit() is idempotent per webhook-id; dead
deliveries are queued again only by `--redrive`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from straycode.hooks.dispatcher import Dispatcher
from straycode.hooks.topic_source import follow_topic, submit_value
from straycode.logs import setup_logging
from straycode.settings import ConfigError, load_settings

log = logging.getLogger("straycode.hooks")
STOP = threading.Event()   # set by SIGTERM/SIGINT (or an embedding program/test): drain, exit


DEFAULT_TIMEOUT_S = 300.0


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--alerts", help="JSONL file of alerts (any alerts.format)")
    source.add_argument("--from-topic", action="store_true",
                        help="consume the alert topic (kafka.topics.alerts) on kafka.broker")
    parser.add_argument("--idle-exit", type=float, default=0.0,
                        help="--from-topic: exit after this many idle seconds (0 = run forever)")
    parser.add_argument("--follow", action="store_true",
                        help="keep reading lines appended to the file (like tail -f)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock bound on the whole run in seconds (default: "
                             f"{DEFAULT_TIMEOUT_S:g}; with --follow/--from-topic: none); "
                             "attempts still in flight then are abandoned and stay queued")
    parser.add_argument("--poll", type=float, default=0.5, help="--follow poll interval (s)")
    parser.add_argument("--release-held", action="store_true",
                        help="send lockouts held by the circuit breaker (after review)")
    parser.add_argument("--redrive", action="store_true",
                        help="queue dead deliveries again (same webhook-id, attempts reset)")
    parser.add_argument("--endpoint", help="--redrive: only this endpoint's deliveries")
    parser.add_argument("--alert-id", help="--redrive: only this alert's deliveries")


def _stop_on_signals() -> dict:
    """SIGTERM/SIGINT drain: no new attempts, in-flight ones get hooks.drain_s, then exit.
    Returns the previous handlers (restored when the run ends)."""
    STOP.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: STOP.set())
    return previous


def _submit_line(disp: Dispatcher, line: str, where: str) -> int:
    return submit_value(disp, line.encode("utf-8"), where)


def run(args: argparse.Namespace) -> int:
    setup_logging(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)   # it logs full URLs (query tokens)
    started = time.monotonic()
    following = bool(args.follow or args.from_topic)
    timeout = args.timeout if args.timeout is not None else (
        None if following else DEFAULT_TIMEOUT_S)
    deadline = None if timeout is None else started + timeout
    if not (args.alerts or args.from_topic or args.redrive or args.release_held):
        print("straycode dispatch: give --alerts FILE, --from-topic, --redrive or "
              "--release-held", file=sys.stderr)
        return 2
    if (args.endpoint or args.alert_id) and not args.redrive:
        print("straycode dispatch: --endpoint/--alert-id only filter --redrive", file=sys.stderr)
        return 2
    if args.alerts and not os.path.isfile(args.alerts):
        print(f"straycode dispatch: no such alerts file: {args.alerts}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(getattr(args, "config", None))
        disp = Dispatcher(settings, stop=STOP)
    except (ConfigError, OSError) as exc:       # bad config, missing file, unusable outbox
        print(f"straycode dispatch: {exc}", file=sys.stderr)
        return 2
    previous_handlers = _stop_on_signals()
    queued, summary = 0, {}
    try:
        if args.release_held:
            disp.release_held()
        if args.redrive:
            summary["redriven"] = disp.redrive(args.endpoint, args.alert_id)
        if args.from_topic:
            kcfg = settings["kafka"]
            queued = follow_topic(disp, kcfg, kcfg["topics"]["alerts"], STOP, args.idle_exit,
                                  deadline=deadline)
        elif args.alerts:
            queued = _read_file(disp, args, deadline)
        remaining = DEFAULT_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        summary.update(disp.run_until_idle(remaining))
    finally:
        disp.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    if STOP.is_set():
        summary["stopped"] = True
    if summary.get("dead_total"):
        log.warning("hooks: %d dead deliveries in the outbox; after fixing the cause, "
                    "`straycode dispatch --redrive [--endpoint NAME] [--alert-id ID]`",
                    summary["dead_total"])
    print(json.dumps({"queued": queued, **summary}, sort_keys=True))
    return 0


def _read_file(disp: Dispatcher, args: argparse.Namespace, deadline: float | None) -> int:
    """Submit every complete line (with --follow: until stopped or the deadline)."""
    queued = 0
    with open(args.alerts, "rb") as fh:
        n = 0
        while not STOP.is_set() and (deadline is None or time.monotonic() < deadline):
            pos = fh.tell()
            raw = fh.readline()
            if raw.endswith(b"\n") or (raw and not args.follow):
                n += 1
                line = raw.decode("utf-8", errors="replace")
                if line.strip():
                    queued += _submit_line(disp, line, f"{args.alerts}:{n}")
                continue
            fh.seek(pos)                  # partial line still being written: wait
            if not args.follow:
                break
            disp.run_once()
            STOP.wait(args.poll)
    return queued
