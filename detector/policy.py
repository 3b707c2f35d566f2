"""Actions from the declarative policy (config/policy.yaml), with a hard guardrail.

The guardrail lives in code, not only in YAML (``rules.allowed``): actions that lock a user
out or reset their password (``password_actions``) are only ever recommended when the flow
proves the password was typed correctly *from the suspicious context*. A password-reset
flood or SMS pumping involves no password, a stolen session cookie used from elsewhere
proves only the session (the password step was the user's own), and resetting the password
would punish the victim for someone else's traffic. Revoking sessions and trusted-device
cookies (``rules.SESSION_ACTIONS``) needs an authenticated session in other hands: flow
``password_verified`` or ``session_only``.
"""
from __future__ import annotations

from .rules import ACTION_ORDER, FLOWS, PASSWORD_ACTIONS, SEVERITY_RANK, allowed

GUARDED = PASSWORD_ACTIONS           # the name the tests and older callers use


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


class Policy:
    def __init__(self, policy: dict):
        self.rules = policy.get("rules", [])
        self.guarded = GUARDED | frozenset(policy.get("password_actions", []))
        for rule in self.rules:
            when = rule.get("when", {})
            unknown = set(when) - {"flow", "min_severity", "signals_any"}
            if unknown:
                raise ValueError(f"policy rule {rule.get('name')!r}: unknown condition(s) {sorted(unknown)}")
            for flow in _as_list(when.get("flow", [])):
                if flow not in FLOWS:
                    raise ValueError(f"policy rule {rule.get('name')!r}: unknown flow {flow!r}")
            for action in rule.get("actions", []):
                if action not in ACTION_ORDER:
                    raise ValueError(f"policy rule {rule.get('name')!r}: unknown action {action!r}")
            if when.get("min_severity", "low") not in SEVERITY_RANK:
                raise ValueError(f"policy rule {rule.get('name')!r}: unknown min_severity "
                                 f"{when['min_severity']!r} (one of {list(SEVERITY_RANK)})")
            if not isinstance(when.get("signals_any", []), list):
                raise ValueError(f"policy rule {rule.get('name')!r}: signals_any must be a list")

    def actions(self, flow: str, severity: str | None, signals: set[str]) -> list[str]:
        if severity is None:
            return []
        chosen: set[str] = set()
        for rule in self.rules:
            when = rule.get("when", {})
            if "flow" in when and flow not in _as_list(when["flow"]):
                continue
            if SEVERITY_RANK[severity] < SEVERITY_RANK[when.get("min_severity", "low")]:
                continue
            if "signals_any" in when and not signals.intersection(when["signals_any"]):
                continue
            chosen.update(rule.get("actions", []))
        guarded = self.guarded
        return [a for a in ACTION_ORDER if a in chosen and allowed(a, flow, guarded)]
