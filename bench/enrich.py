"""Enrichment throughput: user-agent parses/s (unseen strings) and GeoIP lookups/s.

Prints one JSON line. Each figure runs for about ``--seconds`` (default 0.3), so the
whole run takes a few seconds. Usage: ``python bench/enrich.py [--seconds 0.3]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geoip2.database
import geoip2.errors
import maxminddb

from worker.enrich.geo import GeoLocator, default_city_db
from worker.enrich.useragent import Engine, UserAgentParser

_TEMPLATES = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{a}.0.{b}.{c} Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/{a}.{b} Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android {a}; SM-S{b}B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{c}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {a}_{b} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{a}.{b} Mobile/15E{c} Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.{b}.{c}",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{a}.0.{b}.{c} Safari/537.36 Edg/{a}.0.{c}.{b}",
    "Mozilla/5.0 (compatible; Googlebot/2.{a}; +http://www.google.com/bot.html) {b}.{c}",
    "python-requests/{a}.{b}.{c}",
)


def _unseen_agents(count: int, rng: random.Random) -> list[str]:
    agents: set[str] = set()
    while len(agents) < count:
        template = rng.choice(_TEMPLATES)
        agents.add(
            template.format(a=rng.randrange(8, 140), b=rng.randrange(1000), c=rng.randrange(1000))
        )
    return list(agents)


def _rate(run: Callable[[Any], object], items: Sequence[Any], seconds: float) -> float:
    """Calls per second of ``run`` over ``items`` (each item used once) for about ``seconds``."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    for index in range(0, len(items), 256):
        for item in items[index : index + 256]:
            run(item)
        done += len(items[index : index + 256])
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start)


def _public_ipv4(rng: random.Random, count: int) -> list[str]:
    addresses: list[str] = []
    while len(addresses) < count:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            addresses.append(str(address))
    return addresses


def _known_ipv6(rng: random.Random, count: int, reader: maxminddb.Reader) -> list[str]:
    """Random IPv6 addresses inside networks the database holds.

    Uniformly random global unicast addresses are almost never in a GeoIP database
    (IPv6 space is sparse), which would time only the search-tree miss. So: find a few
    hundred populated networks by sampling the RIRs' blocks, then draw random
    addresses inside them.
    """
    blocks = [
        ipaddress.IPv6Network(b) for b in ("2001::/16", "2a00::/12", "2400::/12", "2600::/12")
    ]
    networks: list[ipaddress.IPv6Network] = []
    while len(networks) < 400:
        block = rng.choice(blocks)
        probe = ipaddress.IPv6Address(
            int(block.network_address) | rng.getrandbits(128 - block.prefixlen)
        )
        record, prefix = reader.get_with_prefix_len(probe)
        if record is not None:
            networks.append(ipaddress.IPv6Network((probe, prefix), strict=False))
    addresses: list[str] = []
    for _ in range(count):
        network = rng.choice(networks)
        host_bits = 128 - network.prefixlen
        addresses.append(
            str(ipaddress.IPv6Address(int(network.network_address) | rng.getrandbits(host_bits)))
        )
    return addresses


def bench_user_agents(seconds: float, rng: random.Random) -> dict[str, Any]:
    engines: list[Engine] = ["best", "basic", "legacy"]
    results: dict[str, Any] = {}
    for engine in engines:
        parser = UserAgentParser(cache_size=0, engine=engine)  # no cache: every string unseen
        agents = _unseen_agents(40_000 if engine == "best" else 4_000, rng)
        label = f"{engine}({'ua-parser-rs' if parser.is_native else 'python re'})"
        results[label] = round(_rate(parser.parse, agents, seconds))
    cached = UserAgentParser()
    repeats = _unseen_agents(500, rng) * 40
    results["best_cached_repeats"] = round(_rate(cached.parse, repeats, seconds))
    return results


def bench_geo(seconds: float, rng: random.Random, db: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    raw = maxminddb.open_database(db, maxminddb.MODE_AUTO)
    models = geoip2.database.Reader(db, mode=maxminddb.MODE_AUTO)

    def city(ip: str) -> object:
        try:
            return models.city(ip)
        except geoip2.errors.AddressNotFoundError:
            return None

    for version in (4, 6):
        ips = _public_ipv4(rng, 60_000) if version == 4 else _known_ipv6(rng, 60_000, raw)
        known = sum(raw.get(ip) is not None for ip in ips[:5_000]) / 5_000
        with (
            GeoLocator(db, method="raw", cache_size=0) as by_record,
            GeoLocator(db, method="geoip2", cache_size=0) as by_model,
            GeoLocator(db) as cached,
        ):
            results[f"ipv{version}"] = {
                "in_database": round(known, 3),
                "GeoLocator.lookup[raw]": round(_rate(by_record.lookup, ips, seconds)),
                "GeoLocator.lookup[geoip2]": round(_rate(by_model.lookup, ips, seconds)),
                "maxminddb.Reader.get": round(_rate(raw.get, ips, seconds)),
                "geoip2.Reader.city": round(_rate(city, ips, seconds)),
                "GeoLocator.lookup[raw, cached, 1000 addresses repeated]": round(
                    _rate(cached.lookup, ips[:1000] * 50, seconds)
                ),
            }
    raw.close()
    models.close()
    results["reader"] = type(raw).__module__ + "." + type(raw).__name__
    return results


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__)
    arguments.add_argument("--seconds", type=float, default=0.3, help="time per figure")
    arguments.add_argument("--geoip-db", type=Path, default=None, help="City .mmdb to use")
    options = arguments.parse_args()
    rng = random.Random(20240501)
    db = options.geoip_db or default_city_db()
    print(
        json.dumps(
            {
                "bench": "enrich",
                "python": platform.python_version(),
                "ua_parses_per_s": bench_user_agents(options.seconds, rng),
                "geo_lookups_per_s": bench_geo(options.seconds, rng, db),
            }
        )
    )


if __name__ == "__main__":
    main()
