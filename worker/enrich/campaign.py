"""Page URL + referrer -> UTM campaign, ad click ids, referring source and channel.

Channel, first rule that applies:

1. ``utm_medium`` names one (cpc / ppc / paid* / display ... -> paid, email ->
   email, social -> social, organic -> search, referral -> referral);
2. an ad platform's click id (gclid, msclkid, ...) -> paid. ``fbclid`` is not one:
   Facebook appends it to every outbound link, organic posts included, so it says
   "came from Facebook" (social), not "paid";
3. a Mailchimp tracking parameter -> email;
4. the referrer: the page's own host -> internal, a known search engine / social
   network / webmail -> that, any other site -> referral;
5. ``utm_source`` naming a known source (google, facebook.com, ...) -> its medium;
6. otherwise: referral if the visit was campaign-tagged, else direct.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple
from urllib.parse import SplitResult, parse_qsl, urlsplit

import msgspec

from worker.enrich.referrers import KnownReferrer, classify_android_app, classify_host

Channel = Literal["direct", "search", "social", "email", "internal", "referral", "paid"]

UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

# Ad platforms' click ids (Google Ads incl. iOS wbraid/gbraid and Display & Video 360,
# Microsoft, TikTok, X, LinkedIn, Yandex Direct, Pinterest, Reddit, Snapchat, Quora).
PAID_CLICK_IDS = frozenset(
    {
        "gclid",
        "gbraid",
        "wbraid",
        "dclid",
        "msclkid",
        "ttclid",
        "twclid",
        "li_fat_id",
        "yclid",
        "epik",
        "rdt_cid",
        "sccid",
        "qclid",
    }
)
CLICK_IDS = PAID_CLICK_IDS | {"fbclid"}
_EMAIL_MARKERS = frozenset({"mc_cid", "mc_eid"})

# Like GA4's default channel grouping.
_PAID_MEDIUM = re.compile(
    r"^(?:.*cp.*|ppc|paid.*|retargeting|display|banner|interstitial|expandable|affiliates?)$"
)
_MEDIUM_CHANNELS: dict[str, Channel] = {
    "email": "email",
    "e-mail": "email",
    "e_mail": "email",
    "e mail": "email",
    "newsletter": "email",
    "social": "social",
    "social-network": "social",
    "social_network": "social",
    "social-media": "social",
    "social_media": "social",
    "social media": "social",
    "organic_social": "social",
    "sm": "social",
    "organic": "search",
    "referral": "referral",
    "link": "referral",
}


class CampaignInfo(msgspec.Struct, frozen=True):
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    click_ids: dict[str, str]
    referrer_host: str | None
    referrer_name: str | None
    search_term: str | None
    channel: Channel


class _Referrer(NamedTuple):
    host: str | None
    known: KnownReferrer | None
    query: str


_NO_REFERRER = _Referrer(None, None, "")


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _query_params(parts: SplitResult) -> dict[str, str]:
    """First non-blank value of each parameter, names lower-cased; hash-route queries too."""
    query = parts.query
    _, mark, fragment_query = parts.fragment.partition("?")
    if mark:
        query = f"{query}&{fragment_query}" if query else fragment_query
    params: dict[str, str] = {}
    if not query:
        return params
    for name, value in parse_qsl(query):
        value = value.strip()
        if value:
            params.setdefault(name.strip().lower(), value)
    return params


def _host(parts: SplitResult) -> str | None:
    try:
        return parts.hostname
    except ValueError:
        return None


def _parse_referrer(referrer: str | None) -> _Referrer:
    if not referrer or not referrer.strip():
        return _NO_REFERRER
    try:
        parts = urlsplit(referrer.strip())
        host = parts.hostname
    except ValueError:
        return _NO_REFERRER
    if not host:
        return _NO_REFERRER
    if parts.scheme == "android-app":
        return _Referrer(host, classify_android_app(host), "")
    if parts.scheme not in ("http", "https"):
        return _NO_REFERRER
    return _Referrer(host, classify_host(host), parts.query)


def _search_term(referrer: _Referrer) -> str | None:
    if referrer.known is None or referrer.known.medium != "search":
        return None
    wanted = referrer.known.search_params
    for name, value in parse_qsl(referrer.query):
        if name.lower() in wanted and value.strip():
            return value.strip()
    return None


def _site(host: str) -> str:
    return host.removeprefix("www.")


def _medium_channel(medium: str) -> Channel | None:
    medium = medium.lower()
    if _PAID_MEDIUM.match(medium):
        return "paid"
    return _MEDIUM_CHANNELS.get(medium)


def _source_channel(source: str) -> Channel | None:
    source = source.lower()
    host = source if "." in source else f"{source}.com"
    known = classify_host(host)
    return known.medium if known is not None else None


def _channel(
    utm: dict[str, str | None],
    click_ids: dict[str, str],
    params: dict[str, str],
    page_host: str | None,
    referrer: _Referrer,
) -> Channel:
    medium, source = utm["utm_medium"], utm["utm_source"]
    by_medium = _medium_channel(medium) if medium else None
    if by_medium is not None:
        return by_medium
    if not PAID_CLICK_IDS.isdisjoint(click_ids):
        return "paid"
    if "fbclid" in click_ids:
        return "social"
    if not _EMAIL_MARKERS.isdisjoint(params):
        return "email"
    if referrer.host is not None:
        if page_host is not None and _site(referrer.host) == _site(page_host):
            return "internal"
        if referrer.known is not None:
            return referrer.known.medium
    by_source = _source_channel(source) if source else None
    if by_source is not None:
        return by_source
    if referrer.host is not None or any(utm.values()):
        return "referral"
    return "direct"


def parse_campaign(url: str | None, referrer: str | None) -> CampaignInfo:
    """Campaign, click ids and channel of a page view at ``url`` reached from ``referrer``."""
    # The page URL is split once: its query gives the campaign, its host "internal".
    parts = _split(url) if url else None
    params = _query_params(parts) if parts is not None else {}
    utm: dict[str, str | None] = {name: params.get(name) for name in UTM_PARAMS}
    click_ids = {name: value for name, value in params.items() if name in CLICK_IDS}
    page_host = _host(parts) if parts is not None else None
    source = _parse_referrer(referrer)
    return CampaignInfo(
        utm_source=utm["utm_source"],
        utm_medium=utm["utm_medium"],
        utm_campaign=utm["utm_campaign"],
        utm_term=utm["utm_term"],
        utm_content=utm["utm_content"],
        click_ids=click_ids,
        referrer_host=source.host,
        referrer_name=source.known.name if source.known is not None else None,
        search_term=_search_term(source),
        channel=_channel(utm, click_ids, params, page_host, source),
    )
