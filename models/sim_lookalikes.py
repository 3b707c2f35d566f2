"""Legitimate look-alikes of stolen sessions (label 0): a code whose requester context
differs from its session's login context for an innocent reason.

* ``network_switch``: the phone signs in on home Wi-Fi, then leaves it; the security or
  payment code is requested from the user's own mobile carrier.
* ``trusted_trip``: the user's trusted laptop signs in from another city or country (hotel
  Wi-Fi); the platform steps up with a login code, and the user enters every code.
* ``ipv6_privacy``: the device's temporary IPv6 address changes mid-session, within the same
  /64 (new privacy address) or the same delegated /56 (another home /64).
* ``vpn_toggle``: the corporate VPN goes on or off mid-session; one side is the user's work
  network, which they signed in from before.
* ``privacy_vpn``: a consumer VPN (75%) or a self-hosted VPN on a rented server turned on for
  a few days; the user's own browser signs in through an exit in another city (20%: a
  private window, no device id) and enters every code. The legitimate look-alike of an
  AiTM relay's datacenter network.

Played after every other scenario, from an RNG of its own and for users it picks itself
(one episode per user): the older scenarios keep their events, ids and random streams.
"""
from __future__ import annotations

import bisect
import math
import random

from .sim_config import LOOKALIKES, SimConfig
from .sim_devices import Device
from .sim_events import Ctx, Sink
from .sim_geo import World
from .sim_ipv6 import DualStack
from .sim_population import DAY, User

MINUTE = 60.0
SENSITIVE = ("security_settings", "payment")


class LookAlikes:
    def __init__(self, cfg: SimConfig, world: World, sink: Sink, users: list[User],
                 t0: float, t_end: float):
        self.cfg, self.world, self.sink, self.users = cfg, world, sink, users
        self.t0, self.t_end = t0, t_end
        self.rnd = random.Random(cfg.seed * 15485863 + 5)
        self.taken: set[int] = set()

    # ----------------------------------------------------------------- helpers
    def pick(self, share: float, plan) -> list[tuple[User, object]]:
        """Up to share x users (one episode per user), in random order among those for whom
        ``plan(user)`` finds an episode (a time, a window...); returned by user index."""
        k = round(len(self.users) * share)
        if share > 0 and k == 0:
            k = 1
        order = [u for u in self.users if u.idx not in self.taken]
        self.rnd.shuffle(order)
        chosen = []
        for user in order:
            if len(chosen) == k:
                break
            episode = plan(user)
            if episode is not None:
                chosen.append((user, episode))
        self.taken.update(u.idx for u, _ in chosen)
        return sorted(chosen, key=lambda ue: ue[0].idx)

    def when(self, user: User, after: float = 0.0) -> float | None:
        """A moment at home: after the account exists (and ``after``), not on the user's trip."""
        lo = max(user.start, self.t0, after) + 0.5 * DAY
        hi = self.t_end - DAY
        trip = user.trip
        for _ in range(10):
            if lo >= hi:
                return None
            t = self.rnd.uniform(lo, hi)
            if not (trip and trip.start - DAY <= t < trip.end + DAY):
                return t
        return None

    def trusted_at(self, user: User, device: Device, t: float) -> bool:
        """Did the platform (and the detector, via device_trusted) trust the device at t?"""
        for g in user.trust_grants:
            if g.device is device and g.t <= t < g.t + self.cfg.trust_days * DAY \
                    and not any(g.t < p <= t for p in user.password_changes):
                return True
        return False

    def phone(self, user: User, t: float) -> Device | None:
        if user.new_phone is not None and t >= user.new_phone_at:
            return user.new_phone
        return next((d for d in user.devices if d.kind == "phone" and d.device_id), None)

    def home_ctx(self, user: User, device: Device, t: float, dual: DualStack) -> Ctx:
        ip = user.new_home_ip if user.ip_change_at is not None and t >= user.ip_change_at \
            else user.home_ip
        if user.ip_change_at is None:
            ip = dual.home(user.home_net, t) or ip
        return Ctx(ip, device.user_agent, device.device_id, user.home_net)

    def sign_in(self, t: float, user: User, ctx: Ctx, device: Device) -> str:
        """The user's own sign-in; a login code (entered) unless the device is trusted."""
        session = self.sink.session_id()
        self.sink.event(t, "login", user.user_id, ctx, session_id=session, password_ok=True)
        if not self.trusted_at(user, device, t):
            self.entered(t + self.rnd.uniform(0.4, 3.0), user, ctx, session, "login", "normal")
        return session

    def entered(self, t: float, user: User, ctx: Ctx, session: str, purpose: str,
                scenario: str) -> float:
        """A code the requester enters; returns when it was entered."""
        rnd = self.rnd
        code_id = self.sink.code(t, user.user_id, ctx, session_id=session, purpose=purpose,
                                 channel=user.channel, label=0, scenario=scenario,
                                 password_compromised=False)
        if scenario != "normal" and rnd.random() < self.cfg.feedback_odd:
            self.sink.event(t + rnd.uniform(1, 12) * 3600, "user_feedback", user.user_id, ctx,
                            code_event_id=code_id, verdict="me")
        t += math.exp(rnd.gauss(math.log(25), 0.5))
        self.sink.event(t, "code_verified", user.user_id, ctx, session_id=session, success=True)
        return t

    def sensitive_codes(self, t: float, user: User, ctx: Ctx, session: str, scenario: str) -> None:
        for _ in range(self.rnd.choice((1, 1, 2))):
            t = self.entered(t, user, ctx, session, self.rnd.choice(SENSITIVE), scenario)
            t += self.rnd.uniform(0.5, 5) * MINUTE

    # ----------------------------------------------------------------- scenarios
    def network_switch(self, share: float) -> None:
        rnd = self.rnd
        fits = lambda u: u.mobile_net is not None and self.phone(u, 0.0) is not None   # noqa: E731
        for user, t in self.pick(share, lambda u: self.when(u) if fits(u) else None):
            dual = DualStack(self.cfg.seed, user, self.cfg.ipv6_share, stream="lookalike")
            phone = self.phone(user, t)
            session = self.sign_in(t, user, self.home_ctx(user, phone, t, dual), phone)
            net = user.mobile_net
            v4 = net.shared_ip(rnd)          # drawn either way: IPv6 use does not shift the stream
            ip = dual.mobile(net) or v4
            carrier = Ctx(ip, phone.user_agent, phone.device_id, net)
            self.sensitive_codes(t + rnd.uniform(3, 40) * MINUTE, user, carrier, session,
                                 "network_switch")

    def trusted_trip(self, share: float) -> None:
        rnd = self.rnd
        homes = [m for m in self.world.metros if m.weight > 0]

        def laptop(u: User) -> Device | None:
            return next((d for d in u.devices if d.kind == "desktop" and d.device_id), None)

        def plan(u: User):
            if laptop(u) is None or u.new_user:
                return None
            return self._quiet_window(u, self.rnd.uniform(2, 6) * DAY)

        for user, (begin, end) in self.pick(share, plan):
            device = laptop(user)
            if not self.trusted_at(user, device, begin):   # trusted at home before leaving
                t = begin - rnd.uniform(0.5, 3) * DAY
                ctx = self.home_ctx(user, device, t, DualStack(self.cfg.seed, user, 0.0))
                session = self.sink.session_id()
                self.sink.event(t, "login", user.user_id, ctx, session_id=session, password_ok=True)
                t = self.entered(t + rnd.uniform(0.4, 3.0), user, ctx, session, "login", "normal")
                self.sink.event(t + rnd.uniform(1, 4), "device_trusted", user.user_id, ctx,
                                session_id=session)
            abroad = rnd.random() < 0.6
            dests = [m for m in homes if m is not user.metro and (m.country != user.metro.country) == abroad]
            dest = rnd.choice(dests or [m for m in homes if m is not user.metro])
            t = begin
            for n in range(rnd.randint(2, 4)):
                net = rnd.choice(self.world.of(dest, "hotel") or self.world.of(dest, "broadband"))
                ctx = Ctx(net.shared_ip(rnd), device.user_agent, device.device_id, net)
                session = self.sink.session_id()
                self.sink.event(t, "login", user.user_id, ctx, session_id=session, password_ok=True)
                if n == 0 or rnd.random() < 0.3:     # risk-based step-up at a new place
                    self.entered(t + rnd.uniform(0.4, 3.0), user, ctx, session, "login", "trusted_trip")
                if rnd.random() < 0.3:
                    self.sensitive_codes(t + rnd.uniform(2, 30) * MINUTE, user, ctx, session,
                                         "trusted_trip")
                t += rnd.uniform(0.5, 1.5) * DAY
                if t >= end:
                    break

    def _quiet_window(self, user: User, length: float) -> tuple[float, float] | None:
        """A stretch of the period with none of the user's own sign-ins (their phone does not
        sign in from home while the laptop is abroad) and away from their own trip."""
        times = [s.t for s in user.signins]
        lo = max(user.start, self.t0) + 4 * DAY
        hi = self.t_end - length - DAY
        for _ in range(20):
            if lo >= hi:
                return None
            begin = self.rnd.uniform(lo, hi)
            end = begin + length
            i = bisect.bisect_left(times, begin - 0.5 * DAY)
            busy = i < len(times) and times[i] < end + 0.5 * DAY
            trip = user.trip
            if not busy and not (trip and trip.start - DAY < end and begin < trip.end + DAY):
                return begin, end
        return None

    def ipv6_privacy(self, share: float) -> None:
        rnd = self.rnd
        fits = lambda u: bool(u.home_net.v6) and u.ip_change_at is None and \
            any(d.device_id for d in u.devices)                                   # noqa: E731
        for user, t in self.pick(share, lambda u: self.when(u) if fits(u) else None):
            dual = DualStack(self.cfg.seed, user, self.cfg.ipv6_share, stream="lookalike")
            device = rnd.choice([d for d in user.devices if d.device_id])
            if device.kind == "phone":
                device = self.phone(user, t) or device
            first = dual.home(user.home_net, t, force=True)
            session = self.sign_in(t, user, Ctx(first, device.user_agent, device.device_id,
                                                user.home_net), device)
            if rnd.random() < 0.7:     # the OS made a new temporary address in the same /64
                later = dual.same_64(first)
            else:                      # another /64 of the household's /56 (another SSID/VLAN)
                later = dual.home(user.home_net, t, lan=rnd.randrange(1, 256), force=True)
            ctx = Ctx(later, device.user_agent, device.device_id, user.home_net)
            self.sensitive_codes(t + rnd.uniform(5, 50) * MINUTE, user, ctx, session, "ipv6_privacy")

    def vpn_toggle(self, share: float) -> None:
        rnd = self.rnd

        def first_work(u: User):
            return next((s for s in u.signins if u.work_net and s.ctx.net is u.work_net), None)

        def plan(u: User):
            seen = first_work(u)
            return None if seen is None else self.when(u, after=seen.t)

        for user, t in self.pick(share, plan):
            seen = first_work(user)
            device = seen.device
            dual = DualStack(self.cfg.seed, user, self.cfg.ipv6_share, stream="lookalike")
            home = self.home_ctx(user, device, t, dual)
            vpn_ip = user.work_ip if rnd.random() < 0.5 else user.work_net.fixed_ip(rnd)
            vpn = Ctx(vpn_ip, device.user_agent, device.device_id, user.work_net)
            login, later = (home, vpn) if rnd.random() < 0.5 else (vpn, home)   # VPN on / off
            session = self.sign_in(t, user, login, device)
            self.sensitive_codes(t + rnd.uniform(3, 40) * MINUTE, user, later, session, "vpn_toggle")

    def privacy_vpn(self, share: float) -> None:
        rnd = self.rnd
        fits = lambda u: any(d.device_id for d in u.devices)                  # noqa: E731
        for user, t in self.pick(share, lambda u: self.when(u) if fits(u) else None):
            exits = [n for n in self.world.hosting if n.metro is not user.metro]
            consumer = [n for n in exits if "VPN" in n.as_org]
            net = rnd.choice(consumer if consumer and rnd.random() < 0.75 else exits)
            device = rnd.choice([d for d in user.devices if d.device_id])
            if device.kind == "phone":
                device = self.phone(user, t) or device
            private = rnd.random() < 0.2
            for _ in range(rnd.randint(1, 4)):
                ctx = Ctx(net.shared_ip(rnd), device.user_agent,
                          None if private else device.device_id, net)
                session = self.sink.session_id()
                self.sink.event(t, "login", user.user_id, ctx, session_id=session, password_ok=True)
                if private or not self.trusted_at(user, device, t) or rnd.random() < 0.3:
                    self.entered(t + rnd.uniform(0.4, 3.0), user, ctx, session, "login", "privacy_vpn")
                if rnd.random() < 0.15:
                    self.sensitive_codes(t + rnd.uniform(2, 30) * MINUTE, user, ctx, session,
                                         "privacy_vpn")
                t += rnd.uniform(0.1, 1.5) * DAY
                if t >= self.t_end - 0.5 * DAY:
                    break

    def run(self) -> None:
        for name in LOOKALIKES:
            share = self.cfg.legit_shares.get(name, 0.0)
            if share > 0:
                getattr(self, name)(share)
