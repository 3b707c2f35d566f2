"""Outputs: what a batch must have on the broker before the input it stands for may be
acknowledged, sent with retries (alerts, scores, dead letters, re-keyed events)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from straycode.detector.deadletter import KEY_CHARS, DeadLetter

from .metrics import Metrics

log = logging.getLogger("straycode.streams")


@dataclass(slots=True)
class Outbound:
    """One message a batch must have on the broker before the input it stands for may be
    acknowledged (committed): an alert, a score, a dead letter or a re-keyed event."""
    topic: object                  # the faust Topic to send to
    key: bytes | None
    value: bytes
    partition: int | None          # Kafka partition to send to (None: by key)
    source: int                    # input partition it comes from: stopped if it cannot be sent
    metric: tuple                  # what to count once it is sent: (name, *labels)


def dead_letter_record(message, reason: str, detail: str) -> DeadLetter:
    """The dead letter of an input message: where it came from (topic, partition, offset,
    timestamp, key) and a bounded excerpt of its value with its size and SHA-256, so that
    it always fits the broker's message size whatever the message was."""
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    source = {"topic": message.topic, "partition": message.partition,
              "offset": message.offset, "timestamp": message.timestamp, "key": key}
    return DeadLetter.of(reason, detail, source, message.value if message.value is not None
                         else b"")


class Publisher:
    """Sends outputs and waits for the broker to hold every one; what the broker refuses
    is sent again (`kafka.publish_attempts` in all, `kafka.publish_backoff_s` doubling)."""

    BACKOFF_MAX_S = 5.0

    def __init__(self, dead_letters_topic, metrics: Metrics, attempts: int, backoff_s: float):
        self.dead_letters_topic = dead_letters_topic
        self.metrics = metrics
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

    def dead_letter(self, msg, reason: str, detail: str) -> Outbound:
        key = msg.key if msg.key is None or len(msg.key) <= KEY_CHARS else msg.key[:KEY_CHARS]
        return Outbound(self.dead_letters_topic, key,
                        dead_letter_record(msg, reason, detail).to_bytes(), None, msg.partition,
                        ("dead_letters", reason))

    async def publish(self, outbox: list[Outbound]) -> dict[int, str]:
        """Send a batch's outputs; {input partition: why} for the partitions whose outputs
        could not be sent after every attempt."""
        if not outbox:
            return {}
        with self.metrics.ack_wait.time():
            failed = await self.deliver(outbox)
        reasons: dict[int, str] = {}
        for out, error in failed:
            reasons.setdefault(out.source, error)
        return reasons

    async def deliver(self, outbox: list[Outbound]) -> list[tuple[Outbound, str]]:
        """Send every message and wait for the broker's acknowledgements, with retries.
        Returns (message, last error) for what never got through."""
        pending = outbox
        for attempt in range(1, self.attempts + 1):
            failed: list[tuple[Outbound, str]] = []
            waits: list[tuple[Outbound, object]] = []
            for out in pending:
                try:
                    waits.append((out, await out.topic.send(
                        key=out.key, value=out.value, partition=out.partition, force=True)))
                except Exception as exc:             # refused before it was queued
                    failed.append((out, repr(exc)))
            results = await asyncio.gather(*(wait for _out, wait in waits),
                                           return_exceptions=True)
            for (out, _wait), result in zip(waits, results):
                if isinstance(result, BaseException):
                    failed.append((out, repr(result)))
                else:
                    self.count(out)
            for out, _error in failed:
                self.metrics.publish_errors.labels(out.metric[0]).inc()
            if not failed or attempt == self.attempts:
                return failed
            delay = min(self.backoff_s * 2 ** (attempt - 1), self.BACKOFF_MAX_S)
            log.warning("%d output(s) not sent (attempt %d of %d, again in %.2f s): %s",
                        len(failed), attempt, self.attempts, delay, failed[0][1])
            await asyncio.sleep(delay)
            pending = [out for out, _error in failed]
        return []

    def count(self, out: Outbound) -> None:
        name, *labels = out.metric
        if name == "alerts":
            self.metrics.alerts.labels(*labels).inc()
        elif name == "scored":
            self.metrics.scored.inc()
        elif name == "dead_letters":
            self.metrics.dead_letters.labels(*labels).inc()
