"""Turns alerts into signed webhook deliveries, durably, with the safety rules applied.

submit() only plans and writes to the outbox (cheap, callable from the stream worker);
run_once()/run_until_idle() do the network work: on a private asyncio loop, attempts run
concurrently (bounded per endpoint, so a slow endpoint delays no other), each under one
wall-clock deadline, retried on hooks.retry_schedule_s (delivery.RetryPolicy). Order of
safety checks per action: policy guardrails (flow, never_lock) -> circuit breaker ->
outbox -> dry-run/send.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from collections import Counter, deque
from typing import Callable, Coroutine, Mapping

import httpx

from straycode.hooks.breaker import Breaker, WINDOW_S
from straycode.hooks.delivery import Attempt, RetryPolicy, post
from straycode.hooks.outbox import DEAD, DELIVERED, HELD, PENDING, Delivery, Outbox
from straycode.detector.rules import LOCKOUT_ACTIONS, SEVERITY_RANK
from straycode.hooks.policy import HookPolicy, Planned
from straycode.hooks.redact import install_log_redaction, redact_url
from straycode.hooks.signing import Signer, message_id
from straycode.settings import ConfigError

log = logging.getLogger("straycode.hooks")

_BREAKER_META = "breaker_open_until"
_POLL_S = 0.1          # how often the delivery loop looks at stop/deadline while waiting


def _new_stats() -> dict:
    return {"delivered": 0, "retry": 0, "dead": 0, "retry_after_capped": 0, "abandoned": 0}


def _count(rows: list[Delivery], endpoint: str) -> int:
    return sum(1 for d in rows if d.endpoint == endpoint)


def _outcome(task: asyncio.Task) -> Attempt:
    """post() reports network trouble as an Attempt; anything else it raises is a bug that
    must not stop the other deliveries: it becomes a retryable failure, logged in full."""
    exc = task.exception()
    if exc is None:
        return task.result()
    log.error("hooks: unexpected error in a delivery attempt", exc_info=exc)
    return Attempt(False, True, f"internal error: {type(exc).__name__}")


def _run_async(coro: Coroutine) -> None:
    """Run the delivery loop on a private event loop in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    coro.close()
    raise RuntimeError("Dispatcher.run_once()/run_until_idle() block; from async code call "
                       "them in a worker thread (loop.run_in_executor)")


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _positive(hooks: Mapping, key: str, allow_zero: bool = False) -> float:
    value = hooks.get(key)
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"hooks.{key} must be a number {'>=' if allow_zero else '>'} 0")
    return float(value)


def _check_alert(alert: Mapping) -> None:
    for key in ("alert_id", "user_id", "flow", "severity"):
        if not isinstance(alert.get(key), str) or not alert.get(key):
            raise ValueError(f"alert without a valid '{key}'")
    if alert["severity"] not in SEVERITY_RANK:
        raise ValueError(f"alert severity {alert['severity']!r} unknown")
    if not isinstance(alert.get("actions", []), list):
        raise ValueError("alert 'actions' must be a list")


def action_payload(alert: Mapping, action: str, msg_id: str) -> str:
    """Standard Webhooks payload {type, timestamp, data}; deterministic for a given alert."""
    observed = alert.get("observed") or {}
    code_ctx = observed.get("code") or observed.get("login") or {}
    data = {
        "action": action,
        "idempotency_key": msg_id,
        "alert_id": alert["alert_id"],
        "kind": alert.get("kind"),
        "user_id": alert["user_id"],
        "severity": alert["severity"],
        "score": alert.get("score"),
        "flow": alert["flow"],
        "purpose": alert.get("purpose"),
        "channel": alert.get("channel"),
        "code_event_id": alert.get("code_event_id"),
        "reasons": [r.get("code") for r in alert.get("reasons") or [] if isinstance(r, Mapping)],
        "requested_from": {k: code_ctx.get(k) for k in ("ip", "country", "city", "device_id")},
    }
    return json.dumps({"type": f"straycode.{action}", "timestamp": alert.get("decided_ts"),
                       "data": data}, sort_keys=True, separators=(",", ":"))


class Dispatcher:
    """Delivers alert actions to the endpoints in settings['hooks']."""

    def __init__(self, settings: Mapping, env: Mapping[str, str] = os.environ,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None,
                 rng: random.Random | None = None,
                 stop: threading.Event | None = None):
        """`clock` dates outbox rows, schedules retries and timestamps signatures; `sleep`
        (tests: a fake clock's) replaces the real wait for the next due delivery; `stop`,
        once set (e.g. by SIGTERM), drains: no new attempts, in-flight ones get drain_s."""
        hooks = settings["hooks"]
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self.stop = stop or threading.Event()
        self.policy = HookPolicy.from_settings(settings)
        self.dry_run = bool(hooks.get("dry_run"))
        self.retry = RetryPolicy.from_hooks(hooks)
        self.timeout_s = _positive(hooks, "timeout_s")
        self.drain_s = _positive(hooks, "drain_s", allow_zero=True)
        self.max_in_flight = int(_positive(hooks, "max_in_flight_per_endpoint"))
        install_log_redaction()
        self.signer = None
        if self.policy.endpoints and not self.dry_run:
            self.signer = Signer.from_env(hooks, env)
        self.outbox = Outbox(hooks["outbox"], hooks["dead_letter"])
        br = hooks.get("breaker") or {}
        self.breaker = Breaker(br.get("max_per_minute", 20), br.get("cooldown_s", 600))
        open_until = self.outbox.get_meta(_BREAKER_META)
        now = self.clock()
        self.breaker.restore(self.outbox.recent_created(LOCKOUT_ACTIONS, now - WINDOW_S),
                             float(open_until) if open_until else None)

    # -- intake -------------------------------------------------------------------------
    def submit(self, alert: Mapping) -> int:
        """Plan and durably enqueue the alert's deliveries; returns how many were new.
        Idempotent: deliveries are keyed by (endpoint, webhook-id from alert_id+action)."""
        _check_alert(alert)
        plan = self.policy.plan(alert)
        for action, why in plan.refused:
            log.warning("hooks: not automating %s for user %s (alert %s): %s",
                        action, alert["user_id"], alert["alert_id"], why)
        now = self.clock()
        by_action: dict[str, list[Planned]] = {}
        for p in plan.deliveries:
            by_action.setdefault(p.action, []).append(p)
        items: list[Delivery] = []
        for action, planned in by_action.items():
            msg_id = message_id(alert["alert_id"], action)
            fresh = [p for p in planned if self.outbox.get(p.endpoint.name, msg_id) is None]
            if not fresh:
                continue
            state = PENDING
            if action in LOCKOUT_ACTIONS:
                state = self._admit_lockout(alert, action, now)
            body = action_payload(alert, action, msg_id)
            for p in fresh:
                if self.dry_run:
                    log.info("hooks dry-run: would POST %s to %s (%s) for user %s (alert %s)%s",
                             action, p.endpoint.name, redact_url(p.endpoint.url), alert["user_id"],
                             alert["alert_id"], " [held by breaker]" if state == HELD else "")
                    continue
                items.append(Delivery(p.endpoint.name, msg_id, p.endpoint.url, action,
                                      alert["alert_id"], alert["user_id"], body, state,
                                      0, now, None, now))
        if self.dry_run:
            return 0
        return self.outbox.enqueue(items)

    def _admit_lockout(self, alert: Mapping, action: str, now: float) -> str:
        allowed, tripped = self.breaker.admit(now)
        if tripped:
            self._raise_breaker_notice(alert, action, now)
        if allowed:
            return PENDING
        log.warning("hooks: holding %s for user %s (alert %s): lockout circuit breaker open "
                    "until %s", action, alert["user_id"], alert["alert_id"],
                    _utc(self.breaker.open_until or now))
        return HELD

    def _raise_breaker_notice(self, alert: Mapping, action: str, now: float) -> None:
        """The one loud alert per trip: CRITICAL log, notice record, breaker_tripped hooks."""
        until = self.breaker.open_until or now
        log.critical("hooks: LOCKOUT CIRCUIT BREAKER TRIPPED: more than %d automated "
                     "lock_account/force_password_reset per minute; holding them until %s. "
                     "Review, then `straycode dispatch --release-held` to send held actions.",
                     self.breaker.max_per_minute, _utc(until))
        if self.dry_run:
            return
        self.outbox.set_meta(_BREAKER_META, repr(until))
        notice_id = message_id("breaker_tripped", repr(now))
        notice = {"kind": "breaker_tripped", "alert_id": notice_id, "severity": "critical",
                  "title": "Automated lockout circuit breaker tripped",
                  "tripped_at": _utc(now), "held_until": _utc(until),
                  "max_per_minute": self.breaker.max_per_minute,
                  "trigger": {"alert_id": alert["alert_id"], "user_id": alert["user_id"],
                              "action": action}}
        self.outbox.write_notice(notice)
        body = json.dumps({"type": "straycode.breaker_tripped", "timestamp": _utc(now),
                           "data": notice}, sort_keys=True, separators=(",", ":"))
        self.outbox.enqueue(Delivery(ep.name, notice_id, ep.url, "breaker_tripped", None, None,
                                     body, PENDING, 0, now, None, now)
                            for ep in self.policy.breaker_endpoints())

    def release_held(self) -> int:
        """Operator decision: send lockouts the breaker held back."""
        n = self.outbox.release_held(self.clock())
        log.warning("hooks: released %d held lockout deliveries", n)
        return n

    def redrive(self, endpoint: str | None = None, alert_id: str | None = None) -> int:
        """Operator decision: dead deliveries -> queued again (same webhook-id, attempts
        reset, due now), optionally only one endpoint's or one alert's."""
        urls = {ep.name: ep.url for ep in self.policy.endpoints}
        moved = self.outbox.redrive(self.clock(), endpoint, alert_id, urls)
        for d in moved:
            log.warning("hooks: re-driving %s to %s for user %s (alert %s, webhook-id %s); "
                        "it had failed after %d attempt(s): %s", d.action, d.endpoint,
                        d.user_id, d.alert_id, d.msg_id, d.attempts, d.last_error)
        log.warning("hooks: re-drove %d dead deliveries", len(moved))
        return len(moved)

    # -- delivery -----------------------------------------------------------------------
    def run_once(self, limit: int = 100) -> dict:
        """Attempt every delivery that is due now (up to `limit`), concurrently per endpoint
        within hooks.max_in_flight_per_endpoint; returns counts for this pass. Retries that
        fall due meanwhile wait for the next pass. Honours `self.stop` (drain)."""
        stats = _new_stats()
        due = self.outbox.due(self.clock(), limit)
        if self.dry_run:
            if due:
                log.info("hooks dry-run: %d queued deliveries due, sending none", len(due))
            return stats
        if due and not self.stop.is_set():
            _run_async(self._deliver(stats, due, deadline=None))
        return stats

    def run_until_idle(self, timeout: float) -> dict:
        """Deliver until nothing is pending, `timeout` seconds of wall clock have passed, or
        `self.stop` is set. At the deadline, attempts still in flight are abandoned; on stop
        they get hooks.drain_s to finish. An abandoned attempt stays queued unchanged (the
        next run sends it again with the same webhook-id)."""
        stats = _new_stats()
        deadline = time.monotonic() + max(0.0, timeout)
        if (not self.dry_run and not self.stop.is_set()
                and self.outbox.next_due_at() is not None):
            _run_async(self._deliver(stats, None, deadline))
        counts = self.outbox.counts()
        stats.update(pending=counts.get(PENDING, 0), held=counts.get(HELD, 0),
                     delivered_total=counts.get(DELIVERED, 0), dead_total=counts.get(DEAD, 0))
        return stats

    async def _deliver(self, stats: dict, snapshot: list[Delivery] | None,
                       deadline: float | None) -> None:
        """The delivery loop. With `snapshot` (run_once): attempt exactly those rows. Without
        (run_until_idle): keep taking due rows from the outbox until idle or `deadline`.
        A per-endpoint count of attempts in flight keeps one slow endpoint from taking
        every slot: the other endpoints' deliveries start as soon as they are due."""
        queue: dict[str, deque[Delivery]] | None = None
        if snapshot is not None:
            queue = {}
            for d in snapshot:
                queue.setdefault(d.endpoint, deque()).append(d)
        inflight: dict[asyncio.Task, Delivery] = {}
        busy: Counter = Counter()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), limits=limits,
                                     follow_redirects=False) as client:
            while True:
                if self.stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    break
                for d in self._startable(queue, busy, inflight):
                    inflight[asyncio.create_task(self._attempt(client, d))] = d
                    busy[d.endpoint] += 1
                if inflight:
                    done, _ = await asyncio.wait(inflight, timeout=_POLL_S,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        d = inflight.pop(task)
                        busy[d.endpoint] -= 1
                        self._record(d, _outcome(task), stats)
                    continue
                if queue is not None:
                    break                              # run_once: every row attempted
                nxt = self.outbox.next_due_at()
                if nxt is None:
                    break                              # idle: nothing pending
                wait = nxt - self.clock()
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                if wait > 0:
                    await self._idle(wait)
            if inflight:
                await self._finish_inflight(inflight, stats)

    def _startable(self, queue: dict[str, deque[Delivery]] | None, busy: Counter,
                   inflight: dict[asyncio.Task, Delivery]) -> list[Delivery]:
        out: list[Delivery] = []
        if queue is not None:
            for endpoint, rows in queue.items():
                while rows and busy[endpoint] + _count(out, endpoint) < self.max_in_flight:
                    out.append(rows.popleft())
            return out
        now = self.clock()
        flying = {(d.endpoint, d.msg_id) for d in inflight.values()}
        for endpoint in self.outbox.due_endpoints(now):
            free = self.max_in_flight - busy[endpoint]
            if free <= 0:
                continue
            for d in self.outbox.due(now, free + busy[endpoint], endpoint):
                if (d.endpoint, d.msg_id) not in flying and free > 0:
                    out.append(d)
                    free -= 1
        return out

    async def _idle(self, seconds: float) -> None:
        """Nothing in flight, next delivery due in `seconds`: wait (by the injected sleep, if
        any), waking early on stop."""
        if self.sleep is not None:
            self.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(_POLL_S, end - time.monotonic()))

    async def _finish_inflight(self, inflight: dict[asyncio.Task, Delivery],
                               stats: dict) -> None:
        """Stop requested: give attempts in flight up to drain_s; deadline reached: none.
        What does not finish is abandoned and stays queued as it was."""
        grace = self.drain_s if self.stop.is_set() else 0.0
        if grace > 0:
            done, _ = await asyncio.wait(inflight, timeout=grace)
            for task in done:
                self._record(inflight.pop(task), _outcome(task), stats)
        for task in inflight:
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        for d in inflight.values():
            stats["abandoned"] += 1
            log.warning("hooks: abandoned the attempt in flight of %s to %s (alert %s): "
                        "%s; it stays queued and is sent again (same webhook-id) on the next "
                        "run", d.action, d.endpoint, d.alert_id,
                        "stopping" if self.stop.is_set() else "run deadline reached")

    async def _attempt(self, client: httpx.AsyncClient, d: Delivery) -> Attempt:
        now = self.clock()
        headers = self.signer.headers(d.msg_id, d.body, now)
        return await post(client, d.url, d.body, headers, now, self.timeout_s)

    def _record(self, d: Delivery, res: Attempt, stats: dict) -> None:
        """Write one attempt's outcome to the outbox (and the dead letter), log it."""
        now = self.clock()
        attempts = d.attempts + 1
        if res.ok:
            self.outbox.mark_delivered(d, now, attempts)
            stats["delivered"] += 1
            log.info("hooks: delivered %s to %s for user %s (alert %s, attempt %d)",
                     d.action, d.endpoint, d.user_id, d.alert_id, attempts)
            return
        plan = None
        if res.retryable:
            plan = self.retry.next_retry(attempts, res.retry_after, self.rng)
        if plan is not None and plan.retry_after_capped is not None:
            stats["retry_after_capped"] += 1
            log.warning("hooks: %s asked to wait %.0fs (Retry-After) for %s (alert %s); capped "
                        "to hooks.retry_after_max_s = %.0fs", d.endpoint,
                        plan.retry_after_capped, d.action, d.alert_id,
                        self.retry.retry_after_max_s)
        if plan is not None and plan.delay is not None:
            self.outbox.mark_retry(d, now, attempts, now + plan.delay, res.error)
            stats["retry"] += 1
            log.warning("hooks: %s to %s failed (%s); attempt %d/%d in %.2fs",
                        d.action, d.endpoint, res.error, attempts + 1, self.retry.max_attempts,
                        plan.delay)
            return
        self.outbox.mark_dead(d, now, attempts, res.error)
        stats["dead"] += 1
        log.error("hooks: giving up on %s to %s for user %s (alert %s) after %d attempt(s): %s; "
                  "re-queue with `straycode dispatch --redrive`", d.action, d.endpoint,
                  d.user_id, d.alert_id, attempts, res.error)

    def close(self) -> None:
        self.outbox.close()

    def __enter__(self) -> "Dispatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
