"""Which search engine, social network or webmail a referring host belongs to.

Modelled on Snowplow's referer-parser data (medium -> source -> domains, search
parameters), curated here because the only PyPI package that ships it
(``referer-parser`` 0.4.1) dates from 2016: it knows neither x.com, TikTok, Threads,
Bluesky, Brave Search nor Outlook on the web. A host matches its own entry or its
closest listed parent domain, so ``l.facebook.com`` is Facebook. Engines with a domain
per country (google.de, google.co.uk, yandex.com.tr, ...) match by their brand label.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Medium = Literal["search", "social", "email"]


class KnownReferrer(NamedTuple):
    name: str
    medium: Medium
    search_params: tuple[str, ...] = ()


_SEARCH: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name: (hosts, query parameters holding the search term)
    "Bing": (("bing.com", "cn.bing.com"), ("q",)),
    "DuckDuckGo": (("duckduckgo.com", "html.duckduckgo.com", "lite.duckduckgo.com"), ("q",)),
    "Yahoo!": (("search.yahoo.com", "search.yahoo.co.jp"), ("p", "q")),
    "Baidu": (("baidu.com", "m.baidu.com"), ("wd", "word", "kw")),
    "Ecosia": (("ecosia.org",), ("q",)),
    "Brave": (("search.brave.com",), ("q",)),
    "Kagi": (("kagi.com",), ("q",)),
    "Startpage": (("startpage.com", "startpage.nl"), ("query", "q")),
    "Qwant": (("qwant.com", "lite.qwant.com"), ("q",)),
    "Naver": (("search.naver.com", "m.search.naver.com"), ("query",)),
    "Seznam": (("search.seznam.cz",), ("q",)),
    "Sogou": (("sogou.com", "m.sogou.com"), ("query", "keyword")),
    "360 Search": (("so.com",), ("q",)),
    "Ask": (("ask.com",), ("q",)),
    "AOL": (("search.aol.com",), ("q", "query")),
    "Petal Search": (("petalsearch.com",), ("query",)),
    "Mojeek": (("mojeek.com",), ("q",)),
    "Daum": (("search.daum.net",), ("q",)),
}

_SOCIAL: dict[str, tuple[str, ...]] = {
    "Facebook": ("facebook.com", "fb.com", "fb.me", "messenger.com"),
    "Instagram": ("instagram.com",),
    "X": ("twitter.com", "x.com", "t.co"),
    "LinkedIn": ("linkedin.com", "lnkd.in"),
    "Reddit": ("reddit.com", "redd.it"),
    "Pinterest": ("pinterest.com", "pin.it"),
    "TikTok": ("tiktok.com",),
    "YouTube": ("youtube.com", "youtu.be"),
    "Threads": ("threads.net", "threads.com"),
    "Bluesky": ("bsky.app",),
    "Mastodon": ("mastodon.social", "mstdn.social"),
    "Hacker News": ("news.ycombinator.com",),
    "VKontakte": ("vk.com",),
    "Odnoklassniki": ("ok.ru",),
    "Weibo": ("weibo.com", "weibo.cn"),
    "Tumblr": ("tumblr.com",),
    "Quora": ("quora.com",),
    "Snapchat": ("snapchat.com",),
    "Telegram": ("t.me", "telegram.org", "telegram.me"),
    "WhatsApp": ("whatsapp.com", "wa.me"),
    "Discord": ("discord.com", "discord.gg", "discordapp.com"),
    "Slack": ("slack.com",),
    "Medium": ("medium.com",),
    "GitHub": ("github.com",),
    "Stack Overflow": ("stackoverflow.com", "stackexchange.com"),
    "Twitch": ("twitch.tv",),
    "Vimeo": ("vimeo.com",),
    "Flickr": ("flickr.com",),
    "XING": ("xing.com",),
    "LINE": ("line.me",),
    "Nextdoor": ("nextdoor.com",),
    "Product Hunt": ("producthunt.com",),
}

_EMAIL: dict[str, tuple[str, ...]] = {
    "Gmail": ("mail.google.com", "inbox.google.com"),
    "Outlook.com": (
        "outlook.live.com",
        "outlook.office.com",
        "outlook.office365.com",
        "mail.live.com",
    ),
    "Yahoo! Mail": ("mail.yahoo.com", "mail.yahoo.co.jp"),
    "AOL Mail": ("mail.aol.com",),
    "Proton Mail": ("mail.proton.me", "mail.protonmail.com"),
    "Yandex Mail": ("mail.yandex.ru", "mail.yandex.com"),
    "Zoho Mail": ("mail.zoho.com", "mail.zoho.eu"),
    "Fastmail": ("app.fastmail.com", "fastmail.com"),
    "iCloud Mail": ("icloud.com",),
    "GMX": ("gmx.net", "gmx.com", "navigator.gmx.net"),
    "Web.de": ("web.de",),
    "Mail.ru": ("e.mail.ru", "touch.mail.ru"),
    "QQ Mail": ("mail.qq.com",),
    "163 Mail": ("mail.163.com", "mail.126.com"),
}

# Brand label -> engine, for engines with a domain per country. Only the bare domain
# and these front-door subdomains count: docs.google.com is not a search.
_SEARCH_BRANDS: dict[str, KnownReferrer] = {
    "google": KnownReferrer("Google", "search", ("q",)),
    "bing": KnownReferrer("Bing", "search", ("q",)),
    "yahoo": KnownReferrer("Yahoo!", "search", ("p", "q")),
    "yandex": KnownReferrer("Yandex", "search", ("text",)),
}
_FRONT_DOORS = frozenset({"www", "m", "search", "images", "encrypted", "ipv4", "ipv6"})

# Referrers from Android apps (android-app://<package>/...) name the app.
_ANDROID_APPS: dict[str, KnownReferrer] = {
    "com.google.android.gm": KnownReferrer("Gmail", "email"),
    "com.google.android.googlequicksearchbox": KnownReferrer("Google", "search", ("q",)),
    "com.facebook.katana": KnownReferrer("Facebook", "social"),
    "com.facebook.orca": KnownReferrer("Facebook", "social"),
    "com.instagram.android": KnownReferrer("Instagram", "social"),
    "com.twitter.android": KnownReferrer("X", "social"),
    "com.linkedin.android": KnownReferrer("LinkedIn", "social"),
    "com.reddit.frontpage": KnownReferrer("Reddit", "social"),
    "org.telegram.messenger": KnownReferrer("Telegram", "social"),
    "com.whatsapp": KnownReferrer("WhatsApp", "social"),
    "com.Slack": KnownReferrer("Slack", "social"),
    "com.microsoft.office.outlook": KnownReferrer("Outlook.com", "email"),
}


def _build_hosts() -> dict[str, KnownReferrer]:
    hosts: dict[str, KnownReferrer] = {}
    for name, (domains, params) in _SEARCH.items():
        hosts.update(dict.fromkeys(domains, KnownReferrer(name, "search", params)))
    for name, domains in _SOCIAL.items():
        hosts.update(dict.fromkeys(domains, KnownReferrer(name, "social")))
    for name, domains in _EMAIL.items():
        hosts.update(dict.fromkeys(domains, KnownReferrer(name, "email")))
    return hosts


_HOSTS = _build_hosts()


def _by_brand(labels: list[str]) -> KnownReferrer | None:
    # <front door>.<brand>.<tld> or <brand>.<tld> where the tld is a country or
    # com/co + a country (google.co.uk, yandex.com.tr).
    for index, label in enumerate(labels[:2]):
        known = _SEARCH_BRANDS.get(label)
        if known is None or any(part not in _FRONT_DOORS for part in labels[:index]):
            continue
        suffix = labels[index + 1 :]
        if 1 <= len(suffix) <= 2 and all(len(part) <= 3 for part in suffix):
            return known
    return None


def classify_host(host: str) -> KnownReferrer | None:
    """The search engine, social network or webmail ``host`` (lower case) belongs to."""
    host = host.rstrip(".")
    labels = host.split(".")
    for start in range(len(labels) - 1):
        known = _HOSTS.get(".".join(labels[start:]))
        if known is not None:
            return known
    return _by_brand(labels)


def classify_android_app(package: str) -> KnownReferrer | None:
    """The referrer an Android app package (from an ``android-app://`` referrer) stands for."""
    return _ANDROID_APPS.get(package)
