"""A code judged against its own session (issue #12): pure helpers for the engine and scorer.

Infostealer logs and AiTM phishing kits hand an attacker a session that looks like the
user's: the session's login came from the user's home, its cookie says "trusted device",
its user agent is the victim's (MITRE ATT&CK T1539, T1550.004, T1557, T1185). What they
cannot copy is *where they are*. So:

* :func:`compare` sets a code's own requester context (the ``ip`` / ``user_agent`` /
  ``device_id`` of its ``code_issued``) against the login of its session: network (ASN or
  block, prefix), place (city, distance and the speed it implies since the login), browser
  family, device id. What counts is how familiar the *new* context is for this user: a
  phone moving from Wi-Fi to its carrier, a carrier's CGNAT address, an IPv6 privacy address
  in the same prefix, a dual-stack switch or a corporate VPN on a network the user has
  proven stay quiet; a session that jumps to a network *and* a place the user never proved
  (or faster than anyone travels) is ``session_context_changed``.
* :func:`trusted_unfamiliar` says when a trusted-device cookie is presented from a context
  never proven by this user (``trusted_device_unfamiliar_context``): a new network and a new
  place, or impossible travel since the last proven sign-in (level 2); a new network in a
  known place (level 1: a residential proxy of another ISP in the victim's own city).
* :func:`wholly_unfamiliar` is the AiTM rule: a code entered from a context whose network
  and place the user never proved, on a device id they never proved (or none), may have been
  typed by the victim into a relay; it does not teach the baseline until corroborated.

"Familiar" means proven by this user (their baseline counts it), never merely seen.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from .baseline import Baseline
from .enrich import Context
from .geo import haversine_km
from .netkind import physical_place

STRONG, WEAK, FAMILIAR = 2, 1, 0          # ContextChange.level


def network_known(b: Baseline, ctx: Context) -> bool | None:
    """Has the user proven a sign-in from this network? None = no network known."""
    if ctx.network is None or ctx.private:
        return None
    return b.count("net0", ctx.network) > 0


def place_known(b: Baseline, ctx: Context) -> bool | None:
    """... from this city (or country, when the city is unknown)? None = no place known."""
    if ctx.city is not None:
        return b.count("loc1", ctx.city) > 0
    if ctx.country is not None:
        return b.count("loc0", ctx.country) > 0
    return None


class Trip(NamedTuple):
    """From the last proven sign-in to a context: distance and elapsed time."""
    km: float
    hours: float

    @property
    def speed(self) -> float:
        return self.km / self.hours


def impossible_from_last(b: Baseline, ctx: Context, t: float, cfg: dict) -> Trip | None:
    """The trip from the last proven sign-in when its speed is impossible, else None (the
    one impossible-travel rule of history terms and trusted-cookie checks)."""
    last = b.last_place
    if last is None or ctx.lat is None or ctx.lon is None or not physical_place(ctx):
        return None
    km = haversine_km(last.lat, last.lon, ctx.lat, ctx.lon)
    hours = max(abs(t - last.t) / 3600.0, 1 / 60)   # a decision may come after later proof
    if km >= cfg["impossible_travel_min_km"] and km / hours >= cfg["impossible_travel_kmh"]:
        return Trip(km, hours)
    return None


def trusted_unfamiliar(b: Baseline, ctx: Context | None, t: float, cfg: dict) -> tuple[int, str]:
    """(level, detail) for a trusted device id presented from an unfamiliar context:
    2 = new network and new place, or impossible travel; 1 = new network in a known place;
    0 = not a trusted device, or a context the user proved (or too little to tell)."""
    if ctx is None or ctx.device_id is None:
        return 0, ""
    if not b.trusted_now(ctx.device_id, t, cfg):
        return 0, ""
    net, place = network_known(b, ctx), place_known(b, ctx)
    if net and place:
        return 0, ""                 # a network and a place the user proved (a VPN exit too)
    trip = impossible_from_last(b, ctx, t, cfg)
    where = f"{ctx.network or 'unknown network'} in {_where(ctx)}"
    if trip is not None:
        return STRONG, (f"trusted device {ctx.device_id} from {where}: {trip.speed:,.0f} km/h from "
                        f"the last proven sign-in ({b.last_place.city or 'last place'})")
    if net is False and place is False:
        return STRONG, f"trusted device {ctx.device_id} from {where}: network and place never proven"
    if net is False:
        return WEAK, f"trusted device {ctx.device_id} from {where}: network never proven (place known)"
    return 0, ""


def wholly_unfamiliar(b: Baseline, ctx: Context | None, t: float, cfg: dict) -> bool:
    """The AiTM rule: network and place never proven (or impossible travel), and a device id
    the user never proved (or none). A brand-new user's first context is wholly unfamiliar
    too: trust on first use, after the quiet period."""
    if ctx is None:
        return False
    device = b.device(ctx.device_id)
    if device is not None and (device.count or device.trusted):
        return False
    if impossible_from_last(b, ctx, t, cfg) is not None:
        return True
    return network_known(b, ctx) is False and place_known(b, ctx) is False


@dataclass(slots=True)
class ContextChange:
    """The requester context of a code against the login context of its session."""
    ctx: Context                 # the context to judge the code by (the requester's)
    level: int                   # STRONG | WEAK | FAMILIAR
    network: bool                # another network (ASN or block) than the login's
    place_km: float | None       # distance from the login's place, when both are known
    speed_kmh: float | None      # implied speed since the login, when impossible
    device: bool                 # another device id than the login's
    browser: bool                # another browser family than the login's
    login: Context

    def detail(self) -> str:
        lo, rq = self.login, self.ctx
        what = []
        if self.network:
            what.append(f"network {lo.network} -> {rq.network}")
        if self.place_km is not None and self.place_km > 0:
            what.append(f"place {_where(lo)} -> {_where(rq)} ({self.place_km:,.0f} km"
                        + (f", {self.speed_kmh:,.0f} km/h" if self.speed_kmh else "") + ")")
        if self.device:
            what.append(f"device {lo.device_id} -> {rq.device_id}")
        if self.browser:
            what.append(f"browser {lo.browser} -> {rq.browser}")
        if not what:
            what.append(f"address {lo.ip} -> {rq.ip}")
        how = {STRONG: "a network and place this user never proved",
               WEAK: "a network this user never proved, in a known place",
               FAMILIAR: "a context this user has proven"}[self.level]
        return f"session login context vs requester: {'; '.join(what)} ({how})"


def compare(b: Baseline, login: Context, req: Context, elapsed_s: float,
            cfg: dict) -> ContextChange | None:
    """None when the requester context is the login's (same network, same place, same
    device and browser where the requester gives them), else the change and how familiar
    the new context is for this user."""
    if req.ip is None and req.device_id is None and req.browser is None:
        return None
    network = place = False
    km = speed = None
    if req.ip is not None and req.ip != login.ip:
        network = (req.network != login.network and req.network is not None
                   and login.network is not None and not req.private)
        if req.lat is not None and req.lon is not None and login.lat is not None \
                and login.lon is not None:
            km = haversine_km(login.lat, login.lon, req.lat, req.lon)
            place = km > cfg["same_place_km"]
            hours = max(elapsed_s / 3600.0, 1 / 60)
            if km >= cfg["impossible_travel_min_km"] and km / hours >= cfg["impossible_travel_kmh"] \
                    and physical_place(req) and physical_place(login):
                speed = km / hours
        elif req.city is not None and login.city is not None:
            place = req.city != login.city
    device = req.device_id is not None and login.device_id is not None \
        and req.device_id != login.device_id
    browser = req.browser is not None and login.browser is not None and req.browser != login.browser
    if not (network or place or device or browser or (req.ip is not None and req.ip != login.ip)):
        return None
    # judge the code by who asks: the requester's fields, the login's user agent where the
    # requester gave none (the device id is the requester's own, possibly none)
    ctx = req if req.ip is not None else replace(
        req, ip=login.ip, prefix=login.prefix, network=login.network, asn=login.asn,
        as_org=login.as_org, country=login.country, city=login.city, lat=login.lat,
        lon=login.lon, private=login.private)
    if ctx.browser is None and login.browser is not None:
        ctx = replace(ctx, user_agent=login.user_agent, browser=login.browser, os=login.os)
    level = FAMILIAR
    net_known, place_ok = network_known(b, req), place_known(b, req)
    net_new = network and net_known is False
    place_new = place and place_ok is False
    if net_known and place_ok:
        pass                         # a network and place the user proved: a VPN, a trip home
    elif speed is not None or (net_new and place_new):
        level = STRONG
    elif net_new or (device and b.device(req.device_id) is None):
        level = WEAK
    return ContextChange(ctx=ctx, level=level, network=network, place_km=km, speed_kmh=speed,
                         device=device, browser=browser, login=login)


def _where(ctx: Context) -> str:
    return (ctx.city or "").split("/", 1)[-1] or ctx.country or "unknown place"
