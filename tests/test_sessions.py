"""Issue #12: a code judged against its own session, through the public Detector API with the
real .mmdb fixtures. Each rule has a test that fails without it: a stolen session's code
alerts with revoke_sessions and no password reset, legitimate mid-session changes stay quiet,
a trusted-device cookie from an unfamiliar context teaches nothing until corroborated, an
entered code from a wholly unfamiliar context (AiTM relay) is held, and password_changed
makes an older session's codes suspicious."""
from __future__ import annotations

import pytest

from detector_helpers import (CN, DAY, HOME, HOME6, HOUR, MOBILE, MOBILE6, SE, UA_IPHONE,
                              UA_LINUX, UA_WIN, VPN, Run, make_detector)
from straycode.detector.rules import PASSWORD_ACTIONS, SESSION_ACTIONS
from straycode.detector.state import SessionState, UserState

MIN = 60


@pytest.fixture()
def new_run(geo_dbs, monkeypatch):
    def make(**cfg) -> Run:
        return Run(make_detector(geo_dbs, **cfg), monkeypatch)
    return make


def alice(run: Run, **kw) -> float:
    """12 days of verified sign-ins from home on dev-1 (trusted on day 2); returns 09:00 of
    the next day."""
    return run.history("alice", ip=HOME, device="dev-1", ua=UA_WIN, **kw) + 9 * HOUR


def baseline(run: Run):
    return run.det.users["alice"].baseline


def moved_code(run: Run, t: float, session: str, ip: str, *, device: str = "dev-1",
               ua: str = UA_WIN, purpose: str = "security_settings") -> str:
    """A code 20 minutes into alice's `session`, requested from its own context (`ip`)."""
    return run.code(t + 20 * MIN, "alice", session, purpose=purpose, ip=ip, device_id=device,
                    user_agent=ua)


def assert_quiet_session(run: Run, code: str) -> None:
    """No alert, the password flow, and no weight for a change of context in the session."""
    record = run.score(code)
    assert not record.alerted and record.flow == "password_verified"
    assert run.terms(code).get("session_context_changed", 0.0) == 0.0


# ---------------------------------------------------------------------- 1. stolen session
def test_hijacked_session_code_revokes_sessions_and_never_resets(new_run):
    run = new_run()
    t = alice(run)
    session = run.login(t, "alice", HOME, device="dev-1")           # trusted cookie: proven
    code = run.code(t + 30 * MIN, "alice", session, purpose="security_settings",
                    ip=CN, device_id="dev-1", user_agent=UA_WIN)    # the thief, same cookies
    run.flush()
    record = run.score(code)
    assert record.alerted and record.severity in ("high", "critical")
    assert record.flow == "session_only"
    assert "revoke_sessions" in record.actions and "notify_user" in record.actions
    assert "revoke_trusted_devices" in record.actions           # the trusted cookie was replayed
    assert not set(record.actions) & PASSWORD_ACTIONS           # no reset, no lock
    terms = run.terms(code)
    assert terms["session_context_changed"] > 0
    assert terms["trusted_device_unfamiliar_context"] > 0
    assert terms["trusted_device"] == 0.0                       # the cookie is no proof here
    (alert,) = run.alerts(code)
    assert alert.observed["login"]["city"] == "London"
    assert alert.observed["code"]["city"] == "Changchun"
    detail = next(r["detail"] for r in alert.reasons if r["code"] == "session_context_changed")
    assert "AS20712 -> AS4837" in detail and "London -> Changchun" in detail
    import jsonschema
    from straycode.detector.ocsf import schema, to_ocsf
    finding = to_ocsf(alert.to_dict())
    jsonschema.validate(finding, schema())
    assert finding["finding_info"]["types"] == ["Unrequested security code", "Session hijacking"]
    assert {("T1539", None), ("T1550", "T1550.004")} <= {
        (a["technique"]["uid"], (a.get("sub_technique") or {}).get("uid"))
        for a in finding["finding_info"]["attacks"]}


def test_same_code_from_the_login_context_is_quiet(new_run):
    """The contrast: the same request from the session's own context does not alert."""
    run = new_run()
    t = alice(run)
    session = run.login(t, "alice", HOME, device="dev-1")
    code = run.code(t + 30 * MIN, "alice", session, purpose="security_settings",
                    ip=HOME, device_id="dev-1", user_agent=UA_WIN)
    run.flush()
    assert not run.score(code).alerted
    assert run.score(code).flow == "password_verified"
    assert "session_context_changed" not in run.terms(code)


def test_hijack_hours_later_still_finds_its_session(new_run):
    """Sessions live for days: a code 6 h after its login, after the user's own later logins
    (which used to evict it after session_ttl_s), is still judged against its session."""
    run = new_run()
    t = alice(run)
    stolen = run.login(t, "alice", HOME, device="dev-1")
    for k in (2, 4):
        run.sign_in(t + k * HOUR, "alice", HOME)
    code = run.code(t + 6 * HOUR, "alice", stolen, purpose="payment", ip=SE, device_id=None,
                    user_agent=UA_LINUX)
    run.flush()
    record = run.score(code)
    assert record.flow == "session_only"                        # not login_missing
    assert record.alerted and "revoke_sessions" in record.actions
    assert not set(record.actions) & PASSWORD_ACTIONS
    session = run.det.users["alice"].sessions[stolen]
    assert session.ctx.user_agent is None and session.ctx.browser   # kept compact
    run2 = new_run(session_memory_s=0)
    t = alice(run2)
    stolen = run2.login(t, "alice", HOME, device="dev-1")
    for k in (2, 4):
        run2.sign_in(t + k * HOUR, "alice", HOME)
    code = run2.code(t + 6 * HOUR, "alice", stolen, purpose="payment", ip=SE, user_agent=UA_LINUX)
    run2.flush()
    assert run2.score(code).flow == "login_missing"             # without the session memory


# ---------------------------------------------------------------------- legit changes
@pytest.mark.parametrize("carrier", [MOBILE, MOBILE6], ids=["ipv4", "ipv6"])
def test_wifi_to_known_carrier_does_not_alert(new_run, carrier):
    run = new_run()
    t = alice(run)
    for d in range(3):                                          # the phone on its carrier
        run.sign_in(t - (d + 1) * DAY + 3 * HOUR, "alice", MOBILE, device="phone-1", ua=UA_IPHONE)
    session = run.login(t, "alice", HOME, device="phone-1", ua=UA_IPHONE)
    run.code(t + 5, "alice", session)
    run.verify(t + 30, "alice", session)
    code = moved_code(run, t, session, carrier, device="phone-1", ua=UA_IPHONE)
    run.flush()                                                 # not even entered
    assert_quiet_session(run, code)


def test_wifi_to_a_carrier_never_used_in_the_same_city_stays_below_alert(new_run):
    run = new_run()
    t = alice(run)
    session = run.login(t, "alice", HOME, device="dev-1")
    code = moved_code(run, t, session, MOBILE, purpose="payment")
    run.flush()
    record = run.score(code)
    terms = run.terms(code)
    assert 0 < terms["session_context_changed"] < 1.0           # weak: a new network, same place
    assert not record.alerted and record.flow == "password_verified"


@pytest.mark.parametrize("later", [HOME6, "81.2.69.99"], ids=["dual-stack-v6", "new-address"])
def test_address_change_on_the_same_network_is_no_change(new_run, later):
    """IPv6 privacy addresses, CGNAT address changes, an IPv4 login and an IPv6 code on the
    user's own ISP: same network, same place."""
    run = new_run()
    t = alice(run)
    session = run.login(t, "alice", HOME, device="dev-1")
    code = moved_code(run, t, session, later)
    run.flush()
    assert not run.score(code).alerted
    assert "session_context_changed" not in run.terms(code)


def test_vpn_toggle_on_a_proven_network_is_quiet(new_run):
    """A corporate VPN exit far away, which the user has proven: not a stolen session even
    though London -> Thimphu in 20 minutes is 'impossible'."""
    run = new_run()
    t = alice(run)
    for d in range(3):
        run.sign_in(t - (d + 1) * DAY + 2 * HOUR, "alice", VPN, device="dev-1")
    session = run.login(t, "alice", HOME, device="dev-1")
    code = moved_code(run, t, session, VPN)
    run.flush()
    assert_quiet_session(run, code)


# ---------------------------------------------------------------------- 2. trusted cookie
def test_trusted_device_from_unfamiliar_context_does_not_teach_until_corroborated(new_run):
    run = new_run()
    t = alice(run)
    evil = run.login(t, "alice", CN, device="dev-1", ua=UA_WIN)  # password + trusted cookie
    b = baseline(run)
    assert b.count("net0", "AS4837") == 0 and b.count("loc1", "CN/Changchun") == 0
    assert run.det.users["alice"].sessions[evil].state is SessionState.HELD
    code = run.code(t + 10 * MIN, "alice", evil, purpose="security_settings")
    run.flush()
    record = run.score(code)
    assert record.alerted and record.flow == "password_verified"
    assert {"force_password_reset", "revoke_sessions", "revoke_trusted_devices",
            "notify_user"} <= set(record.actions)
    assert run.terms(code)["trusted_device_unfamiliar_context"] > 0
    assert baseline(run).count("net0", "AS4837") == 0           # still not learned

    # corroboration: a code entered in such a session teaches it
    run2 = new_run()
    t = alice(run2)
    trip = run2.login(t, "alice", SE, device="dev-1", ua=UA_WIN)
    assert baseline(run2).count("net0", "AS29518") == 0
    run2.code(t + 5, "alice", trip)
    run2.verify(t + 30, "alice", trip)
    assert baseline(run2).count("net0", "AS29518") == 1
    assert run2.det.users["alice"].sessions[trip].state is SessionState.LEARNED


def test_trusted_device_login_is_learned_after_a_quiet_period_unless_not_me(new_run):
    run = new_run()
    t = alice(run)
    run.login(t, "alice", SE, device="dev-1", ua=UA_WIN)
    run.login(t + 2 * HOUR, "alice", HOME, device="dev-1", ua=UA_WIN)
    assert baseline(run).count("net0", "AS29518") == 0          # within the quiet period
    run.login(t + 1 * DAY + 1, "alice", HOME, device="dev-1", ua=UA_WIN)
    assert baseline(run).count("net0", "AS29518") == 1          # quiet period passed

    run2 = new_run()
    t = alice(run2)
    held = run2.login(t, "alice", SE, device="dev-1", ua=UA_WIN)
    code = run2.code(t + 60, "alice", held, purpose="payment")
    run2.flush()
    run2.feedback(t + 2 * HOUR, "alice", code, "not_me")
    run2.login(t + 2 * DAY, "alice", HOME, device="dev-1", ua=UA_WIN)
    assert baseline(run2).count("net0", "AS29518") == 0         # disowned: never learned
    assert run2.det.users["alice"].sessions[held].state is SessionState.DISOWNED


def test_trusted_device_from_the_users_own_network_is_proof_at_once(new_run):
    run = new_run()
    t = alice(run)
    proven = baseline(run).proven
    session = run.login(t, "alice", HOME2_ADDR, device="dev-1", ua=UA_WIN)
    assert run.det.users["alice"].sessions[session].state is SessionState.LEARNED
    assert baseline(run).proven == proven + 1


HOME2_ADDR = "81.2.70.77"        # the same ISP (AS20712) and city, another /24


# ---------------------------------------------------------------------- AiTM
def test_code_entered_through_a_relay_is_held_and_the_takeover_alerts(new_run):
    run = new_run()
    t = alice(run)
    relay = run.login(t, "alice", VPN, device="relay-jar", ua=UA_WIN)   # hosting, fresh cookie
    run.code(t + 2, "alice", relay)
    run.verify(t + 27, "alice", relay)                          # the victim typed it
    state = run.det.users["alice"]
    assert state.sessions[relay].state is SessionState.HELD
    assert baseline(run).count("net0", "AS35908") == 0          # the relay is not 'home'
    takeover = run.code(t + 10 * MIN, "alice", relay, purpose="security_settings")
    run.flush()
    record = run.score(takeover)
    assert record.alerted and record.flow == "password_verified"
    assert {"force_password_reset", "revoke_sessions"} <= set(record.actions)
    assert run.terms(takeover)["unproven_session"] > 0
    (alert,) = run.alerts(takeover)
    import jsonschema
    from straycode.detector.ocsf import schema, to_ocsf
    finding = to_ocsf(alert.to_dict())
    jsonschema.validate(finding, schema())
    attacks = finding["finding_info"]["attacks"]
    assert {"T1557", "T1185"} <= {a["technique"]["uid"] for a in attacks}


def test_entered_code_from_a_familiar_network_is_learned_at_once(new_run):
    """The AiTM hold needs network, place and device all unproven: a new device at home is
    learned as before."""
    run = new_run()
    t = alice(run)
    session = run.login(t, "alice", HOME, device="dev-new", ua=UA_WIN)
    run.code(t + 2, "alice", session)
    run.verify(t + 27, "alice", session)
    assert run.det.users["alice"].sessions[session].state is SessionState.LEARNED


# ---------------------------------------------------------------------- 4. password_changed
def test_password_change_makes_an_older_sessions_code_suspicious(new_run):
    def scenario(change: bool):
        run = new_run()
        t = alice(run)
        old = run.login(t, "alice", HOME, device="dev-1")
        if change:
            run.send("password_changed", t + HOUR, "alice", ip=HOME)
        code = run.code(t + 2 * HOUR, "alice", old, purpose="security_settings",
                        ip=HOME, device_id="dev-1", user_agent=UA_WIN)
        run.flush()
        return run, code

    run, code = scenario(change=True)
    record = run.score(code)
    assert record.alerted and record.flow == "session_only"
    assert "revoke_sessions" in record.actions
    assert not set(record.actions) & PASSWORD_ACTIONS
    (alert,) = run.alerts(code)
    detail = next(r["detail"] for r in alert.reasons
                  if r["code"] == "session_predates_password_change")
    assert "before the last password change at 2026-01-17T10:00:00.000Z" in detail
    quiet, quiet_code = scenario(change=False)
    assert not quiet.score(quiet_code).alerted


def test_session_the_password_was_changed_in_is_renewed(new_run):
    run = new_run()
    t = alice(run)
    own = run.login(t, "alice", HOME, device="dev-1")
    run.send("password_changed", t + HOUR, "alice", ip=HOME, session_id=own)
    code = run.code(t + 2 * HOUR, "alice", own, purpose="security_settings", ip=HOME,
                    device_id="dev-1", user_agent=UA_WIN)
    run.flush()
    assert not run.score(code).alerted
    assert "session_predates_password_change" not in run.terms(code)


# ---------------------------------------------------------------------- guardrail, state
def test_guardrail_session_only_never_resets_even_with_a_hostile_policy(geo_dbs):
    from straycode.detector.policy import Policy
    hostile = Policy({"rules": [{"name": "all", "when": {"min_severity": "low"},
                                 "actions": ["force_password_reset", "lock_account",
                                             "revoke_sessions", "revoke_trusted_devices",
                                             "notify_user"]}]})
    got = hostile.actions("session_only", "critical", set())
    assert not set(got) & PASSWORD_ACTIONS and SESSION_ACTIONS <= set(got)
    for flow in ("no_password", "no_session", "login_missing"):
        assert hostile.actions(flow, "critical", set()) == ["notify_user"]
    assert set(hostile.actions("password_verified", "critical", set())) >= PASSWORD_ACTIONS


def test_held_sessions_survive_the_state_codec(new_run):
    run = new_run()
    t = alice(run)
    held = run.login(t, "alice", CN, device="dev-1", ua=UA_WIN)
    state = run.det.users["alice"]
    again = UserState.from_bytes(state.to_bytes())
    assert again.sessions[held].state is SessionState.HELD
    assert again.to_bytes() == state.to_bytes()


def test_hooks_automate_revocation_for_a_stolen_session_but_never_a_reset():
    from alert_factory import make_alert
    from straycode.hooks.policy import Endpoint, HookPolicy
    from straycode.detector.rules import ALERT_ACTIONS
    iam = Endpoint("iam", "http://127.0.0.1:9/h", frozenset(ALERT_ACTIONS))
    hooks = HookPolicy([iam], never_lock=["vip"])
    plan = hooks.plan(make_alert(flow="session_only", severity="critical",
                                 actions=["force_password_reset", "revoke_sessions",
                                          "revoke_trusted_devices", "notify_user"]))
    assert [p.action for p in plan.deliveries] == ["revoke_sessions", "revoke_trusted_devices",
                                                    "notify_user"]
    assert [a for a, _ in plan.refused] == ["force_password_reset"]
    plan = hooks.plan(make_alert(flow="no_password", severity="critical",
                                 actions=["revoke_trusted_devices", "notify_user"]))
    assert [p.action for p in plan.deliveries] == ["notify_user"]
    plan = hooks.plan(make_alert(flow="session_only", severity="critical", user_id="vip",
                                 actions=["revoke_sessions", "revoke_trusted_devices"]))
    assert plan.deliveries == [] and len(plan.refused) == 2
