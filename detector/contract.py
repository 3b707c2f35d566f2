"""Event contract v1: typed records and a fast validator.

The normative contract is the JSON Schema in ``schemas/events.v1.json``; this module
enforces the same rules by hand because a generic JSON Schema validator is ~50x too slow
for the hot path. ``tests/test_contract.py`` checks that both accept and reject the same
documents.
"""
from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass, field, fields
from operator import attrgetter
from zlib import crc32
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from importlib.resources import files
from typing import Any

import orjson


EVENT_TYPES = ("login", "code_issued", "code_verified", "device_trusted",
               "password_changed", "user_feedback")
CHANNELS = frozenset({"sms", "email", "voice", "push", "app"})
PURPOSES = frozenset({"login", "password_reset", "security_settings", "payment",
                      "enrollment", "other"})
VERDICTS = frozenset({"not_me", "me"})
MAX_ID = 256
MAX_UA = 2048
# The year written in the string must be 1970..2199 (the one range rule, in the pattern that
# both the schema and this module apply; see timecheck.EARLIEST_T / LATEST_T for what it
# means in UTC).
TS_PATTERN = (r"^(19[7-9][0-9]|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
              r":[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")   # = schema's
_TS_RE = re.compile(TS_PATTERN)
_COMMON = frozenset({"event_id", "type", "ts", "user_id", "ip", "user_agent",
                     "device_id", "geo", "asn", "as_org"})


class ContractError(ValueError):
    """An event that breaks contract v1; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def schema() -> dict:
    """The JSON Schema of contract v1 (the normative text)."""
    return json.loads(files("straycode.detector").joinpath(
        "schemas/events.v1.json").read_text())


@dataclass(slots=True)
class Geo:
    country: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(slots=True)
class Event:
    event_id: str
    type: str
    ts: str
    t: float                      # epoch seconds (UTC), the only clock the core uses
    user_id: str
    ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    geo: Geo | None = None
    asn: int | None = None
    as_org: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(slots=True)
class Login(Event):
    session_id: str = ""
    password_ok: bool = False


@dataclass(slots=True)
class CodeIssued(Event):
    session_id: str | None = None
    channel: str = "sms"
    purpose: str = "login"


@dataclass(slots=True)
class CodeVerified(Event):
    session_id: str | None = None
    success: bool = False


@dataclass(slots=True)
class DeviceTrusted(Event):
    session_id: str = ""


@dataclass(slots=True)
class PasswordChanged(Event):
    pass


@dataclass(slots=True)
class UserFeedback(Event):
    code_event_id: str = ""
    verdict: str = "me"


# --------------------------------------------------------------------------- helpers

def _str(obj: dict, key: str, *, required: bool, nullable: bool = False,
         max_len: int = MAX_ID, min_len: int = 1) -> str | None:
    if key not in obj:
        if required:
            raise ContractError("missing_field", f"'{key}' is required")
        return None
    value = obj[key]
    if value is None:
        if nullable:
            return None
        raise ContractError("wrong_type", f"'{key}' must be a string, got null")
    if type(value) is not str:
        raise ContractError("wrong_type", f"'{key}' must be a string, got {type(value).__name__}")
    if not (min_len <= len(value) <= max_len):
        raise ContractError("bad_value", f"'{key}' length {len(value)} not in [{min_len}, {max_len}]")
    return value


def _bool(obj: dict, key: str) -> bool:
    if key not in obj:
        raise ContractError("missing_field", f"'{key}' is required")
    value = obj[key]
    if type(value) is not bool:
        raise ContractError("wrong_type", f"'{key}' must be a boolean, got {type(value).__name__}")
    return value


def _enum(obj: dict, key: str, allowed: frozenset) -> str:
    value = _str(obj, key, required=True)
    if value not in allowed:
        raise ContractError("bad_value", f"'{key}'={value!r} not one of {sorted(allowed)}")
    return value


_MINUTES: dict[str, int] = {}     # "YYYY-MM-DDTHH:MM" of a valid '...Z' timestamp -> epoch s
_MINUTES_MAX = 1 << 18


def parse_ts(ts: str) -> float:
    """RFC 3339 timestamp with offset -> epoch seconds. Raises ContractError."""
    # Fast path for the common UTC form 'YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z' whose minute was
    # parsed before: _MINUTES only holds prefixes of timestamps that passed the regex and
    # datetime, so checking the fixed-width rest here accepts exactly what they accept, and
    # the arithmetic is _parse_ts's (whole seconds + float(fraction)).
    n = len(ts)
    if n >= 20 and ts[-1] == "Z":
        base = _MINUTES.get(ts[:16])
        if base is not None:
            second = _SECONDS.get(ts[16:19])          # ":00" .. ":59"
            if second is not None:
                if n == 20:
                    return float(base + second)
                frac = ts[19:-1]
                value = _MILLIS.get(frac)             # ".000" .. ".999": float(frac), pre-parsed
                if value is not None:
                    return float(base + second) + value
                if frac[0] == "." and n <= 30 and frac.isascii() and frac[1:].isdigit():
                    return float(base + second) + float(frac)
    if not _TS_RE.match(ts):
        raise ContractError("bad_timestamp", f"'ts'={ts[:64]!r} is not RFC 3339 with offset "
                            "and a year in 1970..2199")
    return _parse_ts(ts)


_SECONDS = {f":{s:02d}": s for s in range(60)}
_MILLIS = {f".{ms:03d}": float(f".{ms:03d}") for ms in range(1000)}


def _parse_ts(ts: str) -> float:
    text = ts
    frac = ""
    dot = text.find(".")
    if dot != -1:  # Python's parser takes at most 6 fraction digits
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        frac = text[dot:end]
        text = text[:dot] + text[end:]
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise ContractError("bad_timestamp", f"'ts'={ts[:64]!r}: {exc}") from None
    # integral: the fraction was split off above; within [EARLIEST_T, LATEST_T) since the
    # pattern holds the written year to 1970..2199
    whole = parsed.timestamp()
    if ts[-1] == "Z" and ts[10] == "T":
        if len(_MINUTES) >= _MINUTES_MAX:
            _MINUTES.clear()
        _MINUTES[ts[:16]] = int(whole) - int(ts[17:19])
    return whole + (float(frac) if frac else 0.0)


@lru_cache(maxsize=262144)
def _check_ip(ip: str) -> str:
    try:
        if "%" in ip:                      # IPv6 zone ids are host-local: not a client address
            raise ValueError(ip)
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise ContractError("bad_ip", f"'ip'={ip[:64]!r} is not an IPv4/IPv6 address") from None
    if addr.version == 6 and addr.ipv4_mapped is not None:   # dual-stack sockets log ::ffff:a.b.c.d
        addr = addr.ipv4_mapped
    return str(addr)


def _num(value: Any, key: str, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        raise ContractError("bad_value", f"'geo.{key}' must be a number in [{lo}, {hi}]")
    return float(value)


def _geo(obj: dict) -> Geo | None:
    raw = obj.get("geo")
    if raw is None:
        return None
    if type(raw) is not dict:
        raise ContractError("wrong_type", "'geo' must be an object")
    country = _str(raw, "country", required=False, nullable=True, max_len=64)
    city = _str(raw, "city", required=False, nullable=True)
    return Geo(country, city, _num(raw.get("lat"), "lat", -90, 90),
               _num(raw.get("lon"), "lon", -180, 180))


# --------------------------------------------------------------------------- parsing

def parse_event(obj: Any) -> Event:
    """Validate a decoded JSON value against contract v1 and build its typed record."""
    if type(obj) is not dict:
        raise ContractError("not_an_object", f"event must be a JSON object, got {type(obj).__name__}")
    etype = obj.get("type")
    if etype is None:
        raise ContractError("missing_field", "'type' is required")
    if type(etype) is not str or etype not in _BUILDERS:
        raise ContractError("unknown_type", f"'type'={str(etype)[:64]!r} is not one of {list(EVENT_TYPES)}")
    # Each field: an inline check for the common valid case; anything else goes through the
    # general helper, which accepts or raises exactly as before (same checks, same order).
    get = obj.get
    event_id = get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_ID:
        event_id = _str(obj, "event_id", required=True)
    user_id = get("user_id")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_ID:
        user_id = _str(obj, "user_id", required=True)
    ts = get("ts")
    if type(ts) is not str or not 0 < len(ts) <= 64:
        ts = _str(obj, "ts", required=True, max_len=64)
    t = parse_ts(ts)
    ip = get("ip")
    if type(ip) is str and 0 < len(ip) <= 64:
        ip = _check_ip(ip)
    elif ip is not None or etype == "login":
        ip = _str(obj, "ip", required=etype == "login", nullable=etype != "login", max_len=64)
        if ip is not None:
            ip = _check_ip(ip)
    asn = get("asn")
    if asn is not None and type(asn) is not int:
        if type(asn) is float and asn.is_integer():      # JSON Schema: 7.0 is the integer 7
            asn = int(asn)
    if asn is not None and (type(asn) is not int or not 0 <= asn <= 4294967295):
        raise ContractError("bad_value", "'asn' must be an integer in [0, 2^32)")
    user_agent = get("user_agent")
    if user_agent is not None and (type(user_agent) is not str or len(user_agent) > MAX_UA):
        user_agent = _str(obj, "user_agent", required=False, nullable=True, max_len=MAX_UA, min_len=0)
    device_id = get("device_id")
    if device_id is not None and (type(device_id) is not str or not 0 < len(device_id) <= MAX_ID):
        device_id = _str(obj, "device_id", required=False, nullable=True)
    geo = _geo(obj) if get("geo") is not None else None
    as_org = get("as_org")
    if as_org is not None and (type(as_org) is not str or len(as_org) > MAX_ID):
        as_org = _str(obj, "as_org", required=False, nullable=True, min_len=0)
    known = _KNOWN[etype]
    extra = {} if known.issuperset(obj) else None       # the common case: no unknown field
    event = _BUILDERS[etype](obj, event_id, etype, ts, t, user_id, ip, user_agent, device_id,
                             geo, asn, as_org, extra)
    if extra is None:
        event.extra = {k: v for k, v in obj.items() if k not in known}
    return event


# Builders take the validated common fields positionally, in Event's field order
# (event_id, type, ts, t, user_id, ip, user_agent, device_id, geo, asn, as_org, extra).

def _login(obj: dict, *common) -> Login:
    session_id = obj.get("session_id")
    if type(session_id) is not str or not 0 < len(session_id) <= MAX_ID:
        session_id = _str(obj, "session_id", required=True)
    password_ok = obj.get("password_ok")
    if type(password_ok) is not bool:
        password_ok = _bool(obj, "password_ok")
    return Login(*common, session_id, password_ok)


def _nullable_session(obj: dict, missing: str) -> str | None:
    """The required, nullable `session_id` of code events."""
    if "session_id" not in obj:
        raise ContractError("missing_field", missing)
    session_id = obj["session_id"]
    if session_id is not None and (type(session_id) is not str or not 0 < len(session_id) <= MAX_ID):
        session_id = _str(obj, "session_id", required=True, nullable=True)
    return session_id


def _code_issued(obj: dict, *common) -> CodeIssued:
    session_id = _nullable_session(obj, "'session_id' is required (null when no login session)")
    channel = obj.get("channel")
    if type(channel) is not str or channel not in CHANNELS:
        channel = _enum(obj, "channel", CHANNELS)
    purpose = obj.get("purpose")
    if type(purpose) is not str or purpose not in PURPOSES:
        purpose = _enum(obj, "purpose", PURPOSES)
    return CodeIssued(*common, session_id, channel, purpose)


def _code_verified(obj: dict, *common) -> CodeVerified:
    session_id = _nullable_session(obj, "'session_id' is required")
    success = obj.get("success")
    if type(success) is not bool:
        success = _bool(obj, "success")
    return CodeVerified(*common, session_id, success)


def _device_trusted(obj: dict, *common) -> DeviceTrusted:
    if common[7] is None:                      # device_id
        raise ContractError("missing_field", "'device_id' is required for device_trusted")
    return DeviceTrusted(*common, _str(obj, "session_id", required=True))


def _password_changed(obj: dict, *common) -> PasswordChanged:
    return PasswordChanged(*common)


def _user_feedback(obj: dict, *common) -> UserFeedback:
    return UserFeedback(*common, _str(obj, "code_event_id", required=True),
                        _enum(obj, "verdict", VERDICTS))


_BUILDERS = {
    "login": _login, "code_issued": _code_issued, "code_verified": _code_verified,
    "device_trusted": _device_trusted, "password_changed": _password_changed,
    "user_feedback": _user_feedback,
}
_SPECIFIC = {
    "login": {"session_id", "password_ok"},
    "code_issued": {"session_id", "channel", "purpose"},
    "code_verified": {"session_id", "success"},
    "device_trusted": {"session_id"},
    "password_changed": set(),
    "user_feedback": {"code_event_id", "verdict"},
}
_KNOWN = {etype: _COMMON | specific for etype, specific in _SPECIFIC.items()}


def decode_line(line: bytes | str, max_bytes: int = 65536) -> Event:
    """One JSONL line or Kafka message value -> Event. Raises ContractError."""
    if len(line) > max_bytes:
        raise ContractError("too_large", f"{len(line)} bytes > limit {max_bytes}")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ContractError("malformed_json", str(exc)[:200]) from None
    return parse_event(obj)


def content_digest(event: Event) -> int:
    """CRC-32 of what the detector reads from an event: every typed field except ``ts`` as
    written (``t``, the instant, stands for it) and the ignored unknown fields (``extra``).

    A repeated event id whose digest differs is a *conflicting* duplicate; redelivery of the
    same message, or the same event written with another offset or key order, is not."""
    return crc32(orjson.dumps(_DIGESTED[event.type](event)))


_DIGESTED = {etype: attrgetter(*[f.name for f in fields(cls) if f.name not in ("ts", "extra")])
             for etype, cls in (("login", Login), ("code_issued", CodeIssued),
                                ("code_verified", CodeVerified), ("device_trusted", DeviceTrusted),
                                ("password_changed", PasswordChanged),
                                ("user_feedback", UserFeedback))}


def to_json_dict(event: Event) -> dict:
    """Event record -> contract-v1 JSON object (round-trips through parse_event)."""
    out: dict[str, Any] = {"event_id": event.event_id, "type": event.type, "ts": event.ts,
                           "user_id": event.user_id}
    for key in ("ip", "user_agent", "device_id", "asn", "as_org"):
        value = getattr(event, key)
        if value is not None:
            out[key] = value
    if event.geo is not None:
        out["geo"] = {k: getattr(event.geo, k) for k in ("country", "city", "lat", "lon")}
    for key in sorted(_SPECIFIC[event.type]):
        out[key] = getattr(event, key)
    out.update(event.extra)
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc_iso(t: float) -> str:
    """Epoch seconds -> RFC 3339 UTC string with millisecond precision.

    Defined for every accepted event time and every deadline built from one (a few hours
    before 1970 at the lower edge included, on every platform)."""
    return (_EPOCH + timedelta(seconds=t)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
