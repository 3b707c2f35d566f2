"""Who an alert and an event are: alert ids are per (user, code event), revisions count in
stored state, and an event id repeated with other content is refused before anything moves
(the contract for replay and the worker: process() raises ContractError, the caller
dead-letters it with exc.reason)."""
from __future__ import annotations

import copy

import pytest

from detector_helpers import CN, DAY, HOME, SE, T0, UA_LINUX, Run, iso, make_detector
from straycode.detector.alerts import ScoreRecord, alert_id_for
from straycode.detector.contract import ContractError, parse_event
from straycode.detector.state import NetworkState, UserState
from test_state import BytesTable


def attacked(run: Run, user: str, code_id: str, t: float) -> None:
    """A week of proven history, then a correct password from abroad and a code never entered."""
    run.history(user, ip=HOME if user == "alice" else SE, days=7, start=T0, device=f"{user}-dev")
    session = run.login(t, user, CN, device="evil", ua=UA_LINUX)
    run.code(t + 5, user, session, code_id=code_id)


# --------------------------------------------------------------------------- alert ids

def test_alert_id_is_per_user_and_code_event():
    assert alert_id_for("alice", "c-1") != alert_id_for("bob", "c-1")
    assert alert_id_for("alice", "c-1") == alert_id_for("alice", "c-1")
    assert alert_id_for("a:b", "c") != alert_id_for("a", "b:c")      # no ambiguous joins
    assert alert_id_for("alice", "c-1").startswith("sc-") and len(alert_id_for("a", "b")) == 19


def test_one_code_event_id_for_two_users_gives_two_alerts(geo_dbs):
    """Two tenants number their events alike: alice's and bob's code are both 'c-1'. Both
    are scored (dedup is per user) and alerted under distinct ids."""
    run = Run(make_detector(geo_dbs))
    t = T0 + 7 * DAY + 9 * 3600
    attacked(run, "alice", "c-1", t)
    attacked(run, "bob", "c-1", t + 60)
    run.flush()
    scored = [r for r in run.scores() if r.code_event_id == "c-1"]
    assert sorted(r.user_id for r in scored) == ["alice", "bob"]
    alerts = run.alerts("c-1")
    assert sorted(a.user_id for a in alerts) == ["alice", "bob"]
    assert len({a.alert_id for a in alerts}) == 2
    assert run.det.stats["duplicates"] == 0


# --------------------------------------------------------------------------- revisions

def test_revisions_count_in_stored_state(geo_dbs):
    """created = 1, then +1 per update, also when the state went through its byte codec
    between the updates (a worker restart): the revision comes from the state, not memory."""
    det = make_detector(geo_dbs)
    det.users, det.networks = BytesTable(UserState), BytesTable(NetworkState)
    run = Run(det)
    t = T0 + 7 * DAY + 9 * 3600
    attacked(run, "alice", "atk", t)
    run.flush()
    run.feedback(t + 3600, "alice", "atk", "not_me")
    run.feedback(t + 7200, "alice", "atk", "me")
    alerts = run.alerts("atk")
    assert [(a.kind, a.status, a.revision) for a in alerts] == [
        ("created", "open", 1), ("updated", "escalated", 2), ("updated", "benign", 3)]
    assert len({a.alert_id for a in alerts}) == 1
    assert [a.to_dict()["revision"] for a in alerts] == [1, 2, 3]


def test_feedback_alerting_an_unalerted_code_creates_revision_one(geo_dbs):
    run = Run(make_detector(geo_dbs))
    t = run.history("alice", days=7, device="alice-dev")
    code = run.sign_in(t + 9 * 3600, "alice", HOME, device="alice-dev")
    run.flush()
    assert not run.alerts(code)
    run.feedback(t + 10 * 3600, "alice", code, "not_me")
    (alert,) = run.alerts(code)
    assert (alert.kind, alert.revision, alert.status) == ("created", 1, "escalated")


# --------------------------------------------------------------------------- duplicates

def snapshot(det) -> tuple:
    users = {k: v.to_bytes() for k, v in det.users.items()}
    networks = {k: v.to_bytes() for k, v in det.networks.items()}
    return users, networks, det.watermark, dict(det.stats), sorted(det._heap)


def test_conflicting_duplicate_is_refused_before_any_change(geo_dbs):
    """A repeated event id with other content raises ContractError('conflicting_duplicate')
    and leaves state, clock, stats and timers as they were, even when its time would have
    decided a waiting code."""
    det = make_detector(geo_dbs)
    run = Run(det)
    t = T0 + 9 * 3600
    run.send("login", t, "alice", event_id="L1", session_id="s1", password_ok=True, ip=HOME,
             device_id="d1")
    run.send("code_issued", t + 5, "alice", event_id="C1", session_id="s1", channel="sms",
             purpose="login")
    assert det.users["alice"].pending                     # waits for its entry (300 s)
    before = snapshot(det)
    conflicting = parse_event({"event_id": "L1", "type": "login", "ts": iso(t + 900),
                               "user_id": "alice", "session_id": "s2", "password_ok": True,
                               "ip": CN})
    with pytest.raises(ContractError) as info:
        det.process(conflicting)
    assert info.value.reason == "conflicting_duplicate" and "L1" in info.value.detail
    assert snapshot(det) == before
    assert not [o for o in run.out if isinstance(o, ScoreRecord)]
    # the stream goes on as if the conflicting event had never come
    run.send("code_verified", t + 40, "alice", session_id="s1", success=True)
    assert [r.code_event_id for r in run.scores()] == ["C1"]


@pytest.mark.parametrize("rewrite", [
    lambda doc: dict(doc),                                              # redelivery
    lambda doc: dict(reversed(list(doc.items()))),                      # key order
    lambda doc: dict(doc, ts=doc["ts"].replace("Z", "+00:00")),         # another offset
    lambda doc: dict(doc, ts="2026-01-05T10:00:00+01:00"),              # ... same instant
    lambda doc: dict(doc, delivery_attempt=3),                          # an ignored extra field
], ids=["same", "key-order", "offset", "local-time", "extra-field"])
def test_the_same_event_again_is_a_plain_duplicate(geo_dbs, rewrite):
    det = make_detector(geo_dbs)
    doc = {"event_id": "L1", "type": "login", "ts": "2026-01-05T09:00:00Z", "user_id": "alice",
           "session_id": "s1", "password_ok": True, "ip": HOME, "device_id": "d1",
           "geo": {"country": "GB", "city": "London", "lat": 51.5, "lon": -0.1}}
    det.process(parse_event(doc))
    state = det.users["alice"].to_bytes()
    assert det.process(parse_event(rewrite(copy.deepcopy(doc)))) == []
    assert det.stats["duplicates"] == 1 and det.users["alice"].to_bytes() == state
    with pytest.raises(ContractError, match="conflicting_duplicate"):   # ... but not another
        det.process(parse_event(rewrite(dict(doc, session_id="s2"))))


@pytest.mark.parametrize("change", [
    {"ts": "2026-01-05T09:00:01Z"}, {"password_ok": False}, {"ip": CN}, {"device_id": "d2"},
    {"geo": {"country": "GB", "city": "Leeds", "lat": 51.5, "lon": -0.1}}, {"type": "code_verified",
                                                                             "success": True},
], ids=lambda c: ",".join(c))
def test_any_change_of_what_the_detector_reads_conflicts(geo_dbs, change):
    det = make_detector(geo_dbs)
    doc = {"event_id": "L1", "type": "login", "ts": "2026-01-05T09:00:00Z", "user_id": "alice",
           "session_id": "s1", "password_ok": True, "ip": HOME, "device_id": "d1",
           "geo": {"country": "GB", "city": "London", "lat": 51.5, "lon": -0.1}}
    det.process(parse_event(doc))
    with pytest.raises(ContractError, match="conflicting_duplicate"):
        det.process(parse_event(dict(doc, **change)))


def test_conflict_is_judged_per_user(geo_dbs):
    """The same id with other content for another user is that user's own event; each
    user's repeat is judged against that user's own content."""
    det = make_detector(geo_dbs)
    base = {"event_id": "L1", "type": "login", "ts": "2026-01-05T09:00:00Z",
            "session_id": "s1", "password_ok": True}
    det.process(parse_event(dict(base, user_id="alice", ip=HOME)))
    det.process(parse_event(dict(base, user_id="bob", ip=CN)))
    assert set(det.users) == {"alice", "bob"} and det.stats["duplicates"] == 0
    det.process(parse_event(dict(base, user_id="bob", ip=CN)))
    assert det.stats["duplicates"] == 1
    with pytest.raises(ContractError, match="conflicting_duplicate"):
        det.process(parse_event(dict(base, user_id="bob", ip=HOME)))
