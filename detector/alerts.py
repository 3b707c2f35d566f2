"""Output records: one ScoreRecord per code request, an Alert when it is worth a human.

Alert ids derive from the user and the code event id (nothing else), so a replay, a
restarted worker and a re-delivered message all name the same alert the same way, and two
users whose identity platforms reuse an event id never share one. Each emission of an alert
carries a ``revision`` (1 = created, +1 per update), counted in the user's stored state, so a
consumer keeps the highest revision of an alert_id and a repeat of one is recognisable.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson


def alert_id_for(user_id: str, code_event_id: str) -> str:
    """'sc-' + 16 hex of SHA-256 over the (user_id, code_event_id) pair, encoded without
    ambiguity (a JSON array), so ("a:b", "c") and ("a", "b:c") name different alerts."""
    return "sc-" + hashlib.sha256(orjson.dumps([user_id, code_event_id])).hexdigest()[:16]


@dataclass(slots=True)
class ScoreRecord:
    code_event_id: str
    user_id: str
    ts: str
    score: float
    issue_score: float
    severity: str | None
    alerted: bool
    actions: list[str]
    flow: str
    purpose: str
    terms: dict[str, float] = field(default_factory=dict)   # reason code -> log-odds weight

    def to_dict(self) -> dict:
        return {"code_event_id": self.code_event_id, "user_id": self.user_id, "ts": self.ts,
                "score": self.score, "issue_score": self.issue_score, "severity": self.severity,
                "alerted": self.alerted, "actions": self.actions, "flow": self.flow,
                "purpose": self.purpose, "terms": self.terms}


@dataclass(slots=True)
class Alert:
    alert_id: str
    kind: str                    # created | updated
    code_event_id: str
    user_id: str
    ts: str
    decided_ts: str
    score: float
    issue_score: float
    severity: str
    confidence: float
    flow: str
    purpose: str
    channel: str
    reasons: list[dict]
    actions: list[str]
    observed: dict
    baseline: dict
    status: str = "open"         # open | escalated | benign
    revision: int = 1            # 1 = created; +1 per update of the same alert_id
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"alert_id": self.alert_id, "version": 1, "revision": self.revision,
               "kind": self.kind,
               "code_event_id": self.code_event_id, "user_id": self.user_id, "ts": self.ts,
               "decided_ts": self.decided_ts, "score": self.score,
               "issue_score": self.issue_score, "severity": self.severity,
               "confidence": self.confidence, "flow": self.flow, "purpose": self.purpose,
               "channel": self.channel, "reasons": self.reasons, "actions": self.actions,
               "observed": self.observed, "baseline": self.baseline, "status": self.status}
        out.update(self.extra)
        return out
