"""Devices and the real user-agent strings they send.

A user's device keeps one UA for the whole simulation (the detector learns browsers from
it); attackers draw from the same pool with other versions, as stuffing tools spoof real
browsers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

# family -> (kind, UA template with {v} = major version, versions seen in the wild)
UA_FAMILIES = {
    "chrome_windows": ("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                       "(KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36", (128, 129, 130, 131)),
    "edge_windows": ("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                     "(KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0", (129, 130, 131)),
    "firefox_windows": ("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) "
                        "Gecko/20100101 Firefox/{v}.0", (131, 132, 133)),
    "firefox_linux": ("desktop", "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 "
                      "Firefox/{v}.0", (128, 132, 133)),
    "chrome_linux": ("desktop", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                     "Gecko) Chrome/{v}.0.0.0 Safari/537.36", (129, 130, 131)),
    "safari_macos": ("desktop", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                     "(KHTML, like Gecko) Version/{v}.1 Safari/605.1.15", (17, 18)),
    "chrome_macos": ("desktop", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
                     "(KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36", (129, 130, 131)),
    "safari_iphone": ("phone", "Mozilla/5.0 (iPhone; CPU iPhone OS {v}_1 like Mac OS X) "
                      "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.1 Mobile/15E148 "
                      "Safari/604.1", (17, 18)),
    "chrome_android": ("phone", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like "
                       "Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36", (129, 130, 131)),
    "samsung_android": ("phone", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) SamsungBrowser/{v}.0 Chrome/122.0.0.0 Mobile "
                        "Safari/537.36", (25, 26)),
    "safari_ipad": ("tablet", "Mozilla/5.0 (iPad; CPU OS {v}_1 like Mac OS X) AppleWebKit/605.1.15 "
                    "(KHTML, like Gecko) Version/{v}.1 Mobile/15E148 Safari/604.1", (17, 18)),
}
DESKTOP = [("chrome_windows", 40), ("edge_windows", 12), ("firefox_windows", 6), ("safari_macos", 14),
           ("chrome_macos", 12), ("firefox_linux", 4), ("chrome_linux", 3)]
PHONE = [("safari_iphone", 45), ("chrome_android", 40), ("samsung_android", 15)]
TABLET = [("safari_ipad", 1)]
# Command-line clients some stuffing kits do not bother to disguise.
TOOL_UAS = ["python-requests/2.32.3", "Go-http-client/1.1", "okhttp/4.12.0"]


@dataclass(slots=True)
class Device:
    device_id: str | None    # None = cookies blocked / private browsing: never recognised
    family: str
    kind: str                # desktop | phone | tablet
    user_agent: str
    trusted_until: float = -1.0


def _pick(rnd: random.Random, table: list[tuple[str, int]]) -> str:
    return rnd.choices([f for f, _ in table], weights=[w for _, w in table])[0]


def user_agent(rnd: random.Random, family: str) -> str:
    _, template, versions = UA_FAMILIES[family]
    return template.format(v=rnd.choice(versions))


def new_device(rnd: random.Random, kind: str, device_id: str | None, family: str | None = None) -> Device:
    table = {"desktop": DESKTOP, "phone": PHONE, "tablet": TABLET}[kind]
    family = family or _pick(rnd, table)
    return Device(device_id, family, kind, user_agent(rnd, family))


def other_family(rnd: random.Random, used: set[str]) -> str:
    """A browser family the victim does not use (an attacker's UA differs from theirs)."""
    return _pick(rnd, [(f, w) for f, w in DESKTOP + PHONE if f not in used])
