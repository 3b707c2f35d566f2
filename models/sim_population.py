"""Simulated users: home city, networks, devices, habits and the odd-but-legit things
that will happen to them during the period (trip, new phone, new IP lease...).

Everything is drawn up front from a per-user RNG so one user's life does not depend on
how many events another user produced.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from .sim_config import LOOKALIKES, SimConfig
from .sim_devices import Device, new_device
from .sim_events import Ctx
from .sim_geo import Metro, Network, World

DAY = 86400.0


@dataclass
class Trip:
    start: float
    end: float
    metro: Metro


@dataclass(slots=True)
class SignIn:
    """One of the user's own authenticated sessions (what a session thief replays)."""
    t: float
    session_id: str
    ctx: Ctx
    device: Device
    sensitive: bool            # the user asked for a security/payment code in it


@dataclass(slots=True)
class TrustGrant:
    """A device_trusted event: the device skips login codes until ``t + trust_days``."""
    t: float
    device: Device


@dataclass
class User:
    idx: int
    user_id: str
    rnd: random.Random
    metro: Metro
    home_net: Network
    home_ip: str
    mobile_net: Network | None
    work_net: Network | None
    work_ip: str | None
    devices: list[Device]
    device_weights: list[float]
    logins_per_day: float
    hours: list[float]             # preferred local hours
    channel: str
    start: float                   # first day of activity (new users start late)
    new_user: bool = False
    cookieless: bool = False
    trip: Trip | None = None
    new_phone_at: float | None = None
    new_phone: Device | None = None
    ip_change_at: float | None = None
    new_home_ip: str | None = None
    reset_at: float | None = None
    odd: set = field(default_factory=set)
    # written while the user's life is played (sim_legit), read by later passes
    signins: list[SignIn] = field(default_factory=list)
    trust_grants: list[TrustGrant] = field(default_factory=list)
    password_changes: list[float] = field(default_factory=list)


def user_rng(seed: int, idx: int) -> random.Random:
    """Independent stream per user, reproducible for (seed, idx)."""
    state = np.random.SeedSequence([seed, idx]).generate_state(2, dtype=np.uint64)
    return random.Random(int(state[0]) << 64 | int(state[1]))


def _device_id(rnd: random.Random) -> str:
    return f"d-{rnd.getrandbits(80):020x}"


def _chosen(n: int, share: float, rnd: random.Random) -> set[int]:
    k = min(n, round(n * share))
    return set(rnd.sample(range(n), k)) if k else set()


def draw_population(cfg: SimConfig, world: World, t0: float, t_end: float) -> list[User]:
    pop_rnd = random.Random(cfg.seed * 7919 + 17)
    homes = [m for m in world.metros if m.weight > 0]
    weights = [m.weight for m in homes]
    odd = {name: _chosen(cfg.users, share, pop_rnd) for name, share in cfg.legit_shares.items()
           if name not in LOOKALIKES}
    users = []
    for idx in range(cfg.users):
        rnd = user_rng(cfg.seed, idx)
        metro = rnd.choices(homes, weights=weights)[0]
        home_net = rnd.choice(world.of(metro, "broadband"))
        mobile_net = rnd.choice(world.of(metro, "mobile")) if rnd.random() < 0.75 else None
        work_net = None
        if rnd.random() < 0.3:
            work_net = rnd.choice([n for n in world.of(metro, "broadband") if n is not home_net])
        kinds = ["phone"] if rnd.random() < 0.85 else []
        kinds += ["desktop"] * rnd.choice([0, 1, 1, 1, 2]) + (["tablet"] if rnd.random() < 0.15 else [])
        kinds = (kinds or ["desktop"])[:3]
        devices = [new_device(rnd, k, _device_id(rnd)) for k in kinds]
        cookieless = idx in odd.get("cookieless", ())
        if cookieless:
            desktops = [d for d in devices if d.kind == "desktop"] or devices
            desktops[0].device_id = None
        # Heavy-tailed activity: median ~0.35 logins/day, a few users log in many times a day.
        rate = min(8.0, max(0.03, math.exp(rnd.gauss(math.log(0.35), 0.9))))
        peak = rnd.choice([8.0, 12.5, 19.0, 21.0])
        hours = [peak, rnd.choice([7.5, 13.0, 18.0, 22.5]), rnd.uniform(9, 23)]
        new_user = idx in odd.get("new_user", ())
        start = t0 + (rnd.uniform(0.05, 0.9) * (t_end - t0) if new_user else 0.0)
        user = User(idx=idx, user_id=f"u{idx:07d}", rnd=rnd, metro=metro, home_net=home_net,
                    home_ip=home_net.fixed_ip(rnd), mobile_net=mobile_net, work_net=work_net,
                    work_ip=work_net.fixed_ip(rnd) if work_net else None, devices=devices,
                    device_weights=[3.0 if d.kind == "phone" else 2.0 if d.kind == "desktop" else 1.0
                                    for d in devices],
                    logins_per_day=rate, hours=hours,
                    channel=rnd.choices(["sms", "email", "voice"], weights=[70, 26, 4])[0],
                    start=start, new_user=new_user, cookieless=cookieless)
        if cookieless:
            user.odd.add("cookieless")
        if new_user:
            user.odd.add("new_user")
        _life_events(user, cfg, world, odd, homes, weights, t_end)
        users.append(user)
    return users


def _life_events(user: User, cfg: SimConfig, world: World, odd: dict, homes: list[Metro],
                 weights: list[float], t_end: float) -> None:
    """Schedule the legit-odd episodes of one user within the period."""
    rnd, span = user.rnd, t_end - user.start
    if user.idx in odd.get("travel", ()):
        length = rnd.uniform(3, 10) * DAY
        begin = user.start + rnd.uniform(0, max(span - length, 0.0))
        abroad = rnd.random() < 0.6
        options = [m for m in homes if (m.country != user.metro.country) == abroad and m is not user.metro]
        if not options:
            options = [m for m in homes if m is not user.metro]
        dest = rnd.choices(options, weights=[m.weight for m in options])[0]
        user.trip = Trip(begin, min(begin + length, t_end), dest)
        user.odd.add("travel")
    if user.idx in odd.get("new_phone", ()):
        user.new_phone_at = user.start + rnd.uniform(0.1, 0.9) * span
        user.new_phone = new_device(rnd, "phone", _device_id(rnd))
        user.odd.add("new_phone")
    if user.idx in odd.get("dynamic_ip", ()):
        user.ip_change_at = user.start + rnd.uniform(0.1, 0.9) * span
        blocks = len(user.home_net.blocks)
        current = next(i for i, b in enumerate(user.home_net.blocks)
                       if b.base <= _ip_int(user.home_ip) < b.base + b.size)
        user.new_home_ip = user.home_net.fixed_ip(rnd, block=current + 1 + rnd.randrange(blocks - 1))
        user.odd.add("dynamic_ip")
    if user.idx in odd.get("password_reset", ()):
        user.reset_at = user.start + rnd.uniform(0.05, 0.95) * span
        user.odd.add("password_reset")


def _ip_int(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return a << 24 | b << 16 | c << 8 | d
