"""Fixtures: tiny real .mmdb GeoIP databases built with mmdb-writer.

They are read by the same geoip2 readers as MaxMind/DB-IP files, so enrichment is tested
against the real file format, not a stub. ``GEO_CASES`` says what each range answers.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet

# cidr: (country iso, city, lat, lon, asn, as_org)
GEO_CASES: dict[str, tuple] = {
    "81.2.69.0/24": ("GB", "London", 51.5142, -0.0931, 20712, "Andrews & Arnold"),
    "81.2.70.0/24": ("GB", "London", 51.5142, -0.0931, 20712, "Andrews & Arnold"),
    "89.160.20.0/24": ("SE", "Linköping", 58.4167, 15.6167, 29518, "Bredband2"),
    "2.125.160.0/24": ("GB", "Boxford", 51.75, -1.25, 5607, "Sky Broadband"),
    "175.16.199.0/24": ("CN", "Changchun", 43.88, 125.3228, 4837, "China Unicom"),
    "216.160.83.0/24": ("US", "Milton", 47.2513, -122.3149, 209, "CenturyLink"),
    "67.43.156.0/24": ("BT", "Thimphu", 27.4661, 89.6419, 35908, "Hosting VPN Ltd"),
    "2001:480::/48": ("US", "San Diego", 32.7203, -117.1552, 6939, "Hurricane Electric"),
    # a mobile carrier in London, dual stack (issue #12: Wi-Fi -> carrier within a session)
    "82.132.217.0/24": ("GB", "London", 51.5085, -0.1257, 12576, "EE Mobile"),
    "2a01:4c8:1000::/40": ("GB", "London", 51.5085, -0.1257, 12576, "EE Mobile"),
    # the user's own ISP over IPv6 (dual stack at home)
    "2001:8b0:1::/48": ("GB", "London", 51.5142, -0.0931, 20712, "Andrews & Arnold"),
}


def _city_record(country: str, city: str, lat: float, lon: float) -> dict:
    return {
        "country": {"iso_code": country, "names": {"en": country}},
        "city": {"names": {"en": city}},
        "location": {"latitude": lat, "longitude": lon, "accuracy_radius": 50},
    }


def build_city_mmdb(path: Path, cases: dict[str, tuple] = GEO_CASES) -> Path:
    """Write a GeoIP2-City-shaped database answering `cases`."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                        languages=["en"], description="straycode test city db")
    for cidr, (country, city, lat, lon, _asn, _org) in cases.items():
        writer.insert_network(IPSet([cidr]), _city_record(country, city, lat, lon))
    writer.to_db_file(str(path))
    return path


def build_asn_mmdb(path: Path, cases: dict[str, tuple] = GEO_CASES) -> Path:
    """Write a GeoLite2-ASN-shaped database answering `cases`."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                        languages=["en"], description="straycode test asn db")
    for cidr, (*_geo, asn, org) in cases.items():
        writer.insert_network(IPSet([cidr]), {"autonomous_system_number": MmdbU32(asn),
                                              "autonomous_system_organization": org})
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def geo_dbs(tmp_path_factory) -> tuple[Path, Path]:
    """(city_db_path, asn_db_path) of tiny real .mmdb files answering GEO_CASES."""
    folder = tmp_path_factory.mktemp("geo")
    return build_city_mmdb(folder / "city.mmdb"), build_asn_mmdb(folder / "asn.mmdb")
