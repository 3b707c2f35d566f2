"""Native alert -> OCSF Detection Finding (class 2004), for SOC pipelines that speak OCSF.

Pure and deterministic like the rest of detector/: every time in the finding comes from the
alert's own event-time fields, never from the wall clock, so a replay of the same events
produces byte-identical findings. The finding uid is the alert_id, so a `kind=updated`
re-emission (activity Update) lands on the same finding in the SIEM; the alert's
``revision`` (1 = created, +1 per update) is ``metadata.sequence`` ("makes the exact ordering
of events unambiguous"), so a consumer keeps the highest, and ``metadata.uid`` is
``<alert_id>:<revision>``, unique per emitted record and the same when it is re-sent.

Field names follow OCSF 1.6.0: Detection Finding has ``anomaly_analyses`` since 1.5.0
(objects anomaly_analysis/anomaly/baseline/observation), and 1.6.0 made ``device.uid`` an
observable (type_id 47, ocsf-schema#1446), which ``observables`` uses. Native fields without an
OCSF home are kept in ``unmapped`` so nothing the detector knew is lost. The emitted subset is
pinned by ``schemas/ocsf_detection_finding.json``.
"""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from importlib.resources import files
from typing import Any

from straycode import __version__
from straycode.detector.contract import utc_iso

OCSF_VERSION = "1.6.0"
LOG_PROVIDER = "straycode"     # metadata.log_provider unless the alert names its source
CLASS_UID = 2004           # Detection Finding
CATEGORY_UID = 2           # Findings
ACTIVITY = {"created": (1, "Create"), "updated": (2, "Update")}
SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"),
            "critical": (5, "Critical")}
RISK_LEVEL = {"low": (1, "Low"), "medium": (2, "Medium"), "high": (3, "High"),
              "critical": (4, "Critical")}
STATUS = {"open": (1, "New"), "escalated": (2, "In Progress"), "benign": (3, "Suppressed")}
FORMATS = ("ocsf", "native", "both")

TITLES = {
    "password_verified": "Security code requested after the correct password from an unfamiliar context",
    "session_only": "Security code requested inside an existing session from a context it never had (stolen session)",
    "no_password": "Security code requested without a password (reset-flow abuse or SMS pumping)",
    "no_session": "Security code requested outside any known session",
    "login_missing": "Security code requested but its login event never arrived",
}
TYPES = {
    "password_verified": ["Unrequested security code", "Credential compromise"],
    "session_only": ["Unrequested security code", "Session hijacking"],
    "no_password": ["Unrequested security code", "Password reset abuse / SMS pumping"],
    "no_session": ["Unrequested security code", "Orphan code request"],
    "login_missing": ["Unrequested security code", "Telemetry gap"],
}
REMEDIATION = {
    "password_verified": (
        "The user's correct password was typed from a context they have never proven. Treat the "
        "password as known to someone else: force a password reset, revoke active sessions and "
        "refresh tokens, confirm with the user out of band (not via the channel that received the "
        "code), and review recent account changes made from the observed IP/device."),
    "session_only": (
        "The session's password step came from the user's own context (or before the last "
        "password change), but this code was requested inside it from elsewhere: the session "
        "cookie is in someone else's hands, the password is not shown to be. Revoke the user's "
        "sessions and refresh tokens (and remembered-device cookies where a trusted device id "
        "was replayed), tell the user to check the device for infostealer malware, and review "
        "changes made in the session. Do NOT force a password reset or lock the account on "
        "this alert alone."),
    "no_password": (
        "No password was involved (password-reset flow or SMS pumping): do NOT force a password "
        "reset or lock the account. Check whether the same IP/network requested codes for other "
        "users, rate-limit or block that source and the reset/OTP endpoint for it, and tell the "
        "user to ignore codes they did not ask for."),
    "no_session": (
        "The code was requested outside any session we know of, so no password is proven to be "
        "known. Do not reset the password on this alert alone: review the requesting IP/network "
        "for fan-out across users and rate-limit it; notify the user."),
    "login_missing": (
        "The code's login event never reached straycode, so the flow is unknown. Check the "
        "identity-platform event feed for gaps, then review the request context manually before "
        "any account action."),
}

# MITRE ATT&CK (Enterprise) techniques a reason points to -> finding_info.attacks, each
# (technique uid, name, sub-technique uid, sub-technique name, tactic uid, tactic name)
_ATTACK = {
    "steal_cookie": ("T1539", "Steal Web Session Cookie", None, None, "TA0006", "Credential Access"),
    "use_cookie": ("T1550", "Use Alternate Authentication Material", "T1550.004",
                   "Web Session Cookie", "TA0005", "Defense Evasion"),
    "aitm": ("T1557", "Adversary-in-the-Middle", None, None, "TA0006", "Credential Access"),
    "browser_hijack": ("T1185", "Browser Session Hijacking", None, None, "TA0009", "Collection"),
    "mfa_fatigue": ("T1621", "Multi-Factor Authentication Request Generation", None, None,
                    "TA0006", "Credential Access"),
    "stuffing": ("T1110", "Brute Force", "T1110.004", "Credential Stuffing", "TA0006",
                 "Credential Access"),
    # sign-ins relayed through a rented server, a VPN or Tor (anonymizing_network)
    "proxy": ("T1090", "Proxy", None, None, "TA0011", "Command and Control"),
}
_REASON_ATTACKS = {
    "session_context_changed": ("steal_cookie", "use_cookie"),
    "trusted_device_unfamiliar_context": ("steal_cookie", "use_cookie"),
    "session_predates_password_change": ("use_cookie",),
    "unproven_session": ("aitm", "browser_hijack"),
    "code_bombing": ("mfa_fatigue",),
    "fanout_ip": ("stuffing",),
    "fanout_network": ("stuffing",),
    "anonymizing_network": ("proxy",),
}

# reason code -> [(key in the observed context, key in the baseline)] it is about; codes
# not listed (hour, fan-out, bombing, verification) are reported with their detail only
_SIGNALS: dict[str, list[tuple[str | None, str | None]]] = {
    "new_network_and_country": [("network", "networks"), ("country", "countries")],
    "new_network": [("network", "networks")],
    "new_place_known_network": [("city", "cities")],
    "new_address_known_network": [("prefix", "networks")],
    "new_device": [("device_id", "devices")],
    "no_device_id": [("device_id", "devices")],
    "known_device_new_browser": [("ua_family", "browsers")],
    "impossible_travel": [("city", "last_verified_place")],
    "session_context_changed": [("network", "networks"), ("city", "cities")],
    "trusted_device_unfamiliar_context": [("device_id", "trusted_devices"), ("network", "networks")],
    "fanout_ip": [("ip", None)],
    "fanout_network": [("network", None)],
    "network_reputation": [("network", None)],
    "anonymizing_network": [("network_kind", None), ("network", "networks")],
}
# native keys fully represented by to_ocsf(); every other key is copied to `unmapped`
_MAPPED = frozenset({"alert_id", "kind", "user_id", "ts", "decided_ts", "severity", "status",
                     "observed", "revision"})
# Observable type_ids (OCSF 1.6.0 observable.type_id, generated from the dictionary):
# by dictionary type ip_t -> 2 "IP Address"; by dictionary attribute country -> 14 "Country",
# user_agent -> 16 "HTTP User-Agent"; by object attribute user.uid -> 31, device.uid -> 47.
OBS_IP, OBS_COUNTRY, OBS_USER_AGENT, OBS_USER_UID, OBS_DEVICE_UID = 2, 14, 16, 31, 47
_OBS_TYPE = {OBS_IP: "IP Address", OBS_COUNTRY: "Country", OBS_USER_AGENT: "HTTP User-Agent",
             OBS_USER_UID: "User Object: uid", OBS_DEVICE_UID: "Device Object: uid"}


class AlertFormatError(ValueError):
    """render_alert() was asked for a format it does not know."""


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ms(ts: str) -> int:
    """An alert's RFC 3339 time -> epoch milliseconds. Not the event contract's parser: an
    alert may carry any time the detector formats (a deadline past 2199, a few hours before
    1970), and formatting it must never fail."""
    return round((datetime.fromisoformat(ts) - _EPOCH) / timedelta(milliseconds=1))


def _endpoint(ctx: dict) -> dict:
    """A native request context -> OCSF Network Endpoint (src_endpoint)."""
    ep: dict[str, Any] = {}
    if ctx.get("ip"):
        ep["ip"] = ctx["ip"]
    loc = {k: ctx[k] for k in ("country", "city") if ctx.get(k)}
    if ctx.get("lat") is not None and ctx.get("lon") is not None:
        loc["lat"], loc["long"] = ctx["lat"], ctx["lon"]
    if loc:
        ep["location"] = loc
    if ctx.get("asn") is not None or ctx.get("as_org"):
        asys = {}
        if ctx.get("asn") is not None:
            asys["number"] = int(ctx["asn"])
        if ctx.get("as_org"):
            asys["name"] = ctx["as_org"]
        ep["autonomous_system"] = asys
    return ep


def _evidence(name: str, uid: str | None, ctx: dict, user: dict) -> dict:
    ev: dict[str, Any] = {"name": name, "actor": {"user": dict(user)}, "user": dict(user)}
    if uid:
        ev["uid"] = uid
    ep = _endpoint(ctx)
    if ep:
        ev["src_endpoint"] = ep
    if ctx.get("device_id"):
        ev["device"] = {"uid": ctx["device_id"], "type_id": 0, "type": "Unknown"}
    ua = ctx.get("user_agent") or ctx.get("ua")
    if ua:
        ev["http_request"] = {"user_agent": ua}
    return ev


def _observations(value: Any) -> list[dict]:
    """Baseline values (a count, a list or a mapping) -> OCSF Observation list."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, float, list, dict, str)):
        return [{"value": str(value)}]
    if isinstance(value, (int, float)):
        return [{"value": "distinct_values", "count": int(value)}]
    if isinstance(value, dict) and value and all(isinstance(v, int) for v in value.values()):
        return [{"value": str(k), "count": v} for k, v in value.items()]
    if isinstance(value, dict):
        return [{"value": json.dumps(value, sort_keys=True, separators=(",", ":"))}]
    if isinstance(value, list):
        return [{"value": v if isinstance(v, str) else json.dumps(v, sort_keys=True)}
                for v in value]
    return [{"value": value}]


def _anomaly_analyses(alert: dict) -> list[dict]:
    """One Anomaly per positive reason: what the code request showed vs. the user's history.
    A code sent inside a login session has no client context of its own: use the login's."""
    observed = alert.get("observed") or {}
    code_ctx = observed.get("code") or observed.get("login") or {}
    baseline = alert.get("baseline") or {}
    anomalies, baselines, seen_base = [], [], set()
    for reason in alert.get("reasons") or []:
        if reason.get("weight", 0) <= 0:        # evidence of normality, not a deviation
            continue
        code = reason["code"]
        for ctx_key, base_key in _SIGNALS.get(code, [(None, None)]):
            observed = code_ctx.get(ctx_key) if ctx_key else None
            obs = [{"value": str(observed)}] if observed not in (None, "") else []
            obs.append({"value": reason.get("detail") or code})
            anomalies.append({"observation_type": "Deviation Analysis",
                              "observation_parameter": ctx_key or code,
                              "observed_pattern": code,
                              "observations": obs})
            if base_key and base_key not in seen_base and base_key in baseline:
                seen_base.add(base_key)
                baselines.append({"observation_type": "Frequency Analysis",
                                  "observation_parameter": base_key,
                                  "observations": _observations(baseline[base_key]) or
                                  [{"value": "none"}]})
    if "proven_signins" in baseline:
        baselines.insert(0, {"observation_type": "Frequency Analysis",
                             "observation_parameter": "proven_signins",
                             "observations": [{"value": "proven_signins",
                                               "count": int(baseline["proven_signins"])}]})
    if not anomalies:
        return []
    return [{"analysis_targets": [{"name": alert["user_id"], "type": "User Account"}],
             "anomalies": anomalies, "baselines": baselines}]


def _attacks(alert: dict) -> list[dict]:
    """OCSF MITRE ATT&CK objects for the alert's positive reasons, each technique once."""
    keys: list[str] = []
    for reason in alert.get("reasons") or []:
        if reason.get("weight", 0) > 0 or alert.get("kind") == "updated":
            for key in _REASON_ATTACKS.get(reason.get("code"), ()):
                if key not in keys:
                    keys.append(key)
    out = []
    for key in keys:
        uid, name, sub_uid, sub_name, tactic_uid, tactic_name = _ATTACK[key]
        attack: dict[str, Any] = {"technique": {"uid": uid, "name": name},
                                  "tactic": {"uid": tactic_uid, "name": tactic_name}}
        if sub_uid:
            attack["sub_technique"] = {"uid": sub_uid, "name": sub_name}
        out.append(attack)
    return out


def _desc(alert: dict) -> str:
    parts = [f"{alert.get('channel') or 'unknown-channel'} code for "
             f"{alert.get('purpose') or 'unknown purpose'} to user {alert['user_id']} "
             f"(flow {alert['flow']}, score {alert['score']:.3f})."]
    details = [r.get("detail") or r["code"] for r in alert.get("reasons") or []]
    if details:
        parts.append("Reasons: " + "; ".join(details) + ".")
    if alert.get("actions"):
        parts.append("Recommended: " + ", ".join(alert["actions"]) + ".")
    return " ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(alert: dict) -> str:
    """One human line: who, which flow, the top reasons, the actions."""
    top = [r["code"] for r in alert.get("reasons") or [] if r.get("weight", 0) > 0][:3]
    actions = ", ".join(alert.get("actions") or []) or "none"
    head = f"{alert['severity'].capitalize()} straycode alert"
    if alert["kind"] == "updated":
        head += f" update (revision {alert.get('revision', 2)}, {alert['status']})"
    return _one_line(
        f"{head} for user {alert['user_id']}: {alert.get('channel') or 'unknown-channel'} code "
        f"for {alert.get('purpose') or 'unknown purpose'}, flow {alert['flow']}, score "
        f"{alert['score']:.2f}; reasons: {', '.join(top) or 'none'}; actions: {actions}")


def _observables(finding: dict) -> list[dict]:
    """Pivot points of the finding, each pointing at where it is in the finding; a value
    that appears twice (the same IP for login and code) is listed once, first place wins."""
    out, seen = [], set()

    def add(type_id: int, name: str, value) -> None:
        if value in (None, "") or (type_id, value) in seen:
            return
        seen.add((type_id, value))
        out.append({"name": name, "type_id": type_id, "type": _OBS_TYPE[type_id],
                    "value": str(value)})

    for i, ev in enumerate(finding["evidences"]):
        base = f"evidences[{i}]"
        add(OBS_USER_UID, f"{base}.user.uid", (ev.get("user") or {}).get("uid"))
        ep = ev.get("src_endpoint") or {}
        add(OBS_IP, f"{base}.src_endpoint.ip", ep.get("ip"))
        add(OBS_COUNTRY, f"{base}.src_endpoint.location.country",
            (ep.get("location") or {}).get("country"))
        add(OBS_DEVICE_UID, f"{base}.device.uid", (ev.get("device") or {}).get("uid"))
        add(OBS_USER_AGENT, f"{base}.http_request.user_agent",
            (ev.get("http_request") or {}).get("user_agent"))
    return out


def _confidence_id(conf: float) -> tuple[int, str]:
    if conf >= 0.8:
        return 3, "High"
    if conf >= 0.5:
        return 2, "Medium"
    return 1, "Low"


def to_ocsf(alert: dict) -> dict:
    """Serialise a native alert (Alert.to_dict()) as an OCSF Detection Finding."""
    kind = alert["kind"]
    activity_id, activity_name = ACTIVITY[kind]
    sev_id, sev_name = SEVERITY[alert["severity"]]
    risk_id, risk_name = RISK_LEVEL[alert["severity"]]
    status_id, status_name = STATUS[alert["status"]]
    conf_id, conf_name = _confidence_id(float(alert["confidence"]))
    flow = alert["flow"]
    created_ms, decided_ms = _ms(alert["ts"]), _ms(alert["decided_ts"])
    revision = int(alert.get("revision") or (1 if kind == "created" else 2))
    user = {"uid": alert["user_id"], "type_id": 1, "type": "User"}
    observed = alert.get("observed") or {}

    evidences = [_evidence("code_request", alert.get("code_event_id"),
                           observed.get("code") or {}, user)]
    if observed.get("login"):
        evidences.append(_evidence("login", None, observed["login"], user))

    finding_info = {
        "uid": alert["alert_id"],
        "title": TITLES[flow],
        "desc": _desc(alert),
        "types": list(TYPES[flow]),
        "created_time": created_ms,
        "first_seen_time": created_ms,
        "last_seen_time": decided_ms,
        "analytic": {"uid": f"straycode.{flow}", "name": f"straycode {flow} code scoring",
                     "type_id": 2, "type": "Behavioral", "category": "Account Takeover"},
    }
    if kind == "updated":
        finding_info["modified_time"] = decided_ms
    attacks = _attacks(alert)
    if attacks:
        finding_info["attacks"] = attacks

    finding = {
        "class_uid": CLASS_UID, "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID, "category_name": "Findings",
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {activity_name}",
        "time": decided_ms,
        "message": _message(alert),
        "start_time": created_ms, "end_time": decided_ms,
        "severity_id": sev_id, "severity": sev_name,
        "status_id": status_id, "status": status_name,
        "is_alert": alert["status"] != "benign",
        "confidence_id": conf_id, "confidence": conf_name,
        "confidence_score": int(round(float(alert["confidence"]) * 100)),
        "risk_score": int(round(float(alert["score"]) * 100)),
        "risk_level_id": risk_id, "risk_level": risk_name,
        "finding_info": finding_info,
        "evidences": evidences,
        "resources": [{"uid": alert["user_id"], "type": "User Account"}],
        "remediation": {"desc": REMEDIATION[flow]},
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f"{alert['alert_id']}:{revision}",
            "sequence": revision,
            "correlation_uid": alert["alert_id"],
            "log_provider": LOG_PROVIDER,
            "product": {"name": "straycode", "vendor_name": "straycode project",
                        "version": __version__},
        },
        "unmapped": {k: copy.deepcopy(v) for k, v in alert.items() if k not in _MAPPED},
    }
    finding["observables"] = _observables(finding)
    analyses = _anomaly_analyses(alert)
    if analyses:
        finding["anomaly_analyses"] = analyses
    networks = {k: ctx.get("network") for k, ctx in observed.items() if ctx}
    if any(networks.values()):  # the /24 or ASN key the detector grouped the IP under
        finding["unmapped"]["observed_network"] = networks
    return finding


def render_alert(alert: dict, fmt: str) -> dict:
    """The JSON object to write for an alert in the configured `alerts.format`."""
    if fmt == "native":
        return alert
    if fmt == "ocsf":
        return to_ocsf(alert)
    if fmt == "both":
        return {"native": alert, "ocsf": to_ocsf(alert)}
    raise AlertFormatError(f"alerts.format must be one of {FORMATS}, not {fmt!r}")


def _context_from_evidence(ev: dict) -> dict:
    ep = ev.get("src_endpoint") or {}
    loc, asys = ep.get("location") or {}, ep.get("autonomous_system") or {}
    return {"ip": ep.get("ip"), "asn": asys.get("number"), "as_org": asys.get("name"),
            "country": loc.get("country"), "city": loc.get("city"), "lat": loc.get("lat"),
            "lon": loc.get("long"), "device_id": (ev.get("device") or {}).get("uid"),
            "user_agent": (ev.get("http_request") or {}).get("user_agent")}


def from_ocsf(finding: dict) -> dict:
    """Rebuild the native alert from a finding written by to_ocsf().

    Lossless for what consumers act on (ids, user, severity, flow, actions, reasons, scores,
    times, requester context); the network grouping key comes back from `unmapped`."""
    if finding.get("class_uid") != CLASS_UID or "finding_info" not in finding:
        raise ValueError("not an OCSF Detection Finding")
    un = dict(finding.get("unmapped") or {})
    nets = un.pop("observed_network", None) or {}
    info = finding["finding_info"]
    evidences = {ev.get("name"): ev for ev in finding.get("evidences") or []}
    user = next((ev.get("user", {}).get("uid") for ev in evidences.values()
                 if (ev.get("user") or {}).get("uid")), None)
    observed: dict[str, Any] = {"login": None, "code": None}
    for name, key in (("code_request", "code"), ("login", "login")):
        ev = evidences.get(name)
        if ev and (ev.get("src_endpoint") or ev.get("device") or ev.get("http_request")):
            observed[key] = {**_context_from_evidence(ev), "network": nets.get(key)}
    kind = {v[0]: k for k, v in ACTIVITY.items()}[finding["activity_id"]]
    alert = {"alert_id": info["uid"], "kind": kind, "user_id": user,
             "ts": utc_iso(info["created_time"] / 1000),
             "decided_ts": utc_iso(finding["time"] / 1000),
             "severity": {v[0]: k for k, v in SEVERITY.items()}[finding["severity_id"]],
             "status": {v[0]: k for k, v in STATUS.items()}[finding["status_id"]],
             "observed": observed}
    revision = (finding.get("metadata") or {}).get("sequence")
    if revision is not None:
        alert["revision"] = revision
    alert.update(un)
    return alert


def native_from_record(record: dict) -> dict:
    """The native alert from a line written in any alerts.format (native, both or ocsf)."""
    if isinstance(record.get("native"), dict):
        return record["native"]
    if record.get("class_uid") == CLASS_UID:
        return from_ocsf(record)
    if "alert_id" in record:
        return record
    raise ValueError("record is neither a native alert, an OCSF Detection Finding nor "
                     "{native, ocsf}")


@lru_cache(maxsize=None)
def _schema_text(name: str) -> str:
    return files("straycode.detector").joinpath(f"schemas/{name}").read_text()


def schema(name: str = "ocsf_detection_finding.json") -> dict:
    """One of the alert JSON Schemas: 'alert.v1.json' or 'ocsf_detection_finding.json'."""
    return json.loads(_schema_text(name))
