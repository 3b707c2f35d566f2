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

from dataclasses import dataclass
from enum import IntEnum

import orjson

from .baseline import Baseline
from .contract import ContractError
from .enrich import Context

USER_STATE_VERSION = 5     # 4: decided codes keep their issue score (not their severity), and
                           #    the dedup memory keeps a content digest per event id
                           # 5: sessions may be HELD or DISOWNED (issue #12; same layout)
UNKNOWN_DIGEST = -1        # content digest of an id remembered by a state stored before version 4
EARLY_MAX = 8              # held code entries per user
MAX_SESSIONS = 8           # correlatable logins kept per user when none has a pending code
MAX_SESSIONS_HARD = 64
SEEN_MAX = 48              # dedup memory: the user's last 48 event ids (redelivery comes soon)


def short_hash(text: str) -> int:
    """Stable 32-bit hash (CRC-32): event-id dedup and user fan-out without storing ids.
    Collisions only matter within one user's last 64 events or one network's 96 users."""
    return zlib.crc32(text.encode())


def _ctx_in(values: list | None) -> Context | None:
    return None if values is None else Context.from_wire(values)


def _ctx_out(ctx: Context | None) -> list | None:
    return None if ctx is None else ctx.to_wire()


# ---------------------------------------------------------------------- records
# Each record is written to and read from its compact wire form (a positional list) in
# its own to_wire / from_wire and nowhere else. Contexts kept in records are
# Context.stored() (user agent cut), so a record reads the same before and after the codec.

class SessionState(IntEnum):
    """What is known about a session (the wire keeps the number)."""
    LOGGED_IN = 0          # its login arrived; its context is not in the baseline (yet)
    LEARNED = 1            # the session proved itself (code entered, trusted device): learned
    AWAITING_LOGIN = -1    # a code was entered before the login was delivered: placeholder
    HELD = 2               # proof from an unfamiliar context (a trusted-device cookie, or a code
                           # entered from a wholly unfamiliar one): learned once corroborated or
                           # after detector.probation_s without a not_me
    DISOWNED = 3           # held when the user said not_me: never learned


@dataclass(slots=True)
class Session:
    """A login the user's codes can be correlated with."""
    t: int
    password_ok: bool
    ctx: Context | None
    state: SessionState = SessionState.LOGGED_IN

    def to_wire(self) -> list:
        return [self.t, self.password_ok, _ctx_out(self.ctx), int(self.state)]

    @classmethod
    def from_wire(cls, values: list) -> "Session":
        t, password_ok, ctx, state = values
        return cls(t=t, password_ok=password_ok, ctx=_ctx_in(ctx), state=SessionState(state))


@dataclass(slots=True)
class PendingCode:
    """A code request waiting for its login, its entry or the end of its wait window."""
    id: str
    t: float
    ts: str
    session_id: str | None
    channel: str
    purpose: str
    ctx: Context | None          # the requester's own context, when the event carried one
    deadline: float
    verified: bool = False       # entered successfully
    failed: int = 0              # wrong entries

    def to_wire(self) -> list:
        return [self.id, self.t, self.ts, self.session_id, self.channel, self.purpose,
                _ctx_out(self.ctx), 1 if self.verified else None, self.failed, self.deadline]

    @classmethod
    def from_wire(cls, values: list) -> "PendingCode":
        code_id, t, ts, session_id, channel, purpose, ctx, verified, failed, deadline = values
        return cls(id=code_id, t=t, ts=ts, session_id=session_id, channel=channel,
                   purpose=purpose, ctx=_ctx_in(ctx), deadline=deadline,
                   verified=bool(verified), failed=failed)

    def order(self) -> tuple:
        """Codes of one session are handled oldest first (ties by id: deterministic)."""
        return self.t, self.id


@dataclass(slots=True)
class DecidedCode:
    """A decided code, kept for feedback and for re-emitting its alert."""
    id: str
    t: int
    score: float                 # rounded to 4 digits
    issue_score: float | None    # the score without outcome terms; None: stored by version <= 3
    flow: str
    revisions: int               # alert revisions emitted for it: 0 = never alerted, 1 = created,
                                 # n = n - 1 updates since (so the next revision is stored state)
    purpose: str
    channel: str
    reasons: list[str]           # codes of the strongest positive terms
    ctx: Context | None          # what a `me` teaches, what an update shows
    status: str                  # open | escalated | benign

    def to_wire(self) -> list:
        return [self.id, self.t, self.score, self.issue_score, self.flow, self.revisions,
                self.purpose, self.channel, self.reasons, _ctx_out(self.ctx), self.status]

    @classmethod
    def from_wire(cls, values: list, version: int = USER_STATE_VERSION) -> "DecidedCode":
        # up to version 3 the fourth field was the severity (never read back), not the issue score
        code_id, t, score, fourth, flow, alerted, purpose, channel, reasons, ctx, status = values
        return cls(id=code_id, t=t, score=score, issue_score=fourth if version >= 4 else None,
                   flow=flow, revisions=int(alerted), purpose=purpose, channel=channel,
                   reasons=reasons, ctx=_ctx_in(ctx), status=status)


@dataclass(slots=True)
class HeldEntry:
    """A code entry that came before its code, held until the code arrives."""
    t: float
    session_id: str | None
    success: bool

    def to_wire(self) -> list:
        return [self.t, self.session_id, self.success]

    @classmethod
    def from_wire(cls, values: list) -> "HeldEntry":
        t, session_id, success = values
        return cls(t=t, session_id=session_id, success=success)


class UserState:
    """Everything straycode keeps about one user."""
    __slots__ = ("baseline", "sessions", "pending", "recent", "code_times", "seen", "early")

    def __init__(self):
        self.baseline = Baseline()
        self.sessions: dict[str, Session] = {}
        self.pending: dict[str, PendingCode] = {}   # code event id -> pending code
        self.recent: list[DecidedCode] = []          # decided codes, newest last
        self.code_times: list[int] = []              # recent code requests, for bombing
        self.seen: dict[int, int] = {}               # short_hash(event_id) -> content digest, oldest first
        self.early: list[HeldEntry] = []             # code_verified with no code yet

    # ------------------------------------------------------------------ dedup
    def check_repeat(self, event_id: str, digest: int) -> None:
        """Raise ContractError('conflicting_duplicate') when this event id is among the
        user's last SEEN_MAX with other content (``contract.content_digest``); changes nothing."""
        known = self.seen.get(short_hash(event_id))
        if known is not None and known != digest and known != UNKNOWN_DIGEST:
            raise ContractError("conflicting_duplicate",
                                f"event_id {event_id[:64]!r} was seen for this user with other "
                                "content (same id, different event)")

    def is_duplicate(self, event_id: str, digest: int) -> bool:
        """True when this event id is among the user's last SEEN_MAX (a redelivery: callers
        check_repeat() first); records it with its content digest otherwise."""
        key = short_hash(event_id)
        seen = self.seen
        if key in seen:
            return True
        seen[key] = digest
        if len(seen) > SEEN_MAX:
            del seen[next(iter(seen))]
        return False

    # ------------------------------------------------------------------ sessions
    def add_session(self, session_id: str, t: int, password_ok: bool, ctx: Context | None,
                    ttl: int, memory: int | None = None) -> None:
        """Store a login. Sessions older than `ttl` keep a compact context (no user agent
        string) and are dropped after `memory` (default: `ttl`): a stolen session's code may
        come hours after its login."""
        old = self.sessions.get(session_id)
        state = old.state if old else SessionState.LOGGED_IN
        # a later password_ok=False attempt in the same session must not hide an earlier success
        password_ok = password_ok or bool(old and old.password_ok)
        sessions = self.sessions
        sessions[session_id] = Session(t, password_ok, ctx, state)
        # sessions whose codes still wait for a decision are kept: evicting them would turn a
        # bombing burst's codes into login_missing and hide that the password was typed
        # (`waiting` and `idle` are only built when something may be evicted)
        waiting = None
        horizon = t - max(ttl, memory or 0)
        compact = t - ttl
        for v in sessions.values():
            if v.t < compact and v.ctx is not None and (v.ctx.user_agent or v.ctx.as_org):
                v.ctx = v.ctx.compact()
        stale = [s for s, v in sessions.items() if v.t < horizon]
        if stale:
            waiting = {p.session_id for p in self.pending.values()}
            waiting.add(session_id)
            for sid in stale:
                if sid not in waiting:
                    del sessions[sid]
        if len(sessions) > MAX_SESSIONS:
            if waiting is None:
                waiting = {p.session_id for p in self.pending.values()}
                waiting.add(session_id)
            idle = sorted((v.t, s) for s, v in sessions.items() if s not in waiting)
            while len(sessions) > MAX_SESSIONS and idle:
                del sessions[idle.pop(0)[1]]
        while len(sessions) > MAX_SESSIONS_HARD:     # a flood: bound memory anyway
            del sessions[min(sessions, key=lambda s: (sessions[s].t, s))]

    # ------------------------------------------------------------------ codes
    def note_code(self, t: int, window: int) -> None:
        """Record a code request (kept for `window` s, at most 32, for bombing)."""
        horizon = t - window
        self.code_times = [x for x in self.code_times if x >= horizon][-31:]
        self.code_times.append(t)

    def remember(self, record: DecidedCode, keep: int, now: int, max_age: int = 30 * 86400) -> None:
        recent = self.recent
        recent.append(record)
        horizon = now - max_age
        for r in recent:
            if r.t < horizon:          # something aged out: filter, then keep the newest
                self.recent = [r for r in recent if r.t >= horizon][-keep:]
                return
        if len(recent) > keep:
            self.recent = recent[-keep:]

    def hold_verification(self, t: float, session_id: str | None, success: bool,
                          keep_s: float) -> None:
        """Keep a code entry that came before its code (another producer was faster, or the
        clocks differ) for `keep_s`, so the code can count it when it arrives."""
        horizon = t - keep_s
        self.early = [e for e in self.early if e.t >= horizon][-(EARLY_MAX - 1):]
        self.early.append(HeldEntry(t, session_id, success))

    def find_recent(self, code_event_id: str) -> DecidedCode | None:
        for record in reversed(self.recent):
            if record.id == code_event_id:
                return record
        return None

    # ------------------------------------------------------------------ codec
    # version 5 (and 4): [5, baseline, sessions, pending, recent, code_times, seen ids (b64
    #             uint32), early, seen digests (b64 uint32, same order), positions of unknown
    #             digests]; 5 adds the session states HELD and DISOWNED
    # 3 lacks the last two (digests unknown), 2 also lacks `early`.
    def to_bytes(self) -> bytes:
        digests = list(self.seen.values())
        unknown = [i for i, d in enumerate(digests) if d == UNKNOWN_DIGEST]
        for i in unknown:
            digests[i] = 0
        return orjson.dumps([USER_STATE_VERSION, self.baseline.to_wire(),
                             {sid: s.to_wire() for sid, s in self.sessions.items()},
                             {cid: p.to_wire() for cid, p in self.pending.items()},
                             [r.to_wire() for r in self.recent], self.code_times,
                             _b64_uint32(self.seen), [e.to_wire() for e in self.early],
                             _b64_uint32(digests), unknown])

    @classmethod
    def from_bytes(cls, data: bytes) -> "UserState":
        """Reads versions 2 (before held code entries), 3 (decided codes with their severity,
        ids without content digests), 4 (issue scores, content digests) and 5 (sessions may
        be HELD or DISOWNED)."""
        version, baseline, sessions, pending, recent, code_times, seen, *rest = orjson.loads(data)
        if version not in (2, 3, 4, 5):
            raise ValueError(f"unknown UserState version {version}")
        state = cls()
        if rest:
            state.early = [HeldEntry.from_wire(e) for e in rest[0]]
        state.baseline = Baseline.from_wire(baseline)
        state.sessions = {sid: Session.from_wire(v) for sid, v in sessions.items()}
        state.pending = {cid: PendingCode.from_wire(v) for cid, v in pending.items()}
        state.recent = [DecidedCode.from_wire(r, version) for r in recent]
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


@dataclass(slots=True)
class Observe:
    """Network operation: `user_id` was seen on the network at `t` (a login, with its
    password outcome, and/or a code request)."""
    user_id: str
    t: int
    window: int                  # fan-out window: distinct users older than this may go
    login_ok: bool | None = None
    code: bool = False

    def to_wire(self) -> list:
        return ["o", self.user_id, self.t, self.window, self.login_ok, self.code]


@dataclass(slots=True)
class Outcome:
    """Network operation: a code requested from the network was entered (or never was)."""
    t: int
    verified: bool

    def to_wire(self) -> list:
        return ["v", self.t, self.verified]


NetworkOp = Observe | Outcome


def network_op_from_wire(values: list) -> NetworkOp:
    """The operation of a wire form written by `to_wire`; ValueError for anything else
    (operations come from other processes: a malformed one must not half-change a state)."""
    kind = values[0] if isinstance(values, list) and values else None
    if kind == "o" and len(values) == 6:
        _, user_id, t, window, login_ok, code = values
        if (isinstance(user_id, str) and _number(t) and _number(window)
                and login_ok in (None, True, False) and code in (True, False)):
            return Observe(user_id, t, window, login_ok, code)
    elif kind == "v" and len(values) == 3:
        _, t, verified = values
        if _number(t) and verified in (True, False):
            return Outcome(t, verified)
    raise ValueError(f"not a network operation: {str(values)[:80]}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class NetworkState:
    """Cross-user view of one IP or network: who used it lately and how that went.

    Counters decay with a half-life so that a NAT address busy last week is not
    suspicious today; distinct users are kept as 48-bit hashes, capped.

    Every change goes through `apply(op)` with an operation (Observe, Outcome): the
    stream processor records and ships the operations (a network's counts are summed
    from users handled by different workers), so a new way to change the state must be a
    new operation, applied here.
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
        self.apply(Observe(user_id, t, window, login_ok, code))

    def outcome(self, t: int, verified: bool) -> None:
        self.apply(Outcome(t, verified))

    def apply(self, op: NetworkOp) -> None:
        """The one place a NetworkState changes."""
        if type(op) is Observe:
            self._observe(op)
        elif type(op) is Outcome:
            self._decay(op.t)
            if op.verified:
                self.verified += 1
            else:
                self.unverified += 1
        else:
            raise TypeError(f"not a network operation: {op!r}")

    def _observe(self, op: Observe) -> None:
        t = op.t
        self._decay(t)
        if op.login_ok is not None:
            self.logins += 1
            self.login_fail += 0 if op.login_ok else 1
        if op.code:
            self.codes += 1
        key = short_hash(op.user_id)
        users = self.users
        if t > users.get(key, 0):
            users[key] = t
        if len(users) > 96:
            self._prune(t, op.window)

    def _prune(self, t: int, window: int) -> None:
        horizon = t - window
        self.users = {u: v for u, v in self.users.items() if v >= horizon}
        while len(self.users) > 96:
            self.users.pop(min(self.users, key=self.users.get))

    def distinct_users(self, t: int, window: int) -> int:
        horizon = t - window
        return len([v for v in self.users.values() if v >= horizon])

    def failure_ratio(self) -> float | None:
        """Share of bad outcomes (wrong passwords, codes never entered) seen here; None = no data."""
        total = self.logins + self.verified + self.unverified
        if total < 1.0:
            return None
        return (self.login_fail + self.unverified) / total

    VERSION = 1

    def to_bytes(self, exact: bool = False) -> bytes:
        """Counters rounded to 4 digits (a Faust table's value), or `exact` (a saved state
        directory: a restored run then scores byte for byte like one run); one layout."""
        counters = (self.logins, self.login_fail, self.codes, self.verified, self.unverified)
        if not exact:
            counters = tuple(round(c, 4) for c in counters)
        return orjson.dumps([self.VERSION, self.t0, *counters,
                             [[k, v] for k, v in self.users.items()]])

    @classmethod
    def from_bytes(cls, data: bytes) -> "NetworkState":
        version, t0, logins, fail, codes, verified, unverified, users = orjson.loads(data)
        if version != cls.VERSION:
            raise ValueError(f"unknown NetworkState version {version}")
        state = cls()
        state.t0, state.logins, state.login_fail = t0, logins, fail
        state.codes, state.verified, state.unverified = codes, verified, unverified
        state.users = {k: v for k, v in users}
        return state
