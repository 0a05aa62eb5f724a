"""Is this hit from a program rather than a person?

ua-parser (through user-agents) knows the declared crawlers: it files them under the
device family ``Spider``. What it does not flag is automation that borrows a browser's
string (headless Chrome, PhantomJS, Lighthouse) and HTTP client libraries, which
announce themselves by name. Those are matched here on the raw string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.enrich.useragent import UserAgentInfo

# Matched on the lower-cased string as plain substrings: one ``in`` test each is far
# cheaper than one regex alternation over them (measured ~3 µs against ~55 µs a string).
_AUTOMATION_TOKENS = (
    # headless browsers, automation and auditing tools
    "headless",  # HeadlessChrome: Puppeteer's and Playwright's default user agent
    "phantomjs",
    "slimerjs",
    "lighthouse",
    "pagespeed",
    "gtmetrix",
    "pingdom",
    "statuscake",
    "selenium",
    "webdriver",
    "puppeteer",
    "playwright",
    "cypress",
    # HTTP client libraries and command-line tools
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "httpx/",
    "httpie/",
    "scrapy",
    "go-http-client",
    "java/",
    "apache-httpclient",
    "axios/",
    "node-fetch",
    "undici",
    "libwww-perl",
    "guzzlehttp",
    "faraday",
    "postmanruntime",
    "insomnia",
    "powershell",
    "zgrab",
    "masscan",
    "nuclei",
    # declared crawlers ua-parser may not know yet
    "crawl",
    "spider",
    "slurp",
    "scraper",
    "archiver",
    "facebookexternalhit",
    "mediapartners-google",
    "feedfetcher",
)
# Tokens that need word boundaries; "cubot" is a phone brand, not a bot.
_AUTOMATION_WORDS = re.compile(r"(?<!cu)bot\b|\bruby\b|^got\b")


def is_automated_agent(raw: str) -> bool:
    """Whether ``raw`` names automation: a headless browser, an HTTP library, a crawler."""
    lowered = raw.lower()
    for token in _AUTOMATION_TOKENS:
        if token in lowered:
            return True
    if "bot" in lowered or "ruby" in lowered or lowered.startswith("got"):
        return _AUTOMATION_WORDS.search(lowered) is not None
    return False


def is_bot(ua: UserAgentInfo | None, raw: str | None) -> bool:
    """Whether the hit came from a bot: ua-parser's crawlers plus automation named in ``raw``.

    A missing user agent is not taken as a bot: server-side SDKs send events that
    have none.
    """
    if ua is not None and ua.is_bot:
        return True
    return raw is not None and is_automated_agent(raw)
