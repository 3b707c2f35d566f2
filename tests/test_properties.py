"""Property tests: random junk never crashes the contract decoder (only ContractError), and
any sequence of valid events never crashes the Detector and keeps its promises (one score
per code, scores in [0, 1], no lock-out actions without a verified password)."""
from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector_helpers import CN, HOME, HOME2, SE, T0, UA_IPHONE, UA_LINUX, UA_WIN, US, VPN, config, iso
from straycode.detector.alerts import Alert, ScoreRecord
from straycode.detector.contract import (CHANNELS, PURPOSES, ContractError, decode_line,
                                         parse_event)
from straycode.detector.engine import Detector
from straycode.detector.enrich import Enricher
from straycode.detector.policy import ACTION_ORDER, GUARDED
from straycode.detector.state import NetworkState, UserState
from test_contract import VALID, documents

JUNK_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def _decode_or_contract_error(line) -> None:
    try:
        decode_line(line)
    except ContractError as exc:
        assert exc.reason and exc.detail is not None


@JUNK_SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(line):
    _decode_or_contract_error(line)


@JUNK_SETTINGS
@given(st.text(max_size=200))
def test_random_text_never_crashes_the_decoder(line):
    _decode_or_contract_error(line)


@JUNK_SETTINGS
@given(_json)
def test_random_json_never_crashes_the_decoder(value):
    _decode_or_contract_error(json.dumps(value))   # json: also ints beyond 64 bits


@JUNK_SETTINGS
@given(documents())
def test_near_valid_events_never_crash_the_decoder(doc):
    _decode_or_contract_error(orjson.dumps(doc))


@JUNK_SETTINGS
@given(st.sampled_from(sorted(VALID)), st.integers(0, 400), st.binary(min_size=1, max_size=3))
def test_corrupted_valid_lines_never_crash_the_decoder(etype, position, garbage):
    line = orjson.dumps(VALID[etype])
    position = position % (len(line) + 1)
    _decode_or_contract_error(line[:position] + garbage + line[position + len(garbage):])


# --------------------------------------------------------------------------- random event streams

USERS = ["alice", "bob", "carol"]
SESSIONS = ["s1", "s2", "s3", "s4"]
IPS = st.one_of(st.sampled_from([HOME, HOME2, SE, CN, US, VPN, "10.0.0.1", "2001:480::5", "::1",
                                 "8.8.8.8"]),
                st.ip_addresses().map(str))
MAYBE = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def event_streams(draw):
    """A list of valid contract-v1 documents: a few users, shared sessions/devices/IPs, time
    mostly moving forward with some disorder, codes with and without sessions, feedback
    naming real and unknown codes."""
    n = draw(st.integers(1, 40))
    t = T0
    docs, code_ids = [], []
    for i in range(n):
        t += draw(st.integers(-900, 3 * 3600))
        etype = draw(st.sampled_from(["login", "login", "code_issued", "code_issued", "code_verified",
                                      "device_trusted", "password_changed", "user_feedback"]))
        doc = {"event_id": f"e{i}", "type": etype, "user_id": draw(st.sampled_from(USERS)),
               "ts": iso(t)}
        common = {"ip": MAYBE(IPS), "device_id": MAYBE(st.sampled_from(["d1", "d2", "d3"])),
                  "user_agent": MAYBE(st.sampled_from([UA_WIN, UA_LINUX, UA_IPHONE, "", "curl/8"]))}
        for key, strategy in common.items():
            if draw(st.booleans()):
                doc[key] = draw(strategy)
        if draw(st.integers(0, 5)) == 0:
            doc["geo"] = draw(st.fixed_dictionaries({}, optional={
                "country": MAYBE(st.sampled_from(["DE", "FR"])), "city": MAYBE(st.sampled_from(["X"])),
                "lat": MAYBE(st.floats(-90, 90)), "lon": MAYBE(st.floats(-180, 180))}))
            doc["asn"] = draw(MAYBE(st.integers(0, 70000)))
        if etype == "login":
            doc.update(session_id=draw(st.sampled_from(SESSIONS)), password_ok=draw(st.booleans()),
                       ip=draw(IPS))
        elif etype == "code_issued":
            doc.update(session_id=draw(MAYBE(st.sampled_from(SESSIONS))),
                       channel=draw(st.sampled_from(sorted(CHANNELS))),
                       purpose=draw(st.sampled_from(sorted(PURPOSES))))
            code_ids.append(doc["event_id"])
        elif etype == "code_verified":
            doc.update(session_id=draw(MAYBE(st.sampled_from(SESSIONS))), success=draw(st.booleans()))
        elif etype == "device_trusted":
            doc.update(session_id=draw(st.sampled_from(SESSIONS)), device_id=draw(st.sampled_from(["d1", "d2"])))
        elif etype == "user_feedback":
            target = draw(st.sampled_from(code_ids)) if code_ids and draw(st.booleans()) else "unknown"
            doc.update(code_event_id=target, verdict=draw(st.sampled_from(["me", "not_me"])))
        docs.append(doc)
    if draw(st.booleans()) and docs:                 # a re-delivered event
        docs.append(dict(docs[draw(st.integers(0, len(docs) - 1))]))
    return docs


@pytest.fixture(scope="module")
def enricher(geo_dbs):
    e = Enricher(*geo_dbs)
    yield e
    e.close()


CONFIGS = [{}, {"verify_window_s": 0}, {"login_grace_s": 0, "verify_window_s": 30},
           {"learning_min_proven": 0, "alert_min_severity": "low"},
           # a policy asking for every action on every alert: only the guardrail stands in the way
           {"alert_min_severity": "low",
            "policy": {"rules": [{"name": "all", "when": {}, "actions": list(ACTION_ORDER)}]}}]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(docs=event_streams(), variant=st.sampled_from(range(len(CONFIGS))),
       advance_every=st.integers(0, 5))
def test_detector_never_crashes_and_keeps_its_promises(docs, variant, advance_every, enricher):
    det = Detector(config(**CONFIGS[variant]), enricher)
    outputs = []
    issued = set()
    for i, doc in enumerate(docs):
        event = parse_event(doc)                    # the strategy only builds valid events
        if event.type == "code_issued":
            issued.add(event.event_id)
        outputs += det.process(event)
        if advance_every and i % advance_every == 0:
            outputs += det.advance(event.t + 30)
    outputs += det.flush()
    assert det.flush() == []                         # nothing left behind

    records = [o for o in outputs if isinstance(o, ScoreRecord)]
    assert sorted(r.code_event_id for r in records) == sorted(issued)
    for r in records:
        assert 0.0 <= r.score <= 1.0 and 0.0 <= r.issue_score <= 1.0
        if not r.alerted:
            assert r.actions == []
        if set(r.actions) & GUARDED:
            assert r.flow == "password_verified"
    for a in (o for o in outputs if isinstance(o, Alert)):
        assert 0.0 <= a.score <= 1.0 and 0.0 <= a.confidence <= 1.0
        if set(a.actions) & GUARDED:
            assert a.flow == "password_verified"
        assert a.to_dict()["alert_id"] == a.alert_id
    for user_id, state in det.users.items():
        assert not state.pending
        assert UserState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()
    for state in det.networks.values():
        assert NetworkState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(docs=event_streams())
def test_same_events_same_outputs(docs, enricher):
    def run():
        det = Detector(config(), enricher)
        out = []
        for doc in docs:
            out += det.process(parse_event(doc))
        out += det.flush()
        return [o.to_dict() for o in out]
    assert run() == run()


def test_time_bounds_measure_ahead_from_the_later_of_clock_and_write_time():
    """An on-time event after a quiet gap (its topic read ahead of the partition's others)
    is not refused when the transport says it was written then; a time far beyond both is."""
    from straycode.detector.timecheck import TimeBounds

    bounds, day = TimeBounds(3 * 86400, 90 * 86400), 86400.0
    clock = 1_767_600_000.0
    assert bounds.problem(clock + 8 * day, clock) is not None                 # gap, no write time
    assert bounds.problem(clock + 8 * day, clock, clock + 8 * day) is None    # written then: on time
    assert bounds.problem(clock + 730 * day, clock, clock + 8 * day) is not None
    assert bounds.problem(clock - 91 * day, clock, clock + 8 * day) is not None  # behind: the clock
    assert bounds.problem(clock + 730 * day, 0) is None                        # no clock yet
