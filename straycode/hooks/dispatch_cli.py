"""`straycode dispatch --alerts FILE [--follow]` or `--from-topic`: deliver alert actions.

From a JSONL file (replay output), or from the workers' alert topic (see topic_source.py).

Lines may be in any `alerts.format` (native, ocsf, both); a line that is none of them is
written to the hooks dead-letter file with its reason and skipped, never fatal.
Re-running over the same file is safe: submit() is idempotent per webhook-id.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from straycode.hooks.dispatcher import Dispatcher
from straycode.hooks.topic_source import follow_topic, submit_value
from straycode.logs import setup_logging
from straycode.settings import ConfigError, load_settings

log = logging.getLogger("straycode.hooks")
STOP = threading.Event()   # set by SIGTERM (or by an embedding program/test) to end --follow


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--alerts", help="JSONL file of alerts (any alerts.format)")
    source.add_argument("--from-topic", action="store_true",
                        help="consume the alert topic (kafka.topics.alerts) on kafka.broker")
    parser.add_argument("--idle-exit", type=float, default=0.0,
                        help="--from-topic: exit after this many idle seconds (0 = run forever)")
    parser.add_argument("--follow", action="store_true",
                        help="keep reading lines appended to the file (like tail -f)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="without --follow: stop retrying after this many seconds")
    parser.add_argument("--poll", type=float, default=0.5, help="--follow poll interval (s)")
    parser.add_argument("--release-held", action="store_true",
                        help="send lockouts held by the circuit breaker (after review)")


def _submit_line(disp: Dispatcher, line: str, where: str) -> int:
    return submit_value(disp, line.encode("utf-8"), where)


def run(args: argparse.Namespace) -> int:
    setup_logging(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)   # it logs full URLs (query tokens)
    try:
        disp = Dispatcher(load_settings(getattr(args, "config", None)))
    except (ConfigError, OSError) as exc:       # bad config, missing file, unusable outbox
        print(f"straycode dispatch: {exc}", file=sys.stderr)
        return 2
    if args.from_topic:
        return _run_topic(disp, args)
    if not os.path.isfile(args.alerts):
        print(f"straycode dispatch: no such alerts file: {args.alerts}", file=sys.stderr)
        disp.close()
        return 2
    STOP.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    queued = 0
    try:
        if args.release_held:
            disp.release_held()
        with open(args.alerts, "rb") as fh:
            n = 0
            while not STOP.is_set():
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
        stats = disp.run_until_idle(args.timeout)
    except KeyboardInterrupt:
        stats = {}
    finally:
        disp.close()
    print(json.dumps({"queued": queued, **stats}, sort_keys=True))
    return 0


def _run_topic(disp: Dispatcher, args: argparse.Namespace) -> int:
    kcfg = load_settings(getattr(args, "config", None))["kafka"]
    STOP.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    queued, stats = 0, {}
    try:
        if args.release_held:
            disp.release_held()
        queued = follow_topic(disp, kcfg, kcfg["topics"]["alerts"], STOP, args.idle_exit)
        stats = disp.run_until_idle(args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        disp.close()
    print(json.dumps({"queued": queued, **stats}, sort_keys=True))
    return 0
