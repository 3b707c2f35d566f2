"""The detector: identity events in, score records and alerts out.

Pure and deterministic: state lives in two mappings handed in by the caller (dicts in
replay, Faust tables in the worker), time is event time only, and the order of outputs
depends only on the order of inputs. A code request is *decided* once its login is known
and either the code was entered or the wait window (``verify_window_s``) has passed in
event time; a code whose login never shows up is decided after ``login_grace_s``.

A code is judged against its own session (issue #12, detector/session_context.py): its own
requester context is compared with its session's login, a trusted-device cookie from an
unfamiliar context or an entered code from a wholly unfamiliar one is held (not learned)
until corroborated, and a session opened before the last password change proves nothing.
"""
from __future__ import annotations

import heapq
from collections import Counter
from typing import MutableMapping

from .alerts import Alert, ScoreRecord, alert_id_for
from .baseline import hour_of
from .contract import (CodeIssued, CodeVerified, DeviceTrusted, Event, Login, PasswordChanged,
                       UserFeedback, content_digest, utc_iso)
from .enrich import Context, Enricher
from .learned import Scorer
from .netkind import physical_place
from .learned import apply as apply_model
from .policy import SEVERITY_RANK, Policy
from .population import Population
from .rules import PASSWORD_FLOW, SESSION_FLOW
from .scoring import Signals, Verdict, score_code
from .session_context import (STRONG, compare, network_known, place_known, trusted_unfamiliar,
                              wholly_unfamiliar)
from .state import (DecidedCode, HeldEntry, NetworkState, PendingCode, Session, SessionState,
                    UserState)

Output = ScoreRecord | Alert


class Detector:
    """Scores every code request against the user's proven history (see module doc)."""

    def __init__(self, cfg: dict, enricher: Enricher | None = None,
                 users: MutableMapping[str, UserState] | None = None,
                 networks: MutableMapping[str, NetworkState] | None = None,
                 population: Population | None = None, learned: Scorer | None = None):
        self.cfg = cfg
        self.learned = learned                   # optional model blended in (detector/learned.py)
        self._model_weight = cfg.get("model_weight") or 0.0
        self.enricher = enricher or Enricher()
        self.users = {} if users is None else users
        self.networks = {} if networks is None else networks
        self.population = population or Population()
        self.policy = Policy(cfg["policy"])
        # read once: the hot path uses these per event (cfg is not changed after construction)
        self._verify_window = cfg["verify_window_s"]
        self._login_grace = cfg["login_grace_s"]
        self._bombing_window = cfg["bombing_window_s"]
        self._fanout_window = cfg["fanout_window_s"]
        self._session_ttl = cfg["session_ttl_s"]
        self._session_memory = cfg.get("session_memory_s") or 0
        self._probation = cfg.get("probation_s") or 0
        self._recent_kept = cfg["recent_codes_kept"]
        self._min_alert_rank = SEVERITY_RANK[cfg["alert_min_severity"]]
        self.watermark = 0.0
        self.stats: Counter = Counter()
        self._heap: list[tuple[float, int, str, str]] = []   # (deadline, seq, user, code id)
        self._seq = 0

    # ------------------------------------------------------------------ public API
    def process(self, event: Event) -> list[Output]:
        """Handle one event; returns what it decided (including codes whose window passed).

        Raises ContractError('conflicting_duplicate') before changing anything (state,
        clock, stats) when the event repeats one of the user's recent event ids with other
        content; the caller dead-letters it with ``exc.reason``."""
        digest = content_digest(event)
        state = self.users.get(event.user_id)
        if state is not None:
            state.check_repeat(event.event_id, digest)
        self.stats[_EVENT_STAT.get(event.type) or f"events.{event.type}"] += 1
        # codes whose window closed before this event are decided first, so that nothing
        # this event teaches can leak into their scores
        out = self.advance(event.t)
        if out:                       # deciding may have stored this user's state anew
            state = self.users.get(event.user_id)
        if state is None:
            state = UserState()
        if state.is_duplicate(event.event_id, digest):
            self.stats["duplicates"] += 1
            return out
        if state.sessions:
            self._promote_held(state, event.t)
        handler = self._handlers[type(event)]
        handler(self, event, state, out)
        self.users[event.user_id] = state
        out.extend(self.advance())
        return out

    def move_clock(self, watermark: float) -> bool:
        """Move event time forward (never back) without deciding; True when it moved."""
        if watermark > self.watermark:
            self.watermark = watermark
            return True
        return False

    def advance(self, watermark: float | None = None) -> list[Output]:
        """Decide every pending code whose deadline is at or before the watermark."""
        if watermark is not None:
            self.move_clock(watermark)
        heap = self._heap
        if not heap or heap[0][0] > self.watermark:
            return []
        out: list[Output] = []
        while heap and heap[0][0] <= self.watermark:
            _deadline, _seq, user_id, code_id = heapq.heappop(heap)
            state = self.users.get(user_id)
            if state is None or code_id not in state.pending:
                continue
            self._decide(user_id, state, state.pending[code_id], out)
            self.users[user_id] = state
        return out

    def flush(self) -> list[Output]:
        """End of input: decide everything still pending, as if its window had passed."""
        deadline = max((entry[0] for entry in self._heap), default=self.watermark)
        return self.advance(deadline)

    # ------------------------------------------------------------------ warm start
    CORE_VERSION = 1

    def export_core(self) -> dict:
        """The clock, the pending codes' timers and the counters as plain data (the rest of
        a run's state is in the two stores and the population; detector/snapshot.py). A
        sorted list is a heap, and entries are unique by sequence number, so the restored
        heap pops in exactly the same order."""
        return {"version": self.CORE_VERSION, "watermark": self.watermark, "seq": self._seq,
                "heap": [list(entry) for entry in sorted(self._heap)],
                "stats": dict(sorted(self.stats.items()))}

    def restore_core(self, data: dict) -> None:
        if data.get("version") != self.CORE_VERSION:
            raise ValueError(f"detector core snapshot version {data.get('version')!r}, "
                             f"expected {self.CORE_VERSION}")
        self.watermark = float(data["watermark"])
        self._seq = int(data["seq"])
        self._heap = [(float(d), int(s), u, c) for d, s, u, c in data["heap"]]   # sorted: a heap
        self.stats = Counter(data["stats"])

    def pending_count(self) -> int:
        """Pending codes a saved state carries over (one timer per code still pending)."""
        users = self.users
        return sum(1 for _d, _s, user_id, code_id in self._heap
                   if (state := users.get(user_id)) is not None and code_id in state.pending)

    def rebuild_index(self, user_id: str, state: UserState) -> None:
        """Re-register a stored user's pending codes (after a restart or rebalance)."""
        for pending in state.pending.values():
            self._schedule(pending.deadline, user_id, pending.id)

    # ------------------------------------------------------------------ helpers
    def _schedule(self, deadline: float, user_id: str, code_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, user_id, code_id))

    def _network(self, key: str) -> NetworkState:
        state = self.networks.get(key)
        return NetworkState() if state is None else state

    def _observe_networks(self, ctx: Context | None, user_id: str, t: int,
                          login_ok: bool | None = None, code: bool = False) -> None:
        if ctx is None or ctx.ip is None:
            return
        window = self._fanout_window
        for key in _network_keys(ctx):
            net = self._network(key)
            net.observe(user_id, t, window, login_ok=login_ok, code=code)
            self.networks[key] = net

    def _learn(self, state: UserState, ctx: Context | None, t: float) -> None:
        """Fold a proven context into the user's baseline and the population."""
        if ctx is None:
            return
        features = ctx.features()
        lat, lon = (ctx.lat, ctx.lon) if physical_place(ctx) else (None, None)
        state.baseline.learn(int(t), features, hour_of(t), lat, lon, ctx.city,
                             ctx.browser, self.cfg)
        self.population.observe(features)
        self.stats["learned"] += 1

    def _learn_session(self, state: UserState, session_id: str | None, t: float) -> bool:
        """Learn a session that proved itself (a code entered, a device trusted) unless the
        proof is in doubt: a code entered from a network, place and device the user never
        proved may have been typed by the victim into a relay (AiTM), so such a session is
        HELD until corroborated; a HELD trusted-device login is corroborated by this proof."""
        session = state.sessions.get(session_id) if session_id else None
        if session is None:
            return False
        if session.state is SessionState.HELD:
            if not state.baseline.trusted_now(session.ctx.device_id if session.ctx else None,
                                              session.t, self.cfg):
                return False        # held as a possible relay: its own proof does not count
        elif session.state is not SessionState.LOGGED_IN:
            return False            # already learned, disowned, or its login has not arrived
        elif wholly_unfamiliar(state.baseline, session.ctx, session.t, self.cfg) \
                and not self._corroborate_held(state, session.ctx, session):
            # (another held session from the same network and place that proved itself
            # too corroborates it: a relay is used once, a new home again and again)
            session.state = SessionState.HELD
            self.stats["sessions_held"] += 1
            return False
        session.state = SessionState.LEARNED
        self._learn(state, session.ctx, t)
        return True

    def _promote_held(self, state: UserState, now: float) -> None:
        """Held sessions whose quiet period (``probation_s``) passed with no not_me: learned."""
        horizon = now - self._probation
        for session in state.sessions.values():
            if session.state is SessionState.HELD and session.t <= horizon:
                session.state = SessionState.LEARNED
                self._learn(state, session.ctx, session.t)
                self.stats["sessions_promoted"] += 1

    @staticmethod
    def _login_of(state: UserState, session_id: str | None) -> Session | None:
        """The session's login, or None while it has not arrived (placeholders don't count)."""
        session = state.sessions.get(session_id) if session_id else None
        return None if session is None or session.state is SessionState.AWAITING_LOGIN else session

    # ------------------------------------------------------------------ handlers
    def _on_login(self, event: Login, state: UserState, out: list[Output]) -> None:
        ctx = self.enricher.context(event)
        t = int(event.t)
        early = state.sessions.get(event.session_id)
        verified_early = early is not None and early.state is SessionState.AWAITING_LOGIN
        state.add_session(event.session_id, t, event.password_ok, ctx.stored() if ctx else None,
                          self._session_ttl, self._session_memory)
        self._observe_networks(ctx, event.user_id, t, login_ok=event.password_ok)
        if event.password_ok and state.baseline.trusted_now(event.device_id, event.t, self.cfg):
            # a trusted-device cookie is proof the user was here before, unless it shows up
            # on a network the user never proved: then it waits for corroboration
            level, _ = trusted_unfamiliar(state.baseline, ctx, event.t, self.cfg)
            session = state.sessions[event.session_id]
            if level and session.state is SessionState.LOGGED_IN:
                session.state = SessionState.HELD
                self.stats["sessions_held"] += 1
            else:
                self._learn_session(state, event.session_id, event.t)
                state.baseline.touch_device(event.device_id, t, ctx.browser if ctx else None,
                                            self.cfg)
        if state.pending:
            session_id = event.session_id
            waiting = [p for p in state.pending.values() if p.session_id == session_id]
            if len(waiting) > 1:
                waiting.sort(key=PendingCode.order)
            for pending in waiting:
                self._maybe_decide(event.user_id, state, pending, out)
        if verified_early:            # its code was entered before this login was delivered
            state.sessions[event.session_id].state = SessionState.LOGGED_IN
            self._learn_session(state, event.session_id, event.t)

    def _on_code_issued(self, event: CodeIssued, state: UserState, out: list[Output]) -> None:
        ctx = self.enricher.context(event)
        t = int(event.t)
        state.note_code(t, self._bombing_window)
        session = self._login_of(state, event.session_id)
        fan_ctx = ctx if ctx is not None and ctx.ip else (session.ctx if session else None)
        self._observe_networks(fan_ctx, event.user_id, t, code=True)
        wait = self._verify_window
        if event.session_id is not None and session is None:
            wait = max(wait, self._login_grace)
        deadline = event.t + wait
        if deadline < self.watermark:
            # delivered late: give its login / verification the grace window from now
            deadline = self.watermark + self._login_grace
            self.stats["late_codes"] += 1
        pending = PendingCode(id=event.event_id, t=event.t, ts=event.ts,
                              session_id=event.session_id, channel=event.channel,
                              purpose=event.purpose, ctx=ctx.stored() if ctx else None,
                              deadline=deadline)
        state.pending[event.event_id] = pending
        self._schedule(deadline, event.user_id, event.event_id)
        early = self._count_early_entries(state, pending) if state.early else ()
        self._maybe_decide(event.user_id, state, pending, out)
        for entry in early:           # learn only after deciding, as _on_code_verified does
            if entry.session_id is None and entry.success and pending.ctx:
                self._learn(state, pending.ctx, entry.t)

    def _count_early_entries(self, state: UserState, pending: PendingCode) -> list[HeldEntry]:
        """Apply the held code entries that belong to this code (same session, entered no
        earlier than the code minus the grace window, the rule _on_code_verified matches
        with); an entry without a session is used up by the one code it counts for."""
        taken, kept = [], []
        session_id, earliest = pending.session_id, pending.t - self._login_grace
        for entry in state.early:
            if entry.session_id == session_id and entry.t >= earliest:
                if entry.success:
                    pending.verified = True
                else:
                    pending.failed += 1
                taken.append(entry)
                self.stats["verified_early"] += 1
                if entry.session_id is None:
                    continue
            kept.append(entry)
        state.early = kept
        return taken

    def _on_code_verified(self, event: CodeVerified, state: UserState, out: list[Output]) -> None:
        session_id = event.session_id
        latest = event.t + self._login_grace
        matches = [p for p in state.pending.values() if p.session_id == session_id
                   and p.t <= latest]
        if session_id is None and matches:
            matches = [max(matches, key=PendingCode.order)]
        if not matches:               # its code may still come (another topic, skewed clocks)
            self.stats["verified_unmatched"] += 1
            state.hold_verification(event.t, session_id, event.success, self._session_ttl)
        for pending in (sorted(matches, key=PendingCode.order) if len(matches) > 1 else matches):
            if event.success:
                pending.verified = True
            else:
                pending.failed += 1
            self._maybe_decide(event.user_id, state, pending, out)
        # learn only after deciding: a code is scored against the history before it
        if event.success:
            if event.session_id is not None and event.session_id not in state.sessions:
                # delivered before its login (separate topics): learn when the login comes
                state.sessions[event.session_id] = Session(int(event.t), False, None,
                                                           SessionState.AWAITING_LOGIN)
            elif event.session_id is not None:
                self._learn_session(state, event.session_id, event.t)
            for pending in matches:
                if event.session_id is None and pending.ctx:
                    self._learn(state, pending.ctx, event.t)

    def _on_device_trusted(self, event: DeviceTrusted, state: UserState, out: list[Output]) -> None:
        session = state.sessions.get(event.session_id)
        browser = None
        if session is not None and session.ctx:
            browser = session.ctx.browser
        elif event.user_agent:
            ctx = self.enricher.context(event)
            browser = ctx.browser if ctx else None
        self._learn_session(state, event.session_id, event.t)
        state.baseline.touch_device(event.device_id, int(event.t), browser, self.cfg, trusted=True)

    def _on_password_changed(self, event: PasswordChanged, state: UserState, out: list[Output]) -> None:
        """From now on, sessions opened before this change prove nothing: a code requested
        inside one is judged as from an attacker's session that survived the reset. The
        session the change was made in (optional ``session_id``) re-proved the password."""
        t = int(event.t)
        state.baseline.pw_changed = t
        session_id = event.extra.get("session_id") if event.extra else None
        session = state.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is not None and session.t < t:
            session.t = t

    def _on_feedback(self, event: UserFeedback, state: UserState, out: list[Output]) -> None:
        record = state.find_recent(event.code_event_id)
        if record is None:
            pending = state.pending.get(event.code_event_id)
            if pending is not None and event.verdict == "not_me":
                self._disown_held(state)
                self._decide(event.user_id, state, pending, out, not_me=True)
                return
            self.stats["feedback_unmatched"] += 1
            return
        if event.verdict == "not_me":
            self._disown_held(state)
        if event.verdict == "me":
            if record.ctx and record.status != "benign":
                self._learn(state, record.ctx, event.t)
                self._corroborate_held(state, record.ctx)
            if record.revisions and record.status != "benign":
                record.status = "benign"
                out.append(self._update(event, state, record, "benign", "feedback_me",
                                        "the user confirmed they requested this code", -10.0))
            return
        if record.status == "escalated":
            return
        record.status = "escalated"
        out.append(self._update(event, state, record, "escalated", "feedback_not_me",
                                "the user reported this code as not requested by them",
                                self.cfg["weights"]["feedback_not_me"]))

    def _disown_held(self, state: UserState) -> None:
        """A not_me ends every quiet period: held sessions are never learned."""
        for session in state.sessions.values():
            if session.state is SessionState.HELD:
                session.state = SessionState.DISOWNED
                self.stats["sessions_disowned"] += 1

    def _corroborate_held(self, state: UserState, ctx: Context | None,
                          other: Session | None = None) -> int:
        """Learn the held sessions from the same network and place as `ctx` (a `me` for a
        code from there, or `other`, a second session from there that proved itself)."""
        if ctx is None or ctx.network is None:
            return 0
        found = 0
        for session in state.sessions.values():
            held = session.ctx
            if session is not other and session.state is SessionState.HELD and held is not None \
                    and held.network == ctx.network and held.city == ctx.city:
                session.state = SessionState.LEARNED
                self._learn(state, held, session.t)
                self.stats["sessions_corroborated"] += 1
                found += 1
        return found

    _handlers = {Login: _on_login, CodeIssued: _on_code_issued, CodeVerified: _on_code_verified,
                 DeviceTrusted: _on_device_trusted, PasswordChanged: _on_password_changed,
                 UserFeedback: _on_feedback}

    # ------------------------------------------------------------------ decisions
    def _maybe_decide(self, user_id: str, state: UserState, pending: PendingCode,
                      out: list[Output]) -> None:
        session_id = pending.session_id
        if session_id is not None and self._login_of(state, session_id) is None:
            return                                       # hold for its login (grace window)
        if self._verify_window == 0 or pending.verified:
            self._decide(user_id, state, pending, out)

    def _decide(self, user_id: str, state: UserState, pending: PendingCode, out: list[Output],
                not_me: bool = False) -> None:
        code_id, t = pending.id, pending.t
        del state.pending[code_id]
        session = self._login_of(state, pending.session_id)
        login_ctx = session.ctx if session else None
        # without a login context the code's own context is scored; with one, the code is
        # judged by its requester context where that differs from the login's (issue #12)
        code_ctx = pending.ctx if login_ctx is None else None
        flow = _flow(pending, session)
        ctx = login_ctx or code_ctx
        waited = self._verify_window > 0
        verified = pending.verified if waited or pending.verified else None
        sig = Signals(t=t, purpose=pending.purpose, flow=flow, ctx=ctx, verified=verified,
                      failed_attempts=pending.failed,
                      codes_in_window=_codes_near(state.code_times, t, self._bombing_window),
                      feedback_not_me=not_me)
        if session is not None:
            ctx = self._session_signals(state, session, pending, sig)
            flow = sig.flow
        self._cross_user(sig, ctx, t)
        verdict = score_code(state.baseline, self.population, sig, self.cfg)
        if self.learned is not None and self._model_weight > 0:
            verdict = apply_model(self.learned, verdict, flow, pending.purpose, pending.channel,
                                  self._model_weight, self.cfg["severity"])
        severity = verdict.severity
        alerted = severity is not None and SEVERITY_RANK[severity] >= self._min_alert_rank
        actions = self.policy.actions(flow, severity, verdict.codes()) if alerted else []
        terms = verdict.terms
        record = ScoreRecord(code_id, user_id, pending.ts, verdict.score, verdict.issue_score,
                             severity, alerted, actions, flow, pending.purpose,
                             {term.code: round(term.weight, 3) for term in terms if term.weight})
        out.append(record)
        self.stats["codes_decided"] += 1
        if ctx is not None and ctx.ip is not None and verified is not None:
            for key in _network_keys(ctx):
                net = self._network(key)
                net.outcome(int(t), verified)
                self.networks[key] = net
        # kept for feedback: what a `me` would teach, what a `not_me` update would show
        keep_ctx = ctx if alerted or not verified else None
        status = "escalated" if sig.feedback_not_me else "open"
        positive = [term for term in terms if term.weight > 0]   # filter, then sort: same order
        if len(positive) > 1:
            positive.sort(key=_term_order)
        top = [term.code for term in positive[:4]]
        state.remember(DecidedCode(id=code_id, t=int(t), score=round(verdict.score, 4),
                                   issue_score=verdict.issue_score, flow=flow, revisions=int(alerted),
                                   purpose=pending.purpose, channel=pending.channel,
                                   reasons=top, ctx=keep_ctx, status=status),
                       self._recent_kept, int(self.watermark))
        if alerted:
            if login_ctx is not None:
                code_ctx = pending.ctx
            self.stats["alerts"] += 1
            out.append(self._alert(user_id, state, pending, verdict, flow, actions, login_ctx,
                                   code_ctx, status))

    def _session_signals(self, state: UserState, session: Session, pending: PendingCode,
                         sig: Signals) -> Context | None:
        """Judge the code against its own session; returns the context to score it by and
        sets the session signals (and the flow ``session_only``) on `sig`."""
        b, cfg, t = state.baseline, self.cfg, pending.t
        login_ctx = session.ctx
        change = None
        if login_ctx is not None and pending.ctx is not None:
            change = compare(b, login_ctx, pending.ctx, t - session.t, cfg)
        ctx = change.ctx if change is not None else login_ctx
        sig.ctx, sig.change = ctx, change
        if change is not None:
            # the requester presents the cookie now; within a session the user's own login
            # proved, a move to a new network in a known place is the weak
            # session_context_changed (Wi-Fi -> carrier), not more
            sig.trusted = trusted_unfamiliar(b, ctx, t, cfg)
            if sig.trusted[0] < STRONG:
                sig.trusted = (0, "")
        elif session.state in (SessionState.HELD, SessionState.DISOWNED):
            # a trusted-device login held for its unfamiliar context (a device trusted only
            # after this session's login presented it proves nothing about the login)
            sig.trusted = trusted_unfamiliar(b, ctx, t, cfg)
        if session.t < b.pw_changed <= t:
            sig.pw_session = (session.t, b.pw_changed)
        if session.state is SessionState.HELD:
            sig.held_entered = not b.trusted_now(login_ctx.device_id if login_ctx else None,
                                                 session.t, cfg)
        stolen = change is not None and change.level >= STRONG
        # a session older than the password change, or a trusted cookie on a network the user
        # never proved (infostealers buy residential proxies in the victim's own city), proves
        # nothing by its familiar place; a copied cookie proves nothing by its device id
        sig.not_proof = 2 if sig.pw_session or sig.trusted[0] else (1 if stolen else 0)
        if sig.flow == PASSWORD_FLOW and (sig.pw_session or
                                          (stolen and not _login_suspicious(b, session))):
            # the requester holds the session; the password step came from another context,
            # which is not shown to be suspicious: the password is not shown to be known
            sig.flow = SESSION_FLOW
        return ctx

    def _cross_user(self, sig: Signals, ctx: Context | None, t: float) -> None:
        if ctx is None or ctx.ip is None:
            return
        window = self._fanout_window
        keys = _network_keys(ctx)
        ip_state = self.networks.get(keys[0])
        if ip_state is not None:
            sig.ip_users = ip_state.distinct_users(int(t), window)
            sig.ip_failure_ratio = ip_state.failure_ratio()
        if len(keys) > 1 and (net := self.networks.get(keys[1])) is not None:
            sig.net_users = net.distinct_users(int(t), window)
            sig.net_failure_ratio = net.failure_ratio()
            decided = net.verified + net.unverified
            sig.net_decided = decided
            sig.net_unverified_ratio = net.unverified / decided if decided >= 1 else None

    def _alert(self, user_id: str, state: UserState, pending: PendingCode, verdict: Verdict, flow: str,
               actions: list[str], login_ctx: Context | None, code_ctx: Context | None,
               status: str) -> Alert:
        proven = state.baseline.proven
        confidence = round(min(1.0, 0.5 + 0.5 * min(proven, 10) / 10) * verdict.score, 3)
        return Alert(
            alert_id=alert_id_for(user_id, pending.id), kind="created", code_event_id=pending.id,
            user_id=user_id, ts=utc_iso(pending.t), decided_ts=utc_iso(self.watermark),
            score=verdict.score, issue_score=verdict.issue_score, severity=verdict.severity,
            confidence=confidence, flow=flow, purpose=pending.purpose,
            channel=pending.channel, reasons=verdict.reasons(), actions=actions,
            observed={"login": login_ctx.to_dict() if login_ctx else None,
                      "code": code_ctx.to_dict() if code_ctx else None},
            baseline=state.baseline.summary(), status=status)

    def _update(self, event: UserFeedback, state: UserState, record: DecidedCode, status: str,
                code: str, detail: str, weight: float) -> Alert:
        """Re-emit an alert (same id) after the user's feedback."""
        if status == "escalated":
            severity, score = "critical", max(record.score, self.cfg["severity"]["critical"])
        else:
            severity, score = "low", min(record.score, self.cfg["severity"]["low"])
        flow = record.flow
        signals = set(record.reasons) | ({code} if weight > 0 else set())
        actions = self.policy.actions(flow, severity, signals) if status == "escalated" else []
        reasons = [{"code": code, "detail": detail, "weight": weight}] + [
            {"code": c, "detail": "as in the original alert", "weight": 0.0} for c in record.reasons]
        ctx = record.ctx
        revision = record.revisions + 1           # revisions emitted so far (0 = none)
        kind = "created" if revision == 1 else "updated"
        self.stats["alerts" if revision == 1 else "alert_updates"] += 1
        record.revisions = revision
        # what was known when the code was sent; records stored before version 4 kept only
        # the final score
        issue_score = record.score if record.issue_score is None else record.issue_score
        return Alert(
            alert_id=alert_id_for(event.user_id, record.id), kind=kind, code_event_id=record.id,
            user_id=event.user_id, ts=utc_iso(record.t), decided_ts=utc_iso(event.t),
            score=round(score, 6), issue_score=issue_score, severity=severity,
            confidence=1.0, flow=flow, purpose=record.purpose, channel=record.channel,
            reasons=reasons, actions=actions,
            observed={side: (ctx.to_dict() if ctx and side == _ctx_side(flow, record.purpose) else None)
                      for side in ("login", "code")},
            baseline=state.baseline.summary(), status=status, revision=revision,
            extra={"feedback_event_id": event.event_id})


def _flow(pending: PendingCode, session: Session | None) -> str:
    """Was the password typed correctly before this code? (decides force_password_reset)"""
    if pending.purpose == "password_reset":
        return "no_password"
    if pending.session_id is None:
        return "no_session"
    if session is None:
        return "login_missing"
    return "password_verified" if session.password_ok else "no_password"


def _ctx_side(flow: str, purpose: str) -> str:
    """Where a stored context came from: the session's login, or the code request itself."""
    if purpose == "password_reset" or flow in ("no_session", "login_missing", SESSION_FLOW):
        return "code"
    return "login"


def _login_suspicious(b, session: Session) -> bool:
    """Is the session's password step itself from a suspicious context? Not when the session
    proved itself (a code entered, a trusted device); yes when its network and place are both
    unknown to a user with a history to compare with."""
    ctx = session.ctx
    if session.state is SessionState.LEARNED or ctx is None or b.proven == 0:
        return False
    return network_known(b, ctx) is False and place_known(b, ctx) is False


def _network_keys(ctx: Context) -> tuple[str, ...]:
    """Cross-user state keys of a context: its IP, and its network unless private."""
    use_net = bool(ctx.network) and not ctx.private
    cache_key = (ctx.ip, ctx.network if use_net else None)
    keys = _KEYS_CACHE.get(cache_key)
    if keys is None:
        keys = (f"ip:{ctx.ip}", f"net:{ctx.network}") if use_net else (f"ip:{ctx.ip}",)
        if len(_KEYS_CACHE) >= _KEYS_CACHE_MAX:
            _KEYS_CACHE.clear()
        _KEYS_CACHE[cache_key] = keys
    return keys


_KEYS_CACHE: dict[tuple, tuple[str, ...]] = {}
_KEYS_CACHE_MAX = 1 << 17
_EVENT_STAT = {etype: f"events.{etype}" for etype in
               ("login", "code_issued", "code_verified", "device_trusted", "password_changed",
                "user_feedback")}


def _term_order(term) -> tuple:
    return -term.weight, term.code


def _codes_near(times: list[int], t: float, window: int) -> int:
    return len([x for x in times if t - window <= x <= t + window])
