"""Which endpoint gets which action for an alert, with the safety rules applied in code.

The detector recommends actions; this module decides what is actually automated. The
guardrails live here (not only in YAML) because a bad config or a bad alert must never
lock people out: password actions need a proven password (flow == password_verified),
session actions (revoke sessions / trusted devices) an authenticated session in other hands
(flow password_verified or session_only), and accounts on the never_lock list are never
reset/locked/revoked automatically.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from straycode.detector.rules import (ACCOUNT_ACTIONS, ALERT_ACTIONS, BREAKER_ACTION,
                                      PASSWORD_ACTIONS, PASSWORD_FLOW, SESSION_ACTIONS,
                                      SESSION_FLOWS, SEVERITY_RANK)
from straycode.settings import ConfigError

log = logging.getLogger("straycode.hooks")

KNOWN_ACTIONS = ALERT_ACTIONS | {BREAKER_ACTION}
# LOCKOUT_ACTIONS and SEVERITY_RANK are imported from here by the dispatcher


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    actions: frozenset
    min_severity: str = "low"

    @property
    def safe_url(self) -> str:
        """The URL without query/fragment/userinfo, fit for logs (tokens hide there)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}"


@dataclass(frozen=True)
class Planned:
    endpoint: Endpoint
    action: str


@dataclass
class Plan:
    deliveries: list[Planned] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (action, why)


def _endpoints(raw: Iterable[Mapping]) -> tuple[Endpoint, ...]:
    out, names = [], set()
    for i, ep in enumerate(raw or []):
        where = f"hooks.endpoints[{i}]"
        if not isinstance(ep, Mapping):
            raise ConfigError(f"{where} must be a mapping")
        name, url = ep.get("name"), ep.get("url")
        if not name or name in names:
            raise ConfigError(f"{where}: 'name' missing or duplicated")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{where} ({name}): 'url' must be an http(s) URL")
        actions = frozenset(ep.get("actions") or ())
        if not actions or not actions <= KNOWN_ACTIONS:
            raise ConfigError(f"{where} ({name}): actions must be a non-empty subset of "
                              f"{sorted(KNOWN_ACTIONS)}")
        sev = ep.get("min_severity", "low")
        if sev not in SEVERITY_RANK:
            raise ConfigError(f"{where} ({name}): min_severity must be one of {list(SEVERITY_RANK)}")
        unknown = set(ep) - {"name", "url", "actions", "min_severity"}
        if unknown:
            raise ConfigError(f"{where} ({name}): unknown keys {sorted(unknown)}")
        names.add(name)
        out.append(Endpoint(name=name, url=url, actions=actions, min_severity=sev))
    return tuple(out)


class HookPolicy:
    """Maps an alert's recommended actions onto configured endpoints."""

    def __init__(self, endpoints: Iterable[Endpoint], never_lock: Iterable[str],
                 password_actions: Iterable[str] = ()):
        self.endpoints = tuple(endpoints)
        self.never_lock = frozenset(never_lock)
        # the policy file may widen the set of password-only actions, never narrow it
        self.password_actions = PASSWORD_ACTIONS | frozenset(password_actions)

    @classmethod
    def from_settings(cls, settings: Mapping) -> "HookPolicy":
        hooks = settings["hooks"]
        return cls(_endpoints(hooks.get("endpoints")), hooks.get("never_lock") or (),
                   (settings.get("policy") or {}).get("password_actions") or ())

    def breaker_endpoints(self) -> list[Endpoint]:
        return [ep for ep in self.endpoints if BREAKER_ACTION in ep.actions]

    def plan(self, alert: Mapping) -> Plan:
        """Deliveries for this alert after the guardrails; refusals are logged by the caller."""
        plan = Plan()
        rank = SEVERITY_RANK[alert["severity"]]
        wanted: list[str] = []
        for action in dict.fromkeys(alert.get("actions") or ()):
            if action not in ALERT_ACTIONS:
                plan.refused.append((action, "unknown action"))
            elif action in self.password_actions and alert.get("flow") != PASSWORD_FLOW:
                plan.refused.append((action, f"flow is {alert.get('flow')}, not "
                                             "password_verified: no password was proven"))
            elif action in SESSION_ACTIONS and alert.get("flow") not in SESSION_FLOWS:
                plan.refused.append((action, f"flow is {alert.get('flow')}: no authenticated "
                                             "session in other hands was shown"))
            elif action in ACCOUNT_ACTIONS and alert["user_id"] in self.never_lock:
                plan.refused.append((action, "user is on hooks.never_lock"))
            else:
                wanted.append(action)
        for ep in self.endpoints:
            if rank < SEVERITY_RANK[ep.min_severity]:
                continue
            plan.deliveries.extend(Planned(ep, a) for a in wanted if a in ep.actions)
        return plan
