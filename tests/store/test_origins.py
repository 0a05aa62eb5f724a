"""Allowed origins are kept in the form browsers send: the CLI, the product API and the
store agree, so ``https://Shop.example:443/`` typed by someone still matches."""

from __future__ import annotations

import pytest

from sightline.origins import origin_of, parse_origin


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("https://shop.example", "https://shop.example"),
        ("https://Shop.Example/", "https://shop.example"),
        ("HTTPS://shop.example:443", "https://shop.example"),
        ("http://shop.example:80/", "http://shop.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:3000/", "http://[::1]:3000"),
        ("  https://shop.example  ", "https://shop.example"),
        (
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop/",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
        ),
    ],
)
def test_parse_origin_writes_it_as_browsers_do(typed: str, stored: str) -> None:
    assert parse_origin(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("shop.example", "not an origin: scheme://host[:port]"),
        ("ftp://shop.example", "not an origin: scheme://host[:port]"),
        ("https://shop.example:http", "not an origin"),  # the port is not a number
        ("https://shop.example/pricing", "no path, query or fragment (https://shop.example)"),
        ("https://shop.example/?a=1", "no path, query or fragment"),
        ("file:///home/me/page.html", "not an origin"),
    ],
)
def test_parse_origin_says_why_not(typed: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_origin(typed)
    assert reason in str(raised.value)


def test_origin_of_a_page_url_drops_the_path() -> None:
    assert origin_of("https://Shop.example:443/pricing?x=1#top") == "https://shop.example"
    assert origin_of("about:blank") is None
