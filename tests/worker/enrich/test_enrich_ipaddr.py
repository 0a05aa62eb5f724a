from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sightline.ipaddr import anonymise, public_address
from sightline.model import IpHandling


@pytest.mark.parametrize(
    ("ip", "full", "truncated"),
    [
        pytest.param("203.0.113.195", "203.0.113.195", "203.0.113.0", id="ipv4"),
        pytest.param("8.8.8.8", "8.8.8.8", "8.8.8.0", id="ipv4-public"),
        pytest.param("10.1.2.255", "10.1.2.255", "10.1.2.0", id="ipv4-private"),
        pytest.param(" 192.0.2.7\n", "192.0.2.7", "192.0.2.0", id="ipv4-whitespace"),
        pytest.param(
            "2001:db8:85a3:8d3:1319:8a2e:370:7348",
            "2001:db8:85a3:8d3:1319:8a2e:370:7348",
            "2001:db8:85a3::",
            id="ipv6",
        ),
        pytest.param(
            "2001:0DB8:0000:0000:0000:0000:0000:0001",
            "2001:db8::1",
            "2001:db8::",
            id="ipv6-uncompressed-upper",
        ),
        pytest.param("2a00:1450:4001:82b::200e", "2a00:1450:4001:82b::200e", "2a00:1450:4001::"),
        pytest.param("::1", "::1", "::", id="ipv6-loopback"),
        pytest.param("::ffff:198.51.100.23", "198.51.100.23", "198.51.100.0", id="ipv4-mapped"),
        pytest.param("fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a%eth0", "fe80::"),
        pytest.param("not an ip", None, None, id="garbage"),
        pytest.param("", None, None, id="empty"),
        pytest.param("256.1.1.1", None, None, id="octet-out-of-range"),
        pytest.param("1.2.3.4:8080", None, None, id="with-port"),
        pytest.param("[2001:db8::1]", None, None, id="bracketed"),
        pytest.param("1.2.3", None, None, id="short"),
    ],
)
def test_anonymise(ip: str, full: str | None, truncated: str | None) -> None:
    assert anonymise(ip, IpHandling.FULL) == full
    assert anonymise(ip, IpHandling.TRUNCATED) == truncated
    assert anonymise(ip, IpHandling.NONE) is None


@pytest.mark.parametrize("mode", list(IpHandling))
def test_missing_address(mode: IpHandling) -> None:
    assert anonymise(None, mode) is None


@given(st.text(), st.sampled_from(list(IpHandling)))
def test_anonymise_never_raises(text: str, mode: IpHandling) -> None:
    result = anonymise(text, mode)

    assert result is None or isinstance(result, str)
    if mode is IpHandling.NONE:
        assert result is None


@given(st.ip_addresses())
def test_truncation_keeps_the_prefix_and_zeroes_the_rest(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    host_bits = 8 if address.version == 4 else 128 - 48

    truncated = anonymise(str(address), IpHandling.TRUNCATED)

    assert truncated is not None
    kept = ipaddress.ip_address(truncated)
    assert kept.version == address.version
    assert int(kept) >> host_bits == int(address) >> host_bits
    assert int(kept) & ((1 << host_bits) - 1) == 0


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        pytest.param("8.8.8.8", "8.8.8.8", id="public"),
        pytest.param(" 1.1.1.1\t", "1.1.1.1", id="whitespace"),
        pytest.param("9.255.255.255", "9.255.255.255", id="below-10/8"),
        pytest.param("11.0.0.0", "11.0.0.0", id="above-10/8"),
        pytest.param("100.63.255.255", "100.63.255.255", id="below-cgnat"),
        pytest.param("100.128.0.0", "100.128.0.0", id="above-cgnat"),
        pytest.param("172.15.255.255", "172.15.255.255", id="below-172.16/12"),
        pytest.param("172.32.0.0", "172.32.0.0", id="above-172.16/12"),
        pytest.param("223.255.255.255", "223.255.255.255", id="below-multicast"),
        pytest.param("::ffff:8.8.4.4", "8.8.4.4", id="ipv4-mapped"),
        pytest.param("2001:4860:4860::8888", "2001:4860:4860::8888", id="ipv6"),
        pytest.param("2a00:1450:4001:82b::200e", "2a00:1450:4001:82b::200e", id="ipv6-ripe"),
        pytest.param("2001:200::1", "2001:200::1", id="just-above-2001::/23"),
        pytest.param("10.0.0.1", None, id="private-10"),
        pytest.param("172.16.0.1", None, id="private-172"),
        pytest.param("192.168.255.255", None, id="private-192"),
        pytest.param("100.64.0.1", None, id="cgnat"),
        pytest.param("127.0.0.1", None, id="loopback"),
        pytest.param("169.254.169.254", None, id="link-local"),
        pytest.param("0.0.0.0", None, id="this-network"),
        pytest.param("192.0.2.1", None, id="test-net-1"),
        pytest.param("198.51.100.1", None, id="test-net-2"),
        pytest.param("203.0.113.1", None, id="test-net-3"),
        pytest.param("198.18.0.1", None, id="benchmarking"),
        pytest.param("224.0.0.1", None, id="multicast"),
        pytest.param("240.0.0.1", None, id="reserved"),
        pytest.param("255.255.255.255", None, id="broadcast"),
        pytest.param("::ffff:10.0.0.1", None, id="mapped-private"),
        pytest.param("::", None, id="ipv6-unspecified"),
        pytest.param("::1", None, id="ipv6-loopback"),
        pytest.param("fe80::1", None, id="ipv6-link-local"),
        pytest.param("fe80::1%eth0", None, id="ipv6-zoned"),
        pytest.param("fd00::1", None, id="ipv6-unique-local"),
        pytest.param("ff02::1", None, id="ipv6-multicast"),
        pytest.param("2001:db8::1", None, id="ipv6-documentation"),
        pytest.param("2001::1", None, id="teredo"),
        pytest.param("2002:808:808::1", None, id="6to4"),
        pytest.param("4000::1", None, id="ipv6-unallocated"),
        pytest.param("01.2.3.4", None, id="leading-zero"),
        pytest.param("1.2.3", None, id="short"),
        pytest.param("8.8.8.8\x00", None, id="nul"),
        pytest.param("\uff18.\uff18.\uff18.\uff18", None, id="fullwidth-digits"),
        pytest.param("", None, id="empty"),
    ],
)
def test_public_address(ip: str, expected: str | None) -> None:
    assert public_address(ip) == expected


@given(st.ip_addresses())
def test_public_address_never_keeps_what_python_calls_non_global(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        assert public_address(str(address)) is None


@given(st.text())
def test_public_address_never_raises(text: str) -> None:
    result = public_address(text)

    assert result is None or ipaddress.ip_address(result).is_global
