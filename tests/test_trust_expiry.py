"""A trusted-device cookie lasts as long as the platform's own "remember this device"
(``detector.trust_ttl_s``, 30 days by default) and ends at a password change. An expired
cookie is an ordinary known device: its step-up code from a new network is not judged as a
replayed trusted cookie (before this rule, such users' abandoned codes were alerted with a
password reset). Real Detector, real .mmdb fixtures."""
from __future__ import annotations

import pytest

from detector_helpers import DAY, HOUR, MOBILE, SE, T0, UA_WIN, Run, make_detector
from straycode.detector.baseline import DeviceEntry
from straycode.detector.state import SessionState

TRUSTED_ON = 2                               # history(): dev-1 is registered on day 2


@pytest.fixture()
def new_run(geo_dbs, monkeypatch):
    def make(**cfg) -> Run:
        return Run(make_detector(geo_dbs, **cfg), monkeypatch)
    return make


def step_up_left(run: Run, days: int, ip: str = MOBILE) -> tuple[str, str]:
    """`days` of sign-ins from home on dev-1, then dev-1 signs in from `ip` and leaves the
    login code; returns (session, code)."""
    t = run.history("alice", days=days, device="dev-1", ua=UA_WIN) + 9 * HOUR
    session = run.login(t, "alice", ip, device="dev-1", ua=UA_WIN)
    code = run.code(t + 2, "alice", session)
    run.flush()
    return session, code


@pytest.mark.parametrize("ttl, expired", [(30 * DAY, True), (None, False), (60 * DAY, False)])
def test_trust_lasts_trust_ttl_s(new_run, ttl, expired):
    run = new_run(trust_ttl_s=ttl)
    session, code = step_up_left(run, days=40)          # registered 38 days before
    terms = run.terms(code)
    held = run.det.users["alice"].sessions[session].state is SessionState.HELD
    if expired:
        assert "trusted_device_unfamiliar_context" not in terms and not held
    else:
        assert terms["trusted_device_unfamiliar_context"] > 0 and held


def test_a_fresh_registration_is_in_force(new_run):
    run = new_run()                                      # default 30 days
    session, code = step_up_left(run, days=12, ip=SE)    # registered 10 days before
    assert run.terms(code)["trusted_device_unfamiliar_context"] > 0
    assert "force_password_reset" in run.score(code).actions


def test_a_password_change_ends_trust(new_run):
    for ends, counted in ((True, False), (False, True)):
        run = new_run(trust_ends_at_password_change=ends)
        t = run.history("alice", days=12, device="dev-1", ua=UA_WIN) + 9 * HOUR
        run.send("password_changed", t - 2 * HOUR, "alice")
        session = run.login(t, "alice", SE, device="dev-1", ua=UA_WIN)
        code = run.code(t + 2, "alice", session)
        run.flush()
        assert ("trusted_device_unfamiliar_context" in run.terms(code)) is counted, ends


def test_device_entry_codec_keeps_the_registration_time():
    entry = DeviceEntry(int(T0), int(T0), 3, True, "Chrome|Windows|desktop", trusted_at=int(T0) + 5)
    assert DeviceEntry.from_wire(entry.to_wire()) == entry
    legacy = DeviceEntry(int(T0), int(T0), 3, True, "Chrome|Windows|desktop")
    assert len(legacy.to_wire()) == 5                    # layout 1, as states wrote it
    back = DeviceEntry.from_wire(legacy.to_wire())
    assert back.trusted_at is None and back.trust_valid(T0 + 400 * DAY, 0, {"trust_ttl_s": DAY})
