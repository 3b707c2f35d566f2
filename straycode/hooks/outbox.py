"""Durable outbox for webhook deliveries (sqlite3) plus the dead-letter JSONL.

An action handed to the dispatcher is written here before anything is sent, so a crash or
restart loses nothing; the (endpoint, webhook-id) key makes enqueueing idempotent, so the
same alert submitted twice (replay, Kafka redelivery) is sent once. Rows carry the body
only: signatures are computed per attempt and secrets are never stored.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from straycode.hooks.redact import redact_url
PENDING, DELIVERED, DEAD, HELD = "pending", "delivered", "dead", "held"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    endpoint TEXT NOT NULL, msg_id TEXT NOT NULL, url TEXT NOT NULL, action TEXT NOT NULL,
    alert_id TEXT, user_id TEXT, body TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (endpoint, msg_id));
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    endpoint: str
    msg_id: str
    url: str
    action: str
    alert_id: str | None
    user_id: str | None
    body: str
    state: str = PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    created_at: float = 0.0


_COLS = ("endpoint", "msg_id", "url", "action", "alert_id", "user_id", "body", "state",
         "attempts", "next_attempt_at", "last_error", "created_at")


class Outbox:
    """sqlite3-backed queue; one connection guarded by a lock (submit may come from another
    thread than the delivery loop)."""

    def __init__(self, path: str | os.PathLike, dead_letter: str | os.PathLike):
        self.path = str(path)
        self.dead_letter = Path(dead_letter)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, items: Iterable[Delivery]) -> int:
        """Insert new deliveries in one transaction; returns how many were new."""
        rows = [tuple(getattr(d, c) for c in _COLS) + (d.created_at,) for d in items]
        if not rows:
            return 0
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT OR IGNORE INTO deliveries ({', '.join(_COLS)}, updated_at) "
                    f"VALUES ({', '.join('?' * (len(_COLS) + 1))})", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def _select(self, where: str, args: tuple = ()) -> list[Delivery]:
        with self._lock:
            cur = self._db.execute(f"SELECT {', '.join(_COLS)} FROM deliveries WHERE {where}",
                                   args)
            return [Delivery(*row) for row in cur.fetchall()]

    def due(self, now: float, limit: int = 100, endpoint: str | None = None) -> list[Delivery]:
        """Pending deliveries due at `now`, oldest first (of one endpoint, if given)."""
        where, args = "state = ? AND next_attempt_at <= ?", (PENDING, now)
        if endpoint is not None:
            where, args = where + " AND endpoint = ?", args + (endpoint,)
        return self._select(f"{where} ORDER BY next_attempt_at, created_at LIMIT ?",
                            args + (limit,))

    def due_endpoints(self, now: float) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT endpoint FROM deliveries WHERE state = ? "
                                    "AND next_attempt_at <= ? ORDER BY endpoint", (PENDING, now))
            return [r[0] for r in rows.fetchall()]

    def get(self, endpoint: str, msg_id: str) -> Delivery | None:
        rows = self._select("endpoint = ? AND msg_id = ?", (endpoint, msg_id))
        return rows[0] if rows else None

    def all(self, state: str | None = None) -> list[Delivery]:
        if state is None:
            return self._select("1 ORDER BY created_at, endpoint, msg_id")
        return self._select("state = ? ORDER BY created_at, endpoint, msg_id", (state,))

    def next_due_at(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE state = ?",
                                   (PENDING,)).fetchone()
        return row[0]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
            return {state: n for state, n in rows.fetchall()}

    def _update(self, d: Delivery, now: float, **cols) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self._lock:
            self._db.execute(f"UPDATE deliveries SET {sets}, updated_at = ? "
                             "WHERE endpoint = ? AND msg_id = ?",
                             (*cols.values(), now, d.endpoint, d.msg_id))

    def mark_delivered(self, d: Delivery, now: float, attempts: int) -> None:
        self._update(d, now, state=DELIVERED, attempts=attempts, last_error=None)

    def mark_retry(self, d: Delivery, now: float, attempts: int, next_at: float,
                   error: str) -> None:
        self._update(d, now, attempts=attempts, next_attempt_at=next_at, last_error=error)

    def mark_dead(self, d: Delivery, now: float, attempts: int, error: str) -> None:
        """Write the dead letter first, then flip the row: a crash in between duplicates the
        dead letter rather than losing it."""
        self.write_notice({"kind": "delivery_failed", "endpoint": d.endpoint,
                           "url": redact_url(d.url),
                           "webhook_id": d.msg_id, "action": d.action, "alert_id": d.alert_id,
                           "user_id": d.user_id, "attempts": attempts, "last_error": error,
                           "failed_at": now, "payload": json.loads(d.body)})
        self._update(d, now, state=DEAD, attempts=attempts, last_error=error)

    def recent_created(self, actions: Iterable[str], since: float) -> list[float]:
        """Creation times of recent non-held deliveries of these actions, one per webhook-id
        (an action fanned out to two endpoints is one decision)."""
        acts = tuple(actions)
        with self._lock:
            rows = self._db.execute(
                f"SELECT MIN(created_at) FROM deliveries WHERE action IN "
                f"({', '.join('?' * len(acts))}) AND created_at > ? AND state != ? "
                "GROUP BY msg_id", (*acts, since, HELD)).fetchall()
        return sorted(r[0] for r in rows)

    def release_held(self, now: float) -> int:
        with self._lock:
            cur = self._db.execute("UPDATE deliveries SET state = ?, next_attempt_at = ?, "
                                   "updated_at = ? WHERE state = ?", (PENDING, now, now, HELD))
            return cur.rowcount

    def redrive(self, now: float, endpoint: str | None = None, alert_id: str | None = None,
                urls: Mapping[str, str] | None = None) -> list[Delivery]:
        """Dead -> pending again, due now, attempts reset, same webhook-id; optionally only
        one endpoint's / one alert's. A row whose endpoint is still configured takes the
        configured URL (the fix for a dead letter is often a corrected URL). Returns the
        rows moved, as they were."""
        where, args = "state = ?", (DEAD,)
        if endpoint is not None:
            where, args = where + " AND endpoint = ?", args + (endpoint,)
        if alert_id is not None:
            where, args = where + " AND alert_id = ?", args + (alert_id,)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                moved = [Delivery(*row) for row in self._db.execute(
                    f"SELECT {', '.join(_COLS)} FROM deliveries WHERE {where} "
                    "ORDER BY created_at, endpoint, msg_id", args).fetchall()]
                for d in moved:
                    self._db.execute(
                        "UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = ?, "
                        "last_error = NULL, url = ?, updated_at = ? "
                        "WHERE endpoint = ? AND msg_id = ?",
                        (PENDING, now, (urls or {}).get(d.endpoint, d.url), now,
                         d.endpoint, d.msg_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return moved

    def write_notice(self, record: dict) -> None:
        """Append one JSON line to the dead-letter/notice file and fsync it."""
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        with self._lock, open(self.dead_letter, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
                             "DO UPDATE SET value = excluded.value", (key, value))
