"""`straycode load-state DIR`: write a saved detector state into the Kafka deployment so
that workers start warm (streams/handover.py). Run it once, with the workers stopped and
before they first start, after `straycode backfill ... --state DIR`."""
from __future__ import annotations

import argparse

from .connection import command_settings


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("state", metavar="DIR", help="state directory written by backfill or replay --state")
    p.add_argument("--broker", help="override kafka.broker (kafka://host:port)")
    p.add_argument("--app-id", help="override kafka.app_id (the workers' group and changelog prefix)")
    p.add_argument("--force", action="store_true",
                   help="write even when the changelogs already hold records (the newer "
                        "records win per key; stop the workers and empty their --datadir)")
    p.add_argument("--accept-settings-change", action="store_true",
                   help="load a state built under other detector settings (warns)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .handover import load_state

    settings = command_settings(args)
    summary = load_state(settings, args.state, force=args.force,
                         accept_settings_change=args.accept_settings_change,
                         progress=not args.no_progress)
    print("load-state summary")
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value}")
    return 0
