"""Per-user baseline: what this user's *proven* sign-ins look like.

Proven = the context entered a code, was registered as trusted, signed in with a trusted
device cookie, or the user said "that was me". An attacker's attempt never reaches
:meth:`Baseline.learn`, so a stuffing wave cannot teach the detector that it is normal.
Every map is capped and entries older than ``history_max_age_days`` age out, which keeps
state bounded (it lives in a Faust table) and lets old habits fade.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

HIER = ("net", "loc", "ua")          # hierarchical features, two levels each: coarse, fine
HOURS = 24
_LEVEL_NAMES = tuple((family, (f"{family}0", f"{family}1")) for family in HIER)
_EMPTY: dict = {}


# ---------------------------------------------------------------------- records
# Each is written to and read from its compact wire form (a positional list, the layout
# stored since UserState version 2) in its own to_wire / from_wire and nowhere else.

@dataclass(slots=True)
class FeatureEntry:
    """How often, and when last, the user proved a sign-in with one feature value."""
    count: int
    last_seen: int

    def to_wire(self) -> list:
        return [self.count, self.last_seen]

    @classmethod
    def from_wire(cls, values: list) -> "FeatureEntry":
        count, last_seen = values
        return cls(count=count, last_seen=last_seen)


@dataclass(slots=True)
class DeviceEntry:
    """A device id the user used: `count` proven sign-ins on it, trusted (registered, or a
    trusted-device login), when it was last registered as trusted (None: before states
    kept it), and the browser it was last seen with."""
    first_seen: int
    last_seen: int
    count: int = 0
    trusted: bool = False
    browser: str | None = None
    trusted_at: int | None = None

    def trust_valid(self, t: float, pw_changed: int, cfg: dict) -> bool:
        """Is the platform's "remember this device" cookie still in force at `t`? It lasts
        ``trust_ttl_s`` from its registration (null: for ever) and ends at a password change
        (``trust_ends_at_password_change``), as the platform's own does. A device whose
        registration time is unknown (older state) counts as trusted."""
        if not self.trusted:
            return False
        at = self.trusted_at
        if at is None:
            return True
        ttl = cfg.get("trust_ttl_s")
        if ttl and t - at > ttl:
            return False
        return not (cfg.get("trust_ends_at_password_change") and at < pw_changed <= t)

    # layout 2 appends `trusted_at`; an entry without one is written in layout 1 (5 fields)
    def to_wire(self) -> list:
        values = [self.first_seen, self.last_seen, self.count, int(self.trusted), self.browser]
        if self.trusted_at is not None:
            values.append(self.trusted_at)
        return values

    @classmethod
    def from_wire(cls, values: list) -> "DeviceEntry":
        first_seen, last_seen, count, trusted, browser, *rest = values
        return cls(first_seen=first_seen, last_seen=last_seen, count=count,
                   trusted=bool(trusted), browser=browser, trusted_at=rest[0] if rest else None)


class Place(NamedTuple):
    """Where and when the last proven sign-in was."""
    t: int
    lat: float
    lon: float
    city: str | None                  # "CC/City"

    def to_wire(self) -> list:
        return [self.t, self.lat, self.lon, self.city]

    @classmethod
    def from_wire(cls, values: list) -> "Place":
        t, lat, lon, city = values
        return cls(t=t, lat=lat, lon=lon, city=city)


class Baseline:
    __slots__ = ("feats", "devices", "hours", "proven", "last_place", "pw_changed", "oldest")

    def __init__(self):
        # "net0" ASN/block, "net1" prefix, "loc0" country, "loc1" city, "ua0" OS, "ua1" browser
        self.feats: dict[str, dict[str, FeatureEntry]] = {}
        self.devices: dict[str, DeviceEntry] = {}
        self.hours: list[int] = [0] * HOURS
        self.proven = 0                 # proven sign-ins ever learned
        self.last_place: Place | None = None
        self.pw_changed = 0
        # not stored: no entry (feature, device, place) was last seen before this, so ageing
        # has nothing to drop while the horizon is at or before it (derived when decoded)
        self.oldest: float = math.inf

    # ------------------------------------------------------------------ queries
    def count(self, name: str, value: str | None) -> int:
        if value is None:
            return 0
        entry = self.feats.get(name, _EMPTY).get(value)
        return entry.count if entry else 0

    def total(self, name: str) -> int:
        return sum([e.count for e in self.feats.get(name, _EMPTY).values()])

    def device(self, device_id: str | None) -> DeviceEntry | None:
        return self.devices.get(device_id) if device_id else None

    def trusted_now(self, device_id: str | None, t: float, cfg: dict) -> bool:
        """Does `device_id` present a trusted-device cookie still in force at `t`?"""
        entry = self.device(device_id)
        return entry is not None and entry.trust_valid(t, self.pw_changed, cfg)

    def trusted_devices(self) -> int:
        return sum(1 for d in self.devices.values() if d.trusted)

    def device_total(self) -> int:
        return sum([d.count for d in self.devices.values()])

    def summary(self) -> dict:
        """What an analyst needs to judge 'unfamiliar': sizes and the top known values."""
        def top(name: str, k: int = 3) -> list[str]:
            items = sorted(self.feats.get(name, {}).items(), key=lambda kv: (-kv[1].count, kv[0]))
            return [v for v, _ in items[:k]]
        return {
            "proven_signins": self.proven,
            "devices": len(self.devices),
            "trusted_devices": self.trusted_devices(),
            "networks": top("net0"),
            "countries": top("loc0"),
            "cities": [c.split("/", 1)[-1] for c in top("loc1")],
            "browsers": top("ua1"),
            "last_verified_place": (self.last_place.city if self.last_place else None),
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
                    table[value] = FeatureEntry(1, t)
                    self.oldest = min(self.oldest, t)
                    _cap(table, cap, horizon)
                else:
                    entry.count += 1
                    entry.last_seen = max(entry.last_seen, t)
        device_id = features["dev"][0]
        if device_id is not None:
            self.touch_device(device_id, t, browser_key, cfg, count=True)
        self.hours[hour % HOURS] += 1
        if max(self.hours) > 10000:             # keep the habit, drop the magnitude
            self.hours = [h // 2 for h in self.hours]
        self.proven += 1
        if lat is not None and lon is not None and (self.last_place is None or t >= self.last_place.t):
            self.last_place = Place(t, lat, lon, city)
            self.oldest = min(self.oldest, t)
        self.age(horizon)

    def touch_device(self, device_id: str, t: int, browser_key: str | None, cfg: dict,
                     count: bool = False, trusted: bool = False) -> None:
        entry = self.devices.get(device_id)
        if entry is None:
            entry = self.devices[device_id] = DeviceEntry(t, t, 0, False, browser_key)
            self.oldest = min(self.oldest, t)
        entry.last_seen = max(entry.last_seen, t)
        if count:
            entry.count += 1
        if trusted:
            entry.trusted = True
            entry.trusted_at = t if entry.trusted_at is None else max(entry.trusted_at, t)
        if browser_key:
            entry.browser = browser_key
        if len(self.devices) > cfg["max_devices"]:
            # evict the stalest untrusted device first, then the stalest trusted one
            victim = min(self.devices.items(),
                         key=lambda kv: (kv[1].trusted, kv[1].last_seen, kv[0]))[0]
            del self.devices[victim]

    def age(self, horizon: int) -> None:
        """Drop everything last seen before `horizon` (event time)."""
        if self.oldest >= horizon:
            return
        for table in self.feats.values():
            stale = [v for v, e in table.items() if e.last_seen < horizon]
            for v in stale:
                del table[v]
        devices = self.devices
        for device_id in [d for d, e in devices.items() if e.last_seen < horizon]:
            del devices[device_id]
        if self.last_place is not None and self.last_place.t < horizon:
            self.last_place = None
        self._find_oldest()

    def _find_oldest(self) -> None:
        seen = [e.last_seen for table in self.feats.values() for e in table.values()]
        seen += [e.last_seen for e in self.devices.values()]
        if self.last_place is not None:
            seen.append(self.last_place.t)
        self.oldest = min(seen, default=math.inf)

    # ------------------------------------------------------------------ codec
    def to_wire(self) -> list:
        return [{name: {v: e.to_wire() for v, e in table.items()} for name, table in self.feats.items()},
                {d: e.to_wire() for d, e in self.devices.items()}, self.hours, self.proven,
                None if self.last_place is None else self.last_place.to_wire(), self.pw_changed]

    @classmethod
    def from_wire(cls, values: list) -> "Baseline":
        feats, devices, hours, proven, last_place, pw_changed = values
        b = cls()
        b.feats = {name: {v: FeatureEntry.from_wire(e) for v, e in table.items()}
                   for name, table in feats.items()}
        b.devices = {d: DeviceEntry.from_wire(e) for d, e in devices.items()}
        b.hours, b.proven, b.pw_changed = hours, proven, pw_changed
        b.last_place = None if last_place is None else Place.from_wire(last_place)
        b._find_oldest()
        return b


def _cap(table: dict[str, FeatureEntry], cap: int, horizon: int) -> None:
    if len(table) <= cap:
        return
    for value in [v for v, e in table.items() if e.last_seen < horizon]:
        del table[value]
    while len(table) > cap:   # least used, then least recent, goes first
        victim = min(table.items(), key=lambda kv: (kv[1].count, kv[1].last_seen, kv[0]))[0]
        del table[victim]


def hour_of(t: float) -> int:
    return int(t // 3600) % HOURS

