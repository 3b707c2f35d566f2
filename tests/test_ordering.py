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


def test_code_entry_delivered_before_its_code_counts_when_the_code_comes(geo_dbs):
    """Another producer (or a skewed clock) can put code_verified ahead of its code_issued:
    the entry is held, and the code it belongs to is decided as entered, not abandoned."""
    run = Run(make_detector(geo_dbs))
    end = run.history("alice")
    session = run.login(end, "alice", HOME)
    run.verify(end + 30, "alice", session)                     # overtook its code
    assert run.det.stats["verified_unmatched"] == 1
    code = run.code(end + 5, "alice", session)
    run.flush()
    decided = run.score(code)
    assert "code_verified" in decided.terms and "code_not_entered" not in decided.terms
    assert not decided.alerted and run.det.stats["verified_early"] == 1


def test_held_code_entry_survives_a_restart_and_expires(geo_dbs):
    """The held entry lives in the stored state (a worker restart keeps it), and only for
    the session window: an entry that old no longer marks a code as entered."""
    from straycode.detector.state import UserState

    run = Run(make_detector(geo_dbs))
    end = run.history("alice")
    session = run.login(end, "alice", HOME)
    run.verify(end + 30, "alice", session)
    stored = run.det.users["alice"].to_bytes()
    assert UserState.from_bytes(stored).early == run.det.users["alice"].early != []
    ttl = run.det.cfg["session_ttl_s"]
    other = run.login(end + ttl + 100, "alice", HOME)
    run.verify(end + ttl + 130, "alice", other)              # a second early entry...
    assert [e.session_id for e in run.det.users["alice"].early] == [other]   # ...pushed the old out
    late = run.code(end + 5, "alice", session)               # far too late for its entry
    run.flush()
    assert "code_not_entered" in run.score(late).terms


def test_code_entry_without_a_session_is_used_by_one_code_only(geo_dbs):
    run = Run(make_detector(geo_dbs, verify_window_s=60))
    end = run.history("alice")
    run.verify(end + 30, "alice", None)
    first = run.code(end + 5, "alice", None)
    second = run.code(end + 20, "alice", None)
    run.flush()
    assert "code_verified" in run.score(first).terms
    assert "code_not_entered" in run.score(second).terms
