"""Circuit breaker on automated lockouts (lock_account, force_password_reset).

A detector bug, a bad baseline or a real mass attack can all produce a burst of lockout
recommendations; sending them all would lock out the workforce on a bad day. Above
`max_per_minute` the breaker opens: further lockouts are held (kept in the outbox, not sent)
until a human releases them, and exactly one loud notice is raised per trip. After
`cooldown_s` it closes and automation resumes. Uses the wall clock (injectable).
"""
from __future__ import annotations

from collections import deque
from typing import Iterable

WINDOW_S = 60.0


class Breaker:
    def __init__(self, max_per_minute: int, cooldown_s: float):
        if int(max_per_minute) < 1:
            raise ValueError("hooks.breaker.max_per_minute must be >= 1")
        self.max_per_minute = int(max_per_minute)
        self.cooldown_s = float(cooldown_s)
        self._sent: deque[float] = deque()
        self.open_until: float | None = None

    def restore(self, recent: Iterable[float], open_until: float | None) -> None:
        """Rebuild state after a restart (times of recent lockouts, a trip in progress)."""
        self._sent = deque(sorted(recent))
        self.open_until = open_until

    def is_open(self, now: float) -> bool:
        if self.open_until is not None and now >= self.open_until:
            self.open_until = None          # cooldown over: resume automation
            self._sent.clear()
        return self.open_until is not None

    def admit(self, now: float) -> tuple[bool, bool]:
        """Ask to send one lockout now -> (allowed, tripped_now)."""
        if self.is_open(now):
            return False, False
        while self._sent and self._sent[0] <= now - WINDOW_S:
            self._sent.popleft()
        if len(self._sent) < self.max_per_minute:
            self._sent.append(now)
            return True, False
        self.open_until = now + self.cooldown_s
        return False, True
