"""Dual-stack users: which sign-ins come over IPv6, and from which address.

* Home broadband: the ISP delegates a /56 to the household and the devices use temporary
  ("privacy") interface ids in a /64 of it, a new one per sign-in (RFC 8981). ISPs marked
  ``v6_rotating`` hand out a new /56 every day.
* Mobile carriers: every attach gets a fresh /64 from the carrier's pool, so the /64 (and,
  in a carrier record larger than a /48, the /48 the detector keys on) changes all the time.

Only networks with IPv6 records (sim_geo) are dual stack. Which users use IPv6 and every
address are drawn from streams of their own, seeded by (seed, user), never from the user's
main RNG: with ``ipv6_share = 0`` the traffic is exactly the IPv4-only traffic.
"""
from __future__ import annotations

import ipaddress
import random

from .sim_geo import Network, V6Block
from .sim_population import DAY, User

LANS = 256          # /64s in a delegated /56


def home_site(seed: int, user: User, net: Network, t: float) -> tuple[V6Block, int]:
    """The household's delegated /56 at time t: its record and first /64 index.

    A pure function of (seed, user, network, day), so later passes find the same prefix."""
    day = int(t // DAY) if net.v6_rotating else 0
    r = random.Random(f"ipv6-site/{seed}/{user.idx}/{net.asn}/{day}")
    block = r.choice(net.v6)
    return block, r.getrandbits(64 - block.plen - 8) * LANS


class DualStack:
    """One user's IPv6 use; ``stream`` names the RNG so separate passes do not interfere."""

    def __init__(self, seed: int, user: User, share: float, stream: str = "life"):
        self.seed, self.user = seed, user
        self.on = share > 0 and random.Random(f"ipv6-user/{seed}/{user.idx}").random() < share
        self.rnd = random.Random(f"ipv6-{stream}/{seed}/{user.idx}")

    def home(self, net: Network, t: float, lan: int = 0, force: bool = False) -> str | None:
        """A temporary address in the home /64 number ``lan``, or None (IPv4 only)."""
        if not net.v6 or not (self.on or force):
            return None
        block, site = home_site(self.seed, self.user, net, t)
        return block.address(site + lan % LANS, self.rnd.getrandbits(64))

    def mobile(self, net: Network, force: bool = False) -> str | None:
        """An address in a fresh /64 of the carrier's pool, or None (IPv4 only)."""
        if not net.v6 or not (self.on or force):
            return None
        block = self.rnd.choice(net.v6)
        return block.address(self.rnd.getrandbits(64 - block.plen), self.rnd.getrandbits(64))

    def same_64(self, ip: str) -> str:
        """Another temporary address in the /64 of ``ip`` (the OS rotated its privacy address)."""
        return _with_iid(ip, self.rnd.getrandbits(64))


def _with_iid(ip: str, iid: int) -> str:
    net64 = int(ipaddress.IPv6Address(ip)) >> 64
    return str(ipaddress.IPv6Address(net64 << 64 | (iid or 1)))
