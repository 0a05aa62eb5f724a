from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from sightline.geo import GeoInfo, GeoLocator, Method, default_city_db

METHODS = [pytest.param("raw", id="raw"), pytest.param("geoip2", id="geoip2")]

LONDON: dict[str, Any] = {
    "continent": {"code": "EU", "names": {"en": "Europe"}},
    "country": {
        "iso_code": "GB",
        "names": {"en": "United Kingdom", "de": "Vereinigtes Königreich"},
    },
    "subdivisions": [
        {"iso_code": "ENG", "names": {"en": "England"}},
        {"iso_code": "LND", "names": {"en": "London"}},
    ],
    "city": {"names": {"en": "London"}},
    "postal": {"code": "EC2V"},
    "location": {
        "latitude": 51.5142,
        "longitude": -0.0931,
        "time_zone": "Europe/London",
        "accuracy_radius": 10,
    },
}
BERLIN_COUNTRY_ONLY: dict[str, Any] = {"country": {"iso_code": "DE", "names": {"en": "Germany"}}}


def _write(path: Path, database_type: str, records: dict[str, dict[str, Any]]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type)
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def city_db(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "city.mmdb",
        "GeoLite2-City",
        {
            "81.2.69.0/24": LONDON,
            "2a02:8108::/32": BERLIN_COUNTRY_ONLY,
        },
    )


@pytest.fixture
def asn_db(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "asn.mmdb",
        "GeoLite2-ASN",
        {
            "81.2.69.0/24": {
                "autonomous_system_number": 20712,
                "autonomous_system_organization": "Andrews & Arnold Ltd",
            },
            "185.199.108.0/22": {
                "autonomous_system_number": 54113,
                "autonomous_system_organization": "Fastly, Inc.",
            },
        },
    )


# What the GeoLite2 City file shipped by maxminddb-geolite2 (build 2018-07-03) says.
SHIPPED = [
    pytest.param(
        "8.8.8.8",
        GeoInfo(country_code="US", country="United States", latitude=37.75, longitude=-97.82),
        id="google-dns",
    ),
    pytest.param(
        "81.2.69.142",
        GeoInfo(
            country_code="GB",
            country="United Kingdom",
            region="Brent",
            region_code="BEN",
            city="Willesden",
            postal_code="NW10",
            latitude=51.53,
            longitude=-0.23,
            time_zone="Europe/London",
        ),
        id="maxmind-test-gb",
    ),
    pytest.param(
        "89.160.20.112",
        GeoInfo(
            country_code="SE",
            country="Sweden",
            region="Stockholm",
            region_code="AB",
            city="Stockholm",
            postal_code="173 11",
            latitude=59.33,
            longitude=18.05,
            time_zone="Europe/Stockholm",
        ),
        id="maxmind-test-se",
    ),
    pytest.param(
        "2001:4860:4860::8888",
        GeoInfo(
            country_code="US",
            country="United States",
            region="California",
            region_code="CA",
            city="Mountain View",
            postal_code="94043",
            latitude=37.42,
            longitude=-122.06,
            time_zone="America/Los_Angeles",
        ),
        id="google-dns-ipv6",
    ),
    pytest.param(
        "::ffff:1.1.1.1",
        GeoInfo(
            country_code="AU",
            country="Australia",
            region="Victoria",
            region_code="VIC",
            city="Research",
            postal_code="3095",
            latitude=-37.7,
            longitude=145.18,
            time_zone="Australia/Melbourne",
        ),
        id="ipv4-mapped",
    ),
]

NOT_LOCATED = [
    pytest.param("10.0.0.1", id="private"),
    pytest.param("192.168.1.20", id="private-192"),
    pytest.param("172.16.5.4", id="private-172"),
    pytest.param("100.64.0.1", id="carrier-grade-nat"),
    pytest.param("127.0.0.1", id="loopback"),
    pytest.param("169.254.1.1", id="link-local"),
    pytest.param("0.0.0.0", id="unspecified"),
    pytest.param("224.0.0.251", id="multicast"),
    pytest.param("240.0.0.1", id="reserved"),
    pytest.param("255.255.255.255", id="broadcast"),
    pytest.param("192.0.2.1", id="documentation"),
    pytest.param("::1", id="ipv6-loopback"),
    pytest.param("fe80::1%eth0", id="ipv6-link-local"),
    pytest.param("fd12:3456:789a::1", id="ipv6-unique-local"),
    pytest.param("2001:db8::1", id="ipv6-documentation"),
    pytest.param("not-an-ip", id="garbage"),
    pytest.param("", id="empty"),
    pytest.param("8.8.8.8:53", id="with-port"),
]


@pytest.fixture(scope="module", params=METHODS)
def shipped(request: pytest.FixtureRequest) -> Iterator[GeoLocator]:
    with GeoLocator(default_city_db(), method=request.param) as locator:
        yield locator


def test_default_city_db_is_the_packaged_geolite2_city() -> None:
    path = default_city_db()

    assert path.name == "GeoLite2-City.mmdb"
    assert path.is_file()


@pytest.mark.parametrize(("ip", "expected"), SHIPPED)
def test_shipped_database(shipped: GeoLocator, ip: str, expected: GeoInfo) -> None:
    assert shipped.lookup(ip) == expected


@pytest.mark.parametrize("ip", NOT_LOCATED)
def test_non_public_and_unparseable_addresses_are_none(shipped: GeoLocator, ip: str) -> None:
    assert shipped.lookup(ip) is None


def test_public_address_the_database_does_not_hold_is_none(city_db: Path) -> None:
    with GeoLocator(city_db) as locator:
        assert locator.lookup("8.8.8.8") is None


@pytest.mark.parametrize("method", METHODS)
def test_built_city_database(city_db: Path, method: Method) -> None:
    with GeoLocator(city_db, method=method) as locator:
        london = locator.lookup("81.2.69.160")
        berlin = locator.lookup("2a02:8108:1234::1")

    assert london == GeoInfo(
        country_code="GB",
        country="United Kingdom",
        region="London",  # the most specific subdivision
        region_code="LND",
        city="London",
        postal_code="EC2V",
        latitude=51.51,
        longitude=-0.09,
        time_zone="Europe/London",
    )
    assert berlin == GeoInfo(country_code="DE", country="Germany")


@pytest.mark.parametrize("method", METHODS)
def test_built_asn_database(city_db: Path, asn_db: Path, method: Method) -> None:
    with GeoLocator(city_db, asn_db, method=method) as locator:
        both = locator.lookup("81.2.69.1")
        asn_only = locator.lookup("185.199.110.153")
        city_only = locator.lookup("2a02:8108::1")
        neither = locator.lookup("9.9.9.9")

    assert both is not None
    assert (both.city, both.asn, both.as_org) == ("London", 20712, "Andrews & Arnold Ltd")
    assert asn_only == GeoInfo(asn=54113, as_org="Fastly, Inc.")
    assert city_only == GeoInfo(country_code="DE", country="Germany")
    assert neither is None


def test_methods_agree_on_the_shipped_database() -> None:
    ips = [f"{a}.{b}.{(a * b) % 256}.{(a + b) % 256}" for a in range(1, 224, 7) for b in (3, 77)]
    with (
        GeoLocator(default_city_db(), method="raw") as raw,
        GeoLocator(default_city_db(), method="geoip2") as models,
    ):
        results = [raw.lookup(ip) for ip in ips]
        assert results == [models.lookup(ip) for ip in ips]
    assert sum(result is not None for result in results) > len(ips) // 2


def test_rejects_a_database_of_the_wrong_kind(city_db: Path, asn_db: Path) -> None:
    with pytest.raises(ValueError, match=r"GeoLite2-ASN.* database, not City"):
        GeoLocator(asn_db)
    with pytest.raises(ValueError, match=r"GeoLite2-City.* database, not ASN"):
        GeoLocator(city_db, city_db)


def test_context_manager_closes_the_readers(city_db: Path) -> None:
    with GeoLocator(city_db) as locator:
        assert locator.lookup("81.2.69.1") is not None

    with pytest.raises(ValueError):
        locator.lookup("81.2.69.1")
