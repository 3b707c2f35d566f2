"""The state codec reads what the previous code stored (tests/data/state_v3.json, written by
tests/data/make_state_fixtures.py before the typed records): every field lands in the
right named record, and writing it again loses nothing."""
from __future__ import annotations

import base64

import json
from pathlib import Path

import orjson
import pytest

from straycode.detector.alerts import ScoreRecord
from straycode.detector.baseline import DeviceEntry, FeatureEntry, Place
from straycode.detector.engine import Detector
from straycode.detector.enrich import Context
from straycode.detector.state import (USER_STATE_VERSION, DecidedCode, HeldEntry, NetworkState,
                                      PendingCode, Session, SessionState, UserState)
from straycode.settings import detector_settings, load_settings

FIXTURES = json.loads((Path(__file__).parent / "data" / "state_v3.json").read_text())
USERS_V3 = FIXTURES["users_v3"]
NAMED = FIXTURES["named"]


def context_fields(ctx: Context | None) -> dict | None:
    if ctx is None:
        return None
    return {name: getattr(ctx, name) for name in (
        "ip", "prefix", "network", "asn", "as_org", "country", "city", "lat", "lon", "private",
        "device_id", "user_agent", "browser", "os")}


def assert_reads_as_named(state: UserState, named: dict) -> None:
    """Compare every decoded record with the view written from the old positions."""
    base, nb = state.baseline, named["baseline"]
    assert base.hours == nb["hours"] and base.proven == nb["proven"]
    assert base.pw_changed == nb["pw_changed"]
    assert base.feats == {name: {v: FeatureEntry(e["count"], e["last_seen"]) for v, e in table.items()}
                          for name, table in nb["feats"].items()}
    assert base.devices == {d: DeviceEntry(first_seen=e["first_seen"], last_seen=e["last_seen"],
                                           count=e["count"], trusted=bool(e["trusted"]),
                                           browser=e["browser"])
                            for d, e in nb["devices"].items()}
    place = nb["last_place"]
    assert base.last_place == (None if place is None else
                               Place(place["t"], place["lat"], place["lon"], place["city"]))
    assert set(state.sessions) == set(named["sessions"])
    for sid, s in named["sessions"].items():
        got = state.sessions[sid]
        assert isinstance(got, Session)
        assert (got.t, got.password_ok, context_fields(got.ctx)) == (s["t"], s["password_ok"], s["ctx"])
        assert got.state is {0: SessionState.LOGGED_IN, 1: SessionState.LEARNED,
                             -1: SessionState.AWAITING_LOGIN}[s["learned"]]
    assert set(state.pending) == set(named["pending"])
    for cid, p in named["pending"].items():
        got = state.pending[cid]
        assert isinstance(got, PendingCode)
        assert (got.id, got.t, got.ts, got.session_id, got.channel, got.purpose, got.deadline,
                got.failed) == (p["id"], p["t"], p["ts"], p["session_id"], p["channel"],
                                p["purpose"], p["deadline"], p["failed"])
        assert got.verified is bool(p["verified"]) and context_fields(got.ctx) == p["ctx"]
    assert len(state.recent) == len(named["recent"])
    for got, r in zip(state.recent, named["recent"]):
        assert isinstance(got, DecidedCode)
        assert (got.id, got.t, got.score, got.flow, got.purpose, got.channel, got.reasons,
                got.status) == (r["id"], r["t"], r["score"], r["flow"], r["purpose"],
                                r["channel"], r["reasons"], r["status"])
        assert got.revisions == r["alerted"] and context_fields(got.ctx) == r["ctx"]
        assert got.issue_score is None            # version 3 kept the severity instead
    assert state.early == [HeldEntry(e["t"], e["session_id"], e["success"]) for e in named["early"]]
    assert state.code_times == named["code_times"]


def test_fixtures_cover_every_kind_of_record():
    """Guards the fixture file itself: the kinds of record the codec must read occur in it."""
    named = list(NAMED.values())
    assert any(p["verified"] for n in named for p in n["pending"].values())
    assert {s["learned"] for n in named for s in n["sessions"].values()} == {-1, 0, 1}
    assert {r["status"] for n in named for r in n["recent"]} == {"open", "escalated", "benign"}
    assert any(r["ctx"] is None for n in named for r in n["recent"])
    assert any(n["early"] for n in named)
    assert any(d["trusted"] for n in named for d in n["baseline"]["devices"].values())
    assert FIXTURES["users_v2"] and FIXTURES["networks_v1"]


@pytest.mark.parametrize("key", sorted(USERS_V3))
def test_version_3_state_reads_into_named_records(key):
    state = UserState.from_bytes(USERS_V3[key].encode())
    assert_reads_as_named(state, NAMED[key])


@pytest.mark.parametrize("key", sorted(USERS_V3))
def test_version_3_state_is_written_again_without_loss(key):
    stored = orjson.loads(USERS_V3[key])
    state = UserState.from_bytes(USERS_V3[key].encode())
    again = orjson.loads(state.to_bytes())
    # the current version writes the same lists, except that a decided code's severity
    # (never read) gave its place to the issue score, unknown for codes decided before
    expected = [USER_STATE_VERSION, *stored[1:]]
    expected[4] = [record[:3] + [None] + record[4:] for record in stored[4]]
    # ... and the event ids it remembers have no known content digest (written as 0, and
    # listed as unknown), so a repeat of one stays a plain duplicate
    seen = len(base64.b64decode(stored[6])) // 4
    expected += [base64.b64encode(bytes(4 * seen)).decode(), list(range(seen))]
    assert again == expected
    reread = UserState.from_bytes(state.to_bytes())
    for slot in UserState.__slots__:
        if slot != "baseline":
            assert getattr(reread, slot) == getattr(state, slot), slot
    assert reread.baseline.to_wire() == state.baseline.to_wire()
    assert reread.to_bytes() == state.to_bytes()


@pytest.mark.parametrize("key", sorted(FIXTURES["users_v2"]))
def test_version_2_state_reads_like_version_3(key):
    v2 = UserState.from_bytes(FIXTURES["users_v2"][key].encode())
    assert v2.early == []
    assert_reads_as_named(v2, NAMED[key])
    assert v2.to_bytes() == UserState.from_bytes(USERS_V3[key].encode()).to_bytes()


@pytest.mark.parametrize("key", sorted(FIXTURES["networks_v1"]))
def test_network_state_version_1_round_trips_byte_for_byte(key):
    raw = FIXTURES["networks_v1"][key].encode()
    assert NetworkState.from_bytes(raw).to_bytes() == raw


def test_pending_codes_of_a_version_3_state_are_decided_after_a_restart():
    cfg = detector_settings(load_settings(env={}))
    det = Detector(cfg)
    waiting = {}
    for user_id, raw in USERS_V3.items():              # one stored user per snapshot
        state = UserState.from_bytes(raw.encode())
        det.users[user_id] = state
        det.rebuild_index(user_id, state)
        waiting.update({code_id: user_id for code_id in state.pending})
    assert waiting
    decided = {out.code_event_id: out.user_id for out in det.flush() if isinstance(out, ScoreRecord)}
    assert decided == waiting


def test_context_codec_refuses_another_layout():
    ctx = Context(ip="81.2.69.10", network="AS1", user_agent="x" * 200)
    assert Context.from_wire(ctx.to_wire()) == ctx.stored()
    assert len(ctx.stored().user_agent) == 160
    with pytest.raises(ValueError, match="fields"):
        Context.from_wire(ctx.to_wire()[:-1])
