"""`replay --dispatch`: alerts from the embedded pipeline reach a real signed webhook endpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from hook_server import HookServer, new_secret
from straycode.detector.ocsf import native_from_record



def _user_events(user: str, minute: int = 0) -> list[dict]:
    """A user with ten verified London sign-ins, then a verified-password login from Changchun.
    Event ids do not name the user: two users' streams share them, as two tenants' would."""
    lines = []
    for day in range(10):
        sid = f"s{day}"
        ts = f"2026-01-{day + 1:02d}T09:{minute:02d}"
        lines += [
            {"event_id": f"l{day}", "type": "login", "ts": f"{ts}:00Z", "user_id": user,
             "session_id": sid, "password_ok": True, "ip": "81.2.69.10", "device_id": "dev-a",
             "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36"},
            {"event_id": f"c{day}", "type": "code_issued", "ts": f"{ts}:05Z", "user_id": user,
             "session_id": sid, "channel": "sms", "purpose": "login"},
            {"event_id": f"v{day}", "type": "code_verified", "ts": f"{ts}:30Z", "user_id": user,
             "session_id": sid, "success": True},
        ]
    lines += [
        {"event_id": "evil-login", "type": "login", "ts": f"2026-01-11T03:{minute:02d}:00Z",
         "user_id": user, "session_id": "evil", "password_ok": True, "ip": "175.16.199.7",
         "device_id": "dev-x",
         "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
        {"event_id": "evil-code", "type": "code_issued", "ts": f"2026-01-11T03:{minute:02d}:03Z",
         "user_id": user, "session_id": "evil", "channel": "sms", "purpose": "login"},
    ]
    return lines


def _events(tmp_path: Path, *users: str) -> Path:
    lines = []
    for i, user in enumerate(users or ("alice",)):
        lines += _user_events(user, minute=i)
    lines.sort(key=lambda line: line["ts"])
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _config(tmp_path: Path, geo_dbs, server: HookServer) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "geoip": {"city_db": str(geo_dbs[0]), "asn_db": str(geo_dbs[1])},
        "hooks": {"outbox": str(tmp_path / "outbox.sqlite3"),
                  "dead_letter": str(tmp_path / "dead.jsonl"),
                  "retry_schedule_s": [0, 0.01, 0.02, 0.05],
                  "endpoints": [{"name": "iam", "url": server.url, "min_severity": "high",
                                 "actions": ["force_password_reset", "revoke_sessions"]}]}}))
    return config


def _replay(tmp_path: Path, events: Path, config: Path, secret: str, *extra: str):
    env = dict(os.environ, STRAYCODE_WEBHOOK_SECRET=secret)
    return subprocess.run(
        [sys.executable, "-m", "straycode.cli", "replay", str(events), "--alerts",
         str(tmp_path / "alerts.jsonl"), "--scores", str(tmp_path / "scores.jsonl"),
         "--no-progress", "--config", str(config), *extra],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def test_replay_dispatch_delivers_signed_actions_once(tmp_path, geo_dbs):
    secret = new_secret()
    server = HookServer([secret])
    server.start()
    try:
        config = _config(tmp_path, geo_dbs, server)
        events = _events(tmp_path)

        without = _replay(tmp_path, events, config, secret)
        assert without.returncode == 0, without.stderr
        assert server.requests == [], "replay without --dispatch must call nothing"

        run = _replay(tmp_path, events, config, secret, "--dispatch")
        assert run.returncode == 0, run.stderr
        actions = sorted(seen.payload["data"]["action"] for seen in server.requests if seen.verified)
        assert actions == ["force_password_reset", "revoke_sessions"]
        assert {seen.payload["data"]["code_event_id"] for seen in server.requests} == {"evil-code"}
        assert secret not in run.stdout + run.stderr

        again = _replay(tmp_path, events, config, secret, "--dispatch")   # same outbox: idempotent
        assert again.returncode == 0, again.stderr
        assert sorted(server.accepted.values()) == [1, 1]
    finally:
        server.stop()


def test_two_users_with_one_code_event_id_both_get_their_actions(tmp_path, geo_dbs):
    """alice and bob come from two tenants numbering events alike: both attackers' codes are
    'evil-code'. Each user gets an alert of their own, and the dispatcher delivers bob's
    force_password_reset too (it is keyed by alert id + action)."""
    secret = new_secret()
    server = HookServer([secret])
    server.start()
    try:
        config = _config(tmp_path, geo_dbs, server)
        events = _events(tmp_path, "alice", "bob")
        run = _replay(tmp_path, events, config, secret, "--dispatch")
        assert run.returncode == 0, run.stderr
        alerts = [native_from_record(json.loads(line))
                  for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        created = [a for a in alerts if a["kind"] == "created"]
        assert sorted(a["user_id"] for a in created) == ["alice", "bob"]
        assert {a["code_event_id"] for a in created} == {"evil-code"}
        assert len({a["alert_id"] for a in created}) == 2
        delivered = sorted((seen.payload["data"]["user_id"], seen.payload["data"]["action"])
                           for seen in server.requests if seen.verified and not seen.duplicate)
        assert delivered == [("alice", "force_password_reset"), ("alice", "revoke_sessions"),
                             ("bob", "force_password_reset"), ("bob", "revoke_sessions")]
        assert sorted(server.accepted.values()) == [1, 1, 1, 1]
    finally:
        server.stop()
