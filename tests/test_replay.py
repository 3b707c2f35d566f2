"""`straycode replay` end to end, as a user runs it (a subprocess of this interpreter):
bad lines land in the dead-letter file with line number and reason, stdin works, and the
golden scenario (tests/data/golden_events.jsonl, see make_golden.py) gives the intended
alerts, deterministically."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from straycode.detector.alerts import alert_id_for
from straycode.detector.policy import GUARDED

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden_events.jsonl"


def replay(geo_dbs, events: str, out: Path, *extra: str, stdin: bytes | None = None,
           fmt: str = "native") -> tuple[subprocess.CompletedProcess, Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    alerts, scores, dead = out / "alerts.jsonl", out / "scores.jsonl", out / "dead.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAYCODE")}
    env["STRAYCODE__ALERTS__FORMAT"] = fmt
    city, asn = geo_dbs
    proc = subprocess.run(
        [sys.executable, "-m", "straycode.cli", "replay", events, "--alerts", str(alerts),
         "--scores", str(scores), "--dead-letter", str(dead), "--geoip-db", str(city),
         "--asn-db", str(asn), "--no-progress", *extra],
        input=stdin, capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc, alerts, scores, dead


def summary(proc: subprocess.CompletedProcess) -> dict[str, str]:
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "replay summary"
    return {k: v.strip() for k, _, v in (line.strip().partition("  ") for line in lines[1:])}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ev(**fields) -> bytes:
    return orjson.dumps(fields)


LOGIN = dict(event_id="l1", type="login", ts="2026-03-02T09:00:00Z", user_id="bob", session_id="s1",
             password_ok=True, ip="175.16.199.7", device_id="d1")
CODE = dict(event_id="c1", type="code_issued", ts="2026-03-02T09:00:04Z", user_id="bob",
            session_id="s1", channel="sms", purpose="login")

BAD_FILE = [
    # (line bytes, expected reason or None for a valid event)
    (ev(**LOGIN), None),
    (b'{"event_id": "x1", "type": "login", ', "malformed_json"),
    (ev(**CODE), None),
    (ev(**dict(LOGIN, event_id="x2", type="logout")), "unknown_type"),
    (ev(**{k: v for k, v in LOGIN.items() if k != "session_id"} | {"event_id": "x3"}), "missing_field"),
    (ev(**dict(LOGIN, event_id="x4", password_ok="yes")), "wrong_type"),
    (ev(**dict(LOGIN, event_id="x5", ts="2026-03-02T09:00:00")), "bad_timestamp"),
    (ev(**dict(LOGIN, event_id="x6", ts="last tuesday")), "bad_timestamp"),
    (ev(**dict(LOGIN, event_id="x7", ip="999.1.1.1")), "bad_ip"),
    (ev(**dict(LOGIN, event_id="x8", user_agent="A" * 200_000)), "too_large"),
    (b"   ", None),                                   # blank: skipped, not an event, not an error
    (b"[1, 2]", "not_an_object"),
    (b'\xff\xfe\x00garbage', "malformed_json"),
    (ev(**dict(CODE, event_id="x9", channel="pigeon")), "bad_value"),
    (ev(event_id="c2", type="code_issued", ts="2026-03-02T09:30:00Z", user_id="carol",
        session_id=None, channel="email", purpose="password_reset", ip="67.43.156.9"), None),
]


@pytest.fixture(scope="module")
def bad_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "events.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in BAD_FILE) + b"\n")
    return path


def check_bad_file_outcome(proc, scores, dead):
    expected = {n: reason for n, (_, reason) in enumerate(BAD_FILE, start=1) if reason}
    letters = read_jsonl(dead)
    assert {d["line"]: d["reason"] for d in letters} == expected
    assert all(d["error"] for d in letters)
    big = next(d for d in letters if d["reason"] == "too_large")
    assert big["raw"] is None                               # never copied whole
    assert any(d["raw"] and d["raw"].startswith('{"event_id": "x1"') for d in letters)
    s = summary(proc)
    assert int(s["dead_letters"]) == len(expected)
    reasons = {}
    for r in expected.values():
        reasons[r] = reasons.get(r, 0) + 1
    assert s["dead_letter_reasons"] == str(dict(sorted(reasons.items())))
    assert int(s["events"]) == 3                           # every valid line still processed
    assert {r["code_event_id"] for r in read_jsonl(scores)} == {"c1", "c2"}


def test_every_bad_line_is_dead_lettered_with_line_and_reason(geo_dbs, bad_file, tmp_path):
    proc, _alerts, scores, dead = replay(geo_dbs, str(bad_file), tmp_path)
    check_bad_file_outcome(proc, scores, dead)


def test_stdin_input(geo_dbs, bad_file, tmp_path):
    proc, _alerts, scores, dead = replay(geo_dbs, "-", tmp_path, stdin=bad_file.read_bytes())
    check_bad_file_outcome(proc, scores, dead)


def test_missing_geoip_db_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAYCODE")}
    proc = subprocess.run(
        [sys.executable, "-m", "straycode.cli", "replay", str(GOLDEN), "--alerts", str(tmp_path / "a"),
         "--scores", str(tmp_path / "s"), "--geoip-db", str(tmp_path / "missing.mmdb"), "--no-progress"],
        capture_output=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert b"GeoIP database not found" in proc.stderr and b"missing.mmdb" in proc.stderr


# --------------------------------------------------------------------------- golden scenario

ATTACK = "atk-alice"
LEGIT = {"legit-alice-phone", "legit-carol-dynamic-ip", "early-alice"}
RESETS = {f"reset-bob-{i}" for i in range(1, 5)}
BOMBS = {f"bomb-bob-{i}" for i in range(1, 7)}


@pytest.fixture(scope="module")
def golden(geo_dbs, tmp_path_factory):
    runs = []
    for name in ("first", "second"):
        proc, alerts, scores, dead = replay(geo_dbs, str(GOLDEN), tmp_path_factory.mktemp(name))
        runs.append((proc, alerts, scores, dead))
    return runs


def test_golden_every_code_is_scored_once(golden):
    proc, _alerts, scores, dead = golden[0]
    codes = [json.loads(line)["event_id"] for line in GOLDEN.read_text().splitlines()
             if json.loads(line)["type"] == "code_issued"]
    records = read_jsonl(scores)
    assert sorted(r["code_event_id"] for r in records) == sorted(codes)
    assert dead.read_text() == ""
    s = summary(proc)
    assert (s["dead_letters"], s["verified_unmatched"], s["feedback_unmatched"]) == ("0", "0", "0")


def test_golden_alerts_exactly_the_attacks(golden):
    _proc, alerts, scores, _dead = golden[0]
    records = {r["code_event_id"]: r for r in read_jsonl(scores)}
    alerted = {c for c, r in records.items() if r["alerted"]}
    assert alerted == {ATTACK} | RESETS | BOMBS
    created = [a for a in read_jsonl(alerts) if a["kind"] == "created"]
    assert {a["code_event_id"] for a in created} == alerted
    assert all(not records[c]["alerted"] for c in LEGIT)
    history = [r for c, r in records.items() if c.startswith("g")]
    assert history and not any(r["alerted"] for r in history)


def test_golden_flows_and_actions(golden):
    _proc, alerts, scores, _dead = golden[0]
    records = {r["code_event_id"]: r for r in read_jsonl(scores)}
    atk = records[ATTACK]
    assert atk["flow"] == "password_verified"
    assert {"force_password_reset", "revoke_sessions", "notify_user"} <= set(atk["actions"])
    assert "lock_account" not in atk["actions"]
    for code in RESETS:
        assert records[code]["flow"] == "no_password"
        assert records[code]["actions"] == ["notify_user", "review"]
    assert "lock_account" in records["bomb-bob-6"]["actions"]
    assert all(records[c]["flow"] == "password_verified" for c in BOMBS)
    # the reset is only ever recommended where a password was verified
    for r in records.values():
        if set(r["actions"]) & GUARDED:
            assert r["flow"] == "password_verified"
    for a in read_jsonl(alerts):
        if set(a["actions"]) & GUARDED:
            assert a["flow"] == "password_verified"
    reasons = {r["code"] for r in next(a for a in read_jsonl(alerts) if a["code_event_id"] == ATTACK)["reasons"]}
    assert {"new_network_and_country", "new_device", "code_not_entered"} <= reasons


def test_golden_feedback_updates_the_attack_alert(golden):
    _proc, alerts, _scores, _dead = golden[0]
    about = [a for a in read_jsonl(alerts) if a["code_event_id"] == ATTACK]
    assert [a["kind"] for a in about] == ["created", "updated"]
    assert about[0]["alert_id"] == about[1]["alert_id"]
    assert (about[0]["status"], about[1]["status"]) == ("open", "escalated")


def test_golden_alert_ids_derive_from_user_and_code_ids(golden):
    _proc, alerts, _scores, _dead = golden[0]
    for a in read_jsonl(alerts):
        assert a["alert_id"] == alert_id_for(a["user_id"], a["code_event_id"])


def test_golden_runs_are_byte_identical(golden):
    (_p1, a1, s1, _d1), (_p2, a2, s2, _d2) = golden
    assert s1.read_bytes() == s2.read_bytes() and len(s1.read_bytes()) > 0
    assert a1.read_bytes() == a2.read_bytes() and len(a1.read_bytes()) > 0


def test_golden_ocsf_output_carries_the_same_alerts(geo_dbs, golden, tmp_path):
    _proc, alerts, _scores, _dead = golden[0]
    native = read_jsonl(alerts)
    _p, ocsf_alerts, _s, _d = replay(geo_dbs, str(GOLDEN), tmp_path, fmt="ocsf")
    findings = read_jsonl(ocsf_alerts)
    assert len(findings) == len(native)
    assert all(f["class_uid"] == 2004 for f in findings)
    assert [f["finding_info"]["uid"] for f in findings] == [a["alert_id"] for a in native]
