"""Simulated networks built from real GeoIP data.

The detector judges a code by where it came from, so simulated IPs must be real addresses
whose GeoIP answer matches the story (a user "at home in Lyon" must geolocate to Lyon).
We sample random IPv4 addresses against the configured City .mmdb, keep the hits that fall
in a curated list of metros, and carve them into networks: each network is a handful of
/24 blocks in one city with a fixed synthetic ASN (private-use range, never a real one).

IPv6: random addresses almost always land in huge unallocated blocks, so instead we walk
the database record by record from seeded starting points inside the regional registries'
ranges and keep records (a /28 to a /48) that resolve to a metro. Mobile carriers, two of
a metro's three broadband ISPs and the hosting providers get such a record when one was
found (dual stack); hotels stay IPv4-only. Every address inside a record resolves to the
record's city, so simulated IPv6 addresses geolocate like the IPv4 ones.

Sampling uses a fixed seed, so the world depends only on the database file; it is cached
per process because building it costs ~2 s of lookups.
"""
from __future__ import annotations

import ipaddress
import os
import random
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import maxminddb
import numpy as np

CATALOGUE_SEED = 20260101
SAMPLES = 160_000
SYNTHETIC_ASN_BASE = 4_200_000_000  # RFC 6996 private-use 32-bit ASNs

# (country, city as the DB names it, population weight, UTC offset hours, hosting hub)
METROS = [
    ("GB", "London", 8, 0, True), ("GB", "Manchester", 2, 0, False), ("GB", "Birmingham", 1.5, 0, False),
    ("FR", "Paris", 6, 1, True), ("FR", "Lyon", 1.5, 1, False), ("FR", "Marseille", 1, 1, False),
    ("DE", "Berlin", 3, 1, False), ("DE", "Munich", 2, 1, False), ("DE", "Hamburg", 2, 1, False),
    ("DE", "Frankfurt am Main", 1, 1, True),
    ("ES", "Madrid", 3, 1, False), ("ES", "Barcelona", 2, 1, False),
    ("IT", "Milan", 3, 1, False), ("IT", "Rome", 2, 1, False),
    ("NL", "Amsterdam", 2, 1, True), ("NL", "Rotterdam", 1, 1, False),
    ("US", "New York", 8, -5, False), ("US", "Chicago", 4, -6, False), ("US", "Los Angeles", 5, -8, False),
    ("US", "Dallas", 3, -6, True), ("US", "Atlanta", 2, -5, False), ("US", "Seattle", 2, -8, False),
    ("US", "Ashburn", 0, -5, True),
    ("CA", "Toronto", 3, -5, False), ("CA", "Montreal", 2, -5, False), ("CA", "Vancouver", 1.5, -8, False),
    ("BR", "São Paulo", 4, -3, False), ("BR", "Rio de Janeiro", 2, -3, False),
    ("AU", "Sydney", 2, 10, False), ("AU", "Melbourne", 2, 10, False),
    ("PL", "Warsaw", 2, 1, False), ("SE", "Stockholm", 1.5, 1, False), ("IE", "Dublin", 1, 0, False),
    ("MX", "Mexico City", 2, -6, False), ("IN", "Mumbai", 2, 5.5, False), ("IN", "Bengaluru", 1.5, 5.5, False),
    ("SG", "Singapore", 1, 8, True), ("JP", "Osaka", 1.5, 9, False), ("AT", "Vienna", 1, 1, False),
    ("CH", "Zurich", 1, 1, False), ("PT", "Lisbon", 1, 0, False), ("ZA", "Johannesburg", 1, 2, False),
    ("AR", "Buenos Aires", 1, -3, False),
]

# Blocks a metro needs: kind -> (networks, /24 blocks each). Hubs also get hosting/VPN.
LAYOUT = {"broadband": (3, 4), "mobile": (2, 2), "hotel": (2, 1)}
HUB_LAYOUT = {"hosting": (3, 2)}
ORG_NAMES = {
    "broadband": ["{c} Fibre", "{c} Cable & Broadband", "Metro{C} DSL"],
    "mobile": ["{c} Mobile", "Telco{C} Wireless"],
    "hotel": ["Grand Hotel {c} Guest WiFi", "{c} Cafe Hotspot Net"],
    "hosting": ["Nimbus Hosting {c}", "FastVPN Exit {c}", "CloudBox {c} DC"],
}
# Host addresses drawn per block: mobile carriers and hotels NAT many people behind few IPs.
NAT_POOL = {"mobile": 6, "hotel": 2, "hosting": 8}

# IPv6 record walk: starting points in the RIRs' /16s (RIPE, ARIN, APNIC, LACNIC, AFRINIC
# and two busy legacy /16s), a fixed number of consecutive records from each.
V6_TOPS = ([0x2001, 0x2003] + list(range(0x2400, 0x2410)) + list(range(0x2600, 0x2610))
           + list(range(0x2800, 0x2810)) + list(range(0x2a00, 0x2a14)) + list(range(0x2c00, 0x2c10)))
V6_STARTS, V6_STEPS = 120, 1000
V6_PLEN = (28, 48)      # an ISP allocation down to one customer site; never finer than a /48
# Which networks are dual stack: every mobile carrier, broadband ISPs 0 and 1 (ISP 1 hands
# its customers a new prefix every day, like ISPs that force a daily reconnect), hosting.
V6_BROADBAND = {0: False, 1: True}     # network index -> rotates the delegated prefix daily


@dataclass(frozen=True, slots=True)
class Metro:
    country: str
    city: str          # exact DB-IP/MaxMind English city name all its blocks resolve to
    weight: float
    utc_offset_h: float
    hub: bool


@dataclass(slots=True)
class Block:
    """Addresses that share one DB record and one /24 (so one network key either way)."""
    base: int
    size: int

    def address(self, offset: int) -> str:
        usable = max(self.size - 2, 1)
        return str(ipaddress.IPv4Address(self.base + (1 if self.size >= 4 else 0) + offset % usable))


@dataclass(frozen=True, slots=True)
class V6Block:
    """One IPv6 record of the City database: every address inside resolves to one city."""
    base: int
    plen: int

    def address(self, subnet: int, iid: int) -> str:
        """Address from a /64 chosen by ``subnet`` (wrapped into the block) and an interface id."""
        span = 64 - self.plen
        net64 = (self.base >> 64) | (subnet % (1 << span))
        return str(ipaddress.IPv6Address(net64 << 64 | (iid & ((1 << 64) - 1) or 1)))


@dataclass(slots=True)
class Network:
    key: str
    kind: str           # broadband | mobile | hotel | hosting
    metro: Metro
    asn: int
    as_org: str
    blocks: list[Block]
    pool: list[str] = field(default_factory=list)   # shared NAT addresses (mobile/hotel/hosting)
    v6: list[V6Block] = field(default_factory=list)  # IPv6 records (empty: IPv4 only)
    v6_rotating: bool = False                         # delegated prefixes change daily

    def fixed_ip(self, rnd: random.Random, block: int | None = None) -> str:
        """A subscriber address: one block, one host (home broadband lease)."""
        b = self.blocks[rnd.randrange(len(self.blocks)) if block is None else block % len(self.blocks)]
        return b.address(rnd.randrange(1 << 16))

    def shared_ip(self, rnd: random.Random) -> str:
        """An address from the carrier/hotel NAT pool: many people share it."""
        return self.pool[rnd.randrange(len(self.pool))] if self.pool else self.fixed_ip(rnd)


@dataclass(slots=True)
class World:
    metros: list[Metro]
    networks: dict[str, list[Network]]          # "country/city/kind" -> networks
    hosting: list[Network]
    db_path: str

    def of(self, metro: Metro, kind: str) -> list[Network]:
        return self.networks.get(f"{metro.country}/{metro.city}/{kind}", [])


def _city_name(rec: dict) -> tuple[str | None, str | None]:
    country = (rec.get("country") or {}).get("iso_code")
    city = ((rec.get("city") or {}).get("names") or {}).get("en")
    return country, city


def _sample_hits(db_path: str) -> dict[tuple[str, str], list[Block]]:
    """Random addresses -> (country, exact city) -> blocks, for cities near a wanted metro."""
    wanted: dict[str, list[str]] = {}
    for country, city, *_ in METROS:
        wanted.setdefault(country, []).append(city)
    rng = np.random.default_rng(CATALOGUE_SEED)
    addrs = rng.integers(1 << 24, 224 << 24, size=SAMPLES, dtype=np.int64).tolist()
    hits: dict[tuple[str, str], list[Block]] = {}
    seen24: set[int] = set()
    with maxminddb.open_database(db_path) as reader:
        get = reader.get_with_prefix_len
        for x in addrs:
            if x >> 8 in seen24:
                continue
            rec, plen = get(f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}")
            if not rec:
                continue
            country, city = _city_name(rec)
            if country not in wanted or not city:
                continue
            if not any(city == c or city.startswith(c + " (") for c in wanted[country]):
                continue
            seen24.add(x >> 8)
            if plen >= 24:
                base, size = x & ~((1 << (32 - plen)) - 1), 1 << (32 - plen)
            else:
                base, size = x & ~255, 256
            hits.setdefault((country, city), []).append(Block(base, size))
    return hits


def _sample_v6(db_path: str, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], list[V6Block]]:
    """(country, exact city) -> IPv6 records, found by walking records from seeded starts."""
    rnd = random.Random(CATALOGUE_SEED + 6)
    lo, hi = V6_PLEN
    found: dict[tuple[str, str], dict[int, V6Block]] = {}
    with maxminddb.open_database(db_path) as reader:
        get = reader.get_with_prefix_len
        for _ in range(V6_STARTS):
            x = rnd.choice(V6_TOPS) << 112 | rnd.getrandbits(112)
            for _ in range(V6_STEPS):
                if x >> 128:
                    break
                rec, plen = get(str(ipaddress.IPv6Address(x)))
                base = x >> (128 - plen) << (128 - plen)
                x = base + (1 << (128 - plen))
                if not rec or not lo <= plen <= hi:
                    continue
                key = _city_name(rec)
                if key in wanted and ipaddress.IPv6Address(base).is_global:
                    found.setdefault(key, {})[base] = V6Block(base, plen)
    return {k: sorted(v.values(), key=lambda b: b.base) for k, v in found.items()}


def _give_v6(metro: Metro, nets_by_kind: dict[str, list[Network]], records: list[V6Block],
             rnd: random.Random) -> None:
    """Hand a metro's IPv6 records to its dual-stack networks, one record each (mobile two)."""
    records = list(records)
    rnd.shuffle(records)
    takers = [(n, 2) for n in nets_by_kind.get("mobile", [])]
    takers += [(n, 1) for i, n in enumerate(nets_by_kind.get("broadband", [])) if i in V6_BROADBAND]
    takers += [(n, 1) for n in nets_by_kind.get("hosting", [])]
    for net, count in takers:
        net.v6, records = records[:count], records[count:]
        if net.kind == "broadband":
            net.v6_rotating = V6_BROADBAND[int(net.key.rsplit("/", 1)[1])]


@lru_cache(maxsize=4)
def _build_world_cached(db_path: str, _stamp: tuple) -> World:
    hits = _sample_hits(db_path)
    rnd = random.Random(CATALOGUE_SEED)
    metros: list[Metro] = []
    networks: dict[str, list[Network]] = {}
    hosting: list[Network] = []
    n_asn = 0
    placed: list[tuple[Metro, dict[str, list[Network]]]] = []
    for country, base_city, weight, offset, hub in METROS:
        variants = [(k[1], v) for k, v in hits.items()
                    if k[0] == country and (k[1] == base_city or k[1].startswith(base_city + " ("))]
        if not variants:
            continue
        # The most common exact spelling becomes the metro's city; its blocks form the networks.
        city, blocks = max(variants, key=lambda cv: (len(cv[1]), cv[0] == base_city, cv[0]))
        blocks = sorted(blocks, key=lambda b: b.base)
        rnd.shuffle(blocks)
        layout = dict(LAYOUT) if weight > 0 else {}
        if hub:
            layout.update(HUB_LAYOUT)
        need = sum(n * k for n, k in layout.values())
        if len(blocks) < need:
            continue
        metro = Metro(country, city, weight, offset, hub)
        metros.append(metro)
        letters = "".join(ch for ch in unicodedata.normalize("NFKD", base_city)
                          if ch.isascii() and ch.isalpha())
        by_kind: dict[str, list[Network]] = {}
        for kind, (count, per) in layout.items():
            nets = by_kind[kind] = []
            for i in range(count):
                own, blocks = blocks[:per], blocks[per:]
                name = ORG_NAMES[kind][i % len(ORG_NAMES[kind])].format(c=base_city, C=letters[:3].upper())
                net = Network(key=f"{country}/{city}/{kind}/{i}", kind=kind, metro=metro,
                              asn=SYNTHETIC_ASN_BASE + n_asn, as_org=name, blocks=own)
                n_asn += 1
                if kind in NAT_POOL:
                    net.pool = [b.address(rnd.randrange(1 << 16)) for b in own for _ in range(NAT_POOL[kind])]
                nets.append(net)
            if kind == "hosting":
                hosting.extend(nets)
            else:
                networks[f"{country}/{city}/{kind}"] = nets
        placed.append((metro, by_kind))
    # IPv6 last, from its own RNG: the IPv4 world does not depend on it
    v6 = _sample_v6(db_path, {(m.country, m.city) for m in metros})
    v6_rnd = random.Random(CATALOGUE_SEED + 66)
    for metro, by_kind in placed:
        _give_v6(metro, by_kind, v6.get((metro.country, metro.city), []), v6_rnd)
    if not any(m.weight > 0 for m in metros) or not hosting:
        raise RuntimeError(f"{db_path}: too few usable cities in this GeoIP database")
    return World(metros=metros, networks=networks, hosting=hosting, db_path=db_path)


def build_world(db_path: str) -> World:
    """The simulated internet for one City database (cached per file version)."""
    st = os.stat(db_path)
    return _build_world_cached(os.path.abspath(db_path), (st.st_size, st.st_mtime_ns))
