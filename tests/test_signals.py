"""One test per reason the scorer can emit, through the public Detector API with the real
.mmdb fixtures. Each asserts the reason is present and the direction of its effect, by
scoring the same code with and without the condition (never a hard-coded score)."""
from __future__ import annotations

import pytest

from detector_helpers import (CN, DAY, HOME, HOME2, HOUR, SE, T0, UA_IPHONE, UA_LINUX, UA_WIN, US,
                              VPN, Run, make_detector)

ATTACK_HOUR = 9                      # same hour as the history unless a test says otherwise


@pytest.fixture()
def new_run(geo_dbs, monkeypatch):
    """Factory of fresh detectors (each sees exactly the events of its test variant)."""
    def make(**cfg) -> Run:
        return Run(make_detector(geo_dbs, **cfg), monkeypatch)
    return make


def with_history(new_run, **cfg) -> tuple[Run, float]:
    """alice: 12 verified sign-ins at 09:00 UTC from home, device dev-1 (never trusted, so a
    later login on it proves nothing by itself)."""
    run = new_run(**cfg)
    end = run.history("alice", ip=HOME, device="dev-1", ua=UA_WIN, trust_on=-1)
    return run, end + ATTACK_HOUR * HOUR


def attempt(new_run, ip=HOME, device="dev-1", ua=UA_WIN, verified=False, purpose="login",
            offset=0.0, **cfg):
    """Score one sign-in attempt against alice's history; returns (run, code id)."""
    run, t = with_history(new_run, **cfg)
    code = run.sign_in(t + offset, "alice", ip, device=device, ua=ua, verified=verified,
                       purpose=purpose)
    run.flush()
    return run, code


def score(run: Run, code: str) -> float:
    return run.score(code).score


def test_new_device(new_run):
    run, code = attempt(new_run, device="dev-unknown")
    base, base_code = attempt(new_run)
    assert run.terms(code)["new_device"] > 0
    assert "known_device" in base.terms(base_code)
    assert score(run, code) > score(base, base_code)


def test_new_network_and_country(new_run):
    run, code = attempt(new_run, ip=CN)
    base, base_code = attempt(new_run)
    assert run.terms(code)["new_network_and_country"] > 0
    assert base.terms(base_code)["known_network_and_place"] < 0
    assert score(run, code) > score(base, base_code)


def test_dynamic_ip_within_the_isp_is_not_alerted(new_run):
    """A new /24 of the user's own ISP in the user's city: a weak signal, never an alert."""
    run, code = attempt(new_run, ip=HOME2)
    far, far_code = attempt(new_run, ip=CN)
    home, home_code = attempt(new_run)
    terms = run.terms(code)
    assert "new_address_known_network" in terms
    assert terms["new_address_known_network"] < far.terms(far_code)["new_network_and_country"]
    assert home.terms(home_code)["known_network_and_place"] <= terms["new_address_known_network"]
    assert score(home, home_code) <= score(run, code) < score(far, far_code)
    assert not run.score(code).alerted                         # even though the code was not entered
    verified, vcode = attempt(new_run, ip=HOME2, verified=True)
    assert not verified.score(vcode).alerted


def test_impossible_travel(new_run):
    # one hour after the last proven London sign-in, from Milton (US): ~7,700 km
    run, t = with_history(new_run)
    run.sign_in(t, "alice", HOME)                                # proven, London, 09:00
    code = run.sign_in(t + HOUR, "alice", US, device="dev-1")
    run.flush()
    slow, t2 = with_history(new_run)
    slow.sign_in(t2, "alice", HOME)
    slow_code = slow.sign_in(t2 + 2 * DAY + HOUR, "alice", US, device="dev-1")   # same hour, 2 days on
    slow.flush()
    assert run.terms(code)["impossible_travel"] > 0
    assert "km/h" in next(r["detail"] for r in run.verdict(code).reasons() if r["code"] == "impossible_travel")
    assert "impossible_travel" not in slow.terms(slow_code)
    assert score(run, code) > score(slow, slow_code)


def test_travel_check_uses_the_distance_in_time_either_way(new_run):
    """A code is decided when a later event moves event time past its wait window. If that
    event is itself proof of a sign-in (a trusted-device login, 10 h later in London), the
    earlier request from Linköping (1,400 km) must not look like teleporting."""
    run = new_run()
    t = run.history("alice", ip=HOME, device="dev-1", trust_on=0) + 9 * HOUR
    code = run.sign_in(t, "alice", SE, device="dev-2", verified=False)
    run.login(t + 10 * HOUR, "alice", HOME, device="dev-1")          # decides the code
    assert run.score(code)
    assert run.det.users["alice"].baseline.last_place.t == int(t + 10 * HOUR)
    assert "impossible_travel" not in run.terms(code)


def test_unusual_hour(new_run):
    run, night = attempt(new_run, offset=-6 * HOUR)               # 03:00 UTC
    base, day_code = attempt(new_run)                              # 09:00 UTC, the habit
    assert run.terms(night)["unusual_hour"] > 0
    assert base.terms(day_code)["usual_hour"] < 0
    assert score(run, night) > score(base, day_code)


def stuffing(new_run, same_ip: bool, victims: int):
    """`victims` users with history at home; then each signs in from the VPN range within
    minutes (mostly wrong passwords: a credential-stuffing list), alice last, with a code."""
    run = new_run()
    users = [f"user{i}" for i in range(victims)] + ["alice"]
    for user in users:
        run.history(user, ip=HOME, device=f"{user}-dev", days=6, trust_on=-1)
    t = T0 + 6 * DAY + 9 * HOUR
    code = None
    for i, user in enumerate(users):
        ip = VPN if same_ip else f"67.43.156.{20 + i}"
        ok = user == "alice" or i % 4 == 0
        s = run.login(t + i * 40, user, ip, ok=ok, device=None, ua=UA_LINUX)
        if user == "alice":
            code = run.code(t + i * 40 + 3, user, s)
    run.flush()
    return run, code


def test_fanout_ip_stuffing_from_one_address(new_run):
    run, code = stuffing(new_run, same_ip=True, victims=12)
    alone, alone_code = stuffing(new_run, same_ip=True, victims=0)
    assert run.terms(code)["fanout_ip"] > 0
    assert "fanout_ip" not in alone.terms(alone_code)
    assert score(run, code) > score(alone, alone_code)
    few, few_code = stuffing(new_run, same_ip=True, victims=3)      # 4 users: warn level only
    assert 0 < few.terms(few_code)["fanout_ip"] < run.terms(code)["fanout_ip"]


def test_fanout_network_stuffing_across_addresses(new_run):
    run, code = stuffing(new_run, same_ip=False, victims=12)
    alone, alone_code = stuffing(new_run, same_ip=False, victims=0)
    terms = run.terms(code)
    assert terms["fanout_network"] > 0 and "fanout_ip" not in terms
    assert "fanout_network" not in alone.terms(alone_code)
    assert score(run, code) > score(alone, alone_code)


def reputation(new_run, earlier_verified: bool):
    """Eight users got codes from the VPN network over ~2.5 h (never more than a few per hour,
    so no fan-out); then alice gets one from there too."""
    run = new_run()
    run.history("alice", ip=HOME, device="dev-1", days=6, trust_on=-1)
    t = T0 + 6 * DAY + 6 * HOUR
    for i in range(8):
        run.sign_in(t + i * 20 * 60, f"other{i}", f"67.43.156.{30 + i}", device=f"o{i}",
                    verified=earlier_verified)
    code = run.sign_in(t + 8 * 20 * 60, "alice", f"67.43.156.{50}", device="dev-1")
    run.flush()
    return run, code


def test_network_reputation(new_run):
    bad, code = reputation(new_run, earlier_verified=False)
    good, good_code = reputation(new_run, earlier_verified=True)
    assert bad.terms(code)["network_reputation"] > 0
    assert not {"fanout_ip", "fanout_network"} & set(bad.terms(code))
    assert "network_reputation" not in good.terms(good_code)
    assert score(bad, code) > score(good, good_code)


def test_code_bombing(new_run):
    run, t = with_history(new_run)
    s = run.login(t, "alice", HOME, device="dev-1")
    codes = [run.code(t + 5 + i * 20, "alice", s) for i in range(7)]
    run.flush()
    single, single_code = attempt(new_run)
    weights = [run.terms(c).get("code_bombing", 0.0) for c in codes]
    assert weights[-1] > 0 and weights[-1] >= weights[2] > 0       # warn, then strong
    assert score(run, codes[-1]) > score(single, single_code)
    assert "code_bombing" not in single.terms(single_code)


def test_sensitive_purpose(new_run):
    for purpose in ("payment", "security_settings"):
        run, code = attempt(new_run, ip=SE, purpose=purpose)
        base, base_code = attempt(new_run, ip=SE, purpose="login")
        assert run.terms(code)["sensitive_purpose"] > 0
        assert "sensitive_purpose" not in base.terms(base_code)
        assert score(run, code) > score(base, base_code)


def orphan(new_run, purpose: str):
    run, t = with_history(new_run)
    code = run.code(t, "alice", None, purpose=purpose, ip=CN, user_agent=UA_LINUX)
    run.flush()
    return run, code


def test_orphan_code(new_run):
    run, code = orphan(new_run, "login")
    reset, reset_code = orphan(new_run, "password_reset")
    assert run.score(code).flow == "no_session" and run.terms(code)["orphan_code"] > 0
    assert reset.score(reset_code).flow == "no_password" and "orphan_code" not in reset.terms(reset_code)
    assert score(run, code) > score(reset, reset_code)


def test_login_missing_is_decided_after_the_grace_window(new_run):
    run, t = with_history(new_run)
    code = run.code(t, "alice", "session-never-logged-in")
    cfg = run.det.cfg
    wait = max(cfg["verify_window_s"], cfg["login_grace_s"])
    assert run.det.advance(t + wait - 1) == []                     # still waiting for its login
    run.out.extend(run.det.advance(t + wait))
    record = run.score(code)
    assert record.flow == "login_missing"
    assert run.terms(code)["login_missing"] > 0
    other, t2 = with_history(new_run)
    reset = other.code(t2, "alice", None, purpose="password_reset")    # same empty context
    other.flush()
    assert "login_missing" not in other.terms(reset)
    assert score(run, code) > score(other, reset)


def test_code_before_its_login_is_scored_with_the_logins_context(new_run):
    cfg_grace = new_run().det.cfg["login_grace_s"]
    run, t = with_history(new_run)
    code = run.code(t, "alice", "s-late")
    assert code not in [r.code_event_id for r in run.scores()]        # held for its login
    run.login(t + cfg_grace - 10, "alice", CN, session="s-late", device="dev-x", ua=UA_LINUX)
    run.flush()
    record = run.score(code)
    assert record.flow == "password_verified"
    terms = run.terms(code)
    assert terms["new_network_and_country"] > 0 and terms["new_device"] > 0
    alert = run.alerts(code)[0]
    assert alert.observed["login"]["country"] == "CN" and alert.observed["code"] is None
    in_order, in_order_code = attempt(new_run, ip=CN, device="dev-x", ua=UA_LINUX)
    assert record.score == pytest.approx(score(in_order, in_order_code), abs=0.02)


def test_code_verified_lowers_the_score(new_run):
    entered, code = attempt(new_run, ip=CN, device="dev-x", verified=True)
    not_entered, code2 = attempt(new_run, ip=CN, device="dev-x", verified=False)
    assert entered.terms(code)["code_verified"] < 0
    assert not_entered.terms(code2)["code_not_entered"] > 0
    assert score(entered, code) < score(not_entered, code2)
    # the verdict at issue time does not depend on the outcome
    assert entered.score(code).issue_score == pytest.approx(not_entered.score(code2).issue_score)


def test_code_not_entered_is_decided_at_the_end_of_the_wait_window(new_run):
    run, t = with_history(new_run)
    s = run.login(t, "alice", CN, device="dev-x")
    code = run.code(t + 5, "alice", s)
    window = run.det.cfg["verify_window_s"]
    assert run.det.advance(t + 5 + window - 1) == []
    run.out.extend(run.det.advance(t + 5 + window))
    assert run.terms(code)["code_not_entered"] > 0


def test_failed_code_attempts(new_run):
    def wrong_codes(n):
        run, t = with_history(new_run)
        s = run.login(t, "alice", SE, device="dev-1")
        code = run.code(t + 5, "alice", s)
        for i in range(n):
            run.verify(t + 20 + i * 10, "alice", s, success=False)
        run.flush()
        return run, code
    run, code = wrong_codes(2)
    none, none_code = wrong_codes(0)
    more, more_code = wrong_codes(3)
    assert run.terms(code)["failed_code_attempts"] > 0
    assert "failed_code_attempts" not in none.terms(none_code)
    assert score(none, none_code) < score(run, code) < score(more, more_code)


def test_no_device_id(new_run):
    run, code = attempt(new_run, device=None)
    known, known_code = attempt(new_run)
    assert "no_device_id" in run.terms(code)
    assert score(run, code) > score(known, known_code)


def test_cookieless_user_with_known_context_is_not_alerted(new_run):
    run = new_run()
    end = run.history("bob", ip=SE, device=None, ua=UA_IPHONE, trust_on=-1)
    code = run.sign_in(end + 9 * HOUR, "bob", SE, device=None, ua=UA_IPHONE, verified=False)
    run.flush()
    assert "no_device_id" in run.terms(code)
    assert not run.score(code).alerted
    stranger = run.sign_in(end + DAY + 9 * HOUR, "bob", CN, device=None, ua=UA_LINUX, verified=False)
    run.flush()
    assert score(run, stranger) > score(run, code)


def test_learning_mode_new_user_is_not_alerted_by_history_alone(new_run):
    run = new_run()
    code = run.sign_in(T0 + 9 * HOUR, "newbie", CN, device="d1", ua=UA_LINUX, verified=False)
    run.flush()
    terms = run.terms(code)
    assert "learning_mode" in terms
    assert not run.score(code).alerted
    seasoned, seasoned_code = attempt(new_run, ip=CN, device="d1", ua=UA_LINUX)
    old_terms = seasoned.terms(seasoned_code)
    assert "learning_mode" not in old_terms
    # the same unfamiliar context is weak evidence without history, strong with it
    for reason in ("new_network_and_country", "new_device"):
        assert terms[reason] < old_terms[reason]
    assert seasoned.score(seasoned_code).alerted and score(seasoned, seasoned_code) > score(run, code)


def test_private_ip_has_no_place_and_no_travel(new_run):
    run, t = with_history(new_run)
    run.sign_in(t, "alice", HOME)
    code = run.sign_in(t + 600, "alice", "10.20.30.40", device="dev-1")
    run.flush()
    far, t2 = with_history(new_run)
    far.sign_in(t2, "alice", HOME)
    far_code = far.sign_in(t2 + 600, "alice", US, device="dev-1")
    far.flush()
    terms = run.terms(code)
    assert terms["private_ip"] == 0.0 and "impossible_travel" not in terms
    assert "new_network_and_country" not in terms                     # no country: no location evidence
    assert "impossible_travel" in far.terms(far_code)
    assert score(run, code) < score(far, far_code)


def test_context_unknown(new_run):
    run, t = with_history(new_run)
    bare = run.code(t, "alice", None, purpose="password_reset")
    run.flush()
    other, t2 = with_history(new_run)
    located = other.code(t2, "alice", None, purpose="password_reset", ip=CN, user_agent=UA_LINUX,
                         device_id="dev-x")
    other.flush()
    terms = run.terms(bare)
    assert terms["context_unknown"] == 0.0
    assert not {"new_device", "no_device_id", "new_network_and_country", "unusual_hour"} & set(terms)
    assert score(run, bare) < score(other, located)


def test_reset_flow_is_flagged_but_never_password_verified(new_run):
    run, code = attempt(new_run, ip=CN, device="dev-x", purpose="password_reset")
    record = run.score(code)
    assert record.flow == "no_password" and record.alerted
    assert "force_password_reset" not in record.actions


def test_verified_code_is_judged_against_the_history_before_it(new_run):
    """Entering the code proves the context and teaches the baseline, but only after the
    code was scored: its own sign-in must not make itself look familiar."""
    run, code = attempt(new_run, ip=SE, device="dev-new-phone", ua=UA_IPHONE, verified=True)
    terms = run.terms(code)
    assert terms["new_device"] > 0 and terms["new_network_and_country"] > 0
    assert terms["code_verified"] < 0 and not run.score(code).alerted
    b = run.det.users["alice"].baseline
    # network, place and device all new: held until corroborated (issue #12, AiTM rule)
    assert b.count("net0", "AS29518") == 0
    run.sign_in(run.det.watermark + HOUR, "alice", SE, device="dev-new-phone", ua=UA_IPHONE)
    b = run.det.users["alice"].baseline
    assert b.count("net0", "AS29518") == 2 and b.device("dev-new-phone") is not None
