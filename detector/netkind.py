"""Networks that hide who is behind them: hosting (datacenter/cloud), VPN, proxy, Tor.

An adversary-in-the-middle phishing kit (Evilginx, EvilProxy, Tycoon 2FA) relays the
victim's sign-in from a rented server, so the platform sees the password *and the login
code* arrive from a datacenter network (Microsoft's AiTM guidance: "sign-ins from hosting
providers"). A user's own traffic comes from datacenters rarely (a cloud desktop, a
self-hosted VPN); consumer VPN services are commoner and weaker evidence.

Three sources, best first:

* a GeoIP2 **Anonymous IP** database (MaxMind, commercial; ``geoip.anonymous_ip_db``): per
  IP flags ``is_tor_exit_node``, ``is_public_proxy`` / ``is_residential_proxy``,
  ``is_anonymous_vpn``, ``is_hosting_provider`` (read by the Enricher, cached per IP);
* a list of hosting ASNs (``geoip.network_kinds.hosting_asns``: the large cloud and VPS
  providers by default);
* patterns on the AS organisation name (``hosting_orgs``, ``vpn_orgs``), for ASN data that
  carries names but no flags (GeoLite2-ASN, DB-IP ASN Lite, pre-enriched ``as_org``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

HOSTING, VPN, PROXY, TOR = "hosting", "vpn", "proxy", "tor"
KINDS = (HOSTING, VPN, PROXY, TOR)
# kinds from which a phishing relay (or a bot) operates: an entered code proves less there
RELAY_KINDS = frozenset({HOSTING, PROXY, TOR})


def physical_place(ctx) -> bool:
    """Does the context's geolocation say where the person is? Not through an anonymizer:
    it is the exit's place, so no travel speed is measured to or from it (one rule for the
    baseline's last place and every impossible-travel check)."""
    return ctx.anonymizer is None


def anonymous_ip_kind(rec) -> str | None:
    """The kind of a geoip2 ``AnonymousIP`` record (most specific flag first)."""
    if rec.is_tor_exit_node:
        return TOR
    if rec.is_public_proxy or getattr(rec, "is_residential_proxy", False):
        return PROXY
    if rec.is_anonymous_vpn:
        return VPN
    if rec.is_hosting_provider:
        return HOSTING
    return None


@dataclass(frozen=True, slots=True)
class NetworkKinds:
    """Classifies a network by its ASN and AS organisation name (no per-IP data)."""
    hosting_asns: frozenset[int] = frozenset()
    hosting_orgs: re.Pattern | None = None
    vpn_orgs: re.Pattern | None = None

    @classmethod
    def from_settings(cls, cfg: Mapping | None) -> "NetworkKinds":
        """From ``geoip.network_kinds`` (a bad pattern raises ValueError naming it)."""
        cfg = cfg or {}
        return cls(frozenset(int(a) for a in cfg.get("hosting_asns") or ()),
                   _pattern("hosting_orgs", cfg.get("hosting_orgs")),
                   _pattern("vpn_orgs", cfg.get("vpn_orgs")))

    def of(self, asn: int | None, as_org: str | None) -> str | None:
        return _kind_of(self, asn, as_org)

    def __bool__(self) -> bool:
        return bool(self.hosting_asns or self.hosting_orgs or self.vpn_orgs)


@lru_cache(maxsize=65536)
def _kind_of(kinds: NetworkKinds, asn: int | None, as_org: str | None) -> str | None:
    if as_org and kinds.vpn_orgs is not None and kinds.vpn_orgs.search(as_org):
        return VPN
    if asn is not None and asn in kinds.hosting_asns:
        return HOSTING
    if as_org and kinds.hosting_orgs is not None and kinds.hosting_orgs.search(as_org):
        return HOSTING
    return None


def _pattern(name: str, patterns) -> re.Pattern | None:
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"geoip.network_kinds.{name}: bad pattern ({exc})") from None
