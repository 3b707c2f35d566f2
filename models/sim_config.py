"""Simulator knobs with defaults that look like a real consumer service.

Shares are fractions of the population; attack shares add up to ~1.8% of users attacked
over the period, legit-odd ones are common enough to test that the detector stays quiet.
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
}
LEGIT_SHARES = {
    "travel": 0.05, "new_phone": 0.04, "cookieless": 0.04, "dynamic_ip": 0.10,
    "new_user": 0.05, "password_reset": 0.03,
}
PASSWORD_KNOWN = {"credential_stuffing", "targeted", "stealthy_local", "code_bombing",
                  "sensitive_change"}


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
