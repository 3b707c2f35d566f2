"""Risk score of one code request, as a sum of explained log-odds terms.

History terms follow risk-based authentication (Freeman et al., NDSS 2016): for each
feature hierarchy (network: ASN -> /24, location: country -> city, user agent: OS ->
browser, device) the log likelihood ratio  log p(x | attacker) - log p(x | this user),
with the attacker modelled by the population's frequencies and the user's estimate
smoothed towards the population:  p_u(x) = (c_u(x) + a * p_g(x)) / (N_u + a).
A value the user never used scores log((N_u + a) / a): nothing on day one (learning mode
falls out of the maths), more as the history grows. Correlated families (network and
location move together when travelling; device and browser together with a new phone)
are combined so that one life event is not counted twice.
Context terms add what history cannot see: travel speed, cross-user fan-out, network
reputation, code bombing, sensitive purposes, orphan codes, and whether the code was
entered at all. Session terms (issue #12, detector/session_context.py) judge a code against
its own session: a requester context that left the login's for one the user never proved,
a trusted-device cookie presented from an unfamiliar context, a session opened before the
last password change, a session whose login code was entered from a wholly unfamiliar
context (a possible AiTM relay). Where the session itself is in doubt, its familiarity is
no proof: the device (and, for a session older than a password change, also the network
and place) cannot lower the score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from .baseline import Baseline, DeviceEntry, hour_of
from .contract import utc_iso
from .enrich import Context
from .netkind import RELAY_KINDS
from .population import Population
from .session_context import STRONG, WEAK, ContextChange, impossible_from_last

DEVICE_GLOBAL_P = 1e-4            # a device id belongs to one user: globally rare by design
SENSITIVE = frozenset({"security_settings", "payment"})


@dataclass(slots=True)
class Term:
    code: str
    detail: str | Callable[[], str]   # callables are rendered only when an alert needs them
    weight: float
    verification: bool = False     # depends on the code being entered (not known at issue time)

    def text(self) -> str:
        return self.detail if isinstance(self.detail, str) else self.detail()


@dataclass(slots=True)
class Verdict:
    score: float
    issue_score: float
    severity: str | None
    terms: list[Term] = field(default_factory=list)

    def reasons(self) -> list[dict]:
        ordered = sorted(self.terms, key=lambda term: (-term.weight, term.code))
        return [{"code": term.code, "detail": term.text(), "weight": round(term.weight, 3)}
                for term in ordered]

    def codes(self) -> set[str]:
        return {term.code for term in self.terms if term.weight > 0}


@dataclass(slots=True)
class Signals:
    """Everything the scorer needs besides the baseline, gathered by the engine."""
    t: float
    purpose: str
    flow: str
    ctx: Context | None
    verified: bool | None            # None = not waited for (verify window 0)
    failed_attempts: int = 0
    codes_in_window: int = 1
    ip_users: int = 0
    ip_failure_ratio: float | None = None
    net_users: int = 0
    net_failure_ratio: float | None = None
    net_decided: float = 0.0
    net_unverified_ratio: float | None = None
    feedback_not_me: bool = False
    change: ContextChange | None = None      # requester context vs the session's login
    trusted: tuple[int, str] = (0, "")       # trusted device from an unfamiliar context: level, detail
    pw_session: tuple[int, int] | None = None  # (session login t, password change t) when older
    held_entered: bool = False               # session's code was entered from a wholly unfamiliar context
    not_proof: int = 0                       # 1: device familiarity is no proof; 2: nor network/place


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def severity_of(score: float, bands: dict) -> str | None:
    for name in ("critical", "high", "medium", "low"):
        if score >= bands[name]:
            return name
    return None


def _clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def _mixture(raw_llr: float, share: float) -> float:
    """Attacker = mixture: a `share` of attackers look like the user (same ISP, same city).

    log LR = log((1 - share) * p_pop/p_user + share): familiarity can lower the odds by at
    most log(share), so a local attacker is not cancelled out by the place alone.
    """
    return math.log((1.0 - share) * math.exp(min(raw_llr, 50.0)) + share)


def _family_llr(b: Baseline, pop: Population, family: str, coarse: str | None,
                fine: str | None, alpha: float) -> float:
    """Hierarchical log LR over the (coarse, fine) levels of one feature family."""
    name0, name1 = _LEVELS[family]
    log = math.log
    c0 = b.count(name0, coarse)
    pg0 = pop.p(name0, coarse)
    llr = log(pg0) - log((c0 + alpha * pg0) / (b.total(name0) + alpha))
    if fine is not None:
        pg1 = pop.p_given(name1, fine, name0, coarse)
        c1 = b.count(name1, fine)
        llr += log(pg1) - log((c1 + alpha * pg1) / (c0 + alpha))
    return llr


_LEVELS = {family: (f"{family}0", f"{family}1") for family in ("net", "loc", "ua")}


def _combine(a: float, b: float) -> float:
    """Two correlated terms: the strongest evidence for counts fully, the other a third;
    likewise against; evidence for and against adds up."""
    hi, lo = (a, b) if a >= b else (b, a)
    if lo > 0:
        return hi + 0.3 * lo             # both for
    if hi < 0:
        return lo + 0.3 * hi             # both against: lo is the strongest
    return (hi if hi > 0 else 0.0) + (lo if lo < 0 else 0.0)


def history_terms(b: Baseline, pop: Population, ctx: Context, t: float, cfg: dict,
                  not_proof: int = 0, relayed: bool = False) -> list[Term]:
    """History terms of one context; ``not_proof`` >= 1 keeps the device/browser term from
    going below 0 (a copied cookie is no proof), 2 also the network/place term. ``relayed``
    (a hosting / proxy / Tor network the user never used): the user agent is no proof either,
    as a phishing relay forwards the victim's own; a known device cookie still is (the real
    site's cookies never reach a phishing domain)."""
    alpha = cfg["smoothing_alpha"]
    local, on_device = cfg["local_attacker_share"], cfg["device_attacker_share"]
    weights = cfg["weights"]
    lo, hi = weights["term_min"], weights["term_max"]
    out: list[Term] = []
    memo: list[dict] = []

    def summary() -> dict:
        if not memo:
            memo.append(b.summary())
        return memo[0]
    # --- network + location (move together when travelling)
    net = loc = 0.0
    if ctx.network is not None:
        net = _clip(_mixture(_family_llr(b, pop, "net", ctx.network, ctx.prefix, alpha), local), lo, hi)
    if ctx.country is not None:
        loc = _clip(_mixture(_family_llr(b, pop, "loc", ctx.country, ctx.city, alpha), local), lo, hi)
    netloc = max(_combine(net, loc), math.log(local))
    if not_proof >= 2:
        netloc = max(netloc, 0.0)
    if ctx.network is not None or ctx.country is not None:
        out.append(Term(_netloc_code(b, ctx),
                        lambda: _netloc_detail(ctx, summary(), net, loc), netloc))
    if unfamiliar_anonymizer(b, ctx):
        out.append(Term("anonymizing_network",
                        f"{ctx.network}{f' ({ctx.as_org})' if ctx.as_org else ''} is a "
                        f"{ctx.anonymizer} network this user never proved a sign-in from",
                        weights["anonymizing_network"][ctx.anonymizer]))
    # --- device + user agent (a new phone changes both)
    dev = ua = 0.0
    known = b.device(ctx.device_id)
    if ctx.device_id is None:
        dev = weights["null_device"]
    else:
        count = max(known.count, 1) if known else 0
        n_dev = b.device_total() + (0 if known is None or known.count else 1)
        p_user = (count + alpha * DEVICE_GLOBAL_P) / (n_dev + alpha)
        dev = _clip(_mixture(_LOG_DEVICE_GLOBAL_P - math.log(p_user), on_device), lo, hi)
    if ctx.os is not None:
        ua = _clip(_mixture(_family_llr(b, pop, "ua", ctx.os, ctx.browser, alpha), local), lo, hi)
        if relayed:
            ua = max(ua, 0.0)
    devua = max(_combine(dev, ua), math.log(on_device if known else local))
    if not_proof >= 1:
        devua = max(devua, 0.0)
    out.append(Term(_devua_code(b, ctx, known),
                    lambda: _devua_detail(ctx, summary(), known, dev, ua, relayed), devua))
    # --- hour-of-day habit (UTC; a user's habit is consistent in any zone)
    hours_seen = b.hours
    n_hours = sum(hours_seen)
    if n_hours:
        h = hour_of(t)
        near = hours_seen[h] + hours_seen[(h - 1) % 24] + hours_seen[(h + 1) % 24]
        p_user = (near + alpha * 3 / 24) / (n_hours + alpha)
        hour = _clip(_LOG_3_24 - math.log(p_user), -1.0, 1.0)
        if abs(hour) >= 0.05:
            out.append(Term("unusual_hour" if hour > 0 else "usual_hour",
                            partial(_hour_detail, h, near, n_hours), hour))
    # --- travel speed since the last proven sign-in
    trip = impossible_from_last(b, ctx, t, cfg)
    if trip is not None:
        out.append(Term("impossible_travel",
                        f"{b.last_place.city or 'last place'} -> {ctx.city or ctx.country}: "
                        f"{trip.km:,.0f} km in {trip.hours:.1f} h ({trip.speed:,.0f} km/h)",
                        weights["impossible_travel"]))
    return out


def unfamiliar_anonymizer(b: Baseline, ctx: Context | None) -> bool:
    """The context comes from a hosting / VPN / proxy / Tor network (detector/netkind.py)
    that the user never proved a sign-in from (their own VPN, once learned, is familiar)."""
    return ctx is not None and ctx.anonymizer is not None and not b.count("net0", ctx.network)


def relayed_context(b: Baseline, ctx: Context | None) -> bool:
    """A phishing relay (AiTM) could stand behind this context: a hosting / proxy / Tor
    network the user never used, and no device cookie of the user's (the real site's cookies
    never reach a phishing domain, so a relay cannot present one)."""
    return (unfamiliar_anonymizer(b, ctx) and ctx.anonymizer in RELAY_KINDS
            and b.device(ctx.device_id) is None)


def _hour_detail(h: int, near: int, n_hours: int) -> str:
    share = 100.0 * near / n_hours
    return f"{h:02d}:00 UTC; {share:.0f}% of {n_hours} proven sign-ins were within an hour of it"


_LOG_DEVICE_GLOBAL_P = math.log(DEVICE_GLOBAL_P)
_LOG_3_24 = math.log(3 / 24)


def _netloc_code(b: Baseline, ctx: Context) -> str:
    if b.count("net0", ctx.network):
        if b.count("loc1", ctx.city):
            return "known_network_and_place" if b.count("net1", ctx.prefix) else "new_address_known_network"
        return "new_place_known_network"
    if b.count("loc0", ctx.country):
        return "new_network"
    return "new_network_and_country" if ctx.country else "new_network"


def _netloc_detail(ctx: Context, summary: dict, net: float, loc: float) -> str:
    where = (ctx.city or "").split("/", 1)[-1] or ctx.country or "unknown place"
    net_name = ctx.network + (f" ({ctx.as_org})" if ctx.as_org else "") if ctx.network else "unknown network"
    known_nets = ", ".join(summary["networks"]) or "none"
    known_places = ", ".join(summary["cities"] or summary["countries"]) or "none"
    return (f"{net_name} prefix {ctx.prefix} in {where}; user's networks: {known_nets}; "
            f"places: {known_places} (network {net:+.1f}, location {loc:+.1f})")


def _devua_code(b: Baseline, ctx: Context, known: DeviceEntry | None) -> str:
    if ctx.device_id is None:
        return "no_device_id"
    if known is None:
        return "new_device"
    if ctx.browser and not b.count("ua1", ctx.browser):
        return "known_device_new_browser"
    return "trusted_device" if known.trusted else "known_device"


def _devua_detail(ctx: Context, summary: dict, known: DeviceEntry | None, dev: float,
                  ua: float, relayed: bool = False) -> str:
    if ctx.device_id is None:
        what = "no device id (cookie-less or blocked browser)"
    elif known is None:
        what = f"device {ctx.device_id} never seen"
    else:
        what = f"device {ctx.device_id} seen {known.count}x" + (", trusted" if known.trusted else "")
    browsers = ", ".join(summary["browsers"]) or "none"
    return (f"{what}; user has {summary['devices']} known devices ({summary['trusted_devices']} "
            f"trusted); {ctx.browser or 'no user agent'} vs known {browsers} "
            f"(device {dev:+.1f}, user agent {ua:+.1f}"
            f"{'; no credit for a familiar one through a possible relay' if relayed else ''})")


def context_terms(sig: Signals, cfg: dict, relayed: bool = False) -> list[Term]:
    """Terms besides history; ``relayed``: the context is a hosting / proxy / Tor network the
    user never used, from which a phishing relay gets codes entered (AiTM)."""
    w = cfg["weights"]
    out: list[Term] = []
    fan_ip, fan_net = cfg["fanout_ip_users"], cfg["fanout_network_users"]
    for label, users, ratio, (warn, strong) in (
            ("ip", sig.ip_users, sig.ip_failure_ratio, fan_ip),
            ("network", sig.net_users, sig.net_failure_ratio, fan_net)):
        if users >= warn:
            badness = 1.0 if ratio is None else min(1.0, 2.0 * ratio)
            weight = (w["fanout_strong"] if users >= strong else w["fanout_warn"]) * badness
            seen = "no outcomes yet" if ratio is None else f"{100 * ratio:.0f}% failed"
            out.append(Term(f"fanout_{label}",
                            f"{users} distinct users signed in or got codes from this {label} in "
                            f"{cfg['fanout_window_s'] // 60} min ({seen})", weight))
    if sig.net_unverified_ratio is not None and sig.net_decided >= 5 and sig.net_unverified_ratio >= 0.6:
        out.append(Term("network_reputation",
                        f"{100 * sig.net_unverified_ratio:.0f}% of ~{sig.net_decided:.0f} recent codes "
                        f"from this network were never entered",
                        w["network_reputation"] * (sig.net_unverified_ratio - 0.4) / 0.6))
    warn, strong = cfg["bombing_codes"]
    if sig.codes_in_window >= warn:
        out.append(Term("code_bombing",
                        f"{sig.codes_in_window} codes for this user within "
                        f"{cfg['bombing_window_s'] // 60} min",
                        w["bombing_strong"] if sig.codes_in_window >= strong else w["bombing_warn"]))
    if sig.purpose in SENSITIVE:
        out.append(Term("sensitive_purpose", f"code protects a {sig.purpose.replace('_', ' ')} change",
                        w["sensitive_purpose"]))
    if sig.flow == "no_session" and sig.purpose != "password_reset":
        out.append(Term("orphan_code", f"{sig.purpose} code with no login session behind it",
                        w["orphan_code"]))
    if sig.flow == "login_missing":
        out.append(Term("login_missing", "the session's login event never arrived", w["login_missing"]))
    if sig.purpose == "password_reset" and w["reset_flow"]:
        out.append(Term("reset_flow", "password-reset code (no password involved)", w["reset_flow"]))
    if sig.ctx is None:
        out.append(Term("context_unknown", "no IP, device or user agent known for the requester", 0.0))
    elif sig.ctx.private:
        out.append(Term("private_ip", f"{sig.ctx.ip} is private/reserved: no geolocation", 0.0))
    if sig.verified is True and relayed:
        out.append(Term("code_verified", "the code was entered, but from a "
                        f"{sig.ctx.anonymizer} network the user never used: a phishing relay "
                        "(AiTM) gets codes entered too", w["verified_via_relay"], True))
    elif sig.verified is True:
        out.append(Term("code_verified", "the code was entered successfully", w["verified"], True))
    elif sig.verified is False:
        out.append(Term("code_not_entered",
                        f"the code was not entered within {cfg['verify_window_s']} s", w["not_verified"], True))
    if sig.failed_attempts:
        out.append(Term("failed_code_attempts", f"{sig.failed_attempts} wrong code(s) entered",
                        w["failed_attempts"] * min(sig.failed_attempts, 3), True))
    session_terms(sig, cfg, out)
    if sig.feedback_not_me:
        out.append(Term("feedback_not_me", "the user reported this code as not requested by them",
                        w["feedback_not_me"], True))
    return out


def session_terms(sig: Signals, cfg: dict, out: list[Term]) -> None:
    """The code judged against its own session (issue #12)."""
    w = cfg["weights"]
    change = sig.change
    if change is not None and (change.level or change.network or change.device
                               or (change.place_km or 0) > cfg["same_place_km"]):
        factor = {STRONG: 1.0, WEAK: 0.3}.get(change.level, 0.0)
        out.append(Term("session_context_changed", change.detail,
                        w["session_context_changed"] * factor))
    level, detail = sig.trusted
    if level and sig.verified is not True:
        # the second factor passed from that very context shows the cookie's owner (a
        # trip, a VPN): only a code left unentered counts, like unproven_session below
        out.append(Term("trusted_device_unfamiliar_context", detail,
                        w["trusted_device_unfamiliar"], True))
    if sig.pw_session is not None:
        opened, changed = sig.pw_session
        out.append(Term("session_predates_password_change",
                        lambda: f"session opened {utc_iso(opened)}, before the last password change "
                                f"at {utc_iso(changed)}: it proves nothing since",
                        w["session_predates_password_change"]))
    if sig.held_entered and sig.verified is not True:
        # a code that is entered shows the second factor again: only a code left unentered
        # in such a session counts (so the term depends on the outcome, like code_not_entered)
        out.append(Term("unproven_session",
                        "the session's only proof is a code entered from a network, place and "
                        "device this user never proved (a relayed login, AiTM?), and this code "
                        "was not entered", w["unproven_session"], True))


def score_code(b: Baseline, pop: Population, sig: Signals, cfg: dict) -> Verdict:
    """Score one code request. Pure: same inputs, same verdict."""
    terms: list[Term] = []
    relayed = relayed_context(b, sig.ctx)
    if sig.ctx is not None:
        terms.extend(history_terms(b, pop, sig.ctx, sig.t, cfg, sig.not_proof, relayed))
    terms.extend(context_terms(sig, cfg, relayed))
    if b.proven < cfg["learning_min_proven"]:
        terms.append(Term("learning_mode",
                          f"user has only {b.proven} proven sign-ins; history-based evidence is weak", 0.0))
    scale = cfg.get("term_scale") or {}
    if scale:                                   # a calibration learned by `straycode train`
        for term in terms:
            term.weight *= scale.get(term.code, 1.0)
    bias = cfg["bias"]
    issue_logit = bias + sum([t.weight for t in terms if not t.verification])
    logit = bias + sum([t.weight for t in terms])
    score = round(sigmoid(logit), 6)
    return Verdict(score, round(sigmoid(issue_logit), 6), severity_of(score, cfg["severity"]), terms)
