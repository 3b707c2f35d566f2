"""Per-user baseline: what this user's *proven* sign-ins look like.

Proven = the context entered a code, was registered as trusted, signed in with a trusted
device cookie, or the user said "that was me". An attacker's attempt never reaches
:meth:`Baseline.learn`, so a stuffing wave cannot teach the detector that it is normal.
Every map is capped and entries older than ``history_max_age_days`` age out, which keeps
state bounded (it lives in a Faust table) and lets old habits fade.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Iterable

HIER = ("net", "loc", "ua")          # hierarchical features, two levels each: coarse, fine
HOURS = 24
_LEVEL_NAMES = tuple((family, (f"{family}0", f"{family}1")) for family in HIER)
_EMPTY: dict = {}
_count_of = itemgetter(0)
_seen_of = itemgetter(1)                 # last_seen, in feature entries and device entries
_uses_of = itemgetter(2)


class Baseline:
    __slots__ = ("feats", "devices", "hours", "proven", "last_place", "pw_changed")

    def __init__(self):
        # "net0" ASN/block, "net1" prefix, "loc0" country, "loc1" city, "ua0" OS, "ua1" browser
        # value -> [count, last_seen]
        self.feats: dict[str, dict[str, list[int]]] = {}
        # device_id -> [first_seen, last_seen, count, trusted, browser_key]
        self.devices: dict[str, list] = {}
        self.hours: list[int] = [0] * HOURS
        self.proven = 0                 # proven sign-ins ever learned
        self.last_place: list | None = None   # [t, lat, lon, "CC/City"] of the last proven sign-in
        self.pw_changed = 0

    # ------------------------------------------------------------------ queries
    def count(self, name: str, value: str | None) -> int:
        if value is None:
            return 0
        entry = self.feats.get(name, _EMPTY).get(value)
        return entry[0] if entry else 0

    def total(self, name: str) -> int:
        return sum(map(_count_of, self.feats.get(name, _EMPTY).values()))

    def device(self, device_id: str | None) -> list | None:
        return self.devices.get(device_id) if device_id else None

    def trusted_devices(self) -> int:
        return sum(1 for d in self.devices.values() if d[3])

    def device_total(self) -> int:
        return sum(map(_uses_of, self.devices.values()))

    def summary(self) -> dict:
        """What an analyst needs to judge 'unfamiliar': sizes and the top known values."""
        def top(name: str, k: int = 3) -> list[str]:
            items = sorted(self.feats.get(name, {}).items(), key=lambda kv: (-kv[1][0], kv[0]))
            return [v for v, _ in items[:k]]
        return {
            "proven_signins": self.proven,
            "devices": len(self.devices),
            "trusted_devices": self.trusted_devices(),
            "networks": top("net0"),
            "countries": top("loc0"),
            "cities": [c.split("/", 1)[-1] for c in top("loc1")],
            "browsers": top("ua1"),
            "last_verified_place": (self.last_place[3] if self.last_place else None),
        }

    # ------------------------------------------------------------------ learning
    def learn(self, t: int, features: dict[str, tuple], hour: int, lat: float | None,
              lon: float | None, city: str | None, browser_key: str | None,
              cfg: dict) -> None:
        """Fold one proven context into the baseline (then age out and cap)."""
        cap = cfg["max_values_per_feature"]
        horizon = t - cfg["history_max_age_days"] * 86400
        feats = self.feats
        for family, names in _LEVEL_NAMES:
            for name, value in zip(names, features[family]):
                if value is None:
                    continue
                table = feats.get(name)
                if table is None:
                    table = feats[name] = {}
                entry = table.get(value)
                if entry is None:
                    table[value] = [1, t]
                    _cap(table, cap, horizon)
                else:
                    entry[0] += 1
                    entry[1] = max(entry[1], t)
        device_id = features["dev"][0]
        if device_id is not None:
            self.touch_device(device_id, t, browser_key, cfg, count=True)
        self.hours[hour % HOURS] += 1
        if max(self.hours) > 10000:             # keep the habit, drop the magnitude
            self.hours = [h // 2 for h in self.hours]
        self.proven += 1
        if lat is not None and lon is not None and (self.last_place is None or t >= self.last_place[0]):
            self.last_place = [t, lat, lon, city]
        self.age(horizon)

    def touch_device(self, device_id: str, t: int, browser_key: str | None, cfg: dict,
                     count: bool = False, trusted: bool = False) -> None:
        entry = self.devices.get(device_id)
        if entry is None:
            entry = self.devices[device_id] = [t, t, 0, 0, browser_key]
        entry[1] = max(entry[1], t)
        entry[2] += 1 if count else 0
        if trusted:
            entry[3] = 1
        if browser_key:
            entry[4] = browser_key
        if len(self.devices) > cfg["max_devices"]:
            # evict the stalest untrusted device first, then the stalest trusted one
            victim = min(self.devices.items(), key=lambda kv: (kv[1][3], kv[1][1], kv[0]))[0]
            del self.devices[victim]

    def age(self, horizon: int) -> None:
        """Drop everything last seen before `horizon` (event time)."""
        for table in self.feats.values():
            if min(map(_seen_of, table.values()), default=horizon) < horizon:   # any stale?
                stale = [v for v, e in table.items() if e[1] < horizon]
                for v in stale:
                    del table[v]
        devices = self.devices
        if min(map(_seen_of, devices.values()), default=horizon) < horizon:
            for device_id in [d for d, e in devices.items() if e[1] < horizon]:
                del devices[device_id]
        if self.last_place is not None and self.last_place[0] < horizon:
            self.last_place = None

    # ------------------------------------------------------------------ codec
    def to_list(self) -> list:
        return [self.feats, self.devices, self.hours, self.proven, self.last_place,
                self.pw_changed]

    @classmethod
    def from_list(cls, data: list) -> "Baseline":
        b = cls()
        b.feats, b.devices, b.hours, b.proven, b.last_place, b.pw_changed = data
        return b


def _cap(table: dict[str, list[int]], cap: int, horizon: int) -> None:
    if len(table) <= cap:
        return
    for value in [v for v, e in table.items() if e[1] < horizon]:
        del table[value]
    while len(table) > cap:   # least used, then least recent, goes first
        victim = min(table.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))[0]
        del table[victim]


def hour_of(t: float) -> int:
    return int(t // 3600) % HOURS


def values(features: dict[str, tuple]) -> Iterable[tuple[str, str]]:
    """(feature-level name, value) pairs of a context, for population counts."""
    for family, names in _LEVEL_NAMES:
        for name, value in zip(names, features[family]):
            if value is not None:
                yield name, value
