"""Per-key state: UserState / NetworkState survive their byte codecs without changing what
the detector decides, and repeated event ids are ignored."""
from __future__ import annotations

import copy
from collections.abc import MutableMapping

import pytest

from detector_helpers import (CN, DAY, HOME, HOME2, HOUR, SE, T0, UA_IPHONE, UA_LINUX, VPN, Run,
                              make_detector)
from straycode.detector.engine import Detector
from straycode.detector.state import UNKNOWN_DIGEST, NetworkState, UserState


class BytesTable(MutableMapping):
    """Holds values only as bytes, like a Faust table with a changelog: every read decodes."""

    def __init__(self, cls):
        self.cls, self.data = cls, {}

    def __getitem__(self, key):
        return self.cls.from_bytes(self.data[key])

    def __setitem__(self, key, value):
        self.data[key] = value.to_bytes()

    def __delitem__(self, key):
        del self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


def scenario(run: Run, t0: float = T0) -> None:
    """History for three users, then attacks, a stuffing wave, odd-but-legit cases, feedback."""
    for user, ip in (("alice", HOME), ("bob", SE), ("carol", HOME2)):
        run.history(user, ip=ip, days=6, start=t0, device=f"{user}-dev")
    t = t0 + 6 * DAY
    atk = run.sign_in(t + 2 * HOUR, "alice", CN, device="evil", ua=UA_LINUX, verified=False)
    for i, user in enumerate(("alice", "bob", "carol", "dave", "erin")):
        s = run.login(t + 3 * HOUR + i * 30, user, VPN, ok=i % 2 == 0, device=None, ua=UA_LINUX)
        if i % 2 == 0:
            run.code(t + 3 * HOUR + i * 30 + 2, user, s)
    run.sign_in(t + 9 * HOUR, "bob", SE, device="bob-phone", ua=UA_IPHONE)            # new phone
    run.sign_in(t + 10 * HOUR, "carol", HOME, device="carol-dev")                      # same ISP
    early = run.code(t + 11 * HOUR, "carol", "late-session")
    run.login(t + 11 * HOUR + 20, "carol", HOME2, session="late-session", device="carol-dev")
    run.verify(t + 11 * HOUR + 40, "carol", "late-session")
    run.code(t + 12 * HOUR, "alice", None, purpose="password_reset", ip=VPN)
    run.feedback(t + 13 * HOUR, "alice", atk, "not_me")
    run.feedback(t + 13 * HOUR, "carol", early, "me")
    run.flush()


def outputs(run: Run) -> list[dict]:
    return [o.to_dict() for o in run.out]


def test_detector_on_byte_tables_decides_exactly_like_on_dicts(geo_dbs):
    plain = Run(make_detector(geo_dbs))
    scenario(plain)
    encoded_det = make_detector(geo_dbs)
    encoded_det.users, encoded_det.networks = BytesTable(UserState), BytesTable(NetworkState)
    encoded = Run(encoded_det)
    scenario(encoded)
    assert len(plain.alerts()) >= 2
    assert outputs(encoded) == outputs(plain)
    assert set(encoded_det.users) == set(plain.det.users)
    for user in plain.det.users:
        assert encoded_det.users.data[user] == plain.det.users[user].to_bytes()


SPLIT = 59          # history (57 events), then the attacker's login and code: one code pending


def test_continuing_from_decoded_state_gives_the_same_outputs(geo_dbs):
    whole = Run(make_detector(geo_dbs))
    scenario(whole)
    first = Run(make_detector(geo_dbs))
    # stop in the middle of the scenario, with codes still pending
    events_before = 0
    original_process = first.det.process

    class Stop(Exception):
        pass

    def counting(event):
        nonlocal events_before
        if events_before == SPLIT:
            raise Stop
        events_before += 1
        return original_process(event)
    first.det.process = counting
    with pytest.raises(Stop):
        scenario(first)
    pending = sum(len(s.pending) for s in first.det.users.values())
    assert pending >= 1, "the split should fall while codes wait for their outcome"
    users = {k: UserState.from_bytes(v.to_bytes()) for k, v in first.det.users.items()}
    networks = {k: NetworkState.from_bytes(v.to_bytes()) for k, v in first.det.networks.items()}
    second_det = Detector(first.det.cfg, make_detector(geo_dbs).enricher, users=users,
                          networks=networks, population=copy.deepcopy(first.det.population))
    for user_id, state in users.items():
        second_det.rebuild_index(user_id, state)
    second = Run(second_det)
    # replay the whole scenario: the first SPLIT events are duplicates of what the state has seen
    scenario(second)
    assert second_det.stats["duplicates"] == SPLIT
    assert outputs(first) + outputs(second) == outputs(whole)


def test_user_state_round_trip_keeps_every_field(geo_dbs):
    run = Run(make_detector(geo_dbs))
    scenario(run)
    for state in run.det.users.values():
        again = UserState.from_bytes(state.to_bytes())
        for slot in UserState.__slots__:
            if slot != "baseline":
                assert getattr(again, slot) == getattr(state, slot), slot
        assert again.baseline.to_wire() == state.baseline.to_wire()
        assert again.to_bytes() == state.to_bytes()


def test_user_states_stored_by_earlier_versions_still_read(geo_dbs):
    """Changelogs written by earlier versions recover: 2 (without held code entries) and 3
    (event ids without content digests: a repeat of one of those is a plain duplicate)."""
    import dataclasses

    import orjson

    run = Run(make_detector(geo_dbs))
    scenario(run)
    for state in run.det.users.values():
        version, *fields, early, digests, unknown = orjson.loads(state.to_bytes())
        assert (version, early, unknown) == (5, state.early, [])
        for old_version, old_fields in ((2, fields), (3, [*fields, early])):
            old = UserState.from_bytes(orjson.dumps([old_version, *old_fields]))
            assert old.early == ([] if old_version == 2 else state.early)
            assert old.pending == state.pending
            # up to version 3 the issue score's slot held the severity: not read back
            assert old.recent == [dataclasses.replace(r, issue_score=None) for r in state.recent]
            assert old.baseline.to_wire() == state.baseline.to_wire()
            assert list(old.seen) == list(state.seen)
            assert set(old.seen.values()) == {UNKNOWN_DIGEST}
            again = UserState.from_bytes(old.to_bytes())           # stored anew as version 4
            assert again.seen == old.seen


def test_event_ids_from_a_version_3_state_stay_plain_duplicates(geo_dbs):
    """An id remembered without its content (version 3) cannot be judged: its repeat is a
    duplicate whatever it holds, as before; ids seen after the upgrade are judged."""
    import orjson

    from straycode.detector.contract import ContractError, parse_event

    det = make_detector(geo_dbs)
    doc = {"event_id": "e1", "type": "login", "ts": "2026-01-05T09:00:00Z", "user_id": "alice",
           "session_id": "s1", "password_ok": True, "ip": HOME}
    det.process(parse_event(doc))
    version, *fields, early, _digests, _unknown = orjson.loads(det.users["alice"].to_bytes())
    det.users["alice"] = UserState.from_bytes(orjson.dumps([3, *fields, early]))
    assert det.process(parse_event(dict(doc, password_ok=False))) == []
    assert det.stats["duplicates"] == 1
    det.process(parse_event(dict(doc, event_id="e2", ts="2026-01-05T09:01:00Z")))
    with pytest.raises(ContractError) as info:
        det.process(parse_event(dict(doc, event_id="e2", ts="2026-01-05T09:01:00Z", ip=CN)))
    assert info.value.reason == "conflicting_duplicate"


def test_network_state_round_trip_and_decay():
    net = NetworkState()
    t = int(T0)
    for i in range(5):
        net.observe(f"u{i}", t + i, 3600, login_ok=i % 2 == 0, code=True)
    net.outcome(t + 10, verified=False)
    again = NetworkState.from_bytes(net.to_bytes())
    assert again.distinct_users(t + 10, 3600) == net.distinct_users(t + 10, 3600) == 5
    assert again.failure_ratio() == pytest.approx(net.failure_ratio(), abs=1e-3)
    ratio = again.failure_ratio()
    assert ratio == pytest.approx((2 + 1) / (5 + 1), abs=1e-3)
    again.observe("late", t + 2 * 86400, 3600, login_ok=True)    # two days later: history faded
    assert again.distinct_users(t + 2 * 86400, 3600) == 1
    assert again.logins < 1.1 and again.failure_ratio() is None or again.failure_ratio() < ratio


def test_network_users_are_capped():
    net = NetworkState()
    for i in range(500):
        net.observe(f"user{i}", int(T0) + i, 3600)
    assert len(net.users) <= 96 and net.distinct_users(int(T0) + 500, 3600) == len(net.users)


@pytest.mark.parametrize("version_blob", [b'[99, 0, 0, 0, 0, 0, 0, []]'])
def test_unknown_state_version_is_refused(version_blob):
    with pytest.raises(ValueError, match="version"):
        NetworkState.from_bytes(version_blob)
    with pytest.raises(ValueError, match="version"):
        UserState.from_bytes(b'[99, [], {}, {}, [], [], ""]')


# --------------------------------------------------------------------------- dedup

def test_repeated_event_ids_are_ignored(geo_dbs):
    run = Run(make_detector(geo_dbs))
    t = run.history("alice", days=4)
    s = run.login(t, "alice", CN, device="evil", ua=UA_LINUX, event_id="L1")
    for _ in range(3):
        run.send("code_issued", t + 5, "alice", event_id="C1", session_id=s, channel="sms",
                 purpose="login")
    run.send("login", t, "alice", event_id="L1", session_id=s, password_ok=True, ip=CN,
             device_id="evil", user_agent=UA_LINUX)     # the same login, delivered again
    run.flush()
    assert len([r for r in run.scores() if r.code_event_id == "C1"]) == 1
    assert run.det.stats["duplicates"] == 3
    assert run.det.users["alice"].code_times.count(int(t + 5)) == 1   # not counted as bombing


def test_duplicate_verification_does_not_learn_twice(geo_dbs):
    run = Run(make_detector(geo_dbs))
    run.sign_in(T0 - 3600, "bob", SE, device="d")      # held: bob's first proof ...
    s = run.login(T0, "bob", SE, device="d")
    run.code(T0 + 5, "bob", s)
    for _ in range(2):
        run.send("code_verified", T0 + 30, "bob", event_id="V1", session_id=s, success=True)
    assert run.det.users["bob"].baseline.proven == 2  # ... corroborated by this one, once
    assert run.det.stats["duplicates"] == 1


def test_same_event_id_for_different_users_is_not_a_duplicate(geo_dbs):
    run = Run(make_detector(geo_dbs))
    for user in ("a", "b"):
        run.send("login", T0, user, event_id="shared", session_id="s", password_ok=True, ip=HOME)
    assert run.det.stats["duplicates"] == 0 and set(run.det.users) == {"a", "b"}


def test_sessions_with_pending_codes_survive_a_login_burst():
    """Code bombing: 12 logins each followed by a code; none may lose its login."""
    from straycode.detector.state import MAX_SESSIONS, PendingCode, UserState
    state = UserState()
    for i in range(MAX_SESSIONS + 4):
        state.add_session(f"s{i}", 100 + i, True, None, ttl=3600)   # login first, then its code
        assert f"s{i}" in state.sessions
        state.pending[f"c{i}"] = PendingCode(id=f"c{i}", t=100 + i, ts="ts", session_id=f"s{i}",
                                             channel="sms", purpose="login", ctx=None,
                                             deadline=400 + i)
    assert {p.session_id for p in state.pending.values()} <= set(state.sessions)
    state.pending.clear()
    state.add_session("later", 200, True, None, ttl=3600)
    assert len(state.sessions) <= MAX_SESSIONS
