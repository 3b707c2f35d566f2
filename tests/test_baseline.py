"""The per-user baseline learns only from proven contexts, stays capped, and forgets old
habits (history_max_age_days)."""
from __future__ import annotations

import math

import copy

import pytest

from detector_helpers import CN, DAY, HOME, HOUR, SE, T0, UA_IPHONE, UA_LINUX, Run, config, make_detector
from straycode.detector.baseline import Baseline


def snapshot(run: Run, user: str):
    b = run.det.users[user].baseline
    return copy.deepcopy((b.proven, b.feats, b.devices, b.hours, b.last_place))


@pytest.fixture()
def run(geo_dbs):
    return Run(make_detector(geo_dbs))


def test_attacker_login_and_unentered_code_never_enter_the_baseline(run):
    t = run.history("alice", days=5)
    before = snapshot(run, "alice")
    proven_pop = dict(run.det.population.totals)
    run.sign_in(t + 3 * HOUR, "alice", CN, device="dev-x", ua=UA_LINUX, verified=False)
    run.flush()
    assert snapshot(run, "alice") == before
    assert dict(run.det.population.totals) == proven_pop       # the population did not learn it either
    b = run.det.users["alice"].baseline
    assert b.count("net0", "AS4837") == 0 and b.device("dev-x") is None


def test_failed_code_attempts_and_wrong_password_do_not_teach(run):
    t = run.history("alice", days=3)
    before = snapshot(run, "alice")
    s = run.login(t, "alice", SE, device="dev-se", ok=False)
    run.code(t + 5, "alice", s)
    run.verify(t + 20, "alice", s, success=False)
    run.flush()
    assert snapshot(run, "alice") == before


def test_verified_code_teaches_its_login_context(run):
    """A brand-new user's first proof waits for corroboration (issue #12: an entered code from
    a wholly unfamiliar context may have been relayed); a second session from the same network
    and place that proves itself corroborates it, and both are learned."""
    run.sign_in(T0, "bob", SE, device="dev-se", verified=True)
    assert run.det.users["bob"].baseline.proven == 0            # held
    run.sign_in(T0 + HOUR, "bob", SE, device="dev-se", verified=True)
    b = run.det.users["bob"].baseline
    assert b.proven == 2
    assert b.count("net0", "AS29518") == 2 and b.count("net1", "89.160.20.0/24") == 2
    assert b.count("loc0", "SE") == 2 and b.count("loc1", "SE/Linköping") == 2
    assert b.device("dev-se").count == 2 and not b.device("dev-se").trusted   # seen, not trusted
    place = b.last_place
    assert (place.lat, place.lon) == pytest.approx((58.4167, 15.6167)) and place.city == "SE/Linköping"
    assert sum(b.hours) == 2


def test_code_without_session_verified_teaches_the_requesters_context(run):
    run.code(T0, "bob", None, purpose="security_settings", ip=SE, device_id="dev-se")
    run.send("code_verified", T0 + 20, "bob", session_id=None, success=True)
    b = run.det.users["bob"].baseline
    assert b.proven == 1 and b.count("net0", "AS29518") == 1 and b.device("dev-se") is not None


def test_device_trusted_teaches_and_marks_the_device(run):
    s = run.login(T0, "bob", SE, device="dev-se")
    run.trust(T0 + 30, "bob", s, "dev-se")
    b = run.det.users["bob"].baseline
    assert b.device("dev-se").trusted and b.trusted_devices() == 1
    assert b.proven == 0                          # a brand-new user's first proof is held ...
    run.login(T0 + DAY + 60, "bob", HOME, device="dev-other")   # ... for the quiet period
    b = run.det.users["bob"].baseline
    assert b.proven == 1 and b.count("net0", "AS29518") == 1


def test_login_with_a_trusted_device_cookie_teaches_at_once(run):
    """... on a network the user proved; from elsewhere it waits for corroboration (issue
    #12, tests/test_sessions.py)."""
    t = run.history("alice", days=3, trust_on=0)              # dev-1 trusted on day 0
    proven = run.det.users["alice"].baseline.proven
    run.login(t, "alice", "81.2.70.9", device="dev-1")         # no code needed: the cookie is proof
    b = run.det.users["alice"].baseline
    assert b.proven == proven + 1 and b.count("net1", "81.2.70.0/24") == 1
    run.login(t + 30, "alice", SE, device="dev-1")             # the cookie from a new network: held
    assert run.det.users["alice"].baseline.count("net0", "AS29518") == 0
    run.login(t + HOUR, "alice", CN, device="dev-unknown")     # an unknown device proves nothing
    run.login(t + 2 * HOUR, "alice", CN, device="dev-1", ok=False)   # nor does a wrong password
    assert run.det.users["alice"].baseline.proven == proven + 1


def test_feedback_me_teaches_an_unverified_code(run):
    t = run.history("alice", days=5)
    code = run.sign_in(t, "alice", SE, device="dev-se", ua=UA_IPHONE, verified=False)
    run.flush()
    assert run.det.users["alice"].baseline.count("net0", "AS29518") == 0
    run.feedback(t + DAY, "alice", code, "me")
    b = run.det.users["alice"].baseline
    assert b.count("net0", "AS29518") == 1 and b.device("dev-se") is not None
    proven = b.proven
    run.feedback(t + DAY + 60, "alice", code, "me")           # said twice: learned once
    assert run.det.users["alice"].baseline.proven == proven


def test_feedback_not_me_teaches_nothing(run):
    t = run.history("alice", days=5)
    code = run.sign_in(t, "alice", SE, device="dev-se", verified=False)
    run.flush()
    before = snapshot(run, "alice")
    run.feedback(t + DAY, "alice", code, "not_me")
    assert snapshot(run, "alice") == before


# --------------------------------------------------------------------------- caps and ageing

CFG = {"max_values_per_feature": 4, "history_max_age_days": 30, "max_devices": 3}


def feats(i: int, device: str | None = None) -> dict:
    return {"net": (f"AS{i}", f"10.{i}.0.0/24"), "loc": ("GB", f"GB/City{i}"),
            "ua": ("Windows|desktop", "Chrome|Windows|desktop"), "dev": (device,)}


def test_values_per_feature_are_capped_keeping_the_most_used():
    b = Baseline()
    t = int(T0)
    for _ in range(5):                                       # AS0 is the habit
        b.learn(t, feats(0), 9, None, None, None, None, CFG)
    for i in range(1, 10):
        b.learn(t + i, feats(i), 9, None, None, None, None, CFG)
    for name in ("net0", "net1", "loc1"):
        assert len(b.feats[name]) == CFG["max_values_per_feature"]
    assert b.count("net0", "AS0") == 5                       # the habit survives the churn
    assert b.count("net0", "AS9") == 1                       # the newest one-off is kept over older ones
    assert b.count("net0", "AS1") == 0
    assert b.count("loc0", "GB") == 14 and b.proven == 14


def test_devices_are_capped_untrusted_evicted_first():
    b = Baseline()
    t = int(T0)
    b.touch_device("trusted-old", t, None, CFG, trusted=True)
    for i in range(5):
        b.touch_device(f"plain-{i}", t + 10 + i, None, CFG, count=True)
    assert len(b.devices) == CFG["max_devices"]
    assert "trusted-old" in b.devices                      # oldest, but trusted
    assert {"plain-3", "plain-4"} <= set(b.devices)        # the newest untrusted ones
    # when all are trusted, the stalest trusted one goes
    b2 = Baseline()
    for i in range(4):
        b2.touch_device(f"t{i}", t + i, None, CFG, trusted=True)
    assert set(b2.devices) == {"t1", "t2", "t3"}


def test_history_ages_out_after_max_age():
    b = Baseline()
    t = int(T0)
    b.learn(t, feats(1, "old-dev"), 9, 51.5, -0.1, "GB/London", None, CFG)
    b.learn(t + 20 * DAY, feats(2, "mid-dev"), 9, None, None, None, None, CFG)
    assert b.count("net0", "AS1") == 1 and b.device("old-dev") is not None
    b.learn(t + 31 * DAY, feats(3, "new-dev"), 9, None, None, None, None, CFG)
    assert b.count("net0", "AS1") == 0 and b.device("old-dev") is None
    assert b.last_place is None                             # the old place is no evidence any more
    assert b.count("net0", "AS2") == 1 and b.device("mid-dev") is not None   # 11 days old: kept
    assert b.count("loc0", "GB") == 3                       # refreshed by every learn, so kept


def test_ageing_skipped_by_the_oldest_bound_drops_what_a_full_scan_drops():
    """Baseline.age() skips its scan while nothing can be older than the horizon; a twin
    that scans on every learn (bound forced off) must hold exactly the same history."""
    import random
    rng = random.Random(11)
    fast, plain = Baseline(), Baseline()
    t = int(T0)
    for step in range(400):
        t += rng.choice([60, 3600, DAY, 5 * DAY])                 # out-of-order learns too
        when = t - rng.choice([0, 0, 0, 2 * DAY])
        f = feats(rng.randrange(12), rng.choice([None, "d1", "d2", f"d{step % 9}"]))
        place = (51.5, -0.1, "GB/London") if rng.random() < 0.3 else (None, None, None)
        trust = rng.random() < 0.05
        for b in (fast, plain):
            plain.oldest = -math.inf                               # always scan
            b.learn(when, f, when // 3600 % 24, *place, None, CFG)
            if trust:
                b.touch_device("trusted", when, None, CFG, trusted=True)
        assert fast.to_wire() == plain.to_wire(), step
        assert fast.oldest <= min([e.last_seen for table in fast.feats.values() for e in table.values()]
                                  + [e.last_seen for e in fast.devices.values()], default=math.inf)
    assert fast.proven == 400 and len(fast.feats["net0"]) <= CFG["max_values_per_feature"]


def test_detector_forgets_a_habit_older_than_the_horizon(geo_dbs):
    run = Run(make_detector(geo_dbs, history_max_age_days=30))
    t = run.history("alice", ip=SE, device="dev-se", days=5)
    b = run.det.users["alice"].baseline
    assert b.count("net0", "AS29518") == 5
    run.history("alice", ip=HOME, device="dev-home", days=3, start=t + 40 * DAY, trust_on=-1)
    b = run.det.users["alice"].baseline
    assert b.count("net0", "AS29518") == 0 and b.device("dev-se") is None
    assert b.count("net0", "AS20712") == 3


def test_default_caps_hold_for_a_busy_user(geo_dbs):
    cfg = config()
    run = Run(make_detector(geo_dbs))
    ips = [HOME, SE, CN, "216.160.83.9", "67.43.156.9", "2001:480::1", "81.2.70.9", "89.160.20.77"]
    t = T0
    for day in range(60):
        for k in range(3):
            ip = ips[(day * 3 + k) % len(ips)]
            run.sign_in(t + day * DAY + k * HOUR, "busy", ip, device=f"dev-{day}-{k}")
    run.flush()
    b = run.det.users["busy"].baseline
    assert len(b.devices) == cfg["max_devices"]
    assert all(len(table) <= cfg["max_values_per_feature"] for table in b.feats.values())
    state = run.det.users["busy"]
    assert len(state.recent) <= cfg["recent_codes_kept"] and len(state.sessions) <= 8
    assert len(state.code_times) <= 32 and len(state.seen) <= 48 and not state.pending
