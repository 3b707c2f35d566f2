"""Writes golden_events.jsonl, the handmade scenario of tests/test_replay.py (run it only to
change the scenario, then update the expectations in the test). IPs are answered by the
fixture .mmdb files of tests/fixtures_geo.py.

  alice  London (81.2.69.x, AS20712), Windows/Chrome, device dev-a (trusted), 09:00 UTC
  bob    Linköping (89.160.20.x, AS29518), iPhone, device dev-b (trusted), 18:00 UTC
  carol  London on a dynamic address (81.2.69.x / 81.2.70.x), cookie-less browser, 12:00 UTC

Then, in order: an attacker with alice's password from Changchun (code never entered) -> the
one forced reset; alice's new phone at home (entered); carol's new /24 at home (entered);
a code that arrives before its login (alice, entered); password-reset flood against bob
from a hosting network (no password: alert, never a reset); MFA bombing of bob by someone
with his password from Milton, US (lock); alice reports the attack "not me".
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 2, 2, tzinfo=timezone.utc)
WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/126.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.5 Safari/605.1.15")


def main() -> None:
    events: list[dict] = []
    n = 0

    def ts(day: int, hour: int, minute: int = 0, second: int = 0) -> str:
        moment = START + timedelta(days=day, hours=hour, minutes=minute, seconds=second)
        return moment.isoformat().replace("+00:00", "Z")

    def add(etype: str, when: str, user: str, event_id: str | None = None, **fields) -> None:
        nonlocal n
        n += 1
        events.append({"event_id": event_id or f"g{n:04d}", "type": etype, "ts": when,
                       "user_id": user, **fields})

    def sign_in(user, day, hour, ip, ua, device, code_id=None, verified=True, trust=False,
                minute=0):
        sid = f"{user}-d{day}-{hour}{minute}"
        add("login", ts(day, hour, minute), user, session_id=sid, password_ok=True, ip=ip,
            user_agent=ua, device_id=device)
        add("code_issued", ts(day, hour, minute, 4), user, event_id=code_id, session_id=sid,
            channel="sms", purpose="login")
        if verified:
            add("code_verified", ts(day, hour, minute, 31), user, session_id=sid, success=True)
        if trust:
            add("device_trusted", ts(day, hour, minute, 40), user, session_id=sid, device_id=device)

    for day in range(14):
        sign_in("alice", day, 9, f"81.2.69.{10 + day % 3}", WIN, "dev-a", trust=day == 1)
        sign_in("bob", day, 18, f"89.160.20.{40 + day % 2}", IPHONE, "dev-b", trust=day == 0)
        sign_in("carol", day, 12, f"81.2.69.{100 + day}", SAFARI_MAC, None)
    d = 14
    # attacker with alice's password, Changchun, new device, code never entered
    sign_in("alice", d, 3, "175.16.199.7", FIREFOX, "dev-evil", code_id="atk-alice", verified=False)
    # alice's new phone at home, code entered
    sign_in("alice", d, 9, "81.2.69.11", IPHONE, "dev-a-phone", code_id="legit-alice-phone")
    # carol on a new /24 of her ISP, same city, still cookie-less, code entered
    sign_in("carol", d, 12, "81.2.70.55", SAFARI_MAC, None, code_id="legit-carol-dynamic-ip")
    # a code that arrives 3 s before its login (alice at home, trusted device), entered
    add("code_issued", ts(d, 17, 0, 0), "alice", event_id="early-alice", session_id="alice-early",
        channel="sms", purpose="login")
    add("login", ts(d, 17, 0, 3), "alice", session_id="alice-early", password_ok=True,
        ip="81.2.69.10", user_agent=WIN, device_id="dev-a")
    add("code_verified", ts(d, 17, 0, 30), "alice", session_id="alice-early", success=True)
    # password-reset flood against bob from a hosting network: nobody typed a password
    for i in range(4):
        add("code_issued", ts(d + 1, 2, 10 * i), "bob", event_id=f"reset-bob-{i + 1}", session_id=None,
            channel="sms", purpose="password_reset", ip=f"67.43.156.{9 + i}", user_agent=FIREFOX)
    # MFA bombing: someone with bob's password, Milton US, six codes in three minutes
    add("login", ts(d + 1, 4), "bob", session_id="bob-bomb", password_ok=True, ip="216.160.83.9",
        user_agent=FIREFOX, device_id=None)
    for i in range(6):
        add("code_issued", ts(d + 1, 4, i // 2, 5 + 30 * (i % 2)), "bob", event_id=f"bomb-bob-{i + 1}",
            session_id="bob-bomb", channel="sms", purpose="login")
    # alice: "that was not me"
    add("user_feedback", ts(d + 1, 8), "alice", code_event_id="atk-alice", verdict="not_me")
    events.sort(key=lambda e: e["ts"])          # event-time order (all "Z", so text order works)
    out = Path(__file__).with_name("golden_events.jsonl")
    out.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))


if __name__ == "__main__":
    main()
