"""Alert feed: native and OCSF forms validate against the schemas kept in the repo, and the
OCSF mapping carries what an analyst needs (severity, stable uid, update activity, evidence,
flow-specific remediation)."""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from alert_factory import make_alert
from straycode.detector import ocsf


@pytest.fixture(scope="module")
def native_validator():
    s = ocsf.schema("alert.v1.json")
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


@pytest.fixture(scope="module")
def ocsf_validator():
    s = ocsf.schema("ocsf_detection_finding.json")
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


FLOWS = ["password_verified", "no_password", "no_session", "login_missing"]


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("kind,status", [("created", "open"), ("updated", "escalated"),
                                         ("updated", "benign")])
def test_both_forms_validate(flow, kind, status, native_validator, ocsf_validator):
    alert = make_alert(flow=flow, kind=kind, status=status)
    native_validator.validate(alert)
    finding = ocsf.to_ocsf(alert)
    ocsf_validator.validate(finding)
    json.dumps(finding)  # plain JSON, nothing exotic


@pytest.mark.parametrize("severity,sev_id", [("low", 2), ("medium", 3), ("high", 4),
                                             ("critical", 5)])
def test_severity_ids(severity, sev_id):
    f = ocsf.to_ocsf(make_alert(severity=severity))
    assert f["severity_id"] == sev_id
    assert f["severity"] == severity.capitalize()
    assert f["risk_level"] == severity.capitalize()


def test_class_activity_and_stable_uid():
    created = make_alert(kind="created")
    updated = make_alert(kind="updated", status="escalated", decided_ts="2026-03-14T10:02:00Z")
    fc, fu = ocsf.to_ocsf(created), ocsf.to_ocsf(updated)
    assert (fc["class_uid"], fc["category_uid"]) == (2004, 2)
    assert (fc["activity_id"], fc["type_uid"]) == (1, 200401)
    assert (fu["activity_id"], fu["type_uid"], fu["activity_name"]) == (2, 200402, "Update")
    assert fc["finding_info"]["uid"] == fu["finding_info"]["uid"] == created["alert_id"]
    assert fc["finding_info"]["created_time"] == fu["finding_info"]["created_time"]
    assert "modified_time" not in fc["finding_info"]
    assert fu["finding_info"]["modified_time"] == 1773482520000
    assert fu["status_id"] == 2 and fu["status"] == "In Progress"
    other = ocsf.to_ocsf(make_alert(code_event_id="evt-code-0002"))
    assert other["finding_info"]["uid"] != fc["finding_info"]["uid"]


def test_times_come_from_event_time_and_are_deterministic():
    alert = make_alert(ts="2026-03-14T09:26:53.589Z", decided_ts="2026-03-14T09:31:53.589+00:00")
    f1, f2 = ocsf.to_ocsf(alert), ocsf.to_ocsf(copy.deepcopy(alert))
    assert f1 == f2
    assert f1["finding_info"]["created_time"] == 1773480413589
    assert f1["time"] == 1773480713589


def test_scores_and_actor():
    f = ocsf.to_ocsf(make_alert(score=0.934))
    assert f["risk_score"] == 93 and isinstance(f["risk_score"], int)
    assert f["confidence_score"] == 82 and f["confidence_id"] == 3
    assert f["evidences"][0]["actor"]["user"]["uid"] == "u-alice"
    assert f["metadata"]["product"]["name"] == "straycode"
    assert f["metadata"]["version"].startswith("1.")


def test_evidence_carries_login_and_code_context():
    f = ocsf.to_ocsf(make_alert(flow="password_verified"))
    names = [e["name"] for e in f["evidences"]]
    assert names == ["code_request", "login"]
    code = f["evidences"][0]
    assert code["uid"] == "evt-code-0001"
    assert code["src_endpoint"]["ip"] == "175.16.199.7"
    assert code["src_endpoint"]["location"] == {"country": "CN", "city": "Changchun",
                                                "lat": 43.88, "long": 125.3228}
    assert code["src_endpoint"]["autonomous_system"] == {
        "number": 4837, "name": "CHINA UNICOM China169 Backbone"}
    assert "Chrome/126" in code["http_request"]["user_agent"]
    assert "device" not in code                 # the requester sent no device id
    # no-password flows have no login to show
    assert [e["name"] for e in ocsf.to_ocsf(make_alert(flow="no_password"))["evidences"]] == [
        "code_request"]


def test_observables_point_at_what_a_siem_pivots_on():
    """User, IPs, countries, devices and user agents, each with its OCSF 1.6 observable
    type_id and the path of the attribute it was taken from; a value shared by the code
    request and the login is listed once."""
    alert = make_alert(flow="password_verified")
    alert["observed"]["login"].update(ip="175.16.199.8", device_id="dev-evil")
    f = ocsf.to_ocsf(alert)
    obs = {(o["type_id"], o["value"]): o for o in f["observables"]}
    assert obs[(31, "u-alice")]["name"] == "evidences[0].user.uid"
    assert obs[(2, "175.16.199.7")]["name"] == "evidences[0].src_endpoint.ip"
    assert obs[(2, "175.16.199.8")]["name"] == "evidences[1].src_endpoint.ip"
    assert obs[(14, "CN")]["name"] == "evidences[0].src_endpoint.location.country"
    assert obs[(47, "dev-evil")]["name"] == "evidences[1].device.uid"
    assert obs[(16, alert["observed"]["code"]["user_agent"])]["type"] == "HTTP User-Agent"
    assert {o["type"] for o in f["observables"]} == {
        "User Object: uid", "IP Address", "Country", "Device Object: uid", "HTTP User-Agent"}
    assert len(obs) == len(f["observables"]) == 6        # CN, the UA and the user once each
    for o in f["observables"]:                            # every name resolves to its value
        node = f
        for part in o["name"].replace("[", ".").replace("]", "").split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        assert node == o["value"]


def test_message_is_one_human_line():
    f = ocsf.to_ocsf(make_alert(flow="password_verified", severity="critical"))
    assert f["message"] == (
        "Critical straycode alert for user u-alice: sms code for login, flow password_verified, "
        "score 0.93; reasons: new_network_and_country, impossible_travel, code_not_entered; "
        "actions: force_password_reset, revoke_sessions, notify_user")
    alert = make_alert(flow="no_password", kind="updated", status="escalated", actions=[],
                       user_id="eve\nINJECTED")
    message = ocsf.to_ocsf(alert)["message"]
    assert "\n" not in message and message.startswith("High straycode alert update (revision 2")
    assert message.endswith("actions: none")


def test_revision_and_provider_in_metadata():
    created, updated = make_alert(), make_alert(kind="updated", status="escalated", revision=3)
    fc, fu = ocsf.to_ocsf(created), ocsf.to_ocsf(updated)
    assert (fc["metadata"]["sequence"], fu["metadata"]["sequence"]) == (1, 3)
    assert fc["metadata"]["uid"] == created["alert_id"] + ":1"
    assert fu["metadata"]["uid"] == created["alert_id"] + ":3"
    assert fc["metadata"]["log_provider"] == "straycode"
    assert fc["metadata"]["version"] == "1.6.0"
    assert ocsf.from_ocsf(fu)["revision"] == 3
    assert "revision" not in fu["unmapped"]


def test_anomaly_analyses_compare_observed_with_baseline():
    f = ocsf.to_ocsf(make_alert(flow="password_verified"))
    (analysis,) = f["anomaly_analyses"]
    assert analysis["analysis_targets"] == [{"name": "u-alice", "type": "User Account"}]
    by_attr = {a["observation_parameter"]: a for a in analysis["anomalies"]}
    assert {"value": "CN"} in by_attr["country"]["observations"]
    assert {"value": "AS4837"} in by_attr["network"]["observations"]
    assert by_attr["city"]["observed_pattern"] == "impossible_travel"
    assert "code_not_entered" in by_attr                      # no context key: by its code
    assert "usual_hour" not in by_attr                        # negative weight: not an anomaly
    base = {b["observation_parameter"]: b for b in analysis["baselines"]}
    assert base["countries"]["observations"] == [{"value": "GB"}]
    assert base["networks"]["observations"] == [{"value": "AS20712"}]
    assert base["last_verified_place"]["observations"] == [{"value": "GB/London"}]
    assert base["devices"]["observations"] == [{"value": "distinct_values", "count": 2}]
    assert base["proven_signins"]["observations"][0]["count"] == 41


def test_remediation_differs_per_flow():
    texts = {flow: ocsf.to_ocsf(make_alert(flow=flow))["remediation"]["desc"] for flow in FLOWS}
    assert len(set(texts.values())) == len(FLOWS)
    assert "force a password reset" in texts["password_verified"]
    assert "do NOT force a password reset" in texts["no_password"]


def test_unmapped_keeps_native_only_fields():
    alert = make_alert()
    alert["scenario_hint"] = "ato"
    u = ocsf.to_ocsf(alert)["unmapped"]
    for key in ("code_event_id", "flow", "purpose", "channel", "score", "issue_score",
                "actions", "reasons", "baseline", "version", "scenario_hint"):
        assert u[key] == alert[key], key
    assert "alert_id" not in u and "user_id" not in u
    assert u["observed_network"] == {"code": "AS4837", "login": "AS4837"}


@pytest.mark.parametrize("mutate", [
    lambda a: a.update(severity="severe"),
    lambda a: a.update(kind="deleted"),
    lambda a: a.pop("alert_id"),
    lambda a: a.update(alert_id="sc-XYZ"),
    lambda a: a.update(score=1.5),
    lambda a: a.update(ts="yesterday"),
    lambda a: a["reasons"][0].pop("code"),
    lambda a: a.update(actions=["delete_user"]),
    lambda a: a.update(flow="magic"),
    lambda a: a.pop("revision"),
    lambda a: a.update(revision=2),               # created is revision 1
    lambda a: a.update(kind="updated", revision=1),
])
def test_invalid_native_alert_fails(mutate, native_validator):
    alert = make_alert()
    mutate(alert)
    with pytest.raises(jsonschema.ValidationError):
        native_validator.validate(alert)


@pytest.mark.parametrize("mutate", [
    lambda f: f.update(class_uid=2001),
    lambda f: f.update(type_uid=200402),           # Create activity with Update type
    lambda f: f.update(severity_id=9),
    lambda f: f.update(risk_score=0.93),
    lambda f: f["finding_info"].pop("uid"),
    lambda f: f.update(time="2026-03-14T09:26:53Z"),
    lambda f: f["metadata"].pop("product"),
    lambda f: f.update(evidences=[]),
    lambda f: f["remediation"].update(desc=""),
    lambda f: f["metadata"].update(sequence=2),    # a Create is revision 1
    lambda f: f["metadata"].pop("log_provider"),
    lambda f: f.update(message="two\nlines"),
    lambda f: f["observables"].append({"name": "evidences[0].user.uid", "type_id": 4,
                                       "value": "x"}),
])
def test_invalid_finding_fails(mutate, ocsf_validator):
    finding = ocsf.to_ocsf(make_alert())
    ocsf_validator.validate(finding)
    mutate(finding)
    with pytest.raises(jsonschema.ValidationError):
        ocsf_validator.validate(finding)


def test_render_alert_formats():
    alert = make_alert()
    assert ocsf.render_alert(alert, "native") is alert
    assert ocsf.render_alert(alert, "ocsf") == ocsf.to_ocsf(alert)
    both = ocsf.render_alert(alert, "both")
    assert both == {"native": alert, "ocsf": ocsf.to_ocsf(alert)}
    assert ocsf.native_from_record(both) is alert
    assert ocsf.native_from_record(alert) is alert
    assert ocsf.native_from_record(ocsf.to_ocsf(alert))["alert_id"] == alert["alert_id"]
    with pytest.raises(ValueError):
        ocsf.native_from_record({"class_uid": 2001, "finding_info": {}})
    with pytest.raises(ValueError):
        ocsf.native_from_record({"hello": "world"})
    with pytest.raises(ocsf.AlertFormatError):
        ocsf.render_alert(alert, "xml")


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("kind,status", [("created", "open"), ("updated", "benign")])
def test_from_ocsf_round_trips_what_consumers_act_on(flow, kind, status, native_validator):
    alert = make_alert(flow=flow, kind=kind, status=status)
    back = ocsf.from_ocsf(ocsf.to_ocsf(alert))
    native_validator.validate(back)
    for key in ("alert_id", "version", "revision", "kind", "code_event_id", "user_id", "score",
                "issue_score",
                "severity", "confidence", "flow", "purpose", "channel", "reasons", "actions",
                "baseline", "status"):
        assert back[key] == alert[key], key
    assert back["ts"] == alert["ts"] and back["decided_ts"] == alert["decided_ts"]
    for side in ("code", "login"):
        if alert["observed"][side] is None:
            assert back["observed"][side] is None
            continue
        for key in ("ip", "network", "asn", "as_org", "country", "city", "lat", "lon",
                    "device_id", "user_agent"):
            assert back["observed"][side][key] == alert["observed"][side][key], (side, key)
