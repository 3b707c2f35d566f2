"""The learned model's side of the pure core: one feature definition, the blending rule.

A model trained by ``straycode train --model`` sees exactly what the detector had when it
decided a code: the per-reason log-odds terms of the verdict, the flow, the purpose and
the channel. :func:`features` turns one score record (a ScoreRecord, its JSON dict, or
any object with those fields) into the fixed, ordered list of floats named by
:data:`FEATURE_NAMES`; training (``models/features.py``) and online scoring both go
through it, so they cannot drift apart. Change the list -> bump :data:`FEATURE_VERSION`:
a model trained on another version is refused at load time.

No pandas, no scikit-learn here: the scorer is any object with
``probability(features) -> float`` and ``explain(features, probability) -> [(name, contribution)]``
(``straycode.models.learned.LearnedScorer``), loaded outside the core and handed in.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Protocol, Sequence

from .contract import CHANNELS as CONTRACT_CHANNELS
from .contract import PURPOSES as CONTRACT_PURPOSES
from .rules import FLOWS
from .scoring import Term, Verdict, severity_of

FEATURE_VERSION = "sc-features-3"     # 2: stolen-session reasons, the session_only flow
                                      # 3: anonymizing_network (hosting/VPN/proxy/Tor)

# Reason codes whose log-odds weight is a feature (0.0 when the verdict has no such term).
# Left out on purpose: `feedback_not_me` (it *is* the label when training on feedback),
# the zero-weight notes (`context_unknown`, `private_ip`, `learning_mode`: never in a
# score record) and `learned_model` (the model's own output). Unknown codes are ignored.
TERM_CODES = (
    "known_network_and_place", "new_address_known_network", "new_place_known_network",
    "new_network", "new_network_and_country",
    "trusted_device", "known_device", "known_device_new_browser", "new_device", "no_device_id",
    "usual_hour", "unusual_hour", "impossible_travel",
    "fanout_ip", "fanout_network", "network_reputation", "code_bombing",
    "sensitive_purpose", "orphan_code", "login_missing", "reset_flow",
    "code_verified", "code_not_entered", "failed_code_attempts",
    "session_context_changed", "trusted_device_unfamiliar_context",
    "session_predates_password_change", "unproven_session", "anonymizing_network",
)
PURPOSES = tuple(sorted(CONTRACT_PURPOSES))
CHANNELS = tuple(sorted(CONTRACT_CHANNELS))         # absent/unknown channel: all 0

FEATURE_NAMES = (tuple(f"term:{code}" for code in TERM_CODES)
                 + tuple(f"flow={v}" for v in FLOWS)
                 + tuple(f"purpose={v}" for v in PURPOSES)
                 + tuple(f"channel={v}" for v in CHANNELS))

_N_TERMS = len(TERM_CODES)
_ONE_HOT = (("flow", FLOWS), ("purpose", PURPOSES), ("channel", CHANNELS))
_OFFSETS = {}
_offset = _N_TERMS
for _key, _values in _ONE_HOT:
    _OFFSETS[_key] = {v: _offset + i for i, v in enumerate(_values)}
    _offset += len(_values)
del _offset, _key, _values


class ModelError(ValueError):
    """A learned model cannot be used (tampered, mismatched, untrusted, unreadable)."""


class Scorer(Protocol):
    def probability(self, features: Sequence[float]) -> float: ...
    def explain(self, features: Sequence[float], probability: float) -> list[tuple[str, float]]: ...


def _field(record: Any, key: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(key)
    return getattr(record, key, None)


def features(record: Any) -> list[float]:
    """The feature vector of one score record, in :data:`FEATURE_NAMES` order."""
    terms = _field(record, "terms") or {}
    row = [float(terms.get(code) or 0.0) for code in TERM_CODES]
    row.extend([0.0] * (len(FEATURE_NAMES) - _N_TERMS))
    for key, _values in _ONE_HOT:
        index = _OFFSETS[key].get(_field(record, key))
        if index is not None:
            row[index] = 1.0
    return row


def blend(likelihood_score: float, model_probability: float, weight: float) -> float:
    """``(1 - w) * likelihood_score + w * model_probability``; ``w = 0`` is the score unchanged."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"model weight must be in [0, 1], got {weight!r}")
    if weight == 0.0:
        return likelihood_score
    p = min(1.0, max(0.0, float(model_probability)))
    return round((1.0 - weight) * likelihood_score + weight * p, 6)


def _logit(p: float) -> float:
    p = min(1.0 - 1e-9, max(1e-9, p))
    return math.log(p / (1.0 - p))


def top_text(top: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{name} {value:+.3f}" for name, value in top) or "no feature moved it"


def apply(scorer: Scorer | None, verdict: Verdict, flow: str, purpose: str,
          channel: str | None, weight: float, bands: Mapping) -> Verdict:
    """The verdict with the model blended in: new score and severity, plus a
    ``learned_model`` reason whose weight is the log-odds shift the model caused and whose
    detail names the features that drove it (computed only if an alert renders it).
    ``issue_score`` is untouched. No scorer or weight 0: the verdict itself."""
    if scorer is None or weight <= 0.0:
        return verdict
    record = {"terms": {t.code: round(t.weight, 3) for t in verdict.terms if t.weight},
              "flow": flow, "purpose": purpose, "channel": channel}
    x = features(record)
    p = scorer.probability(x)
    score = blend(verdict.score, p, weight)

    def detail() -> str:
        return (f"model probability {p:.3f} (weight {weight:g}, {FEATURE_VERSION}); "
                f"top features: {top_text(scorer.explain(x, p))}")
    shift = round(_logit(score) - _logit(verdict.score), 3)
    terms = list(verdict.terms) + [Term("learned_model", detail, shift)]
    return Verdict(score, verdict.issue_score, severity_of(score, bands), terms)
