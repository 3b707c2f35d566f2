"""Event-time sanity: the one rule for whether an event's time may move a clock.

Two bounds, both used by replay and by the Kafka worker:

* absolute: the contract accepts only timestamps whose *written* year is 1970..2199 (one
  rule, in the pattern the JSON Schema and the hand validator share), i.e. UTC instants in
  [:data:`EARLIEST_T`, :data:`LATEST_T`) = [1969-12-31T10:00Z, 2200-01-01T14:00Z) once the
  offset (at most +-14:00) is applied; every accepted time formats, and every deadline
  built from it (time + a few windows) formats too;
* relative: an event more than ``max_ahead_s`` ahead of, or ``max_behind_s`` behind, the
  clock it would move (replay: the detector's event time; worker: the largest event time
  read on that input partition) is rejected with reason ``clock_skew`` and moves nothing.
  Before a clock exists (``reference`` <= 0) only the absolute bound applies. Where the
  transport says when the event was written (the worker: the Kafka record timestamp),
  "ahead" is measured from the later of the clock and that time: an on-time event after a
  quiet gap on a topic read ahead of its partition's other topics is not refused, while a
  time far beyond both (year 2199, +2 years) still is.
"""
from __future__ import annotations

from dataclasses import dataclass

EARLIEST_T = -14 * 3600.0                 # 1970-01-01T00:00:00+14:00
LATEST_T = 7_258_118_400.0 + 14 * 3600.0  # 2200-01-01T00:00:00-14:00 (exclusive)
SKEW_REASON = "clock_skew"


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far an event may be from the clock it would move (seconds)."""
    max_ahead_s: float
    max_behind_s: float

    @classmethod
    def from_settings(cls, input_settings) -> "TimeBounds":
        return cls(float(input_settings["max_ahead_s"]), float(input_settings["max_behind_s"]))

    def problem(self, t: float, reference: float, written_at: float | None = None) -> str | None:
        """None when `t` may be used; else a one-line detail for the dead letter.
        `written_at`: when the transport got the event (seconds), if it says."""
        if reference <= 0:
            return None
        ahead_of = reference if written_at is None else max(reference, written_at)
        if t > ahead_of + self.max_ahead_s:
            return (f"event time is {t - ahead_of:.0f} s ahead of the clock "
                    f"(limit input.max_ahead_s={self.max_ahead_s:.0f})")
        if t < reference - self.max_behind_s:
            return (f"event time is {reference - t:.0f} s behind the clock "
                    f"(limit input.max_behind_s={self.max_behind_s:.0f})")
        return None
