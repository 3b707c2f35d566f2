"""Realistic native alert dicts (the shape of Alert.to_dict() in docs/architecture.md) for
tests of the alert feed and the hooks, independent of the detector engine."""
from __future__ import annotations

import copy
import hashlib

import orjson

_PLACES = {   # Context.to_dict() of detector/enrich.py
    "home": {"ip": "81.2.69.142", "network": "AS20712", "prefix": "81.2.69.0/24", "asn": 20712,
             "as_org": "Andrews & Arnold Ltd", "country": "GB", "city": "London", "lat": 51.5142,
             "lon": -0.0931, "private_ip": False, "device_id": "dev-home-1",
             "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
                           "(KHTML, like Gecko) Version/17.5 Safari/605.1.15",
             "ua_family": "Safari|Mac OS X|desktop"},
    "attacker": {"ip": "175.16.199.7", "network": "AS4837", "prefix": "175.16.199.0/24",
                 "asn": 4837, "as_org": "CHINA UNICOM China169 Backbone", "country": "CN",
                 "city": "Changchun", "lat": 43.88, "lon": 125.3228, "private_ip": False,
                 "device_id": None,
                 "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                               "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                 "ua_family": "Chrome|Windows|desktop"},
}

_REASONS = {   # Verdict.reasons(): sorted by weight, negative terms included
    "password_verified": [
        {"code": "new_network_and_country",
         "detail": "AS4837 (CHINA UNICOM China169 Backbone) prefix 175.16.199.0/24 in Changchun; "
                   "user's networks: AS20712; places: London (network +2.1, location +1.9)",
         "weight": 3.5},
        {"code": "impossible_travel", "detail": "London -> Changchun: 8,337 km in 2.0 h "
                                                "(4,168 km/h)", "weight": 2.0},
        {"code": "code_not_entered", "detail": "the code was not entered within 300 s",
         "weight": 1.0},
        {"code": "no_device_id", "detail": "no device id (cookie-less or blocked browser); user "
                                           "has 2 known devices (1 trusted)", "weight": 0.4},
        {"code": "usual_hour", "detail": "09:00 UTC; 80% of 41 proven sign-ins were within an "
                                         "hour of it", "weight": -0.6},
    ],
    "no_password": [
        {"code": "fanout_ip", "detail": "5 distinct users signed in or got codes from this ip "
                                        "in 60 min (80% failed)", "weight": 1.9},
        {"code": "code_not_entered", "detail": "the code was not entered within 300 s",
         "weight": 1.0},
        {"code": "reset_flow", "detail": "password-reset code (no password involved)",
         "weight": 0.0},
    ],
}


def alert_id_for(code_event_id: str, user_id: str = "u-alice") -> str:
    """The engine's rule (detector.alerts.alert_id_for), restated: one alert per user and code."""
    return "sc-" + hashlib.sha256(orjson.dumps([user_id, code_event_id])).hexdigest()[:16]


def make_alert(*, code_event_id: str = "evt-code-0001", user_id: str = "u-alice",
               flow: str = "password_verified", severity: str = "high", kind: str = "created",
               status: str = "open", score: float = 0.93, actions: list[str] | None = None,
               ts: str = "2026-03-14T09:26:53.589Z",
               decided_ts: str = "2026-03-14T09:31:53.589Z", revision: int | None = None) -> dict:
    """A native alert as the engine would write it; override what the test is about."""
    if actions is None:
        actions = (["force_password_reset", "revoke_sessions", "notify_user"]
                   if flow == "password_verified" else ["notify_user", "review"])
    login = copy.deepcopy(_PLACES["attacker"]) if flow == "password_verified" else None
    return {
        "alert_id": alert_id_for(code_event_id, user_id),
        "version": 1,
        "revision": revision or (1 if kind == "created" else 2),
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
        "baseline": {"proven_signins": 41, "devices": 2, "trusted_devices": 1,
                     "networks": ["AS20712"], "countries": ["GB"], "cities": ["London"],
                     "browsers": ["Safari|Mac OS X|desktop"], "last_verified_place": "GB/London"},
        "status": status,
    }
