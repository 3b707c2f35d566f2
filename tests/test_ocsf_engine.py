"""The alert feed on alerts produced by the real detector engine (real .mmdb fixtures):
both forms validate, ids are stable across created/updated, updates map to OCSF Update."""
from __future__ import annotations

import jsonschema

from detector_helpers import CN, UA_LINUX, Run, make_detector
from straycode.detector import ocsf


def _run(geo_dbs):
    run = Run(make_detector(geo_dbs))
    t = run.history("alice")
    run.history("bob")
    session = run.login(t + 3600, "alice", CN, device=None, ua=UA_LINUX)   # password OK
    code = run.code(t + 3605, "alice", session)                          # never entered
    run.send("code_issued", t + 4000, "bob", event_id="reset-1", session_id=None, channel="sms",
             purpose="password_reset", ip=CN, user_agent=UA_LINUX)
    run.feedback(t + 9000, "alice", code, "not_me")
    run.flush()
    return code, [a.to_dict() for a in run.alerts()]


def test_engine_alerts_render_and_validate(geo_dbs):
    code, alerts = _run(geo_dbs)
    native_v = jsonschema.Draft202012Validator(ocsf.schema("alert.v1.json"))
    ocsf_v = jsonschema.Draft202012Validator(ocsf.schema("ocsf_detection_finding.json"))
    findings = []
    for alert in alerts:
        native_v.validate(alert)
        both = ocsf.render_alert(alert, "both")
        ocsf_v.validate(both["ocsf"])
        findings.append(both["ocsf"])

    alice = [f for a, f in zip(alerts, findings) if a["code_event_id"] == code]
    assert [f["activity_id"] for f in alice] == [1, 2]
    assert [f["type_uid"] for f in alice] == [200401, 200402]
    assert [f["metadata"]["sequence"] for f in alice] == [1, 2]
    assert all(o["value"] for f in findings for o in f["observables"])
    assert {(o["type_id"], o["value"]) for o in alice[0]["observables"]} >= {
        (31, "alice"), (2, CN), (14, "CN")}
    assert len({f["finding_info"]["uid"] for f in alice}) == 1
    assert alice[1]["status"] == "In Progress"            # user said "not me": escalated
    assert alice[0]["unmapped"]["flow"] == "password_verified"
    assert "force a password reset" in alice[0]["remediation"]["desc"]
    login_ev = [e for e in alice[0]["evidences"] if e["name"] == "login"]
    assert login_ev and login_ev[0]["src_endpoint"]["location"]["country"] == "CN"

    (bob,) = [f for a, f in zip(alerts, findings) if a["user_id"] == "bob"]
    assert bob["unmapped"]["flow"] == "no_password"
    assert "do NOT force a password reset" in bob["remediation"]["desc"]
    assert "force_password_reset" not in bob["unmapped"]["actions"]

    # determinism: a second run over the same events gives identical findings
    _, again = _run(geo_dbs)
    assert [ocsf.to_ocsf(a) for a in again] == findings
