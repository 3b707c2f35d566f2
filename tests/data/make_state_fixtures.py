"""Writes state_v3.json: user and network states as stored by the code before the typed
records (commit 1aba244, UserState version 3, NetworkState version 1), for
tests/test_state_codec.py. Run once with that code; do not regenerate with a newer codec
(the point of the file is to hold bytes the *old* writer produced).

    .venv/bin/python tests/data/make_state_fixtures.py

A small simulation (out-of-order and duplicated delivery, so that held code entries and
codes entered before their login occur) is replayed through a Detector until the
snapshots cover every kind of stored record: pending codes (entered, waiting), decided
codes with and without context in every status, sessions of each kind (plain, learned, entered before the login arrived), held code
entries, trusted and untrusted devices, a last verified place. Each snapshot is the state
of one user right after one event (named "<user>@<event number>"), kept when it shows a
kind of record no earlier snapshot showed.

Next to each user's bytes the file holds a *named* view of the records, written from the
version-3 positions declared below (the layout of today's writer, independent of the new
codec), so the test can check that the codec reads every field by the right name. Version
2 (before held code entries) is the same list without its last element; the file holds
those bytes too, for the users without held entries.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import orjson

# the version-3 wire layout, field by field (as detector/state.py wrote it at 1aba244)
PENDING = ["id", "t", "ts", "session_id", "channel", "purpose", "ctx", "verified", "failed",
           "deadline"]
DECIDED = ["id", "t", "score", "severity", "flow", "alerted", "purpose", "channel", "reasons",
           "ctx", "status"]
SESSION = ["t", "password_ok", "ctx", "learned"]          # learned -1: entered before its login
HELD = ["t", "session_id", "success"]
DEVICE = ["first_seen", "last_seen", "count", "trusted", "browser"]
FEATURE = ["count", "last_seen"]
PLACE = ["t", "lat", "lon", "city"]
CONTEXT = ["ip", "prefix", "network", "asn", "as_org", "country", "city", "lat", "lon",
           "private", "device_id", "user_agent", "browser", "os"]
BASELINE = ["feats", "devices", "hours", "proven", "last_place", "pw_changed"]
USER = ["version", "baseline", "sessions", "pending", "recent", "code_times", "seen", "early"]


def named(fields: list[str], values: list | None) -> dict | None:
    if values is None:
        return None
    assert len(fields) == len(values), (fields, values)
    return dict(zip(fields, values))


def named_user(raw: bytes) -> dict:
    doc = named(USER, orjson.loads(raw))
    base = named(BASELINE, doc["baseline"])
    base["feats"] = {name: {v: named(FEATURE, e) for v, e in table.items()}
                     for name, table in base["feats"].items()}
    base["devices"] = {d: named(DEVICE, e) for d, e in base["devices"].items()}
    base["last_place"] = named(PLACE, base["last_place"])
    doc["baseline"] = base

    def with_ctx(record: dict) -> dict:
        record["ctx"] = named(CONTEXT, record["ctx"])
        return record
    doc["sessions"] = {s: with_ctx(named(SESSION, v)) for s, v in doc["sessions"].items()}
    doc["pending"] = {c: with_ctx(named(PENDING, v)) for c, v in doc["pending"].items()}
    doc["recent"] = [with_ctx(named(DECIDED, r)) for r in doc["recent"]]
    doc["early"] = [named(HELD, e) for e in doc["early"]]
    return doc


def kinds(doc: dict) -> set[str]:
    """What a named user state shows, for choosing a covering set of users."""
    out = set()
    for p in doc["pending"].values():
        out.add("pending_verified" if p["verified"] else "pending_failed" if p["failed"] else "pending")
        out.add("pending_ctx" if p["ctx"] else "pending_no_ctx")
    for r in doc["recent"]:
        out.add(f"decided_{r['status']}")
        out.add("decided_ctx" if r["ctx"] else "decided_no_ctx")
        if r["alerted"]:
            out.add("decided_alerted")
    for s in doc["sessions"].values():
        out.add({-1: "session_entered_early", 0: "session", 1: "session_learned"}[s["learned"]])
    if doc["early"]:
        out.add("held_entries")
    if any(d["trusted"] for d in doc["baseline"]["devices"].values()):
        out.add("trusted_device")
    if doc["baseline"]["last_place"]:
        out.add("last_place")
    return out


WANTED = {"pending", "pending_verified", "pending_ctx", "decided_open",
          "decided_escalated", "decided_benign", "decided_ctx", "decided_no_ctx",
          "decided_alerted", "session", "session_learned", "session_entered_early",
          "held_entries", "trusted_device", "last_place"}


def main(out: Path) -> None:
    from straycode.detector.contract import decode_line
    from straycode.detector.engine import Detector
    from straycode.detector.enrich import Enricher
    from straycode.models.sim_config import SimConfig
    from straycode.detector.enrich import default_city_db
    from straycode.models.simulate import simulate
    from straycode.settings import detector_settings, load_settings

    db = default_city_db()
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "ev.jsonl"
        cfg = SimConfig(users=1500, days=20, seed=5, geoip_db=db, out_of_order=0.08,
                        duplicates=0.03)
        cfg.attack_shares = {k: v * 6 for k, v in cfg.attack_shares.items()}
        cfg.feedback_odd = 1.0
        simulate(cfg, events, Path(tmp) / "lab.jsonl")
        lines = events.read_bytes().splitlines()
    det = Detector(detector_settings(load_settings()), Enricher(db, None))
    chosen: dict[str, bytes] = {}          # snapshot name -> the user's stored bytes then
    covered: set[str] = set()
    for n, line in enumerate(lines):
        event = decode_line(line)
        det.process(event)
        raw = det.users[event.user_id].to_bytes()
        new = kinds(named_user(raw)) - covered
        if new:
            chosen[f"{event.user_id}@{n}"] = raw
            covered |= new
    if not WANTED <= covered:
        sys.exit(f"not covered: {WANTED - covered}")
    users = {u: raw.decode() for u, raw in chosen.items()}
    v2 = {}
    for u, raw in chosen.items():
        version, *fields, early = orjson.loads(raw)
        if not early:                        # version 2 = version 3 without held entries
            v2[u] = orjson.dumps([2, *fields]).decode()
    networks = {k: det.networks[k].to_bytes().decode() for k in sorted(det.networks)[:6]}
    doc = {"made_by": "tests/data/make_state_fixtures.py at 1aba244 (UserState v3)",
           "users_v3": users, "users_v2": v2, "networks_v1": networks,
           "named": {u: named_user(raw) for u, raw in chosen.items()}}
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(users)} user states ({len(v2)} also as v2), {len(networks)} networks")


if __name__ == "__main__":
    main(Path(__file__).with_name("state_v3.json"))
