"""Deterministic labelled event streams for the Kafka tests and the streams benchmark.

Each user signs in daily from home (London, AS20712) with a code they enter, trusts their
device on day 2; then, for `attacked` users, someone with the right password signs in from
Changchun (AS4837) on a new device and the code is never entered: those codes are the
expected alerts. Places come from fixtures_geo.GEO_CASES.
"""
from __future__ import annotations

from datetime import datetime, timezone

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
DAY, HOUR = 86400, 3600
UA_HOME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36")
UA_ATTACK = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HOME_NET, ATTACK_NET = "81.2.69.", "175.16.199."


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def user_stream(user: str, n: int, days: int, attacked: bool) -> list[dict]:
    """One user's events, in event-time order."""
    out: list[dict] = []
    ip = f"{HOME_NET}{10 + n % 200}"
    for d in range(days):
        t = T0 + d * DAY + (8 + n % 5) * HOUR + n % 60
        sid = f"{user}-s{d}"
        base = {"user_id": user, "ip": ip, "user_agent": UA_HOME, "device_id": f"{user}-laptop"}
        out.append(dict(base, event_id=f"{user}-l{d}", type="login", ts=iso(t), session_id=sid,
                        password_ok=True))
        out.append(dict(base, event_id=f"{user}-c{d}", type="code_issued", ts=iso(t + 5),
                        session_id=sid, channel="sms", purpose="login"))
        out.append(dict(base, event_id=f"{user}-v{d}", type="code_verified", ts=iso(t + 30),
                        session_id=sid, success=True))
        if d == 2:
            out.append(dict(base, event_id=f"{user}-t{d}", type="device_trusted", ts=iso(t + 40),
                            session_id=sid))
    if attacked:
        t = T0 + days * DAY + 3 * HOUR + n
        sid = f"{user}-evil"
        bad = {"user_id": user, "ip": f"{ATTACK_NET}{7 + n % 200}", "user_agent": UA_ATTACK,
               "device_id": f"{user}-evil-device"}
        out.append(dict(bad, event_id=f"{user}-evil-login", type="login", ts=iso(t),
                        session_id=sid, password_ok=True))
        out.append(dict(bad, event_id=f"{user}-evil-code", type="code_issued", ts=iso(t + 4),
                        session_id=sid, channel="sms", purpose="login"))
    return out


def labelled_stream(users: int = 8, days: int = 10, attacked_every: int = 3,
                    prefix: str = "u") -> tuple[list[dict], set[str]]:
    """(events merged in event-time order, code event ids that should alert)."""
    events, expected = [], set()
    for n in range(users):
        user = f"{prefix}{n}"
        attacked = n % attacked_every == 0
        events.extend(user_stream(user, n, days, attacked))
        if attacked:
            expected.add(f"{user}-evil-code")
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events, expected
