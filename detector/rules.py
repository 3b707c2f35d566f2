"""Shared rules: one source for the names and orders that the detector's policy, the hooks
dispatcher and the settings schema all rely on.

* severities, lowest first, and their rank (only compared, never stored);
* the flows a decided code can have, and which of them prove what;
* the actions an alert can recommend, in the order alerts list them;
* which actions need a proven password (the flow must be ``password_verified``: the password
  step came from the suspicious context): they reset or lock, and must never follow traffic
  that proved nothing, nor a stolen session whose password step was the user's own;
* which actions need an authenticated session in other hands (``password_verified`` or
  ``session_only``): they revoke sessions and trusted-device cookies;
* which of those are lockouts the hooks circuit breaker counts and rate-limits.
"""
from __future__ import annotations

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

FLOWS = ("password_verified", "session_only", "no_password", "no_session", "login_missing")
PASSWORD_FLOW = "password_verified"          # the only flow that proves the password
# the requester holds an authenticated session but is not shown to know the password: the
# session's password step came from the user's own familiar context and the code from
# elsewhere, or the session was opened before the last password change (issue #12)
SESSION_FLOW = "session_only"
SESSION_FLOWS = frozenset({PASSWORD_FLOW, SESSION_FLOW})

ACTION_ORDER = ("force_password_reset", "revoke_sessions", "revoke_trusted_devices",
                "lock_account", "notify_user", "review")
ALERT_ACTIONS = frozenset(ACTION_ORDER)
BREAKER_ACTION = "breaker_tripped"           # hooks endpoints may subscribe to the breaker notice

# need flow == password_verified
PASSWORD_ACTIONS = frozenset({"force_password_reset", "lock_account"})
# need flow in SESSION_FLOWS
SESSION_ACTIONS = frozenset({"revoke_sessions", "revoke_trusted_devices"})
# act on the account: never automated for users on hooks.never_lock
ACCOUNT_ACTIONS = PASSWORD_ACTIONS | SESSION_ACTIONS
# counted (and held when too many) by the hooks lockout circuit breaker
LOCKOUT_ACTIONS = frozenset({"force_password_reset", "lock_account"})

assert LOCKOUT_ACTIONS <= PASSWORD_ACTIONS <= ACCOUNT_ACTIONS <= ALERT_ACTIONS
assert SESSION_FLOWS <= set(FLOWS)


def allowed(action: str, flow: str, password_only: frozenset = PASSWORD_ACTIONS) -> bool:
    """The guardrail, in one place: may `action` follow a code of this flow?"""
    if action in password_only:
        return flow == PASSWORD_FLOW
    if action in SESSION_ACTIONS:
        return flow in SESSION_FLOWS
    return True
