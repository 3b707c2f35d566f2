"""Hosting / VPN / proxy / Tor networks (detector/netkind.py): what classifies a network, and
what the detector does with it. An AiTM kit relays the victim's password and login code from
a rented server, so the code *is* entered; only the datacenter network gives it away. A
network the user proved (their own VPN) is familiar; an anonymizer's geolocation is its
exit's, so no travel speed is measured to or from it. Real .mmdb fixtures throughout,
including a GeoIP2 Anonymous IP database written with mmdb-writer."""
from __future__ import annotations

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from detector_helpers import DAY, HOME, HOUR, UA_LINUX, UA_WIN, Run, config
from straycode.components import build_enricher
from straycode.detector.contract import parse_event
from straycode.detector.engine import Detector
from straycode.detector.enrich import Context, Enricher
from straycode.detector.netkind import NetworkKinds
from straycode.detector.rules import PASSWORD_ACTIONS
from straycode.settings import load_settings

MIN = 60
HOSTED = "216.160.83.9"          # the fixtures' US network (AS209): a datacenter in these tests
TOR_EXIT, PROXY_IP, CONSUMER_VPN = "89.160.20.5", "175.16.199.7", "67.43.156.9"


def build_anonymous_ip_mmdb(path) -> str:
    """A GeoIP2-Anonymous-IP-shaped database: flags per network, as MaxMind ships them."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Anonymous-IP",
                        languages=["en"], description="straycode test anonymous ip db")
    flags = {
        "216.160.83.0/24": {"is_anonymous": True, "is_hosting_provider": True},
        "89.160.20.0/24": {"is_anonymous": True, "is_tor_exit_node": True},
        "175.16.199.0/24": {"is_anonymous": True, "is_residential_proxy": True},
        "67.43.156.0/24": {"is_anonymous": True, "is_anonymous_vpn": True,
                           "is_hosting_provider": True},
    }
    for cidr, record in flags.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return str(path)


@pytest.fixture(scope="module")
def anon_db(tmp_path_factory) -> str:
    return build_anonymous_ip_mmdb(tmp_path_factory.mktemp("anon") / "anonymous-ip.mmdb")


def _ctx(enricher: Enricher, ip: str, asn: int | None = None, as_org: str | None = None) -> Context:
    event = {"event_id": "e1", "type": "login", "user_id": "u", "ts": "2026-01-05T09:00:00Z",
             "session_id": "s1", "ip": ip, "password_ok": True}
    if asn is not None:
        event.update(asn=asn, as_org=as_org)
    return enricher.context(parse_event(event))


# ---------------------------------------------------------------------- classification
def test_default_settings_classify_cloud_asns_and_provider_names():
    kinds = NetworkKinds.from_settings(load_settings(env={})["geoip"]["network_kinds"])
    assert kinds.of(16509, "AMAZON-02") == "hosting"              # listed ASN
    assert kinds.of(4_200_000_001, "Nimbus Hosting Lyon") == "hosting"
    assert kinds.of(4_200_000_002, "CloudBox Paris DC") == "hosting"
    assert kinds.of(4_200_000_003, "FastVPN Exit Berlin") == "vpn"   # a VPN name wins
    assert kinds.of(20712, "Andrews & Arnold") is None             # a home ISP
    assert kinds.of(12576, "EE Mobile") is None
    assert kinds.of(None, None) is None


def test_a_bad_pattern_is_refused_with_its_key():
    with pytest.raises(ValueError, match=r"network_kinds.vpn_orgs: bad pattern"):
        NetworkKinds.from_settings({"vpn_orgs": ["("]})


def test_anonymous_ip_database_flags_win_over_asn_rules(geo_dbs, anon_db):
    kinds = NetworkKinds(hosting_asns=frozenset({35908}))
    enricher = Enricher(*geo_dbs, anonymous_ip_db=anon_db, kinds=kinds)
    assert _ctx(enricher, HOSTED).anonymizer == "hosting"
    assert _ctx(enricher, TOR_EXIT).anonymizer == "tor"
    assert _ctx(enricher, PROXY_IP).anonymizer == "proxy"
    assert _ctx(enricher, CONSUMER_VPN).anonymizer == "vpn"        # not the ASN rule's hosting
    assert _ctx(enricher, HOME).anonymizer is None
    # without the per-IP database the ASN rule answers
    assert _ctx(Enricher(*geo_dbs, kinds=kinds), CONSUMER_VPN).anonymizer == "hosting"


def test_pre_enriched_as_org_is_classified(geo_dbs):
    enricher = build_enricher({"geoip": {**load_settings(env={})["geoip"],
                                         "city_db": str(geo_dbs[0])}})
    ctx = _ctx(enricher, HOME, asn=4_200_000_009, as_org="Nimbus Hosting Lyon")
    assert (ctx.network, ctx.anonymizer) == ("AS4200000009", "hosting")


def test_context_codec_keeps_the_kind_and_writes_layout_1_without_one():
    ctx = Context(ip="216.160.83.9", network="AS209", anonymizer="hosting")
    assert Context.from_wire(ctx.to_wire()) == ctx
    plain = Context(ip="81.2.69.10", network="AS20712")
    assert len(plain.to_wire()) == 14                              # layout 1, as before
    assert Context.from_wire(plain.to_wire()) == plain


# ---------------------------------------------------------------------- detection
@pytest.fixture()
def run_with(geo_dbs, anon_db, monkeypatch):
    def make(**detector_over) -> Run:
        enricher = Enricher(*geo_dbs, anonymous_ip_db=anon_db)
        return Run(Detector(config(**detector_over), enricher), monkeypatch)
    return make


def alice(run: Run) -> float:
    return run.history("alice", ip=HOME, device="dev-1", ua=UA_WIN) + 9 * HOUR


def test_relayed_login_code_entered_from_a_datacenter_alerts(run_with):
    """AiTM: password and login code typed into the phishing page, relayed from a server;
    the relay's cookie jar has no device id of the user's. Without the hosting flag the same
    code is entered from a new network and place and scores low."""
    run = run_with()
    t = alice(run)
    session = run.login(t, "alice", HOSTED, device="relay-jar-1", ua=UA_WIN)
    code = run.code(t + 2, "alice", session)
    run.verify(t + 30, "alice", session)
    run.flush()
    record = run.score(code)
    terms = run.terms(code)
    assert terms["anonymizing_network"] > 0
    assert terms["code_verified"] == config()["weights"]["verified_via_relay"]
    assert record.alerted and record.flow == "password_verified"
    assert "notify_user" in record.actions
    (alert,) = run.alerts(code)
    reason = next(r for r in alert.reasons if r["code"] == "anonymizing_network")
    assert "hosting network this user never proved" in reason["detail"]
    device = next(r for r in alert.reasons if r["code"] == "new_device")
    assert "no credit for a familiar one through a possible relay" in device["detail"]
    assert alert.observed["login"]["network_kind"] == "hosting"
    import jsonschema
    from straycode.detector.ocsf import schema, to_ocsf
    finding = to_ocsf(alert.to_dict())
    jsonschema.validate(finding, schema())
    jsonschema.validate(alert.to_dict(), schema("alert.v1.json"))
    assert "T1090" in {a["technique"]["uid"] for a in finding["finding_info"]["attacks"]}



def test_same_relayed_login_without_network_kinds_stays_quiet(geo_dbs):
    run = Run(Detector(config(), Enricher(*geo_dbs)))               # no kinds, no flags
    t = alice(run)
    session = run.login(t, "alice", HOSTED, device="relay-jar-1", ua=UA_WIN)
    code = run.code(t + 2, "alice", session)
    run.verify(t + 30, "alice", session)
    run.flush()
    assert not run.score(code).alerted


def test_the_users_own_vpn_is_familiar_once_proven(run_with):
    run = run_with()
    t = run.history("bob", ip=CONSUMER_VPN, device="dev-9", ua=UA_LINUX) + 9 * HOUR
    session = run.login(t, "bob", CONSUMER_VPN, device="dev-9", ua=UA_LINUX)
    code = run.code(t + 2, "bob", session, purpose="security_settings")
    run.verify(t + 30, "bob", session)
    run.flush()
    assert "anonymizing_network" not in run.terms(code)
    assert not run.score(code).alerted


def test_no_travel_speed_to_or_from_an_anonymizer_exit(run_with):
    """London at 09:00, then a VPN exit in Thimphu 30 minutes later: not 'impossible travel'
    (the exit's place is not the person's), and the exit does not become the last place."""
    run = run_with()
    t = alice(run)
    run.sign_in(t, "alice", HOME)
    session = run.login(t + 30 * MIN, "alice", CONSUMER_VPN, device="dev-1", ua=UA_WIN)
    code = run.code(t + 30 * MIN + 2, "alice", session)
    run.verify(t + 30 * MIN + 30, "alice", session)
    run.flush()
    assert "impossible_travel" not in run.terms(code)
    assert run.det.users["alice"].baseline.last_place.city == "GB/London"


def test_trusted_cookie_from_a_new_context_counts_only_when_its_code_is_left(run_with):
    """A trusted laptop on a hotel/VPN network: the step-up code entered from that very
    context shows the cookie's owner; left unentered it is the infostealer row."""
    run = run_with()
    t = alice(run)
    entered = run.login(t, "alice", PROXY_IP, device="dev-1", ua=UA_WIN)
    code_entered = run.code(t + 2, "alice", entered)
    run.verify(t + 30, "alice", entered)
    left = run.login(t + DAY, "alice", TOR_EXIT, device="dev-1", ua=UA_WIN)
    code_left = run.code(t + DAY + 2, "alice", left)
    run.flush()
    assert "trusted_device_unfamiliar_context" not in run.terms(code_entered)
    assert run.terms(code_left)["trusted_device_unfamiliar_context"] > 0
    record = run.score(code_left)
    assert record.alerted and "force_password_reset" in record.actions
    assert not set(run.score(code_entered).actions) & PASSWORD_ACTIONS


def test_a_relay_forwards_the_victims_user_agent_so_it_is_no_proof_there(run_with):
    """An AiTM kit forwards the victim's own browser string with a fresh cookie jar. At home a
    fresh cookie with the user's familiar browser weighs less than one with a strange browser
    (cookie clearing); from a datacenter the user never used, the familiar browser string
    earns nothing: the fresh cookie weighs what it weighs with no browser credit."""
    run = run_with()
    codes = {}
    for user, ip in (("alice", HOME), ("carol", HOSTED)):
        t = run.history(user, ip=HOME, device="dev-1", ua=UA_WIN) + 9 * HOUR
        for n, ua in enumerate((UA_WIN, UA_LINUX)):
            at = t + n * DAY
            session = run.login(at, user, ip, device=f"fresh-{n}", ua=ua)
            codes[user, ua] = run.code(at + 2, user, session)
    run.flush()
    term = {key: run.terms(code)["new_device"] for key, code in codes.items()}
    assert term["alice", UA_WIN] < term["alice", UA_LINUX]          # at home: familiar helps
    assert term["carol", UA_WIN] >= term["alice", UA_WIN] + 0.5      # relayed: it does not
    assert term["carol", UA_WIN] > 0


def test_the_users_own_cookie_through_a_datacenter_is_no_relay(run_with):
    """The real site's cookies never reach a phishing domain: a known device id of the user's
    on a rented server is the user's own VPN, so the entered code counts in full."""
    run = run_with()
    code = run.sign_in(alice(run), "alice", HOSTED, device="dev-1", ua=UA_WIN)
    run.flush()
    terms = run.terms(code)
    assert terms["anonymizing_network"] > 0
    assert terms["code_verified"] == config()["weights"]["verified"]
    assert not run.score(code).alerted
