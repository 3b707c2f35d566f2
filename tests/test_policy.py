"""config/policy.yaml, row by row, the code guardrail against hostile policies, feedback
updates, and the settings loader (env overrides, unknown keys)."""
from __future__ import annotations

import pytest
import yaml

from detector_helpers import CN, DAY, HOME, HOUR, SE, T0, UA_LINUX, VPN, Run, config, make_detector
from straycode.detector.alerts import alert_id_for
from straycode.detector.policy import GUARDED, Policy
from straycode.settings import ConfigError, detector_settings, load_settings

POLICY = load_settings(env={})["policy"]
RULES = {rule["name"]: rule for rule in POLICY["rules"]}


@pytest.fixture(scope="module")
def policy():
    return Policy(POLICY)


def test_every_rule_is_covered_here():
    covered = {"password_known_to_someone_else", "password_verified_unfamiliar",
               "mfa_bombing_with_password", "sensitive_change_from_unfamiliar_session",
               "session_stolen_password_not_shown", "session_only_unfamiliar",
               "trusted_device_cookie_replayed", "no_password_involved", "user_says_not_me"}
    assert set(RULES) == covered, "a policy row was added or renamed: add its test"


# --------------------------------------------------------------------------- rows, as a table

def test_password_verified_high(policy):
    assert policy.actions("password_verified", "high", {"new_device"}) == [
        "force_password_reset", "revoke_sessions", "notify_user", "review"]
    assert policy.actions("password_verified", "critical", set()) == [
        "force_password_reset", "revoke_sessions", "notify_user", "review"]


def test_password_verified_medium(policy):
    assert policy.actions("password_verified", "medium", {"new_device"}) == ["notify_user", "review"]
    assert policy.actions("password_verified", "low", {"new_device"}) == []


def test_bombing_with_password_locks(policy):
    assert "lock_account" in policy.actions("password_verified", "high", {"code_bombing"})
    assert "lock_account" not in policy.actions("password_verified", "high", {"new_device"})
    assert "lock_account" not in policy.actions("password_verified", "medium", {"code_bombing"})


def test_sensitive_change_revokes_sessions(policy):
    # at high, revoke comes from row 1 as well; the sensitive row must add it by itself too
    only_sensitive = Policy({"rules": [RULES["sensitive_change_from_unfamiliar_session"]]})
    assert only_sensitive.actions("password_verified", "high", {"sensitive_purpose"}) == ["revoke_sessions"]
    assert only_sensitive.actions("password_verified", "high", {"new_device"}) == []
    assert only_sensitive.actions("no_password", "critical", {"sensitive_purpose"}) == []


def test_stolen_session_revokes_but_never_resets(policy):
    """Issue #12 decision table: a session used from elsewhere (flow session_only) gets its
    sessions revoked, never a reset or a lock; a replayed trusted cookie adds
    revoke_trusted_devices, with the password (password_verified) the reset too."""
    assert policy.actions("session_only", "high", {"session_context_changed"}) == [
        "revoke_sessions", "notify_user", "review"]
    assert policy.actions("session_only", "critical", {"code_bombing", "sensitive_purpose",
                                                       "trusted_device_unfamiliar_context"}) == [
        "revoke_sessions", "revoke_trusted_devices", "notify_user", "review"]
    assert policy.actions("session_only", "medium", {"session_context_changed"}) == [
        "notify_user", "review"]
    assert policy.actions("password_verified", "high", {"trusted_device_unfamiliar_context"}) == [
        "force_password_reset", "revoke_sessions", "revoke_trusted_devices", "notify_user", "review"]
    only = Policy({"rules": [RULES["trusted_device_cookie_replayed"]]})
    assert only.actions("password_verified", "high", {"trusted_device_unfamiliar_context"}) == [
        "revoke_sessions", "revoke_trusted_devices"]
    assert only.actions("no_password", "critical", {"trusted_device_unfamiliar_context"}) == []
    assert only.actions("password_verified", "medium", {"trusted_device_unfamiliar_context"}) == []


@pytest.mark.parametrize("flow", ["no_password", "no_session", "login_missing"])
@pytest.mark.parametrize("severity", ["medium", "high", "critical"])
def test_no_password_flows_never_reset_or_lock(flow, severity, policy):
    signals = {"code_bombing", "sensitive_purpose", "feedback_not_me", "new_device"}
    assert policy.actions(flow, severity, signals) == ["notify_user", "review"]


def test_user_says_not_me(policy):
    assert policy.actions("no_session", "low", {"feedback_not_me"}) == ["notify_user", "review"]
    assert policy.actions("no_session", "low", set()) == []


def test_no_severity_no_actions(policy):
    assert policy.actions("password_verified", None, {"code_bombing"}) == []


# --------------------------------------------------------------------------- guardrail

HOSTILE = {
    "rules": [{"name": "reset_everyone", "when": {"flow": ["no_password", "no_session", "login_missing"]},
               "actions": ["force_password_reset", "lock_account", "revoke_sessions", "notify_user"]},
              {"name": "no_flow_at_all", "when": {"min_severity": "low"},
               "actions": ["force_password_reset"]}],
    "password_actions": [],                 # trying to switch the guardrail off
}


@pytest.mark.parametrize("flow", ["no_password", "no_session", "login_missing"])
def test_guardrail_holds_against_a_hostile_policy(flow):
    hostile = Policy(HOSTILE)
    assert hostile.guarded >= GUARDED
    assert hostile.actions(flow, "critical", {"code_bombing"}) == ["notify_user"]
    assert hostile.actions("password_verified", "low", set()) == ["force_password_reset"]


def test_guardrail_holds_end_to_end_with_a_hostile_policy_file(tmp_path, geo_dbs):
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump({"policy": HOSTILE}))
    settings = load_settings(path, env={})
    assert settings["policy"]["rules"][0]["name"] == "reset_everyone"
    run = Run(make_detector(geo_dbs, cfg=detector_settings(settings)))
    run.history("alice", days=6)
    t = T0 + 6 * DAY + 3 * HOUR
    reset = run.code(t, "alice", None, purpose="password_reset", ip=VPN, user_agent=UA_LINUX)
    orphan = run.code(t + HOUR, "alice", None, purpose="login", ip=VPN, user_agent=UA_LINUX)
    missing = run.code(t + 2 * HOUR, "alice", "ghost", purpose="login", ip=VPN, user_agent=UA_LINUX)
    run.flush()
    flows = {c: run.score(c).flow for c in (reset, orphan, missing)}
    assert flows == {reset: "no_password", orphan: "no_session", missing: "login_missing"}
    for code in flows:
        assert not GUARDED & set(run.score(code).actions)
    assert any(run.score(c).alerted for c in flows)         # alerted, just without lock-outs


# --------------------------------------------------------------------------- invalid policies

@pytest.mark.parametrize("rule,message", [
    ({"name": "r", "when": {"flow": "password_verified"}, "actions": ["nuke_account"]},
     "unknown action 'nuke_account'"),
    ({"name": "r", "when": {"flow": "sso"}, "actions": ["review"]}, "unknown flow 'sso'"),
    ({"name": "r", "when": {"flow": ["no_password", "passwordless"]}, "actions": ["review"]},
     "unknown flow 'passwordless'"),
    ({"name": "r", "when": {"min_score": 0.9}, "actions": ["review"]}, r"unknown condition\(s\) \['min_score'\]"),
    ({"name": "r", "when": {"min_severity": "hihg"}, "actions": ["review"]}, "unknown min_severity 'hihg'"),
    ({"name": "r", "when": {"signals_any": "code_bombing"}, "actions": ["review"]}, "signals_any must be a list"),
])
def test_invalid_policies_raise_clear_errors(rule, message):
    with pytest.raises(ValueError, match=message) as info:
        Policy({"rules": [rule]})
    assert "'r'" in str(info.value)                       # names the offending rule


def test_detector_refuses_an_invalid_policy(geo_dbs):
    cfg = config()
    cfg["policy"] = {"rules": [{"name": "bad", "when": {}, "actions": ["explode"]}]}
    with pytest.raises(ValueError, match="explode"):
        make_detector(geo_dbs, cfg=cfg)


# --------------------------------------------------------------------------- end to end

@pytest.fixture()
def alice(geo_dbs):
    run = Run(make_detector(geo_dbs))
    end = run.history("alice", ip=HOME, device="dev-1", days=12, trust_on=-1)
    return run, end + 3 * HOUR


def test_attacker_with_the_password_gets_a_reset_recommended(alice):
    run, t = alice
    code = run.sign_in(t, "alice", CN, device="evil", ua=UA_LINUX, verified=False)
    run.flush()
    record = run.score(code)
    assert record.flow == "password_verified" and record.severity in ("high", "critical")
    assert record.actions[:2] == ["force_password_reset", "revoke_sessions"]
    assert "notify_user" in record.actions and "lock_account" not in record.actions
    (alert,) = run.alerts(code)
    assert alert.actions == record.actions and alert.alert_id == alert_id_for("alice", code)


def test_bombing_with_the_password_locks_the_account(alice):
    run, t = alice
    s = run.login(t, "alice", CN, device="evil", ua=UA_LINUX)
    codes = [run.code(t + 5 + 30 * i, "alice", s) for i in range(7)]
    run.flush()
    last = run.score(codes[-1])
    assert last.flow == "password_verified" and "lock_account" in last.actions


def test_sensitive_change_from_an_unfamiliar_session(alice):
    run, t = alice
    code = run.sign_in(t, "alice", CN, device="evil", ua=UA_LINUX, purpose="payment", verified=False)
    run.flush()
    assert "revoke_sessions" in run.score(code).actions


def test_reset_flood_alerts_without_lockouts(alice):
    run, t = alice
    codes = [run.code(t + 60 * i, "alice", None, purpose="password_reset", ip=VPN, user_agent=UA_LINUX)
             for i in range(7)]
    run.flush()
    records = [run.score(c) for c in codes]
    assert all(r.flow == "no_password" for r in records)
    assert any(r.severity == "critical" for r in records)
    assert all(not GUARDED & set(r.actions) for r in records)
    assert all(r.actions == ["notify_user", "review"] for r in records if r.alerted)


def test_feedback_not_me_escalates_the_same_alert(alice):
    run, t = alice
    code = run.sign_in(t, "alice", SE, device="dev-other", verified=False)
    run.flush()
    (created,) = run.alerts(code)
    run.feedback(t + HOUR, "alice", code, "not_me")
    updates = run.alerts(code)[1:]
    assert len(updates) == 1
    update = updates[0]
    assert (update.kind, update.alert_id, update.status) == ("updated", created.alert_id, "escalated")
    assert update.severity == "critical" and update.reasons[0]["code"] == "feedback_not_me"
    assert update.extra["feedback_event_id"]
    assert "force_password_reset" in update.actions                # password_verified flow
    run.feedback(t + 2 * HOUR, "alice", code, "not_me")             # said twice: no second update
    assert len(run.alerts(code)) == 2


@pytest.mark.parametrize("verdict", ["not_me", "me"])
def test_updated_alert_keeps_the_original_issue_score(alice, verdict):
    """issue_score is what was known when the code was sent; feedback does not change it."""
    run, t = alice
    code = run.sign_in(t, "alice", SE, device="dev-other", verified=False)
    run.flush()
    (created,) = run.alerts(code)
    assert created.issue_score != created.score       # the code was never entered: outcome terms
    run.feedback(t + HOUR, "alice", code, verdict)
    update = run.alerts(code)[-1]
    assert update.kind == "updated"
    assert update.issue_score == created.issue_score == run.score(code).issue_score


def test_feedback_not_me_on_an_unalerted_code_creates_an_alert(alice):
    run, t = alice
    code = run.code(t, "alice", None, purpose="password_reset", ip=HOME, device_id="dev-1")
    run.flush()
    assert not run.score(code).alerted
    run.feedback(t + HOUR, "alice", code, "not_me")
    (alert,) = run.alerts(code)
    assert (alert.kind, alert.status, alert.flow) == ("created", "escalated", "no_password")
    assert alert.issue_score == run.score(code).issue_score
    assert alert.actions == ["notify_user", "review"]                 # no password: no reset


def test_feedback_me_marks_the_alert_benign_and_teaches(alice):
    run, t = alice
    code = run.sign_in(t, "alice", SE, device="dev-travel", verified=False)
    run.flush()
    (created,) = run.alerts(code)
    baseline = run.det.users["alice"].baseline
    assert baseline.count("net0", "AS29518") == 0
    run.feedback(t + HOUR, "alice", code, "me")
    update = run.alerts(code)[-1]
    assert (update.kind, update.alert_id, update.status) == ("updated", created.alert_id, "benign")
    assert update.actions == [] and update.score <= created.score
    baseline = run.det.users["alice"].baseline
    assert baseline.count("net0", "AS29518") == 1 and baseline.device("dev-travel") is not None
    # the next sign-in from there is less surprising than the first one was
    again = run.sign_in(t + DAY, "alice", SE, device="dev-travel", verified=False)
    run.flush()
    assert run.score(again).score < created.score


# --------------------------------------------------------------------------- settings

def test_env_override_of_the_verify_window(geo_dbs):
    settings = load_settings(env={"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "0"})
    assert settings["detector"]["verify_window_s"] == 0
    assert load_settings(env={})["detector"]["verify_window_s"] > 0
    # with no wait window, a code is decided the moment it is issued
    run = Run(make_detector(geo_dbs, cfg=detector_settings(settings)))
    s = run.login(T0, "bob", SE)
    code = run.code(T0 + 5, "bob", s)
    assert run.score(code).code_event_id == code


def test_env_values_are_yaml_scalars():
    settings = load_settings(env={"STRAYCODE__DETECTOR__FANOUT_IP_USERS": "[5, 20]",
                                  "STRAYCODE__ALERTS__FORMAT": "native",
                                  "STRAYCODE__GEOIP__CITY_DB": "/data/city.mmdb"})
    assert settings["detector"]["fanout_ip_users"] == [5, 20]
    assert settings["alerts"]["format"] == "native"
    assert settings["geoip"]["city_db"] == "/data/city.mmdb"


@pytest.mark.parametrize("env", [{"STRAYCODE__DETECTOR__VERIFY_WINDOW": "60"},
                                 {"STRAYCODE__NOPE__X": "1"},
                                 {"STRAYCODE__DETECTOR__WEIGHTS__MADE_UP": "1"}])
def test_unknown_env_keys_are_rejected(env):
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(env=env)


def test_unknown_file_keys_are_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detector:\n  verify_windw_s: 10\n")
    with pytest.raises(ConfigError, match="unknown setting 'detector.verify_windw_s'"):
        load_settings(path, env={})
    path.write_text("detector: 5\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(path, env={})


def test_env_beats_file_beats_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detector:\n  verify_window_s: 120\n  login_grace_s: 30\n")
    settings = load_settings(path, env={"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "60"})
    assert (settings["detector"]["verify_window_s"], settings["detector"]["login_grace_s"]) == (60, 30)
