"""A legitimate user's sign-ins over the period (label 0 codes).

Sign-ins follow the user's local-hour habits; untrusted devices get a login code that the
user enters seconds later (sometimes after a wrong try, sometimes never), trusted devices
sign in without one. Odd-but-legit episodes (trip, new phone, new IP lease, private
browsing, first days of a new account) change the context, and codes issued in them carry
that scenario name so the evaluation can count false alerts per scenario.
"""
from __future__ import annotations

import math

from .sim_config import SimConfig
from .sim_devices import Device
from .sim_events import Ctx, Sink
from .sim_geo import World
from .sim_ipv6 import DualStack
from .sim_population import DAY, SignIn, TrustGrant, User

SETTLE_DAYS = 14 * DAY   # how long after a change its codes still count as that scenario


def _poisson(rnd, lam: float) -> int:
    """Knuth's method; lam is small (logins per day)."""
    limit, k, p = math.exp(-lam), 0, rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def login_times(user: User, t0: float, t_end: float) -> list[float]:
    rnd, times = user.rnd, []
    day = t0 + math.floor((user.start - t0) / DAY) * DAY
    while day < t_end:
        weekday = int((day // DAY + 4) % 7)            # 1970-01-01 was a Thursday
        lam = user.logins_per_day * (0.7 if weekday >= 5 else 1.0)
        for _ in range(_poisson(rnd, lam)):
            local_h = rnd.gauss(rnd.choice(user.hours), 1.2) % 24
            t = day + (local_h - user.metro.utc_offset_h) * 3600.0 + rnd.uniform(0, 59)
            if user.start <= t < t_end:
                times.append(t)
        day += DAY
    times.sort()
    return times


class Life:
    """Per-user state while replaying their period: devices, trust, current lease."""

    def __init__(self, user: User, cfg: SimConfig, world: World, sink: Sink):
        self.u, self.cfg, self.world, self.sink = user, cfg, world, sink
        self.devices: list[Device] = list(user.devices)
        self.weights = list(user.device_weights)
        self.phone_swapped = False
        self.dual = DualStack(cfg.seed, user, cfg.ipv6_share)
        if not user.new_user:      # established users already trust some devices
            for d in self.devices:
                if d.device_id and user.rnd.random() < 0.7:
                    d.trusted_until = user.start + user.rnd.uniform(0, cfg.trust_days) * DAY

    # ----------------------------------------------------------------- context
    def _swap_phone(self, t: float) -> None:
        u = self.u
        if u.new_phone is None or self.phone_swapped or t < u.new_phone_at:
            return
        self.phone_swapped = True
        for i, d in enumerate(self.devices):
            if d.kind == "phone":
                self.devices[i] = u.new_phone
                return
        self.devices.append(u.new_phone)
        self.weights.append(3.0)

    def context(self, t: float, device: Device) -> tuple[Ctx, str]:
        """Network + address for a sign-in, and the scenario it belongs to."""
        u, rnd = self.u, self.u.rnd
        trip = u.trip
        if trip and trip.start <= t < trip.end:
            kind = "mobile" if device.kind == "phone" and rnd.random() < 0.6 else "hotel"
            net = rnd.choice(self.world.of(trip.metro, kind) or self.world.of(trip.metro, "hotel"))
            ip = net.shared_ip(rnd)
            if net.kind == "mobile":
                ip = self.dual.mobile(net) or ip
            return Ctx(ip, device.user_agent, device.device_id, net), "travel"
        local_h = ((t / 3600.0) + u.metro.utc_offset_h) % 24
        weekday = int(((t + u.metro.utc_offset_h * 3600) // DAY + 4) % 7)
        if u.work_net and device.kind == "desktop" and weekday < 5 and 9 <= local_h < 17 \
                and rnd.random() < 0.7:
            return Ctx(u.work_ip, device.user_agent, device.device_id, u.work_net), "normal"
        if u.mobile_net and device.kind == "phone" and rnd.random() < 0.5:
            net = u.mobile_net
            ip = net.shared_ip(rnd)
            return Ctx(self.dual.mobile(net) or ip, device.user_agent, device.device_id, net), "mobile"
        ip = u.home_ip
        scenario = "normal"
        if u.ip_change_at is not None and t >= u.ip_change_at:
            ip = u.new_home_ip
            if t < u.ip_change_at + SETTLE_DAYS:
                scenario = "dynamic_ip"
        if u.ip_change_at is None:     # a dynamic_ip user's story is their IPv4 lease
            ip = self.dual.home(u.home_net, t) or ip
        return Ctx(ip, device.user_agent, device.device_id, u.home_net), scenario

    def scenario(self, t: float, device: Device, place: str) -> str:
        u = self.u
        if place == "travel":
            return "travel"
        if u.new_phone is not None and device is u.new_phone and t < u.new_phone_at + SETTLE_DAYS:
            return "new_phone"
        if u.new_user and t < u.start + SETTLE_DAYS:
            return "new_user"
        if device.device_id is None:
            return "cookieless"
        return place

    # ----------------------------------------------------------------- flows
    def sign_in(self, t: float) -> None:
        u, rnd, sink, cfg = self.u, self.u.rnd, self.sink, self.cfg
        self._swap_phone(t)
        device = rnd.choices(self.devices, weights=self.weights)[0]
        ctx, place = self.context(t, device)
        if rnd.random() < cfg.typo_rate:
            sink.event(t, "login", u.user_id, ctx, session_id=sink.session_id(), password_ok=False)
            t += rnd.uniform(4, 25)
        session = sink.session_id()
        sink.event(t, "login", u.user_id, ctx, session_id=session, password_ok=True)
        trusted = device.device_id is not None and device.trusted_until > t
        step_up = place == "travel" and rnd.random() < 0.5
        in_session = True
        if not trusted or step_up:
            in_session = self.login_code(t + rnd.uniform(0.4, 3.0), ctx, session, device,
                                         self.scenario(t, device, place))
        if in_session:
            asks = rnd.random() < 0.012
            u.signins.append(SignIn(t, session, ctx, device, asks))
            if asks:
                self.sensitive(t + rnd.uniform(60, 1800), ctx, session, device, place)

    def login_code(self, t: float, ctx: Ctx, session: str, device: Device, scenario: str) -> bool:
        u, rnd, sink, cfg = self.u, self.u.rnd, self.sink, self.cfg
        roll = rnd.random()
        outcome = "abandoned" if roll < cfg.abandon_rate else \
            "retry" if roll < cfg.abandon_rate + cfg.failed_code_rate else "ok"
        if outcome == "abandoned" and scenario in ("normal", "mobile"):
            scenario = "abandoned"
        code_id = sink.code(t, u.user_id, ctx, session_id=session, purpose="login", channel=u.channel,
                            label=0, scenario=scenario, password_compromised=False)
        self.maybe_feedback(t, code_id, scenario, ctx)
        if outcome == "abandoned":
            return False
        t += math.exp(rnd.gauss(math.log(20), 0.6))
        if outcome == "retry":
            sink.event(t, "code_verified", u.user_id, ctx, session_id=session, success=False)
            t += rnd.uniform(5, 30)
        sink.event(t, "code_verified", u.user_id, ctx, session_id=session, success=True)
        if device.device_id is not None and rnd.random() < cfg.trust_rate:
            t_trust = t + rnd.uniform(1, 4)
            sink.event(t_trust, "device_trusted", u.user_id, ctx, session_id=session)
            device.trusted_until = t + cfg.trust_days * DAY
            u.trust_grants.append(TrustGrant(t_trust, device))
        return True

    def sensitive(self, t: float, ctx: Ctx, session: str, device: Device, place: str) -> None:
        """User changes security settings or payment details from their own session."""
        u, rnd = self.u, self.u.rnd
        purpose = rnd.choice(["security_settings", "payment"])
        scenario = self.scenario(t, device, place)
        code_id = self.sink.code(t, u.user_id, ctx, session_id=session, purpose=purpose,
                                 channel=u.channel, label=0,
                                 scenario=scenario if scenario != "normal" else "legit_sensitive",
                                 password_compromised=False)
        self.maybe_feedback(t, code_id, scenario, ctx)
        self.sink.event(t + math.exp(rnd.gauss(math.log(25), 0.5)), "code_verified", u.user_id, ctx,
                        session_id=session, success=True)

    def password_reset(self, t: float) -> None:
        """User forgot the password: reset code (no session), verify, change; trust is revoked."""
        u, rnd, sink = self.u, self.u.rnd, self.sink
        self._swap_phone(t)
        device = rnd.choices(self.devices, weights=self.weights)[0]
        ctx, place = self.context(t, device)
        code_id = sink.code(t, u.user_id, ctx, session_id=None, purpose="password_reset",
                            channel=u.channel, label=0, scenario="password_reset",
                            password_compromised=False)
        self.maybe_feedback(t, code_id, "password_reset", ctx)
        t += math.exp(rnd.gauss(math.log(40), 0.5))
        sink.event(t, "code_verified", u.user_id, ctx, session_id=None, success=True)
        t_changed = t + rnd.uniform(20, 120)
        sink.event(t_changed, "password_changed", u.user_id, ctx)
        u.password_changes.append(t_changed)
        for d in self.devices:
            d.trusted_until = -1.0
        self.sign_in(t + rnd.uniform(150, 400))

    def maybe_feedback(self, t: float, code_id: str, scenario: str, ctx: Ctx) -> None:
        if scenario in ("normal", "mobile", "abandoned", "legit_sensitive"):
            return
        rnd = self.u.rnd
        if rnd.random() < self.cfg.feedback_odd:
            self.sink.event(t + rnd.uniform(1, 12) * 3600, "user_feedback", self.u.user_id, ctx,
                            code_event_id=code_id, verdict="me")


def live(user: User, cfg: SimConfig, world: World, sink: Sink, t0: float, t_end: float) -> None:
    life = Life(user, cfg, world, sink)
    reset_done = user.reset_at is None
    for t in login_times(user, t0, t_end):
        if not reset_done and t >= user.reset_at:
            reset_done = True
            life.password_reset(user.reset_at)
        life.sign_in(t)
    if not reset_done:
        life.password_reset(user.reset_at)
