"""Enrichment against real .mmdb files (fixtures_geo): place, network, prefix, private
addresses, pre-enriched fields, the per-IP cache, and User-Agent families."""
from __future__ import annotations

import pytest

from detector_helpers import UA_ANDROID, UA_IPAD, UA_IPHONE, UA_LINUX, UA_WIN
from fixtures_geo import GEO_CASES
from straycode.detector.contract import parse_event
from straycode.detector.enrich import Enricher
from straycode.detector.useragent import ua_family


def login(ip, **extra):
    doc = {"event_id": "e1", "type": "login", "ts": "2026-03-01T08:00:00Z", "user_id": "u",
           "session_id": "s", "password_ok": True, "ip": ip}
    doc.update(extra)
    return parse_event(doc)


@pytest.fixture()
def enricher(geo_dbs):
    e = Enricher(*geo_dbs)
    yield e
    e.close()


@pytest.mark.parametrize("cidr", sorted(GEO_CASES))
def test_fixture_ranges_answer_city_country_location_and_asn(cidr, enricher):
    country, city, lat, lon, asn, org = GEO_CASES[cidr]
    ip = cidr.split("/")[0][:-1] + "7" if "." in cidr else cidr.split("/")[0] + "7"
    info = enricher.ip_info(ip)
    assert (info.country, info.city) == (country, f"{country}/{city}")
    assert (info.lat, info.lon) == pytest.approx((lat, lon), abs=1e-3)
    assert (info.asn, info.as_org, info.network) == (asn, org, f"AS{asn}")
    assert info.private is False


def test_prefixes_are_slash24_and_slash48(enricher):
    assert enricher.ip_info("81.2.69.142").prefix == "81.2.69.0/24"
    assert enricher.ip_info("2001:480::1:2:3").prefix == "2001:480::/48"
    # two ISP addresses in different /24s share the AS network but not the prefix
    a, b = enricher.ip_info("81.2.69.10"), enricher.ip_info("81.2.70.10")
    assert a.network == b.network == "AS20712" and a.prefix != b.prefix


def test_without_asn_db_the_network_is_the_slash16_block(geo_dbs):
    e = Enricher(geo_dbs[0], None)
    info = e.ip_info("81.2.69.10")
    assert (info.asn, info.network, info.country) == (None, "81.2.0.0/16", "GB")
    assert e.ip_info("2001:480::1").network == "2001:480::/32"
    e.close()


def test_without_any_db_there_is_no_place(geo_dbs):
    info = Enricher().ip_info("81.2.69.10")
    assert (info.country, info.city, info.lat, info.asn) == (None, None, None, None)
    assert info.prefix == "81.2.69.0/24"


def test_unknown_public_address_has_no_place_but_a_network(enricher):
    info = enricher.ip_info("8.8.8.8")
    assert (info.country, info.asn, info.private) == (None, None, False)
    assert info.network == "8.8.0.0/16"


@pytest.mark.parametrize("ip", ["10.1.2.3", "192.168.1.10", "172.16.5.4", "127.0.0.1", "169.254.1.1",
                                "100.64.0.1", "::1", "fe80::1", "fd00::5"])
def test_private_and_reserved_addresses_have_no_geo(ip, enricher):
    info = enricher.ip_info(ip)
    assert info.private is True
    assert (info.country, info.city, info.lat, info.lon, info.asn) == (None,) * 5
    assert info.network == "private"


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(enricher):
    event = login("::ffff:81.2.69.10")
    ctx = enricher.context(event)
    assert (ctx.ip, ctx.prefix, ctx.network, ctx.country) == ("81.2.69.10", "81.2.69.0/24", "AS20712", "GB")


def test_pre_enrichment_on_the_event_wins(enricher):
    event = login("81.2.69.10", geo={"country": "FR", "city": "Paris", "lat": 48.85, "lon": 2.35},
                  asn=3215, as_org="Orange")
    ctx = enricher.context(event)
    assert (ctx.country, ctx.city, ctx.lat, ctx.lon) == ("FR", "FR/Paris", 48.85, 2.35)
    assert (ctx.asn, ctx.network, ctx.as_org) == (3215, "AS3215", "Orange")
    assert ctx.prefix == "81.2.69.0/24"                   # the address itself still counts
    partial = enricher.context(login("81.2.69.10", geo={"city": "Croydon"}))
    assert (partial.country, partial.city, partial.lat) == ("GB", "GB/Croydon", 51.5142)


def test_lookups_are_cached_per_ip(enricher):
    for _ in range(5):
        enricher.context(login("81.2.69.10"))
        enricher.context(login("89.160.20.5"))
    assert enricher.lookups == 2
    enricher.context(login("89.160.20.6"))
    assert enricher.lookups == 3


def test_cache_is_bounded(geo_dbs):
    e = Enricher(*geo_dbs, cache_size=4)
    for i in range(10):
        e.ip_info(f"81.2.69.{i}")
    assert len(e._cache) == 4 and e.lookups == 10
    e.ip_info("81.2.69.9")                  # most recent: still cached
    e.ip_info("81.2.69.0")                  # evicted first: looked up again
    assert e.lookups == 11
    e.close()


def test_missing_database_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(FileNotFoundError, match="GeoIP database not found: .*nope.mmdb"):
        Enricher(missing)
    with pytest.raises(FileNotFoundError, match="nope.mmdb"):
        Enricher(None, missing)


def test_context_without_client_fields_is_none(enricher):
    event = parse_event({"event_id": "c", "type": "code_issued", "ts": "2026-03-01T08:00:00Z",
                         "user_id": "u", "session_id": None, "channel": "sms", "purpose": "password_reset"})
    assert enricher.context(event) is None


def test_context_carries_device_and_ua_family(enricher):
    ctx = enricher.context(login("81.2.69.10", device_id="dev-1", user_agent=UA_WIN))
    assert (ctx.device_id, ctx.browser, ctx.os) == ("dev-1", "Chrome|Windows|desktop", "Windows|desktop")
    feats = ctx.features()
    assert feats == {"net": ("AS20712", "81.2.69.0/24"), "loc": ("GB", "GB/London"),
                     "ua": ("Windows|desktop", "Chrome|Windows|desktop"), "dev": ("dev-1",)}


@pytest.mark.parametrize("ua,browser,os,kind", [
    (UA_WIN, "Chrome", "Windows", "desktop"),
    (UA_LINUX, "Firefox", "Linux", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Safari/605.1.15", "Safari", "Mac OS X", "desktop"),
    (UA_IPHONE, "Mobile Safari", "iOS", "mobile"),
    (UA_ANDROID, "Chrome Mobile", "Android", "mobile"),
    (UA_IPAD, "Mobile Safari", "iOS", "tablet"),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", "Chrome", "Android", "tablet"),
])
def test_user_agent_families(ua, browser, os, kind):
    fam = ua_family(ua)
    assert (fam.browser, fam.os, fam.device_type) == (browser, os, kind)


def test_ua_versions_do_not_change_the_family():
    newer = UA_WIN.replace("Chrome/126.0.0.0", "Chrome/131.0.6778.86")
    assert ua_family(newer) == ua_family(UA_WIN)
    assert ua_family(None) is None and ua_family("") is None
