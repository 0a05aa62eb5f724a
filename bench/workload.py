"""Realistic native events for the benchmarks: real user agents (skewed), public IPs, mixed."""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from sightline.envelope import Envelope
from sightline.ids import uuid7
from sightline.model import KeyKind

PAGES = [
    "/",
    "/pricing",
    "/docs",
    "/docs/install",
    "/blog/launch",
    "/signup",
    "/account",
    "/search",
]
REFERRERS = [
    None,
    None,
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
    "https://t.co/x",
    "https://www.reddit.com/r/analytics/",
    "https://example.org/links",
]
UTM = ["", "", "", "?utm_source=newsletter&utm_medium=email&utm_campaign=nov", "?gclid=abc123"]


def real_user_agents(count: int) -> tuple[list[str], list[float]]:
    """The ``count`` most used strings of fake-useragent's real-world dataset, with their shares."""
    import fake_useragent

    path = Path(fake_useragent.__file__).with_name("data") / "browsers.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows.sort(key=lambda r: -float(r["percent"]))
    seen: dict[str, float] = {}
    for row in rows:
        seen.setdefault(row["useragent"], float(row["percent"]))
        if len(seen) == count:
            break
    bots = [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.0.0 Safari/537.36",
    ]
    shares = list(seen.values())
    floor = min(shares)
    return list(seen) + bots, shares + [floor * 5] * len(bots)


def random_public_ip(rng: random.Random) -> str:
    while True:
        if rng.random() < 0.8:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
                rng.getrandbits(32)
            )
        else:  # inside 2000::/3, mostly allocated space
            address = ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125))
        if address.is_global:
            return str(address)


@dataclass
class Workload:
    count: int
    product_id: str
    distinct_user_agents: int = 600
    users: int = 5000
    seed: int = 7

    def envelopes(self) -> Iterator[Envelope]:
        rng = random.Random(self.seed)
        agents, weights = real_user_agents(self.distinct_user_agents)
        ips = [random_public_ip(rng) for _ in range(self.users)]
        encoder = msgspec.json.Encoder()
        now = datetime.now(UTC)
        for n in range(self.count):
            visitor = min(int(rng.paretovariate(1.2)) - 1, self.users - 1)
            user_agent = rng.choices(agents, weights)[0]
            page = rng.choice(PAGES)
            sent = now - timedelta(seconds=rng.randint(0, 3600))
            body = self._message(rng, n, visitor, page, sent)
            yield Envelope(
                id=uuid7(),
                dialect="native",
                kind=str(body["type"]),
                product_id=self.product_id,
                received_at=now,
                ip=ips[visitor] if rng.random() < 0.7 else random_public_ip(rng),
                user_agent=user_agent,
                origin="https://shop.example",
                sent_at=sent + timedelta(milliseconds=rng.randint(0, 900)),
                key=KeyKind.WRITE,  # pages' traffic: the write-key policy applies
                body=msgspec.Raw(encoder.encode(body)),
            )

    def _message(
        self, rng: random.Random, n: int, visitor: int, page: str, sent: datetime
    ) -> dict[str, object]:
        kind = rng.choices(
            ["page", "track", "click", "identify", "engagement"], [50, 30, 12, 3, 5]
        )[0]
        url = f"https://shop.example{page}{rng.choice(UTM)}"
        message: dict[str, object] = {
            "type": kind,
            "messageId": f"bench-{self.seed}-{n}",
            "anonymousId": f"anon-{visitor}",
            "timestamp": sent.isoformat(),
            "context": {
                "page": {
                    "url": url,
                    "path": page,
                    "title": page.strip("/") or "home",
                    "referrer": rng.choice(REFERRERS),
                },
                "locale": rng.choice(["en-US", "de-DE", "fr-FR", "pt-BR"]),
                "timezone": rng.choice(["Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
                "screen": {"width": 1920, "height": 1080},
                "library": {"name": "sightline.js", "version": "1.0.0"},
                "sessionId": f"s-{visitor}-{n // 50}",
            },
        }
        if visitor % 3 == 0:
            message["userId"] = f"user-{visitor}"
        if kind == "page":
            message["name"] = page
        elif kind == "track":
            message["event"] = rng.choice(
                ["Added to Cart", "Signed Up", "Searched", "Checkout Started"]
            )
            message["properties"] = {
                "sku": f"sku-{rng.randint(1, 500)}",
                "price": round(rng.uniform(1, 200), 2),
                "qty": rng.randint(1, 4),
            }
        elif kind == "click":
            message["event"] = "click"
            message["properties"] = {
                "tag": "a",
                "text": "Buy now",
                "selector": "main > a.cta",
                "href": "/checkout",
            }
        elif kind == "engagement":
            message["event"] = "engagement"
            message["properties"] = {
                "engaged_ms": rng.randint(500, 120_000),
                "max_scroll_pct": rng.randint(0, 100),
            }
        else:
            message["userId"] = f"user-{visitor}"
            message["traits"] = {"plan": rng.choice(["free", "pro"]), "visits": rng.randint(1, 50)}
        return message
