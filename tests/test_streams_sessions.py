"""Issue #12 on a real broker: a stream with stolen sessions (a session cookie replayed from
another network and place) and stolen trusted-device cookies (password + cookie from a proxy)
gives the same alerts, ids, flows and actions in the Kafka worker as in `straycode replay`."""
from __future__ import annotations

from collections import Counter

import pytest

from streams_events import DAY, HOUR, T0, UA_HOME, iso, user_stream
from streams_helpers import (Worker, closing_events, replay_alerts, stream_and_read, stream_env,
                             write_jsonl)

pytestmark = pytest.mark.broker

CN_NET, CARRIER = "175.16.199.", "82.132.217."       # Changchun AS4837; EE London (carrier)


def stolen_stream(users: int = 9, days: int = 8) -> tuple[list[dict], dict[str, str]]:
    """(events in event-time order, expected alerting code id -> flow). Every user signs in
    daily from home and trusts their laptop on day 2 (streams_events.user_stream); then user
    n % 3 == 0 has a session hijacked (codes from Changchun inside their own session), n % 3 ==
    1 sees password + trusted cookie used from Changchun, n % 3 == 2 moves from Wi-Fi to their
    carrier mid-session (legit, no alert)."""
    events, expected = [], {}
    for n in range(users):
        user = f"s{n}"
        events.extend(user_stream(user, n, days, attacked=False))
        t = T0 + days * DAY + 10 * HOUR + n
        laptop = f"{user}-laptop"
        home = {"user_id": user, "ip": f"81.2.69.{10 + n % 200}", "user_agent": UA_HOME,
                "device_id": laptop}
        thief = dict(home, ip=f"{CN_NET}{7 + n}")
        kind = n % 3
        sid = f"{user}-s-last"
        if kind in (0, 2):                      # the user's own session (trusted cookie, home)
            events.append(dict(home, event_id=f"{user}-last", type="login", ts=iso(t),
                               session_id=sid, password_ok=True))
        if kind == 0:
            for k in range(2):
                code = f"{user}-hijack-{k}"
                events.append(dict(thief, event_id=code, type="code_issued",
                                   ts=iso(t + 40 * 60 + 90 * k), session_id=sid, channel="sms",
                                   purpose="security_settings"))
                expected[code] = "session_only"
        elif kind == 1:
            evil = f"{user}-s-evil"
            events.append(dict(thief, event_id=f"{user}-evil-login", type="login", ts=iso(t),
                               session_id=evil, password_ok=True))
            code = f"{user}-infostealer"
            events.append(dict(thief, event_id=code, type="code_issued", ts=iso(t + 300),
                               session_id=evil, channel="sms", purpose="payment"))
            expected[code] = "password_verified"
        else:
            carrier = dict(home, ip=f"{CARRIER}{20 + n}")
            code = f"{user}-carrier"
            events.append(dict(carrier, event_id=code, type="code_issued", ts=iso(t + 600),
                               session_id=sid, channel="sms", purpose="security_settings"))
            events.append(dict(carrier, event_id=f"{user}-carrier-v", type="code_verified",
                               ts=iso(t + 630), session_id=sid, success=True))
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events, expected


def test_worker_matches_replay_on_stolen_sessions(tansu, geo_dbs, tmp_path):
    app_id = "e2e-sessions"
    env = stream_env(tansu, app_id, geo_dbs, STRAYCODE__KAFKA__EMIT_SCORES="true")
    events, expected = stolen_stream()
    closing = closing_events(T0 + 10 * DAY)
    path = write_jsonl(tmp_path / "events.jsonl", events + closing)
    ref_alerts, ref_scores = replay_alerts(tmp_path, path, env)
    assert {a["code_event_id"]: a["flow"] for a in ref_alerts} == expected   # the stream is sound
    for ref in ref_alerts:
        if ref["flow"] == "session_only":
            assert "revoke_sessions" in ref["actions"]
            assert "force_password_reset" not in ref["actions"]
        else:
            assert {"force_password_reset", "revoke_sessions",
                    "revoke_trusted_devices"} <= set(ref["actions"])

    worker = Worker(env, tmp_path / "w1").start()
    try:
        _, scores, alerts = stream_and_read(tansu, env, tmp_path, events, closing,
                                            scores=len(ref_scores), alerts=len(ref_alerts))
    finally:
        worker.stop()

    assert sorted(s["code_event_id"] for s in scores) == sorted(
        s["code_event_id"] for s in ref_scores)
    ref_by_code = {s["code_event_id"]: s for s in ref_scores}
    for got in scores:                       # same flows and actions, code by code (the
        ref = ref_by_code[got["code_event_id"]]     # cross-user counters reach the worker
        assert (got["flow"], got["actions"], got["alerted"]) == (   # through a GlobalTable, so
            ref["flow"], ref["actions"], ref["alerted"])            # scores may differ a little)
        assert got["score"] == pytest.approx(ref["score"], abs=0.01)
    by_id = {a["alert_id"]: a for a in alerts}
    assert Counter(a["alert_id"] for a in alerts).most_common(1)[0][1] == 1     # no duplicates
    assert set(by_id) == {a["alert_id"] for a in ref_alerts}                    # same ids
    for ref in ref_alerts:
        got = by_id[ref["alert_id"]]
        assert (got["flow"], got["actions"], got["severity"]) == (
            ref["flow"], ref["actions"], ref["severity"])
