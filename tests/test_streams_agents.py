"""The Faust agents without a broker (harness: tests/streams_harness.py)."""
from __future__ import annotations

import asyncio
import time

import orjson

from straycode.detector.alerts import Alert, ScoreRecord
from straycode.detector.contract import parse_event
from straycode.detector.ocsf import render_alert
from straycode.detector.state import NetworkState, short_hash
from straycode.streams.topics import expected_partition
from straycode.streams.tables import apply_ops
from streams_events import DAY, T0, iso, user_stream
from streams_harness import PARTITIONS, Harness, detector_outputs, stored_user, user_on


# --------------------------------------------------------------------------- network agent
def test_count_networks_folds_ops_and_dead_letters_malformed(tmp_path, geo_dbs):
    h = Harness(tmp_path, geo_dbs)
    window = 3600
    ops = {"ip:81.2.69.10": [["o", "alice", int(T0), window, True, False],
                             ["o", "bob", int(T0) + 5, window, None, True],
                             ["v", int(T0) + 9, False]],
           "net:AS4837": [["o", "carol", int(T0) + 1, window, False, True]]}
    more = {"ip:81.2.69.10": [["o", "dave", int(T0) + 20, window, True, True],
                              ["v", int(T0) + 21, True]]}

    async def run():
        agent_ = h.pipe.network_agent
        async with agent_.test_context() as agent:
            view = h.pipe.networks.view
            await h.put(agent, h.topic["network_ops"], orjson.dumps(ops), None, 1)
            await h.until(agent, lambda: len(view) == 2, "two network keys in the view")
            first = {k: view[k] for k in (b"ip:81.2.69.10", b"net:AS4837")}
            await h.put(agent, h.topic["network_ops"], b"{not json", None, 2)
            await h.put(agent, h.topic["network_ops"], orjson.dumps([["o", "x", 1, 60]]), None, 2)
            await h.until(agent, lambda: len(h.sent["dead_letters"]) == 2, "two dead letters")
            await h.put(agent, h.topic["network_ops"], orjson.dumps(more), None, 1)
            await h.until(agent, lambda: view[b"ip:81.2.69.10"] != first[b"ip:81.2.69.10"],
                          "the later message applied")
            return first, {k: view[k] for k in (b"ip:81.2.69.10", b"net:AS4837")}

    first, final = asyncio.run(run())
    for key, key_ops in ops.items():
        assert first[key.encode()] == apply_ops(NetworkState(), key_ops).to_bytes()
    # the later message is folded onto the stored state, not onto an empty one
    both = ops["ip:81.2.69.10"] + more["ip:81.2.69.10"]
    assert final[b"ip:81.2.69.10"] == apply_ops(NetworkState(), both).to_bytes()
    assert NetworkState.from_bytes(final[b"ip:81.2.69.10"]).distinct_users(int(T0) + 21, window) == 3
    assert final[b"net:AS4837"] == first[b"net:AS4837"]
    dead = h.dead_letters()
    assert [d["reason"] for d in dead] == ["malformed_network_ops"] * 2
    assert [(d["source"]["topic"], d["source"]["partition"], d["source"]["offset"])
            for d in dead] == [(h.topic["network_ops"], 2, 0), (h.topic["network_ops"], 2, 1)]
    assert dead[0]["excerpt"] == "{not json" and "expected an object" in dead[1]["detail"]
    assert h.sent["alerts"] == [] and h.sent["network_ops"] == []


# --------------------------------------------------------------------------- user agent
def test_score_users_alerts_like_the_detector_and_waits_for_a_lagging_topic(tmp_path, geo_dbs):
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    user = user_on(2)
    p = expected_partition(user.encode(), PARTITIONS)
    history = user_stream(user, 3, days=6, attacked=True)       # ends with evil login + code
    closing = {"event_id": f"{user}-fb", "type": "user_feedback", "ts": iso(T0 + 8 * DAY),
               "user_id": user, "code_event_id": "none", "verdict": "me"}
    expected = detector_outputs(h, history + [closing])
    expected_alerts = [o for o in expected if isinstance(o, Alert)]
    assert [a.code_event_id for a in expected_alerts] == [f"{user}-evil-code"]   # sound stream

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            for e in history:
                await h.put_event(agent, e)
                await h.handled_all(agent, h.handled + 1)
            # a login was written but not yet read: the logins partition holds the clock
            h.unread[(h.topic["logins"], p)] = 1
            await h.put_event(agent, closing)
            await h.handled_all(agent, len(history) + 1)
            held = (list(h.sent["alerts"]), h.pipe.clock.watermark(p),
                    h.pipe.scoring.detectors[p].watermark)
            h.unread[(h.topic["logins"], p)] = 0          # caught up: the timer's tick wakes p
            await h.tick(agent, p)
            await h.handled_all(agent, len(history) + 2)
            return held

    held_alerts, held_clock, held_watermark = asyncio.run(run())
    evil_login, evil_code = (parse_event(e) for e in history[-2:])
    # held at the lagging logins partition's last event time: the detector's clock did not
    # jump to the closing event's time, so the evil code was not decided
    assert held_alerts == [] and held_clock == evil_login.t
    assert held_watermark == evil_code.t < parse_event(closing).t
    # then the same alert, byte for byte, as the batch detector's
    assert h.sent["alerts"] == [
        (user.encode(), orjson.dumps(render_alert(a.to_dict(), "native")), None)
        for a in expected_alerts]
    scores = [orjson.loads(v) for _k, v, _p in h.sent["scores"]]
    assert sorted(s["code_event_id"] for s in scores) == sorted(
        o.code_event_id for o in expected if isinstance(o, ScoreRecord))
    assert h.pipe.scoring.detectors[p].stats["alerts"] == 1
    assert set(h.pipe.scoring.detectors) == {p}
    raw, part, state = stored_user(h, user)
    assert raw.startswith(b"%d:" % p) and part == p
    assert state.pending == {}                          # every code decided and written
    assert short_hash(closing["event_id"]) in state.seen
    # the network counts went out as operations (to the network agent), keyed by partition
    shipped = [orjson.loads(v) for _k, v, _p in h.sent["network_ops"]]
    assert shipped and all(
        expected_partition(key.encode(), PARTITIONS) == part_
        for batch, (_k, _v, part_) in zip(shipped, h.sent["network_ops"]) for key in batch)
    assert h.sent["dead_letters"] == [] and h.sent["events"] == []


def test_score_users_rekeys_and_dead_letters(tmp_path, geo_dbs):
    h = Harness(tmp_path, geo_dbs)
    user = user_on(1)
    right = expected_partition(user.encode(), PARTITIONS)
    login = user_stream(user, 0, days=1, attacked=False)[0]
    wrong_key = dict(login, event_id="wk")
    wrong_part = dict(login, event_id="wp")
    bad_json = b'{"event_id": "x", "type": '
    no_user = orjson.dumps({"event_id": "nu", "type": "login", "ts": iso(T0)})

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            await h.put_event(agent, wrong_key, key=b"someone-else")
            await h.put_event(agent, wrong_part, partition=(right + 1) % PARTITIONS)
            await h.put(agent, h.topic["events"], bad_json, user.encode(), right)
            await h.put(agent, h.topic["events"], no_user, user.encode(), right)
            await h.put_event(agent, login)
            await h.handled_all(agent, 5)

    asyncio.run(run())
    # wrongly keyed / partitioned: re-sent to the events topic where the user lives
    assert h.sent["events"] == [(user.encode(), orjson.dumps(wrong_key), right),
                                (user.encode(), orjson.dumps(wrong_part), right)]
    dead = h.dead_letters()
    assert [(d["reason"], d["source"]["topic"], d["source"]["partition"],
             d["source"]["offset"], d["source"]["key"]) for d in dead] == [
        ("malformed_json", h.topic["events"], right, 0, user),
        ("missing_field", h.topic["events"], right, 1, user)]
    assert dead[0]["excerpt"] == bad_json.decode() and "user_id" in dead[1]["detail"]
    det = h.pipe.scoring.detectors[right]
    assert set(h.pipe.scoring.detectors) == {right}
    # only the well-keyed login reached the detector, and its state was written
    assert det.stats["events.login"] == 1
    raw, part, state = stored_user(h, user)
    assert raw.startswith(b"%d:" % right)
    assert short_hash(login["event_id"]) in state.seen
    assert short_hash("wk") not in state.seen and short_hash("wp") not in state.seen


def test_processing_error_parks_one_event_and_keeps_the_rest_of_its_batch(tmp_path, geo_dbs,
                                                                          monkeypatch):
    # one batch of exactly these events (the batch closes when full, not on a timer)
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__BATCH_MAX_EVENTS=4,
                STRAYCODE__KAFKA__BATCH_WITHIN_S=5)
    user = user_on(3)
    other = user_on(3, prefix="other")
    p = expected_partition(user.encode(), PARTITIONS)
    day = user_stream(user, 1, days=1, attacked=False)          # login, code, verified
    login, code, verified = day
    other_login = user_stream(other, 2, days=1, attacked=False)[0]
    boom = code["event_id"]

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            det = h.pipe.scoring.detector(p)
            real = det.process

            def process(ev):
                out = real(ev)               # the core ran and changed the user's state...
                if ev.event_id == boom:
                    raise RuntimeError(f"core bug on {ev.event_id}")   # ...then failed
                return out
            monkeypatch.setattr(det, "process", process)
            for e in (login, code, other_login, verified):
                await h.put_event(agent, e)
            await h.handled_all(agent, 4)

    asyncio.run(run())
    assert len(h.batches) == 1                                   # all four in one batch
    (dead,) = h.dead_letters()
    assert (dead["reason"], dead["source"]["key"], dead["excerpt"]) == (
        "processing_error", user, orjson.dumps(code).decode())
    assert "core bug on" in dead["detail"] and dead["source"]["topic"] == h.topic["codes"]
    # the failed event left nothing behind in its user's state; the others were written
    _raw, part, state = stored_user(h, user)
    assert part == p
    assert short_hash(login["event_id"]) in state.seen and short_hash(verified["event_id"]) in state.seen
    assert short_hash(boom) not in state.seen and boom not in state.pending
    assert state.code_times == []
    _raw, part, other_state = stored_user(h, other)
    assert part == p and short_hash(other_login["event_id"]) in other_state.seen
    stats = h.pipe.scoring.detectors[p].stats
    assert stats["events.login"] == 2
    assert stats["verified_unmatched"] == 1          # its code was not left pending either


def test_processing_error_does_not_lose_the_codes_it_decided(tmp_path, geo_dbs, monkeypatch):
    # the failing event moves the clock past the attack code's window, so the core decides
    # that code (another user's) inside the failed call: the decision must come back later
    h = Harness(tmp_path, geo_dbs)
    user = user_on(2)
    other = user_on(2, prefix="other")
    p = expected_partition(user.encode(), PARTITIONS)
    history = user_stream(user, 3, days=6, attacked=True)
    feedback = {"type": "user_feedback", "code_event_id": "none", "verdict": "me"}
    boom = dict(feedback, event_id="boom", user_id=other, ts=iso(T0 + 8 * DAY))
    later = dict(feedback, event_id="later", user_id=other, ts=iso(T0 + 9 * DAY))

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            for e in history:
                await h.put_event(agent, e)
                await h.handled_all(agent, h.handled + 1)
            det = h.pipe.scoring.detectors[p]
            real = det.process
            decided_in_failed_call = []

            def process(ev):
                out = real(ev)
                if ev.event_id == "boom":
                    decided_in_failed_call.extend(o.code_event_id for o in out)
                    raise RuntimeError("core bug")
                return out
            monkeypatch.setattr(det, "process", process)
            h.unread[(h.topic["logins"], p)] = 1          # logins lag: boom waits, unread
            await h.put_event(agent, boom)
            await h.handled_all(agent, h.handled + 1)
            assert h.sent["alerts"] == [] and h.pipe.scoring.reorder.size == 1
            h.unread[(h.topic["logins"], p)] = 0          # caught up: the tick releases boom
            await h.tick(agent, p)
            await h.handled_all(agent, h.handled + 1)
            await h.put_event(agent, later)
            await h.handled_all(agent, h.handled + 1)
            return decided_in_failed_call

    decided = asyncio.run(run())
    assert f"{user}-evil-code" in decided                 # the failed call had decided it
    assert [d["reason"] for d in h.dead_letters()] == ["processing_error"]
    alerts = [orjson.loads(v) for _k, v, _p in h.sent["alerts"]]
    assert [a["code_event_id"] for a in alerts] == [f"{user}-evil-code"]   # ...not lost
    _raw, _part, state = stored_user(h, user)
    assert state.pending == {}


def test_processing_error_drops_its_network_operations(tmp_path, geo_dbs, monkeypatch):
    h = Harness(tmp_path, geo_dbs)
    user = user_on(3)
    p = expected_partition(user.encode(), PARTITIONS)
    login, code, _verified = user_stream(user, 1, days=1, attacked=False)

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            det = h.pipe.scoring.detector(p)
            real = det.process

            def process(ev):
                out = real(ev)                   # records the code's network operations...
                if ev.event_id == code["event_id"]:
                    raise RuntimeError("core bug")   # ...then fails
                return out
            monkeypatch.setattr(det, "process", process)
            for e in (login, code):
                await h.put_event(agent, e)
                await h.handled_all(agent, h.handled + 1)
            await h.pipe.shipper.send()

    asyncio.run(run())
    assert [d["reason"] for d in h.dead_letters()] == ["processing_error"]
    code_t, login_t = int(parse_event(code).t), int(parse_event(login).t)
    ops = [op for _k, v, _p in h.sent["network_ops"]
           for key_ops in orjson.loads(v).values() for op in key_ops]
    assert any(op[0] == "o" and op[2] == login_t for op in ops)          # the login's went out
    assert not any(op[0] == "o" and op[2] == code_t and op[-1] is True for op in ops)


def test_events_read_out_of_order_across_topics_are_handled_in_event_time(tmp_path, geo_dbs):
    # the events topic is read ahead of the codes topic: a code_verified arrives before its
    # code_issued. It waits (unacknowledged) until the watermark passes it, so the code
    # counts as entered and the session as proven, exactly as in replay.
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    user = user_on(0)
    p = expected_partition(user.encode(), PARTITIONS)
    login, code, verified = user_stream(user, 1, days=1, attacked=False)
    closing = {"event_id": "close", "type": "user_feedback", "ts": iso(T0 + 2 * DAY),
               "user_id": user, "code_event_id": "none", "verdict": "me"}
    expected = [o.to_dict() for o in detector_outputs(h, [login, code, verified, closing])
                if isinstance(o, ScoreRecord)]

    from faust.types import TP
    # what the worker does on assignment: every input topic-partition has a clock
    h.pipe.clock.assign([TP(h.topic[k], p) for k in ("logins", "codes", "events")])

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            await h.put_event(agent, login)
            await h.handled_all(agent, 1)
            h.unread[(h.topic["codes"], p)] = 1           # the code is written, not yet read
            await h.put_event(agent, verified)
            await h.handled_all(agent, 2)
            (_t, _seq, (_ev, waiting)), = h.pipe.scoring.reorder.heaps[p]
            held = (waiting.message.acked, h.pipe.scoring.detectors[p].stats["verified_unmatched"])
            h.unread[(h.topic["codes"], p)] = 0
            await h.put_event(agent, code)
            await h.put_event(agent, closing)
            await h.handled_all(agent, 4)
            return held, waiting.message.acked

    (acked_while_waiting, unmatched), acked_after = asyncio.run(run())
    assert acked_while_waiting is False and acked_after is True
    assert unmatched == 0 and h.pipe.scoring.detectors[p].stats["verified_unmatched"] == 0
    scores = [orjson.loads(v) for _k, v, _p in h.sent["scores"]]
    assert scores == expected and scores[0]["code_event_id"] == code["event_id"]
    _raw, _part, state = stored_user(h, user)
    assert state.baseline.proven == 1


# --------------------------------------------------------------------------- checkpoints
def later(seconds: float):
    """A monotonic clock `seconds` ahead (a checkpoint's interval has passed)."""
    return lambda: time.monotonic() + seconds


def test_state_is_written_and_input_acknowledged_together_at_checkpoints(tmp_path, geo_dbs):
    # between checkpoints the changed states stay in memory and their input is held (not
    # committable): a crash re-reads that input on the last checkpoint's state
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__CHECKPOINT_INTERVAL_S="300",
                STRAYCODE__KAFKA__EMIT_SCORES="true")
    user = user_on(1)
    p = expected_partition(user.encode(), PARTITIONS)
    flow = user_stream(user, 1, days=2, attacked=False)
    day1, day2 = flow[:3], flow[3:]

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            msgs = []
            for e in day1 + day2:
                msgs.append(await h.put_event(agent, e))
                await h.handled_all(agent, h.handled + 1)
            before = ([m.acked for m in msgs], stored_user(h, user),
                      h.commit_position(h.topic["logins"], p), len(h.sent["scores"]))
            h.pipe.scoring.checkpoint.clock = later(300)   # the interval has passed
            await h.tick(agent, p)
            await h.handled_all(agent, h.handled + 1)
            return msgs, before

    msgs, (acked, stored, position, scores) = asyncio.run(run())
    assert scores >= 1                       # outputs go out at once, before the checkpoint
    assert not any(acked) and stored is None and position == 0
    assert all(m.acked for m in msgs)        # the checkpoint acknowledged what it wrote
    _raw, _part, state = stored_user(h, user)
    assert all(short_hash(m_id) in state.seen
               for m_id in (e["event_id"] for e in day1))
    assert h.commit_position(h.topic["logins"], p) == 2   # both logins committable now
    assert h.sample("straycode_changelog_records_total", table="users") == 1   # one write


def test_network_view_is_written_once_per_key_per_checkpoint(tmp_path, geo_dbs):
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__CHECKPOINT_INTERVAL_S="300")
    ops = [{"ip:81.2.69.10": [["o", f"user{i}", int(T0) + i, 3600, True, False]]}
           for i in range(5)]

    async def run():
        async with h.pipe.network_agent.test_context() as agent:
            view = h.pipe.networks.view
            msgs = [await h.put(agent, h.topic["network_ops"], orjson.dumps(o), None, 1)
                    for o in ops]
            await h.until(agent, lambda: h.pipe.counting.checkpoint.held_count == 5,
                          "five messages folded")
            before = (len(view), [m.acked for m in msgs])
            h.pipe.counting.checkpoint.clock = later(300)
            assert h.pipe.counting.overdue_partitions() == [1]
            await h.put(agent, h.topic["network_ops"], b"{}", None, 1)   # the timer's wake-up
            await h.until(agent, lambda: len(view) == 1, "the view written")
            return msgs, before, view[b"ip:81.2.69.10"]

    msgs, (size, acked), stored = asyncio.run(run())
    assert size == 0 and not any(acked)
    assert all(m.acked for m in msgs)
    assert stored == apply_ops(NetworkState(), [op for o in ops
                                                for op in o["ip:81.2.69.10"]]).to_bytes()
    assert h.sample("straycode_changelog_records_total", table="network-view") == 1


def test_incremental_checkpoint_acknowledges_a_message_once_the_states_it_changed_are_written(
        tmp_path, geo_dbs):
    # two users of one partition changed 3 s apart: once the first user's change is due
    # (5 s) it is written and the first message acknowledged; the second message waits for
    # its own user's write
    h = Harness(tmp_path, geo_dbs, STRAYCODE__KAFKA__CHECKPOINT_INTERVAL_S="5")
    p = 3
    early, late = user_on(p, "early"), user_on(p, "late")
    now = [time.monotonic()]
    ckpt = h.pipe.scoring.checkpoint
    ckpt.clock = lambda: now[0]
    ckpt.sliced = now[0]

    def login(user, n):
        return user_stream(user, n, days=1, attacked=False)[0]

    async def run():
        async with h.pipe.user_agent.test_context() as agent:
            first = await h.put_event(agent, login(early, 1))
            await h.handled_all(agent, 1)
            now[0] += 3
            second = await h.put_event(agent, login(late, 2))
            await h.handled_all(agent, 2)
            stages = [(first.acked, second.acked, stored_user(h, early), stored_user(h, late))]
            now[0] += 2.5                  # early's change is 5.5 s old, late's 2.5 s
            await h.tick(agent, p)
            await h.handled_all(agent, 3)
            stages.append((first.acked, second.acked, stored_user(h, early) is not None,
                           stored_user(h, late), h.commit_position(h.topic["logins"], p)))
            now[0] += 3
            await h.tick(agent, p)
            await h.handled_all(agent, 4)
            stages.append((second.acked, stored_user(h, late) is not None,
                           h.commit_position(h.topic["logins"], p)))
            return stages

    before, one_written, both_written = asyncio.run(run())
    assert before == (False, False, None, None)
    assert one_written == (True, False, True, None, 1)
    assert both_written == (True, True, 2)
    assert h.sample("straycode_changelog_records_total", table="users") == 2
    assert h.sample("straycode_unwritten_states", table="users") == 0
    assert h.sample("straycode_held_messages", table="users") == 0
