"""Shared rules: one source for the names and orders that the detector's policy, the hooks
dispatcher and the settings schema all rely on.

* severities, lowest first, and their rank (only compared, never stored);
* the actions an alert can recommend, in the order alerts list them;
* which actions need a proven password (the flow must be ``password_verified``): they
  reset, revoke or lock, and must never follow traffic that proved nothing;
* which of those are lockouts the hooks circuit breaker counts and rate-limits.
"""
from __future__ import annotations

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

FLOWS = ("password_verified", "no_password", "no_session", "login_missing")
PASSWORD_FLOW = "password_verified"          # the only flow that proves the password

ACTION_ORDER = ("force_password_reset", "revoke_sessions", "lock_account", "notify_user", "review")
ALERT_ACTIONS = frozenset(ACTION_ORDER)
BREAKER_ACTION = "breaker_tripped"           # hooks endpoints may subscribe to the breaker notice

# need flow == password_verified; never automated for users on hooks.never_lock
PASSWORD_ACTIONS = frozenset({"force_password_reset", "revoke_sessions", "lock_account"})
# counted (and held when too many) by the hooks lockout circuit breaker
LOCKOUT_ACTIONS = frozenset({"force_password_reset", "lock_account"})

assert LOCKOUT_ACTIONS <= PASSWORD_ACTIONS <= ALERT_ACTIONS
