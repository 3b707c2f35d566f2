"""Turns alerts into signed webhook deliveries, durably, with the safety rules applied.

submit() only plans and writes to the outbox (cheap, callable from the stream worker);
run_once()/run_until_idle() do the network work. Order of safety checks per action:
policy guardrails (flow, never_lock) -> circuit breaker -> outbox -> dry-run/send.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Callable, Mapping

import httpx

from straycode.hooks.breaker import Breaker, WINDOW_S
from straycode.hooks.delivery import backoff, post
from straycode.hooks.outbox import DEAD, DELIVERED, HELD, PENDING, Delivery, Outbox
from straycode.hooks.policy import LOCKOUT_ACTIONS, SEVERITY_RANK, HookPolicy, Planned
from straycode.hooks.signing import Signer, message_id
from straycode.settings import ConfigError

log = logging.getLogger("straycode.hooks")

_BREAKER_META = "breaker_open_until"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


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
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None):
        hooks = settings["hooks"]
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self.policy = HookPolicy.from_settings(settings)
        self.dry_run = bool(hooks.get("dry_run"))
        self.max_attempts = int(hooks["max_attempts"])
        self.backoff_base = float(hooks["backoff_base_s"])
        self.backoff_max = float(hooks["backoff_max_s"])
        if self.max_attempts < 1:
            raise ConfigError("hooks.max_attempts must be >= 1")
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
        self.client = httpx.Client(timeout=httpx.Timeout(float(hooks["timeout_s"])),
                                   follow_redirects=False)

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
                             action, p.endpoint.name, p.endpoint.safe_url, alert["user_id"],
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

    # -- delivery -----------------------------------------------------------------------
    def run_once(self, limit: int = 100) -> dict:
        """Attempt every delivery that is due now; returns counts for this pass."""
        stats = {"delivered": 0, "retry": 0, "dead": 0}
        now = self.clock()
        due = self.outbox.due(now, limit)
        if self.dry_run:
            if due:
                log.info("hooks dry-run: %d queued deliveries due, sending none", len(due))
            return stats
        for d in due:
            now = self.clock()
            attempts = d.attempts + 1
            headers = self.signer.headers(d.msg_id, d.body, now)
            res = post(self.client, d.url, d.body, headers, now)
            if res.ok:
                self.outbox.mark_delivered(d, now, attempts)
                stats["delivered"] += 1
                log.info("hooks: delivered %s to %s for user %s (alert %s, attempt %d)",
                         d.action, d.endpoint, d.user_id, d.alert_id, attempts)
            elif res.retryable and attempts < self.max_attempts:
                delay = backoff(attempts, self.backoff_base, self.backoff_max, self.rng)
                if res.retry_after is not None:
                    delay = max(delay, res.retry_after)
                self.outbox.mark_retry(d, now, attempts, now + delay, res.error)
                stats["retry"] += 1
                log.warning("hooks: %s to %s failed (%s); retry %d/%d in %.2fs",
                            d.action, d.endpoint, res.error, attempts, self.max_attempts, delay)
            else:
                self.outbox.mark_dead(d, now, attempts, res.error)
                stats["dead"] += 1
                log.error("hooks: giving up on %s to %s for user %s (alert %s) after %d "
                          "attempt(s): %s", d.action, d.endpoint, d.user_id, d.alert_id,
                          attempts, res.error)
        return stats

    def run_until_idle(self, timeout: float) -> dict:
        """Deliver until nothing is pending or `timeout` seconds (by the clock) have passed."""
        total = {"delivered": 0, "retry": 0, "dead": 0}
        deadline = self.clock() + timeout
        while True:
            for k, v in self.run_once().items():
                total[k] += v
            nxt = self.outbox.next_due_at()
            now = self.clock()
            if nxt is None or now >= deadline or self.dry_run:
                break
            wait = min(max(nxt - now, 0.0), deadline - now)
            if wait > 0:
                self.sleep(wait)
        counts = self.outbox.counts()
        total.update(pending=counts.get(PENDING, 0), held=counts.get(HELD, 0),
                     delivered_total=counts.get(DELIVERED, 0), dead_total=counts.get(DEAD, 0))
        return total

    def close(self) -> None:
        self.client.close()
        self.outbox.close()

    def __enter__(self) -> "Dispatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
