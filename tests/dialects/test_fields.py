"""The shared field checks every dialect uses."""

from __future__ import annotations

import ipaddress
import random

from sightline.dialects.fields import is_ip_address


def _python_says(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_an_ip_address_is_what_the_ipaddress_module_takes() -> None:
    """The check in C for dotted quads answers as ``ipaddress`` does, whatever it is given."""
    rng = random.Random(3)
    octets = ["0", "1", "9", "10", "99", "255", "256", "300", "00", "01", "007", "", "1e1"]
    octets += [" 1", "+1", "-1", "0x1", "\u0661", "1\x00"]
    alphabet = "0123456789.:abcdefABCDEF%x \x00\u0661"
    samples = ["127.0.0.1", "::1", "2001:db8::1", "fe80::1%eth0", "::ffff:1.2.3.4", ""]
    for _ in range(20_000):
        samples.append(".".join(rng.choices(octets, k=rng.choice([3, 4, 4, 4, 5]))))
        samples.append("".join(rng.choices(alphabet, k=rng.randrange(24))))
    for text in samples:
        assert is_ip_address(text) is _python_says(text), repr(text)
    assert is_ip_address("192.0.2.1") and is_ip_address("2001:db8::1")
    assert not is_ip_address("192.0.2.01") and not is_ip_address("192.0.2")
