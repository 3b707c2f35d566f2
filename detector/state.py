"""Serialisable per-key state: :class:`UserState` (keyed by user_id) and
:class:`NetworkState` (keyed by "ip:<addr>" or "net:<network>").

Both are small, bounded, and encode to compact JSON bytes so that a Faust table can hold
them and a restarted worker can recover them from the changelog.
"""
from __future__ import annotations

import base64
import math
import zlib
from array import array
from zlib import crc32 as _crc32

import orjson

from .baseline import Baseline
from .contract import ContractError

# pending code fields (a list, for compact storage)
P_ID, P_T, P_TS, P_SESSION, P_CHANNEL, P_PURPOSE, P_CTX, P_VERIFIED, P_FAILED, P_DEADLINE = range(10)
# recent (decided) code fields; R_ALERTED counts the alert revisions emitted for the code
# (0 = never alerted, 1 = created, n = n-1 updates since), so the next revision is stored state
R_ID, R_T, R_SCORE, R_SEVERITY, R_FLOW, R_ALERTED, R_PURPOSE, R_CHANNEL, R_REASONS, R_CTX, R_STATUS = range(11)
# session fields
S_T, S_PASSWORD_OK, S_CTX, S_LEARNED = range(4)
# a code entry held for its code: [t, session_id, success]
E_T, E_SESSION, E_SUCCESS = range(3)
EARLY_MAX = 8              # held code entries per user
VERIFIED_EARLY = -1        # S_LEARNED of a placeholder: the code was entered before the login arrived
MAX_SESSIONS = 8           # correlatable logins kept per user when none has a pending code
MAX_SESSIONS_HARD = 64
SEEN_MAX = 48              # dedup memory: the user's last 48 event ids (redelivery comes soon)
UNKNOWN_DIGEST = -1        # content digest of an id remembered by a state stored before version 4


def short_hash(text: str) -> int:
    """Stable 32-bit hash (CRC-32): event-id dedup and user fan-out without storing ids.
    Collisions only matter within one user's last 64 events or one network's 96 users."""
    return zlib.crc32(text.encode())


class UserState:
    """Everything straycode keeps about one user."""
    __slots__ = ("baseline", "sessions", "pending", "recent", "code_times", "seen", "early")

    def __init__(self):
        self.baseline = Baseline()
        self.sessions: dict[str, list] = {}      # session_id -> [t, password_ok, ctx, learned]
        self.pending: dict[str, list] = {}       # code event id -> pending code (P_* fields)
        self.recent: list[list] = []             # decided codes, newest last (R_* fields)
        self.code_times: list[int] = []          # recent code requests, for bombing
        self.seen: dict[int, int] = {}           # short_hash(event_id) -> content digest, oldest first
        self.early: list[list] = []              # code_verified with no code yet (E_* fields)

    # ------------------------------------------------------------------ dedup
    def check_repeat(self, event_id: str, digest: int) -> None:
        """Raise ContractError('conflicting_duplicate') when this event id is among the
        user's last SEEN_MAX with other content (``contract.content_digest``); changes nothing."""
        known = self.seen.get(_crc32(event_id.encode()))
        if known is not None and known != digest and known != UNKNOWN_DIGEST:
            raise ContractError("conflicting_duplicate",
                                f"event_id {event_id[:64]!r} was seen for this user with other "
                                "content (same id, different event)")

    def is_duplicate(self, event_id: str, digest: int) -> bool:
        """True when this event id is among the user's last SEEN_MAX (a redelivery: callers
        check_repeat() first); records it with its content digest otherwise."""
        key = _crc32(event_id.encode())           # short_hash, inlined
        seen = self.seen
        if key in seen:
            return True
        seen[key] = digest
        if len(seen) > SEEN_MAX:
            del seen[next(iter(seen))]
        return False

    # ------------------------------------------------------------------ sessions
    def add_session(self, session_id: str, t: int, password_ok: bool, ctx: list | None,
                    ttl: int) -> None:
        old = self.sessions.get(session_id)
        learned = old[S_LEARNED] if old else 0
        # a later password_ok=False attempt in the same session must not hide an earlier success
        password_ok = password_ok or bool(old and old[S_PASSWORD_OK])
        sessions = self.sessions
        sessions[session_id] = [t, password_ok, ctx, learned]
        # sessions whose codes still wait for a decision are kept: evicting them would turn a
        # bombing burst's codes into login_missing and hide that the password was typed
        # (`waiting` and `idle` are only built when something may be evicted)
        waiting = None
        horizon = t - ttl
        stale = [s for s, v in sessions.items() if v[S_T] < horizon]
        if stale:
            waiting = {p[P_SESSION] for p in self.pending.values()}
            waiting.add(session_id)
            for sid in stale:
                if sid not in waiting:
                    del sessions[sid]
        if len(sessions) > MAX_SESSIONS:
            if waiting is None:
                waiting = {p[P_SESSION] for p in self.pending.values()}
                waiting.add(session_id)
            idle = sorted((v[S_T], s) for s, v in sessions.items() if s not in waiting)
            while len(sessions) > MAX_SESSIONS and idle:
                del sessions[idle.pop(0)[1]]
        while len(self.sessions) > MAX_SESSIONS_HARD:     # a flood: bound memory anyway
            del self.sessions[min(self.sessions, key=lambda s: (self.sessions[s][S_T], s))]

    # ------------------------------------------------------------------ codes
    def note_code(self, t: int, window: int) -> int:
        """Record a code request; return how many this user had in the last `window` s."""
        horizon = t - window
        self.code_times = [x for x in self.code_times if x >= horizon][-31:]
        self.code_times.append(t)
        return len([x for x in self.code_times if horizon <= x <= t])

    def remember(self, record: list, keep: int, now: int, max_age: int = 30 * 86400) -> None:
        recent = self.recent
        recent.append(record)
        horizon = now - max_age
        for r in recent:
            if r[R_T] < horizon:          # something aged out: filter, then keep the newest
                self.recent = [r for r in recent if r[R_T] >= horizon][-keep:]
                return
        if len(recent) > keep:
            self.recent = recent[-keep:]

    def hold_verification(self, t: float, session_id: str | None, success: bool,
                          keep_s: float) -> None:
        """Keep a code entry that came before its code (another producer was faster, or the
        clocks differ) for `keep_s`, so the code can count it when it arrives."""
        horizon = t - keep_s
        self.early = [e for e in self.early if e[E_T] >= horizon][-(EARLY_MAX - 1):]
        self.early.append([t, session_id, success])

    def find_recent(self, code_event_id: str) -> list | None:
        for record in reversed(self.recent):
            if record[R_ID] == code_event_id:
                return record
        return None

    # ------------------------------------------------------------------ codec
    # version 4: [4, baseline, sessions, pending, recent, code_times, seen ids (b64 uint32),
    #             early, seen digests (b64 uint32, same order), positions of unknown digests]
    # 3 lacks the last two (digests unknown), 2 also lacks `early`.
    def to_bytes(self) -> bytes:
        digests = list(self.seen.values())
        unknown = [i for i, d in enumerate(digests) if d == UNKNOWN_DIGEST]
        for i in unknown:
            digests[i] = 0
        return orjson.dumps([4, self.baseline.to_list(), self.sessions, self.pending,
                             self.recent, self.code_times, _b64_uint32(self.seen),
                             self.early, _b64_uint32(digests), unknown])

    @classmethod
    def from_bytes(cls, data: bytes) -> "UserState":
        version, baseline, sessions, pending, recent, code_times, seen, *rest = orjson.loads(data)
        if version not in (2, 3, 4):          # 2: before early code entries; 3: before digests
            raise ValueError(f"unknown UserState version {version}")
        state = cls()
        if rest:
            state.early = rest[0]
        state.baseline = Baseline.from_list(baseline)
        state.sessions, state.pending, state.recent = sessions, pending, recent
        state.code_times = code_times
        keys = _uint32_b64(seen)
        if version >= 4:
            digests = _uint32_b64(rest[1])
            for i in rest[2]:
                digests[i] = UNKNOWN_DIGEST
            state.seen = dict(zip(keys, digests))
        else:                                  # ids only: a repeat of one is a plain duplicate
            state.seen = dict.fromkeys(keys, UNKNOWN_DIGEST)
        return state


def _b64_uint32(values) -> str:
    return base64.b64encode(array("I", values).tobytes()).decode()


def _uint32_b64(text: str) -> list[int]:
    values = array("I")
    values.frombytes(base64.b64decode(text))
    return values.tolist()


class NetworkState:
    """Cross-user view of one IP or network: who used it lately and how that went.

    Counters decay with a half-life so that a NAT address busy last week is not
    suspicious today; distinct users are kept as 48-bit hashes, capped.
    """
    __slots__ = ("t0", "logins", "login_fail", "codes", "verified", "unverified", "users")
    HALF_LIFE = 6 * 3600

    def __init__(self):
        self.t0 = 0
        self.logins = self.login_fail = 0.0
        self.codes = self.verified = self.unverified = 0.0
        self.users: dict[int, int] = {}          # short_hash(user_id) -> last t

    def _decay(self, t: int) -> None:
        if t > self.t0:
            if self.t0:
                f = math.pow(0.5, (t - self.t0) / self.HALF_LIFE)
                self.logins *= f
                self.login_fail *= f
                self.codes *= f
                self.verified *= f
                self.unverified *= f
            self.t0 = t

    def observe(self, user_id: str, t: int, window: int, login_ok: bool | None = None,
                code: bool = False) -> None:
        self._decay(t)
        if login_ok is not None:
            self.logins += 1
            self.login_fail += 0 if login_ok else 1
        if code:
            self.codes += 1
        key = _crc32(user_id.encode())            # short_hash, inlined
        users = self.users
        if t > users.get(key, 0):
            users[key] = t
        if len(self.users) > 96:
            self.prune(t, window)

    def prune(self, t: int, window: int) -> None:
        horizon = t - window
        self.users = {u: v for u, v in self.users.items() if v >= horizon}
        while len(self.users) > 96:
            self.users.pop(min(self.users, key=self.users.get))

    def outcome(self, t: int, verified: bool) -> None:
        self._decay(t)
        if verified:
            self.verified += 1
        else:
            self.unverified += 1

    def distinct_users(self, t: int, window: int) -> int:
        horizon = t - window
        return len([v for v in self.users.values() if v >= horizon])

    def failure_ratio(self) -> float | None:
        """Share of bad outcomes (wrong passwords, codes never entered) seen here; None = no data."""
        total = self.logins + self.verified + self.unverified
        if total < 1.0:
            return None
        return (self.login_fail + self.unverified) / total

    def to_bytes(self) -> bytes:
        return orjson.dumps([1, self.t0, round(self.logins, 4), round(self.login_fail, 4),
                             round(self.codes, 4), round(self.verified, 4),
                             round(self.unverified, 4), [[k, v] for k, v in self.users.items()]])

    @classmethod
    def from_bytes(cls, data: bytes) -> "NetworkState":
        version, t0, logins, fail, codes, verified, unverified, users = orjson.loads(data)
        if version != 1:
            raise ValueError(f"unknown NetworkState version {version}")
        state = cls()
        state.t0, state.logins, state.login_fail = t0, logins, fail
        state.codes, state.verified, state.unverified = codes, verified, unverified
        state.users = {k: v for k, v in users}
        return state
