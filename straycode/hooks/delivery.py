"""One HTTP attempt and the retry decision.

Retry only what can succeed later (5xx, 429, timeouts, connection errors) with exponential
backoff and full jitter so a recovering IAM endpoint is not hit by a synchronized herd; a
Retry-After from the server wins when it asks for longer. Other 4xx mean the request itself
is wrong, so retrying would only repeat it: those go straight to the dead letter.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

ERROR_TEXT_MAX = 300


@dataclass(frozen=True)
class Attempt:
    ok: bool
    retryable: bool
    error: str | None = None
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now (delta-seconds or HTTP-date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**(attempts-1)))."""
    return rng.uniform(0.0, min(cap, base * (2 ** max(0, attempts - 1))))


def post(client: httpx.Client, url: str, body: str, headers: dict[str, str],
         now: float) -> Attempt:
    """POST one signed body; never raises for network trouble, returns the verdict."""
    try:
        resp = client.post(url, content=body.encode(),
                           headers={**headers, "content-type": "application/json"})
    except httpx.TimeoutException as exc:
        return Attempt(False, True, f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return Attempt(False, True, f"connection error: {type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX])
    if 200 <= resp.status_code < 300:
        return Attempt(True, False)
    snippet = resp.text[:200].replace("\n", " ")
    error = f"HTTP {resp.status_code}: {snippet}"[:ERROR_TEXT_MAX]
    if resp.status_code == 429 or resp.status_code >= 500:
        return Attempt(False, True, error, parse_retry_after(resp.headers.get("retry-after"), now))
    return Attempt(False, False, error)
