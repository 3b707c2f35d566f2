"""Self-contained synthetic contract-v1 traffic for the benchmarks (no dependency on the
simulator in models/, whose realism is not the point here: volume and a realistic mix are).

Per user and day: most days one sign-in near the user's habitual hour (login, code,
code entered), sometimes a second one from a mobile carrier address, a trusted device now
and then; rarely an attacker with the password (code never entered) or a password-reset
code from a hosting address. Addresses come from shared pools, as in real traffic, so the
GeoIP cache matters. Deterministic for a given seed; events are written in time order.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36",
]
START = 1767225600          # 2026-01-01T00:00:00Z


@dataclass
class Counts:
    events: int = 0
    codes: int = 0
    bytes: int = 0


def _public_ip(rng: random.Random) -> str:
    while True:
        a = rng.randint(1, 223)
        if a in (10, 100, 127, 169, 172, 192, 198, 203):
            continue
        return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def generate(path: Path, users: int, days: int, seed: int = 7) -> Counts:
    """Write `users` x `days` of traffic to `path` (JSONL); returns what was written."""
    rng = random.Random(seed)
    home_pool = [_public_ip(rng) for _ in range(max(1000, users // 2))]
    mobile_pool = [_public_ip(rng) for _ in range(500)]
    attack_pool = [_public_ip(rng) for _ in range(200)]
    people = []
    for u in range(users):
        people.append((f"user{u:06d}", rng.choice(home_pool), rng.choice(UAS), rng.randint(6, 22),
                       rng.random() < 0.1))                         # 10% cookie-less browsers
    counts = Counts()
    with open(path, "wb") as out:
        for day in range(days):
            base = START + day * 86400
            batch: list[tuple[float, dict]] = []
            for uid, home, ua, hour, cookieless in people:
                seq = 0

                def add(t: float, etype: str, **fields) -> None:
                    nonlocal seq
                    seq += 1
                    batch.append((t, {"event_id": f"{uid}-{day}-{seq}", "type": etype, "ts": _ts(t),
                                      "user_id": uid, **fields}))

                def sign_in(t: float, ip: str, device: str | None, user_agent: str, verify_p: float,
                            trust_p: float) -> None:
                    sid = f"{uid}-{day}-s{seq}"
                    ok = rng.random() < 0.97
                    add(t, "login", session_id=sid, password_ok=ok, ip=ip, user_agent=user_agent,
                        device_id=device)
                    if not ok or rng.random() > 0.85:
                        return
                    add(t + rng.uniform(1, 5), "code_issued", session_id=sid,
                        channel=rng.choice(("sms", "sms", "email", "push")), purpose="login")
                    if rng.random() < verify_p:
                        add(t + rng.uniform(15, 90), "code_verified", session_id=sid, success=True)
                        if device and rng.random() < trust_p:
                            add(t + rng.uniform(95, 120), "device_trusted", session_id=sid,
                                device_id=device)

                device = None if cookieless else f"{uid}-d1"
                if rng.random() < 0.55:
                    t = base + hour * 3600 + rng.uniform(-5400, 5400)
                    sign_in(t, home, device, ua, 0.93, 0.05)
                if rng.random() < 0.12:
                    t = base + rng.uniform(7, 23) * 3600
                    sign_in(t, rng.choice(mobile_pool), None if cookieless else f"{uid}-d2",
                            UAS[3 if rng.random() < 0.5 else 4], 0.9, 0.02)
                roll = rng.random()
                if roll < 0.002:          # someone else with the password
                    sign_in(base + rng.uniform(0, 86000), rng.choice(attack_pool), f"x-{uid}-{day}",
                            UAS[2], 0.0, 0.0)
                elif roll < 0.003:        # password-reset code requested by someone else
                    add(base + rng.uniform(0, 86000), "code_issued", session_id=None, channel="sms",
                        purpose="password_reset", ip=rng.choice(attack_pool), user_agent=UAS[2])
            batch.sort(key=lambda item: item[0])
            for _t, event in batch:
                line = orjson.dumps(event) + b"\n"
                out.write(line)
                counts.events += 1
                counts.bytes += len(line)
                counts.codes += event["type"] == "code_issued"
    return counts
