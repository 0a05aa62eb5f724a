from __future__ import annotations

import pytest

from worker.enrich import UserAgentInfo, is_automated_agent, is_bot

HEADLESS_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.28 Safari/537.36"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def _info(is_bot: bool) -> UserAgentInfo:
    return UserAgentInfo(
        browser_family="Chrome",
        browser_version=None,
        os_family="Windows",
        os_version=None,
        device_family="Other",
        device_brand=None,
        device_model=None,
        device_type="bot" if is_bot else "desktop",
        is_bot=is_bot,
    )


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(HEADLESS_LINUX, id="puppeteer-playwright-default"),
        pytest.param(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/124.0.0.0 Safari/537.36",
            id="headless-chrome-windows",
        ),
        pytest.param(
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
            "PhantomJS/2.1.1 Safari/538.1",
            id="phantomjs",
        ),
        pytest.param(f"{CHROME} Chrome-Lighthouse", id="lighthouse"),
        pytest.param("curl/7.88.1", id="curl"),
        pytest.param("Wget/1.21.4", id="wget"),
        pytest.param("python-requests/2.32.3", id="python-requests"),
        pytest.param("Python-urllib/3.11", id="python-urllib"),
        pytest.param("python-httpx/0.27.0", id="httpx"),
        pytest.param("Go-http-client/1.1", id="go"),
        pytest.param("Java/17.0.2", id="java"),
        pytest.param("Apache-HttpClient/4.5.14 (Java/17.0.2)", id="apache-httpclient"),
        pytest.param("axios/1.6.8", id="axios"),
        pytest.param("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", id="node-fetch"),
        pytest.param("libwww-perl/6.72", id="perl"),
        pytest.param("Scrapy/2.11.1 (+https://scrapy.org)", id="scrapy"),
        pytest.param("PostmanRuntime/7.37.3", id="postman"),
        pytest.param("HTTPie/3.2.2", id="httpie"),
        pytest.param("Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)"),
        pytest.param("Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"),
        pytest.param(
            "Mozilla/5.0 (compatible; archive.org_bot +http://archive.org/details/archive.org_bot)"
        ),
    ],
)
def test_automation_is_a_bot(raw: str) -> None:
    assert is_automated_agent(raw)
    assert is_bot(None, raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(CHROME, id="chrome"),
        pytest.param(
            "Mozilla/5.0 (Linux; Android 9; CUBOT X20 PRO) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Mobile Safari/537.36",
            id="cubot-phone",
        ),
        pytest.param(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 Instagram 330.0.0.40.92",
            id="instagram-in-app",
        ),
        pytest.param("", id="empty"),
    ],
)
def test_people_are_not_bots(raw: str) -> None:
    assert not is_automated_agent(raw)
    assert not is_bot(_info(is_bot=False), raw)


def test_parsed_verdict_counts_without_raw_string() -> None:
    assert is_bot(_info(is_bot=True), None)
    assert not is_bot(_info(is_bot=False), None)
    assert not is_bot(None, None)
