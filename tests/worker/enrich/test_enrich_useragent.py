from __future__ import annotations

import pytest

from worker.enrich import UserAgentInfo, UserAgentParser, is_bot
from worker.enrich.useragent import Engine

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)

# (user agent, browser family, OS family, device type, is_bot)
AGENTS = [
    # desktop
    pytest.param(CHROME_WIN, "Chrome", "Windows", "desktop", False, id="chrome-windows"),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "Mac OS X",
        "desktop",
        False,
        id="chrome-macos",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "Linux",
        "desktop",
        False,
        id="chrome-linux",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "Chrome OS",
        "desktop",
        False,
        id="chrome-chromeos",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/109.0.0.0 Safari/537.36",
        "Chrome",
        "Windows",
        "desktop",
        False,
        id="chrome-windows7",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Firefox",
        "Windows",
        "desktop",
        False,
        id="firefox-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Firefox",
        "Mac OS X",
        "desktop",
        False,
        id="firefox-macos",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Firefox",
        "Ubuntu",
        "desktop",
        False,
        id="firefox-ubuntu",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
        "Firefox",
        "Fedora",
        "desktop",
        False,
        id="firefox-fedora",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        "Safari",
        "Mac OS X",
        "desktop",
        False,
        id="safari-macos",
    ),
    pytest.param(
        f"{CHROME_WIN} Edg/124.0.2478.51",
        "Edge",
        "Windows",
        "desktop",
        False,
        id="edge-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        "Edge",
        "Mac OS X",
        "desktop",
        False,
        id="edge-macos",
    ),
    pytest.param(
        f"{CHROME_WIN} OPR/109.0.0.0",
        "Opera",
        "Windows",
        "desktop",
        False,
        id="opera-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
        "Yandex Browser",
        "Windows",
        "desktop",
        False,
        id="yandex-browser-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
        "IE",
        "Windows",
        "desktop",
        False,
        id="ie11-windows",
    ),
    # Android phones
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "mobile",
        False,
        id="chrome-android-reduced",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "mobile",
        False,
        id="chrome-android-pixel",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/112.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "mobile",
        False,
        id="chrome-android-galaxy",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "Samsung Internet",
        "Android",
        "mobile",
        False,
        id="samsung-internet-phone",
    ),
    pytest.param(
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
        "Firefox Mobile",
        "Android",
        "mobile",
        False,
        id="firefox-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.50",
        "Edge Mobile",
        "Android",
        "mobile",
        False,
        id="edge-android",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile WebView",
        "Android",
        "mobile",
        False,
        id="android-webview",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 9; CUBOT KINGKONG 5 Pro) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome Mobile",
        "Android",
        "mobile",
        False,
        id="cubot-phone-is-not-a-bot",
    ),
    # Android tablets
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Chrome",
        "Android",
        "tablet",
        False,
        id="chrome-android-tablet",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 12; SAMSUNG SM-T970) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
        "Samsung Internet",
        "Android",
        "tablet",
        False,
        id="samsung-internet-tablet",
    ),
    # iOS
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "mobile",
        False,
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "Chrome Mobile iOS",
        "iOS",
        "mobile",
        False,
        id="chrome-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
        "Firefox iOS",
        "iOS",
        "mobile",
        False,
        id="firefox-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 EdgiOS/124.2478.50 Mobile/15E148 Safari/605.1.15",
        "Edge Mobile",
        "iOS",
        "mobile",
        False,
        id="edge-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148",
        "Mobile Safari UI/WKWebView",
        "iOS",
        "mobile",
        False,
        id="iphone-in-app-webview",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
        "tablet",
        False,
        id="safari-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "Chrome Mobile iOS",
        "iOS",
        "tablet",
        False,
        id="chrome-ipad",
    ),
    # declared crawlers
    pytest.param(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
        "Other",
        "bot",
        True,
        id="googlebot",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.6367.91 Mobile Safari/537.36 "
        "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot",
        "Android",
        "bot",
        True,
        id="googlebot-smartphone",
    ),
    pytest.param(
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "bingbot",
        "Other",
        "bot",
        True,
        id="bingbot",
    ),
    pytest.param(
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "AhrefsBot",
        "Other",
        "bot",
        True,
        id="ahrefsbot",
    ),
    pytest.param(
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "YandexBot",
        "Other",
        "bot",
        True,
        id="yandexbot",
    ),
    pytest.param(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot",
        "GPTBot",
        "Other",
        "bot",
        True,
        id="gptbot",
    ),
    pytest.param(
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "FacebookBot",
        "Other",
        "bot",
        True,
        id="facebook-link-preview",
    ),
    # HTTP libraries and tools
    pytest.param("curl/8.7.1", "curl", "Other", "bot", True, id="curl"),
    pytest.param("Wget/1.21.4", "Wget", "Other", "bot", True, id="wget"),
    pytest.param(
        "python-requests/2.31.0", "Python Requests", "Other", "bot", True, id="python-requests"
    ),
    pytest.param("Go-http-client/2.0", "Go-http-client", "Other", "bot", True, id="go-http"),
    pytest.param(
        "Python/3.11 aiohttp/3.9.5", "Python aiohttp", "Other", "bot", True, id="python-aiohttp"
    ),
    # headless browsers and auditing tools
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/124.0.6367.91 Safari/537.36",
        "HeadlessChrome",
        "Linux",
        "bot",
        True,
        id="headless-chrome",
    ),
    pytest.param(
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
        "PhantomJS/2.1.1 Safari/538.1",
        "PhantomJS",
        "Linux",
        "bot",
        True,
        id="phantomjs",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "Chrome Mobile",
        "Android",
        "bot",
        True,
        id="lighthouse",
    ),
]

ENGINES = [pytest.param("best", id="best"), pytest.param("legacy", id="legacy")]


@pytest.fixture(scope="module")
def parser() -> UserAgentParser:
    return UserAgentParser()


@pytest.mark.parametrize(("ua", "browser", "os", "device_type", "bot"), AGENTS)
def test_classifies_real_user_agents(
    parser: UserAgentParser, ua: str, browser: str, os: str, device_type: str, bot: bool
) -> None:
    info = parser.parse(ua)

    assert info is not None
    assert (info.browser_family, info.os_family, info.device_type, info.is_bot) == (
        browser,
        os,
        device_type,
        bot,
    )
    assert is_bot(info, ua) is bot


def test_table_covers_enough_agents() -> None:
    assert len(AGENTS) >= 40
    assert sum(1 for agent in AGENTS if agent.values[4]) >= 10
    assert sum(1 for agent in AGENTS if not agent.values[4]) >= 30


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_agrees_on_classification(engine: Engine) -> None:
    """The native resolver must not change what user-agents concludes."""
    reference = UserAgentParser(engine="legacy")
    candidate = UserAgentParser(engine=engine)
    for agent in AGENTS:
        ua = agent.values[0]
        assert isinstance(ua, str)
        expected, got = reference.parse(ua), candidate.parse(ua)
        assert expected is not None and got is not None
        assert (got.device_type, got.is_bot, got.os_family) == (
            expected.device_type,
            expected.is_bot,
            expected.os_family,
        ), ua


def test_uses_the_native_resolver() -> None:
    import ua_parser_rs  # a hard dependency (pyproject): never skipped

    assert ua_parser_rs is not None
    assert UserAgentParser().is_native
    assert not UserAgentParser(engine="basic").is_native


def test_reports_versions_and_device(parser: UserAgentParser) -> None:
    info = parser.parse(
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36"
    )

    assert info == UserAgentInfo(
        browser_family="Chrome Mobile",
        browser_version="124.0.6367",
        os_family="Android",
        os_version="14",
        device_family="Pixel 8",
        device_brand="Google",
        device_model="Pixel 8",
        device_type="mobile",
        is_bot=False,
    )


@pytest.mark.parametrize(
    "ua",
    [pytest.param(None, id="none"), pytest.param("", id="empty"), pytest.param("  ", id="blank")],
)
def test_missing_agent_is_none(parser: UserAgentParser, ua: str | None) -> None:
    assert parser.parse(ua) is None
    assert is_bot(None, ua) is False


def test_unknown_agent_is_other(parser: UserAgentParser) -> None:
    info = parser.parse("SightlineTestClient")

    assert info is not None
    assert (info.browser_family, info.os_family, info.device_type, info.is_bot) == (
        "Other",
        "Other",
        "other",
        False,
    )


def test_caches_each_distinct_string() -> None:
    parser = UserAgentParser(cache_size=2)

    first = parser.parse(CHROME_WIN)
    assert parser.parse(CHROME_WIN) is first
    parser.parse("curl/8.7.1")
    parser.parse("Wget/1.21.4")  # evicts CHROME_WIN (least recently used)
    again = parser.parse(CHROME_WIN)

    assert again == first
    assert again is not first


def test_crafted_long_string_is_cut_before_parsing() -> None:
    parser = UserAgentParser(max_length=512)
    # Long runs of what the rules' greedy groups match, then a bot marker past the cap.
    tail = " (compatible; AhrefsBot/7.0)"
    crafted = ("Mozilla/5.0 (" + "Linux; Android 1; (" * 1000)[: 8192 - len(tail)] + tail
    assert len(crafted) == 8192
    marker = crafted[: parser.max_length]

    info = parser.parse(crafted)

    assert info is not None
    # The bot marker sits past the cap: only the first 512 characters were read.
    assert info.is_bot is False
    assert parser.parse(marker) is info  # same cache entry: the key was the cut string
    uncut = UserAgentParser(max_length=len(crafted)).parse(crafted)
    assert uncut is not None and uncut.is_bot  # so the cap, not the parser, hid the marker


def test_cut_keeps_the_marker_when_it_is_inside_the_cap() -> None:
    parser = UserAgentParser(max_length=64)

    assert parser.parse("curl/8.7.1" + " " * 10_000) == parser.parse("curl/8.7.1")
