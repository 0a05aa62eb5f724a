from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.enrich import CampaignInfo, parse_campaign

PAGE = "https://shop.example.com/pricing"

# (page url, referrer, channel, referrer host, referrer name, search term)
CHANNELS = [
    pytest.param(PAGE, None, "direct", None, None, None, id="no-referrer-direct"),
    pytest.param(None, None, "direct", None, None, None, id="nothing-direct"),
    pytest.param(PAGE, "", "direct", None, None, None, id="empty-referrer-direct"),
    pytest.param(PAGE, "not a url", "direct", None, None, None, id="garbage-referrer-direct"),
    pytest.param(
        PAGE, "chrome-extension://abcdefgh/popup.html", "direct", None, None, None, id="non-web"
    ),
    pytest.param(
        PAGE,
        "https://shop.example.com/",
        "internal",
        "shop.example.com",
        None,
        None,
        id="same-host-internal",
    ),
    pytest.param(
        "https://www.example.com/a",
        "https://example.com/b",
        "internal",
        "example.com",
        None,
        None,
        id="www-same-site-internal",
    ),
    pytest.param(
        PAGE,
        "https://www.google.com/search?q=running+shoes&hl=en",
        "search",
        "www.google.com",
        "Google",
        "running shoes",
        id="google-with-term",
    ),
    pytest.param(
        PAGE,
        "https://www.google.co.uk/",
        "search",
        "www.google.co.uk",
        "Google",
        None,
        id="google-uk",
    ),
    pytest.param(
        PAGE,
        "https://yandex.com.tr/search/?text=ko%C5%9Fu+ayakkab%C4%B1",
        "search",
        "yandex.com.tr",
        "Yandex",
        "ko\u015fu ayakkab\u0131",  # koşu ayakkabi, with a dotless i
        id="yandex-tr-with-term",
    ),
    pytest.param(
        PAGE,
        "https://www.bing.com/search?q=sightline+analytics",
        "search",
        "www.bing.com",
        "Bing",
        "sightline analytics",
        id="bing-with-term",
    ),
    pytest.param(
        PAGE, "https://duckduckgo.com/", "search", "duckduckgo.com", "DuckDuckGo", None, id="ddg"
    ),
    pytest.param(
        PAGE,
        "https://search.brave.com/search?q=event+collector",
        "search",
        "search.brave.com",
        "Brave",
        "event collector",
        id="brave",
    ),
    pytest.param(
        PAGE,
        "https://docs.google.com/document/d/1",
        "referral",
        "docs.google.com",
        None,
        None,
        id="google-docs-is-not-search",
    ),
    pytest.param(
        PAGE, "https://mail.google.com/", "email", "mail.google.com", "Gmail", None, id="gmail"
    ),
    pytest.param(
        PAGE,
        "https://outlook.live.com/",
        "email",
        "outlook.live.com",
        "Outlook.com",
        None,
        id="outlook",
    ),
    pytest.param(
        PAGE,
        "android-app://com.google.android.gm/",
        "email",
        "com.google.android.gm",
        "Gmail",
        None,
        id="gmail-android-app",
    ),
    pytest.param(
        PAGE,
        "https://l.facebook.com/l.php?u=x",
        "social",
        "l.facebook.com",
        "Facebook",
        None,
        id="facebook-link-shim",
    ),
    pytest.param(PAGE, "https://t.co/abc123", "social", "t.co", "X", None, id="t-co"),
    pytest.param(PAGE, "https://x.com/", "social", "x.com", "X", None, id="x"),
    pytest.param(
        PAGE, "https://www.linkedin.com/", "social", "www.linkedin.com", "LinkedIn", None, id="li"
    ),
    pytest.param(
        PAGE,
        "https://news.ycombinator.com/item?id=1",
        "social",
        "news.ycombinator.com",
        "Hacker News",
        None,
        id="hacker-news",
    ),
    pytest.param(
        PAGE,
        "https://www.tiktok.com/@someone",
        "social",
        "www.tiktok.com",
        "TikTok",
        None,
        id="tiktok",
    ),
    pytest.param(
        PAGE,
        "https://blog.example.org/post/1?q=ignored",
        "referral",
        "blog.example.org",
        None,
        None,
        id="other-site-referral",
    ),
    pytest.param(
        PAGE,
        "android-app://com.example.reader/",
        "referral",
        "com.example.reader",
        None,
        None,
        id="unknown-android-app",
    ),
    pytest.param(
        PAGE,
        "HTTPS://WWW.GOOGLE.DE:443/",
        "search",
        "www.google.de",
        "Google",
        None,
        id="upper-case-with-port",
    ),
    # campaign parameters
    pytest.param(
        f"{PAGE}?utm_source=google&utm_medium=cpc&utm_campaign=spring",
        "https://www.google.com/",
        "paid",
        "www.google.com",
        "Google",
        None,
        id="utm-cpc-paid",
    ),
    pytest.param(
        f"{PAGE}?utm_source=newsletter&utm_medium=email",
        "https://www.google.com/",
        "email",
        "www.google.com",
        "Google",
        None,
        id="utm-email-beats-referrer",
    ),
    pytest.param(
        f"{PAGE}?utm_source=facebook&utm_medium=social",
        None,
        "social",
        None,
        None,
        None,
        id="utm-social",
    ),
    pytest.param(
        f"{PAGE}?utm_source=google&utm_medium=organic",
        None,
        "search",
        None,
        None,
        None,
        id="organic",
    ),
    pytest.param(
        f"{PAGE}?utm_medium=Paid_Social", None, "paid", None, None, None, id="utm-paid-any-case"
    ),
    pytest.param(f"{PAGE}?utm_medium=display", None, "paid", None, None, None, id="utm-display"),
    pytest.param(f"{PAGE}?utm_medium=ppc", None, "paid", None, None, None, id="utm-ppc"),
    pytest.param(
        f"{PAGE}?utm_source=google", None, "search", None, None, None, id="utm-source-only-google"
    ),
    pytest.param(
        f"{PAGE}?utm_source=partner-site",
        None,
        "referral",
        None,
        None,
        None,
        id="tagged-unknown-source-referral",
    ),
    pytest.param(
        f"{PAGE}?utm_medium=qr-code",
        "https://www.reddit.com/r/x",
        "social",
        "www.reddit.com",
        "Reddit",
        None,
        id="unknown-medium-falls-back-to-referrer",
    ),
    pytest.param(
        "https://app.example.com/#/pricing?utm_source=bing&utm_medium=cpc",
        None,
        "paid",
        None,
        None,
        None,
        id="hash-route-utm",
    ),
    # click ids
    pytest.param(f"{PAGE}?gclid=abc", None, "paid", None, None, None, id="gclid-paid"),
    pytest.param(
        f"{PAGE}?msclkid=m1",
        "https://www.bing.com/",
        "paid",
        "www.bing.com",
        "Bing",
        None,
        id="msclkid-beats-search-referrer",
    ),
    pytest.param(
        f"{PAGE}?fbclid=IwAR0",
        "https://l.facebook.com/",
        "social",
        "l.facebook.com",
        "Facebook",
        None,
        id="fbclid-is-social",
    ),
    pytest.param(f"{PAGE}?fbclid=IwAR0", None, "social", None, None, None, id="fbclid-alone"),
    pytest.param(f"{PAGE}?mc_cid=c1&mc_eid=e1", None, "email", None, None, None, id="mailchimp"),
]


@pytest.mark.parametrize(
    ("url", "referrer", "channel", "host", "name", "term"),
    CHANNELS,
)
def test_channel_and_referrer(
    url: str | None,
    referrer: str | None,
    channel: str,
    host: str | None,
    name: str | None,
    term: str | None,
) -> None:
    info = parse_campaign(url, referrer)

    assert (info.channel, info.referrer_host, info.referrer_name, info.search_term) == (
        channel,
        host,
        name,
        term,
    )


def test_every_channel_is_covered() -> None:
    assert {param.values[2] for param in CHANNELS} == {
        "direct",
        "search",
        "social",
        "email",
        "internal",
        "referral",
        "paid",
    }


def test_full_campaign() -> None:
    url = (
        "https://shop.example.com/p?UTM_Source=Google&utm_medium=cpc&utm_campaign=spring%20sale"
        "&utm_term=running+shoes&utm_content=ad-2&gclid=Cj0KCQ&wbraid=wb1&li_fat_id=li1"
        "&ttclid=tt1&twclid=tw1&yclid=y1&dclid=d1&gbraid=gb1&fbclid=fb1&msclkid=ms1&color=red"
    )

    assert parse_campaign(url, "https://www.google.com/") == CampaignInfo(
        utm_source="Google",
        utm_medium="cpc",
        utm_campaign="spring sale",
        utm_term="running shoes",
        utm_content="ad-2",
        click_ids={
            "gclid": "Cj0KCQ",
            "wbraid": "wb1",
            "li_fat_id": "li1",
            "ttclid": "tt1",
            "twclid": "tw1",
            "yclid": "y1",
            "dclid": "d1",
            "gbraid": "gb1",
            "fbclid": "fb1",
            "msclkid": "ms1",
        },
        referrer_host="www.google.com",
        referrer_name="Google",
        search_term=None,
        channel="paid",
    )


def test_blank_and_repeated_parameters() -> None:
    info = parse_campaign(f"{PAGE}?utm_source=&utm_source=first&utm_source=second&gclid=", None)

    assert info.utm_source == "first"
    assert info.click_ids == {}
    assert info.channel == "referral"


def test_no_campaign() -> None:
    assert parse_campaign(PAGE, None) == CampaignInfo(
        utm_source=None,
        utm_medium=None,
        utm_campaign=None,
        utm_term=None,
        utm_content=None,
        click_ids={},
        referrer_host=None,
        referrer_name=None,
        search_term=None,
        channel="direct",
    )


@pytest.mark.parametrize(
    ("url", "referrer"),
    [
        pytest.param("http://[::1", "http://[::1", id="broken-ipv6"),
        pytest.param("https://exa mple.com/?utm_source=%ZZ", "https://%zz/", id="bad-escapes"),
        pytest.param("?utm_medium=cpc", "//", id="relative"),
        pytest.param("https://example.com:99999/", "https://example.com:99999/", id="bad-port"),
    ],
)
def test_malformed_urls_are_values(url: str, referrer: str) -> None:
    assert isinstance(parse_campaign(url, referrer), CampaignInfo)


_url_text = st.one_of(
    st.none(),
    st.text(),
    st.builds(
        lambda scheme, host, query: f"{scheme}://{host}/?{query}",
        st.sampled_from(["http", "https", "android-app", "ftp", ""]),
        st.text(),
        st.text(),
    ),
)


@given(_url_text, _url_text)
def test_parse_campaign_never_raises(url: str | None, referrer: str | None) -> None:
    info = parse_campaign(url, referrer)

    assert info.channel in {"direct", "search", "social", "email", "internal", "referral", "paid"}
