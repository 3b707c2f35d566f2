"""Event-time ordering: decisions use only the history before them, late codes get grace."""
from __future__ import annotations

from detector_helpers import HOME, HOUR, UA_LINUX, Run, make_detector

ATTACKER_IP = "175.16.199.7"


def test_window_closes_before_a_later_event_can_teach_the_baseline(geo_dbs):
    """A code from a new device is decided before that device's later trusted sign-in is learned."""
    run = Run(make_detector(geo_dbs))
    end = run.history("alice")
    session = run.login(end, "alice", ATTACKER_IP, device="dev-new", ua=UA_LINUX)
    code = run.code(end + 5, "alice", session)
    # an hour later (window long closed) the session's device gets registered as trusted:
    # that teaches the baseline, and must not reach back into the closed decision
    run.trust(end + HOUR, "alice", session, "dev-new")
    run.flush()
    decided = run.score(code)
    assert decided.alerted, "the new-device code must be judged on the history before it"
    assert "new_device" in decided.terms


def test_late_code_gets_grace_for_its_verification(geo_dbs):
    """A code delivered after its window already closed is not judged 'not entered' at once."""
    run = Run(make_detector(geo_dbs, verify_window_s=60, login_grace_s=30))
    end = run.history("alice")
    session = run.login(end, "alice", HOME)
    run.send("login", end + 500, "bob", session_id="b1", password_ok=True, ip=HOME)  # watermark moves on
    late = run.code(end + 5, "alice", session)                                        # arrives late
    assert all(getattr(o, "code_event_id", None) != late for o in run.out)
    run.verify(end + 40, "alice", session)                                            # its verification
    run.flush()
    decided = run.score(late)
    assert "code_verified" in decided.terms and "code_not_entered" not in decided.terms
    assert run.det.stats["late_codes"] == 1


def test_late_code_without_verification_is_decided_after_grace(geo_dbs):
    run = Run(make_detector(geo_dbs, verify_window_s=60, login_grace_s=30))
    end = run.history("alice")
    session = run.login(end, "alice", HOME)
    run.send("login", end + 500, "bob", session_id="b1", password_ok=True, ip=HOME)
    late = run.code(end + 5, "alice", session)
    run.send("login", end + 531, "bob", session_id="b2", password_ok=True, ip=HOME)   # grace passed
    assert "code_not_entered" in run.score(late).terms


def test_verification_delivered_before_its_login_is_still_learned(geo_dbs):
    """Separate topics: code_verified can overtake its login; the sign-in is still proven."""
    run = Run(make_detector(geo_dbs))
    end = run.history("alice", days=4)
    before = run.det.users["alice"].baseline.proven
    run.verify(end + 35, "alice", "late-login")
    assert run.det.users["alice"].baseline.proven == before
    run.login(end, "alice", HOME, session="late-login")
    assert run.det.users["alice"].baseline.proven == before + 1
