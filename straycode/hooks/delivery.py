"""One HTTP attempt under a wall-clock deadline, and the retry rule.

Retry only what can succeed later (5xx, 429, timeouts, connection errors), on a schedule
long enough to ride out a real outage (the Standard Webhooks one by default: immediately,
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — about 27.6 hours in all). Each delay is
stretched by a random factor in [1, 1 + jitter] so a recovering IAM endpoint is not hit by
a synchronized herd, and never shortened, so the horizon is at least the schedule's sum.
A Retry-After from the server wins when it asks for longer, up to `retry_after_max_s`.
Other 4xx mean the request itself is wrong, so retrying would only repeat it: those go
straight to the dead letter (`straycode dispatch --redrive` re-queues them once fixed).
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Mapping

import httpx

from straycode.hooks.redact import redact_text
from straycode.settings import ConfigError

ERROR_TEXT_MAX = 300
RESPONSE_READ_MAX = 64 * 1024     # a response body is read (to complete the exchange) up to this


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    retryable: bool
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """When (if at all) the next attempt happens."""
    delay: float | None               # None: the schedule is exhausted -> dead letter
    retry_after_capped: float | None = None   # the server's Retry-After, when it was capped


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """hooks.retry_schedule_s / retry_jitter / retry_after_max_s: the one retry rule."""
    schedule: tuple[float, ...]       # delay before attempt 1, 2, ...; len = max attempts
    jitter: float
    retry_after_max_s: float

    @classmethod
    def from_hooks(cls, hooks: Mapping) -> "RetryPolicy":
        for old in ("max_attempts", "backoff_base_s", "backoff_max_s"):
            if old in hooks:
                raise ConfigError(f"hooks.{old} was replaced by hooks.retry_schedule_s "
                                  "(see docs/hooks.md)")
        raw = hooks.get("retry_schedule_s")
        if (not isinstance(raw, (list, tuple)) or not raw
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                           for x in raw)):
            raise ConfigError("hooks.retry_schedule_s must be a non-empty list of delays in "
                              "seconds (>= 0), one per attempt")
        jitter = hooks.get("retry_jitter", 0.0)
        cap = hooks.get("retry_after_max_s")
        if not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise ConfigError("hooks.retry_jitter must be a number in [0, 1]")
        if not isinstance(cap, (int, float)) or cap < 0:
            raise ConfigError("hooks.retry_after_max_s must be a number of seconds >= 0")
        return cls(tuple(float(x) for x in raw), float(jitter), float(cap))

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    def horizon_s(self) -> float:
        """The shortest time from the first attempt to the last (jitter only lengthens)."""
        return sum(self.schedule[1:])

    def next_retry(self, attempts: int, retry_after: float | None,
                   rng: random.Random) -> RetryPlan:
        """After `attempts` failed retryable attempts: the delay to the next one, or None."""
        if attempts >= len(self.schedule):
            return RetryPlan(None)
        delay = self.schedule[attempts] * rng.uniform(1.0, 1.0 + self.jitter)
        capped = None
        if retry_after is not None:
            if retry_after > self.retry_after_max_s:
                capped, retry_after = retry_after, self.retry_after_max_s
            delay = max(delay, retry_after)
        return RetryPlan(delay, capped)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now (delta-seconds or HTTP-date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


async def post(client: httpx.AsyncClient, url: str, body: str, headers: dict[str, str],
               now: float, deadline_s: float) -> Attempt:
    """POST one signed body and read the whole answer within `deadline_s` seconds of wall
    clock (connect + write + headers + body; an endpoint that drips its answer is cut off).
    Never raises for network trouble; returns the verdict. Error texts carry no URL
    credentials."""
    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream("POST", url, content=body.encode(),
                                     headers={**headers, "content-type": "application/json"}
                                     ) as resp:
                head = bytearray()
                async for chunk in resp.aiter_bytes():
                    head += chunk[:RESPONSE_READ_MAX - len(head)]
                    if len(head) >= RESPONSE_READ_MAX:
                        break                    # enough; closing drops the connection
    except TimeoutError:
        return Attempt(False, True, f"timeout: no complete answer within {deadline_s:g}s")
    except httpx.TimeoutException as exc:
        return Attempt(False, True, f"timeout: {type(exc).__name__}")
    except httpx.InvalidURL as exc:
        return Attempt(False, False, _error(f"invalid URL: {exc}", url))
    except httpx.HTTPError as exc:           # connection refused/reset, protocol errors
        return Attempt(False, True, _error(f"connection error: {type(exc).__name__}: {exc}", url))
    if 200 <= resp.status_code < 300:
        return Attempt(True, False)
    snippet = bytes(head[:200]).decode("utf-8", "replace").replace("\n", " ")
    error = _error(f"HTTP {resp.status_code}: {snippet}", url)
    if resp.status_code == 429 or resp.status_code >= 500:
        return Attempt(False, True, error, parse_retry_after(resp.headers.get("retry-after"), now))
    return Attempt(False, False, error)


def _error(text: str, url: str) -> str:
    return redact_text(text, url)[:ERROR_TEXT_MAX]
