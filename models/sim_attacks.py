"""Attacks (label 1 codes). Attackers never enter the code: they lack the second factor
(one exception: the login code an AiTM phishing proxy relays, which the victim enters).

``password_compromised`` is true where the attacker typed the right password (the codes a
forced password reset would fix) and false for flows that need no password (reset-flow
abuse, SMS pumping) or that ride on the victim's own sign-in (session hijack).
``session_stolen`` is true where the attacker holds a session of the victim's (the codes
revoking sessions would fix); those scenarios live in sim_stolen.
"""
from __future__ import annotations

import random

from .sim_config import PASSWORD_KNOWN, SESSION_STOLEN, SimConfig
from .sim_devices import TOOL_UAS, other_family, user_agent
from .sim_events import Ctx, Sink
from .sim_geo import Metro, Network, World
from .sim_population import DAY, User
from .sim_stolen import MINUTE, StolenSessionAttacks


class Attacks(StolenSessionAttacks):
    def __init__(self, cfg: SimConfig, world: World, sink: Sink, users: list[User],
                 t0: float, t_end: float):
        self.cfg, self.world, self.sink, self.users = cfg, world, sink, users
        self.t0, self.t_end = t0, t_end
        self.rnd = random.Random(cfg.seed * 104729 + 3)
        self.free = list(range(len(users)))     # each victim is attacked by one scenario
        self.rnd.shuffle(self.free)

    # ----------------------------------------------------------------- helpers
    def victims(self, share: float) -> list[User]:
        k = round(len(self.users) * share)
        if share > 0 and k == 0:
            k = 1
        picked, self.free = self.free[:k], self.free[k:]
        return [self.users[i] for i in sorted(picked)]

    def victims_where(self, share: float, fits) -> list[User]:
        """Like victims(), among the free users for whom ``fits(user)`` holds."""
        k = round(len(self.users) * share)
        if share > 0 and k == 0:
            k = 1
        picked, rest = [], []
        for i in self.free:
            (picked if len(picked) < k and fits(self.users[i]) else rest).append(i)
        self.free = rest
        return [self.users[i] for i in sorted(picked)]

    def when(self, user: User) -> float:
        """Attack time: after the account exists, before the end (room for feedback)."""
        lo = max(user.start, self.t0) + 0.5 * DAY
        return self.rnd.uniform(min(lo, self.t_end - DAY), self.t_end - 0.5 * DAY)

    def device_ctx(self, net: Network, victim: User, shared: bool = True) -> Ctx:
        rnd = self.rnd
        used = {d.family for d in victim.devices}
        if victim.new_phone is not None:
            used.add(victim.new_phone.family)
        family = other_family(rnd, used)
        device_id = f"d-{rnd.getrandbits(80):020x}" if rnd.random() < 0.7 else None
        ip = net.shared_ip(rnd) if shared else net.fixed_ip(rnd)
        return Ctx(ip, user_agent(rnd, family), device_id, net)

    def foreign_net(self, user: User, kinds=("broadband", "mobile")) -> Network:
        metros = [m for m in self.world.metros if m.country != user.metro.country and m.weight > 0]
        metro = self.rnd.choice(metros)
        return self.rnd.choice([n for k in kinds for n in self.world.of(metro, k)])

    def code(self, t: float, user: User, ctx: Ctx, scenario: str, *, session: str | None,
             purpose: str = "login", channel: str | None = None, feedback: bool = True) -> None:
        rnd = self.rnd
        code_id = self.sink.code(t, user.user_id, ctx, session_id=session, purpose=purpose,
                                 channel=channel or user.channel, label=1, scenario=scenario,
                                 password_compromised=scenario in PASSWORD_KNOWN,
                                 session_stolen=scenario in SESSION_STOLEN)
        if feedback and rnd.random() < self.cfg.feedback_attack:
            home = Ctx(user.home_ip, user.devices[0].user_agent, user.devices[0].device_id,
                       user.home_net)
            self.sink.event(t + rnd.uniform(0.5, 12) * 3600, "user_feedback", user.user_id, home,
                            code_event_id=code_id, verdict="not_me")

    def login(self, t: float, user: User, ctx: Ctx, ok: bool) -> str:
        session = self.sink.session_id()
        self.sink.event(t, "login", user.user_id, ctx, session_id=session, password_ok=ok)
        return session

    # ----------------------------------------------------------------- scenarios
    def credential_stuffing(self, share: float) -> None:
        """Leaked-password runs from a few hosting/VPN IPs across many accounts; most guesses
        fail, the right ones trigger codes that are never entered."""
        rnd, hits = self.rnd, self.victims(share)
        per_run = 120
        for start in range(0, len(hits), per_run):
            run = hits[start:start + per_run]
            nets = rnd.sample(self.world.hosting, k=min(2, len(self.world.hosting)))
            ips = [(n, n.shared_ip(rnd)) for n in nets for _ in range(rnd.randint(1, 3))]
            ua = rnd.choice(TOOL_UAS) if rnd.random() < 0.3 else user_agent(rnd, "chrome_windows")
            t = self.t0 + rnd.uniform(2 * DAY, max(2 * DAY, (self.t_end - self.t0) - 2 * DAY))
            decoys = [u for u in self.users if u.start < t]
            targets = [(u, True) for u in run if u.start < t] + \
                      [(u, False) for u in rnd.sample(decoys, k=min(len(decoys), 2 * len(run)))
                       if u not in run]
            rnd.shuffle(targets)
            for user, correct in targets:
                net, ip = rnd.choice(ips)
                ctx = Ctx(ip, ua, None, net)
                t += rnd.expovariate(1 / 12.0)
                session = self.login(t, user, ctx, ok=correct)
                if correct:
                    self.code(t + rnd.uniform(0.5, 2), user, ctx, "credential_stuffing", session=session)
            for user in run:        # accounts created after the run get hit by a later retry
                if user.start >= t:
                    t2 = self.when(user)
                    net, ip = rnd.choice(ips)
                    ctx = Ctx(ip, ua, None, net)
                    session = self.login(t2, user, ctx, ok=True)
                    self.code(t2 + 1, user, ctx, "credential_stuffing", session=session)

    def targeted(self, share: float) -> None:
        """Someone in the victim's country with the password, over a few days."""
        rnd = self.rnd
        for user in self.victims(share):
            metros = [m for m in self.world.metros
                      if m.country == user.metro.country and m.weight > 0 and m is not user.metro]
            metro: Metro = rnd.choice(metros) if metros else user.metro
            nets = [n for n in self.world.of(metro, "broadband") + self.world.of(metro, "mobile")
                    if n is not user.home_net]
            ctx = self.device_ctx(rnd.choice(nets), user, shared=False)
            t = self.when(user)
            for _ in range(rnd.randint(1, 3)):
                if rnd.random() < 0.3:
                    self.login(t, user, ctx, ok=False)
                    t += rnd.uniform(10, 60)
                session = self.login(t, user, ctx, ok=True)
                self.code(t + rnd.uniform(0.5, 3), user, ctx, "targeted", session=session)
                t += rnd.uniform(0.2, 2) * DAY

    def stealthy_local(self, share: float) -> None:
        """Attacker on the victim's own ISP in the same city, other device and browser."""
        rnd = self.rnd
        for user in self.victims(share):
            ctx = self.device_ctx(user.home_net, user, shared=False)
            t = self.when(user)
            for _ in range(rnd.randint(1, 2)):
                session = self.login(t, user, ctx, ok=True)
                self.code(t + rnd.uniform(0.5, 3), user, ctx, "stealthy_local", session=session)
                t += rnd.uniform(1, 30) * 3600

    def code_bombing(self, share: float) -> None:
        """Password known: login after login within minutes, a code each time."""
        rnd = self.rnd
        for user in self.victims(share):
            net = self.foreign_net(user) if rnd.random() < 0.5 else rnd.choice(self.world.hosting)
            ctx = self.device_ctx(net, user)
            t = self.when(user)
            for _ in range(rnd.randint(4, 12)):
                session = self.login(t, user, ctx, ok=True)
                self.code(t + rnd.uniform(0.5, 2), user, ctx, "code_bombing", session=session)
                t += rnd.uniform(15, 60)

    def reset_abuse(self, share: float) -> None:
        """"Forgot password" on someone else's account: reset codes, no password, no session."""
        rnd = self.rnd
        for user in self.victims(share):
            net = rnd.choice(self.world.hosting) if rnd.random() < 0.5 else self.foreign_net(user)
            ctx = self.device_ctx(net, user)
            t = self.when(user)
            for _ in range(rnd.randint(1, 3)):
                self.code(t, user, ctx, "reset_abuse", session=None, purpose="password_reset")
                t += rnd.uniform(1, 20) * MINUTE

    def sms_pumping(self, share: float) -> None:
        """Toll fraud: codes sent to many accounts from one source, nobody ever enters them."""
        rnd, hits = self.rnd, self.victims(share)
        per_run = 80
        for start in range(0, len(hits), per_run):
            run = hits[start:start + per_run]
            net = rnd.choice(self.world.hosting)
            ip = net.shared_ip(rnd)
            ua = rnd.choice(TOOL_UAS + [user_agent(rnd, "chrome_android")])
            purpose = rnd.choice(["password_reset", "other"])
            t = self.when(run[0])
            for user in run:
                t_user = max(t, user.start + 1.0)
                self.code(t_user, user, Ctx(ip, ua, None, net), "sms_pumping", session=None,
                          purpose=purpose, channel="sms")
                t += rnd.expovariate(1 / 20.0)

    def sensitive_change(self, share: float) -> None:
        """Attacker signs in (no login code asked) then requests a security/payment code."""
        rnd = self.rnd
        for user in self.victims(share):
            net = self.foreign_net(user) if rnd.random() < 0.6 else rnd.choice(self.world.hosting)
            ctx = self.device_ctx(net, user)
            t = self.when(user)
            session = self.login(t, user, ctx, ok=True)
            purpose = rnd.choice(["security_settings", "payment"])
            self.code(t + rnd.uniform(30, 600), user, ctx, "sensitive_change", session=session,
                      purpose=purpose)

    def run(self) -> None:
        for name, share in self.cfg.attack_shares.items():
            if share > 0:
                getattr(self, name)(share)
