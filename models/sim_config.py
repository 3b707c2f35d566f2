"""Simulator knobs with defaults that look like a real consumer service.

Shares are fractions of the population; the classic attack shares add up to ~1.8% of users
attacked over the period, the stolen-session ones (issue #12) to another ~2.6% so that a
10,000-user, 90-day run gives over 100 codes each; legit-odd ones are common enough to test
that the detector stays quiet. New scenarios are appended at the end of each table: the
random streams of the older scenarios then do not shift (see docs/results.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

ATTACK_SHARES = {
    "credential_stuffing": 0.006,   # users whose leaked password worked in a stuffing run
    "targeted": 0.002,              # attacker in the victim's country with the password
    "stealthy_local": 0.0015,       # attacker on the victim's own ISP, same city
    "code_bombing": 0.001,          # password known, many codes in minutes
    "reset_abuse": 0.002,           # password-reset codes requested by someone else
    "sms_pumping": 0.004,           # toll-fraud codes to many users from one source
    "sensitive_change": 0.0015,     # attacker session asks for security/payment codes
    # stolen sessions (issue #12)
    "session_hijack": 0.008,        # replayed session cookie, codes from another network
    "infostealer": 0.008,           # password + trusted-device cookie, login from a proxy
    "aitm_relay": 0.01,             # phishing proxy relays the victim's login, then takes over
}
LEGIT_SHARES = {
    "travel": 0.05, "new_phone": 0.04, "cookieless": 0.04, "dynamic_ip": 0.10,
    "new_user": 0.05, "password_reset": 0.03,
    # look-alikes of stolen sessions: the code's requester context differs from the login's
    "network_switch": 0.01,         # Wi-Fi -> own mobile carrier mid-session
    "trusted_trip": 0.01,           # trusted laptop signs in from a trip
    "ipv6_privacy": 0.01,           # new temporary IPv6 address within the same /64 or /56
    "vpn_toggle": 0.01,             # corporate VPN (the user's work network) on or off mid-session
    "privacy_vpn": 0.01,            # consumer / self-hosted VPN on a datacenter network for a few days
}
# Scenario names of label rows (aitm_relay also writes aitm_relay_login: the relayed login
# code, which the victim enters on the phishing page).
PASSWORD_KNOWN = {"credential_stuffing", "targeted", "stealthy_local", "code_bombing",
                  "sensitive_change", "infostealer", "aitm_relay", "aitm_relay_login"}
# Played by sim_lookalikes after everything else, not scheduled in the population draw.
LOOKALIKES = ("network_switch", "trusted_trip", "ipv6_privacy", "vpn_toggle", "privacy_vpn")
SESSION_STOLEN = {"session_hijack", "infostealer", "aitm_relay", "aitm_relay_login"}


@dataclass
class SimConfig:
    users: int = 1000
    days: int = 30
    seed: int = 1
    start: str = "2026-01-01"
    geoip_db: str | None = None
    with_asn: bool = True
    out_of_order: float = 0.0
    max_delay_s: float = 90.0
    duplicates: float = 0.0
    attack_shares: dict = field(default_factory=lambda: dict(ATTACK_SHARES))
    legit_shares: dict = field(default_factory=lambda: dict(LEGIT_SHARES))
    feedback_attack: float = 0.35   # share of attack codes the victim reports as not_me
    feedback_odd: float = 0.10      # share of legit-odd codes the user confirms as me
    typo_rate: float = 0.04
    abandon_rate: float = 0.03
    failed_code_rate: float = 0.04
    trust_rate: float = 0.6
    trust_days: float = 30.0
    ipv6_share: float = 0.35        # users whose devices use IPv6 where their network offers it
