"""Stolen sessions and stolen trusted-device cookies (issue #12; MITRE ATT&CK T1539, T1185).

The attacker acts inside a session that looks like the victim's: a trusted device id, the
victim's own user agent, a login from the victim's home. The security code shows up when
they try to change the phone number, e-mail, password or a payment method. A code_issued
then carries the requester's own ip / user agent / device id, which may differ from the
context of the session's login. Mixed into ``Attacks`` (sim_attacks), sharing its RNG and
victim pool; the modelling choices are documented in docs/results.md.
"""
from __future__ import annotations

import math

from .sim_devices import other_family, user_agent
from .sim_events import Ctx
from .sim_geo import Metro, Network
from .sim_population import DAY, SignIn, TrustGrant, User

MINUTE = 60.0
SENSITIVE = ("security_settings", "payment")
IPV6_ATTACKER = 0.2      # share of attacker hosts that come over IPv6 where their network has it


class StolenSessionAttacks:
    # ----------------------------------------------------------------- helpers
    def _places(self, user: User) -> set[Metro]:
        """Metros the user signs in from (home, and a trip's destination)."""
        return {user.metro} | ({user.trip.metro} if user.trip else set())

    def _host_ip(self, net: Network, fixed: bool = True) -> str:
        """An attacker host's address: IPv4, or IPv6 where the network has it."""
        rnd = self.rnd
        if net.v6 and rnd.random() < IPV6_ATTACKER:
            block = rnd.choice(net.v6)
            return block.address(rnd.getrandbits(64 - block.plen), rnd.getrandbits(64))
        return net.fixed_ip(rnd) if fixed else net.shared_ip(rnd)

    def _unused_net(self, user: User, hosting_share: float) -> Network:
        """A network in a city the user never signs in from: a hosting/VPN exit, or a
        residential proxy (broadband or mobile) abroad or elsewhere in the victim's country."""
        rnd, places = self.rnd, self._places(user)
        hosts = [n for n in self.world.hosting if n.metro not in places]
        if hosts and rnd.random() < hosting_share:
            return rnd.choice(hosts)
        abroad = rnd.random() < 0.75
        metros = [m for m in self.world.metros if m.weight > 0 and m not in places
                  and (m.country != user.metro.country) == abroad]
        metros = metros or [m for m in self.world.metros if m.weight > 0 and m not in places]
        metro = rnd.choice(metros)
        return rnd.choice(self.world.of(metro, "broadband") + self.world.of(metro, "mobile"))

    def _hijackable(self, user: User) -> list[SignIn]:
        """The user's own sessions a thief can ride: authenticated, without the user's own
        code activity after the login code (so no code entry of theirs can be mistaken for
        the thief's), early enough for the codes and the victim's feedback to fit."""
        return [s for s in user.signins if not s.sensitive and s.t < self.t_end - 1.5 * DAY]

    def _trust_windows(self, user: User) -> list[tuple[TrustGrant, float]]:
        """(grant, end) for device trust the detector saw granted: it lasts trust_days and
        ends at the next password change (trust is revoked)."""
        out = []
        for g in user.trust_grants:
            end = min(g.t + self.cfg.trust_days * DAY, self.t_end - 1.5 * DAY)
            end = min([end] + [p for p in user.password_changes if p > g.t])
            if end - g.t >= 0.5 * DAY:
                out.append((g, end))
        return out

    # ----------------------------------------------------------------- scenarios
    def session_hijack(self, share: float) -> None:
        """A replayed session cookie (infostealer log, pass-the-cookie): the victim signed in
        themselves, the thief asks for security/payment codes in that session from another
        network, often with the victim's user agent and device id (copied with the cookie).
        The password is not compromised; the session is."""
        rnd = self.rnd
        for user in self.victims_where(share, lambda u: bool(self._hijackable(u))):
            signin = rnd.choice(self._hijackable(user))
            # fresh cookies are used fast (automated), older ones within the session's life
            delay = rnd.uniform(10, 55) * MINUTE if rnd.random() < 0.6 else rnd.uniform(1, 12) * 3600
            net = self._unused_net(user, hosting_share=0.4)
            device = signin.device
            used = {d.family for d in user.devices}
            ua = device.user_agent if rnd.random() < 0.8 else user_agent(rnd, other_family(rnd, used))
            device_id = device.device_id if rnd.random() < 0.6 else None
            ctx = Ctx(self._host_ip(net), ua, device_id, net)
            t = signin.t + delay
            for _ in range(rnd.choice((1, 1, 2, 3))):
                self.code(t, user, ctx, "session_hijack", session=signin.session_id,
                          purpose=rnd.choice(SENSITIVE))
                t += rnd.uniform(0.5, 6) * MINUTE

    def infostealer(self, share: float) -> None:
        """Saved password + "remember this device" cookie: a login with the victim's trusted
        device id (and mostly their user agent) from a residential proxy, in the victim's own
        city or elsewhere. The trusted device skips the login code unless the platform steps
        up; then codes for the login or for sensitive changes are never entered."""
        rnd = self.rnd
        for user in self.victims_where(share, lambda u: bool(self._trust_windows(u))):
            grant, end = rnd.choice(self._trust_windows(user))
            device = grant.device
            # a residential proxy exit on another ISP in the victim's own city, or elsewhere
            mine = {user.home_net.key, user.work_net.key if user.work_net else None,
                    user.mobile_net.key if user.mobile_net else None}
            local = [n for kind in ("broadband", "mobile") for n in self.world.of(user.metro, kind)
                     if n.key not in mine]
            net = rnd.choice(local) if local and rnd.random() < 0.4 else \
                self._unused_net(user, hosting_share=0.0)
            ua = device.user_agent if rnd.random() < 0.8 else user_agent(rnd, device.family)
            ctx = Ctx(self._host_ip(net), ua, device.device_id, net)
            t = rnd.uniform(grant.t + 0.25 * DAY, end)
            for attempt in range(rnd.choice((1, 1, 2))):
                session = self.login(t, user, ctx, ok=True)
                if rnd.random() < 0.35:     # risk-based step-up despite the trusted device
                    self.code(t + rnd.uniform(0.5, 3), user, ctx, "infostealer", session=session)
                else:
                    t_code = t + rnd.uniform(1, 20) * MINUTE
                    for _ in range(rnd.choice((1, 1, 2))):
                        self.code(t_code, user, ctx, "infostealer", session=session,
                                  purpose=rnd.choice(SENSITIVE))
                        t_code += rnd.uniform(0.5, 5) * MINUTE
                t = min(t + rnd.uniform(2, 20) * 3600, end)

    def aitm_relay(self, share: float) -> None:
        """Adversary-in-the-middle phishing: the victim types password and login code into a
        proxy that relays them from its hosting-network host with the victim's user agent.
        The relayed login code is entered (scenario ``aitm_relay_login``, no not_me report:
        the victim thinks they signed in); minutes later the attacker uses the captured
        session from the same host and asks for security/payment codes (``aitm_relay``)."""
        rnd = self.rnd
        for user in self.victims(share):
            hosts = [n for n in self.world.hosting if n.metro not in self._places(user)]
            relay = rnd.choice(hosts or self.world.hosting)
            t = self.when(user)
            # phished on a device they use: the one of their latest (else first) sign-in
            before = [s.device for s in user.signins if s.t < t]
            device = before[-1] if before else \
                user.signins[0].device if user.signins else user.devices[0]
            # the real site's cookies are not sent to the phishing domain: the relay's cookie
            # jar gets a fresh device id (or none, when the kit drops cookies)
            device_id = f"d-{rnd.getrandbits(80):020x}" if rnd.random() < 0.7 else None
            ctx = Ctx(self._host_ip(relay), device.user_agent, device_id, relay)
            session = self.login(t, user, ctx, ok=True)
            t += rnd.uniform(0.5, 3)
            self.code(t, user, ctx, "aitm_relay_login", session=session, feedback=False)
            t += math.exp(rnd.gauss(math.log(25), 0.5))      # the victim types the code
            self.sink.event(t, "code_verified", user.user_id, ctx, session_id=session, success=True)
            t += rnd.uniform(2, 45) * MINUTE
            for _ in range(rnd.choice((1, 1, 2))):
                self.code(t, user, ctx, "aitm_relay", session=session, purpose=rnd.choice(SENSITIVE))
                t += rnd.uniform(0.5, 5) * MINUTE
