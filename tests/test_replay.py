"""`straycode replay` end to end, as a user runs it (a subprocess of this interpreter):
bad lines land in the dead-letter file with line number and reason, stdin works, and the
golden scenario (tests/data/golden_events.jsonl, see make_golden.py) gives the intended
alerts, deterministically."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from datetime import datetime, timedelta

import orjson
import pytest

from straycode.detector import ocsf
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
    assert {d["source"]["line"]: d["reason"] for d in letters} == expected
    assert all(d["detail"] and d["version"] == 1 for d in letters)    # one DeadLetter shape
    big = next(d for d in letters if d["reason"] == "too_large")
    raw_big = BAD_FILE[big["source"]["line"] - 1][0]
    assert (big["excerpt"], big["sha256"], big["size"]) == (None, None, len(raw_big) + 1)
    assert big["truncated"]                                 # never copied whole
    cut = next(d for d in letters if d["source"]["line"] == 2)
    assert cut["excerpt"] == BAD_FILE[1][0].decode()
    assert cut["sha256"] == hashlib.sha256(BAD_FILE[1][0]).hexdigest()
    binary = next(d for d in letters if d["source"]["line"] == 13)
    assert base64.b64decode(binary["excerpt_b64"]) == BAD_FILE[12][0]
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
    assert [a["revision"] for a in about] == [1, 2]          # the update supersedes the create


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


# --------------------------------------------------------------------------- poisoned input

def _shifted(ts: str, seconds: float) -> str:
    """`ts` moved by `seconds`, written with the same offset."""
    return (datetime.fromisoformat(ts) + timedelta(seconds=seconds)).isoformat()


def poisoned_golden() -> tuple[bytes, dict[int, str], int]:
    """The golden stream with wild lines inserted mid-stream, before the attack: each must be
    dead-lettered and change nothing. Returns (file, {line number: reason}, plain repeats)."""
    lines = GOLDEN.read_bytes().splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["event_id"] == ATTACK) - 3
    before = json.loads(lines[at - 1])
    inserts = [
        # a contract-valid-looking password change dated at the end of time
        (dict(event_id="wild-9999", type="password_changed", ts="9999-12-31T23:59:59Z",
              user_id="alice"), "bad_timestamp"),
        # two years ahead: in range, but it would decide every pending code at once
        (dict(event_id="wild-2y", type="code_issued", ts=_shifted(before["ts"], 2 * 365 * 86400),
              user_id="bob", session_id=None, channel="sms", purpose="login"), "clock_skew"),
        (dict(event_id="wild-2y-pw", type="password_changed",
              ts=_shifted(before["ts"], 2 * 365 * 86400), user_id="carol"), "clock_skew"),
        # year 1, with an offset that took it below datetime's range
        (dict(event_id="wild-1", type="code_issued", ts="0001-01-01T00:00:00+01:00",
              user_id="carol", session_id=None, channel="sms", purpose="login"), "bad_timestamp"),
        # the previous event's id again, one second later: same id, another event
        (dict(before, ts=_shifted(before["ts"], 1)), "conflicting_duplicate"),
        # the previous event again, written differently (key order, offset, an unknown
        # field): a plain redelivery, not a conflict and not a dead letter
        ({**{k: before[k] for k in reversed(list(before))},
          "ts": _shifted(before["ts"], 0), "delivery": 2}, None),
    ]
    out = lines[:at] + [orjson.dumps(doc) for doc, _ in inserts] + lines[at:]
    reasons = {at + 1 + i: reason for i, (_, reason) in enumerate(inserts) if reason}
    return b"\n".join(out) + b"\n", reasons, 1


def test_wild_times_and_conflicting_duplicates_change_nothing(geo_dbs, golden, tmp_path):
    """Far-future, far-past and two-years-ahead events, and a conflicting duplicate, inserted
    mid-stream: every other output is byte-for-byte the clean stream's, and each wild line is
    in the dead letters with its reason and line number."""
    _proc, clean_alerts, clean_scores, _dead = golden[0]
    data, reasons, repeats = poisoned_golden()
    path = tmp_path / "poisoned.jsonl"
    path.write_bytes(data)
    proc, alerts, scores, dead = replay(geo_dbs, str(path), tmp_path / "out")
    assert scores.read_bytes() == clean_scores.read_bytes()
    assert alerts.read_bytes() == clean_alerts.read_bytes()
    letters = read_jsonl(dead)
    assert {d["source"]["line"]: d["reason"] for d in letters} == reasons
    raw = data.splitlines()
    for d in letters:
        line = raw[d["source"]["line"] - 1]
        assert d["sha256"] == hashlib.sha256(line).hexdigest() and d["size"] == len(line)
    skew = [d for d in letters if d["reason"] == "clock_skew"]
    assert all("ahead of the clock" in d["detail"] for d in skew)
    s = summary(proc)
    assert int(s["dead_letters"]) == len(reasons) and int(s["duplicates"]) == repeats
    assert int(s["events"]) + int(s["dead_letters"]) == int(s["lines"])


@pytest.mark.parametrize("start", ["2199-12-31T23:50:00-14:00", "1970-01-01T00:00:00+14:00"])
def test_alerts_format_at_the_edges_of_the_accepted_time_range(geo_dbs, tmp_path, start):
    """The first and last accepted instants (and deadlines beyond them) format as native and
    OCSF alerts; nothing is dead-lettered."""
    def code(i: int, after_s: int) -> dict:   # a password-reset code, never entered
        return dict(event_id=f"r{i}", type="code_issued", ts=_shifted(start, after_s),
                    user_id=f"u{i}", session_id=None, channel="sms", purpose="password_reset",
                    ip="175.16.199.7")

    # four users' codes from one IP (decided by the clock), feedback on one (an update), and
    # a last code in the last seconds, decided by flush() after the range's last instant
    events = [code(i, 60 * i) for i in range(4)] + [
        dict(event_id="fb", type="user_feedback", ts=_shifted(start, 590), user_id="u3",
             code_event_id="r3", verdict="not_me"), code(4, 599)]
    path = tmp_path / "edge.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    proc, alerts, scores, dead = replay(geo_dbs, str(path), tmp_path / "out", fmt="both")
    assert dead.read_text() == "" and len(read_jsonl(scores)) == 5
    records = read_jsonl(alerts)
    assert records, "the edge case must produce alerts to format"
    assert any(r["native"]["status"] == "escalated" for r in records)     # the feedback
    for record in records:
        assert ocsf.from_ocsf(record["ocsf"])["decided_ts"] == record["native"]["decided_ts"]
        assert ocsf.from_ocsf(record["ocsf"])["ts"] == record["native"]["ts"]
