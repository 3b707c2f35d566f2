"""Realistic native alert dicts (the shape of Alert.to_dict() in docs/architecture.md) for
tests of the alert feed and the hooks, independent of the detector engine."""
from __future__ import annotations

import copy
import hashlib

_PLACES = {
    "home": {"ip": "81.2.69.142", "network": "AS20712", "asn": 20712, "as_org": "Andrews & Arnold",
             "country": "GB", "city": "London", "device_id": "dev-home-1",
             "ua": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"},
    "attacker": {"ip": "185.220.101.47", "network": "AS208294", "asn": 208294,
                 "as_org": "Example Hosting", "country": "DE", "city": "Frankfurt am Main",
                 "device_id": None,
                 "ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0.0.0 Safari/537.36"},
}

_REASONS = {
    "password_verified": [
        {"code": "new_device", "detail": "device never seen for this user", "weight": 1.4},
        {"code": "new_network", "detail": "AS208294 never used by this user", "weight": 1.1},
        {"code": "new_country", "detail": "DE not among GB", "weight": 0.9},
        {"code": "not_verified", "detail": "code never entered within 300s", "weight": 1.0},
    ],
    "no_password": [
        {"code": "reset_flow", "detail": "code requested from the password-reset form", "weight": 0.0},
        {"code": "fanout_ip_warn", "detail": "5 users got codes from 185.220.101.47 in 1h", "weight": 1.2},
        {"code": "not_verified", "detail": "code never entered within 300s", "weight": 1.0},
    ],
}


def alert_id_for(code_event_id: str) -> str:
    return "sc-" + hashlib.sha256(code_event_id.encode()).hexdigest()[:16]


def make_alert(*, code_event_id: str = "evt-code-0001", user_id: str = "u-alice",
               flow: str = "password_verified", severity: str = "high", kind: str = "created",
               status: str = "open", score: float = 0.93, actions: list[str] | None = None,
               ts: str = "2026-03-14T09:26:53.589Z",
               decided_ts: str = "2026-03-14T09:31:53.589Z") -> dict:
    """A native alert as the engine would write it; override what the test is about."""
    if actions is None:
        actions = (["force_password_reset", "revoke_sessions", "notify_user"]
                   if flow == "password_verified" else ["notify_user", "review"])
    login = copy.deepcopy(_PLACES["attacker"]) if flow == "password_verified" else None
    return {
        "alert_id": alert_id_for(code_event_id),
        "version": 1,
        "kind": kind,
        "code_event_id": code_event_id,
        "user_id": user_id,
        "ts": ts,
        "decided_ts": decided_ts,
        "score": score,
        "issue_score": round(score * 0.9, 4),
        "severity": severity,
        "confidence": 0.82,
        "flow": flow,
        "purpose": "login" if flow == "password_verified" else "password_reset",
        "channel": "sms",
        "reasons": copy.deepcopy(_REASONS.get(flow, _REASONS["no_password"])),
        "actions": list(actions),
        "observed": {"login": login, "code": copy.deepcopy(_PLACES["attacker"])},
        "baseline": {"proven_signins": 41, "devices": 2, "trusted_devices": 1, "networks": 3,
                     "countries": ["GB"], "cities": ["London"], "browsers": ["Safari"],
                     "last_verified_place": {"country": "GB", "city": "London",
                                             "ts": "2026-03-13T18:02:11Z"}},
        "status": status,
    }
