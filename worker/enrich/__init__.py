"""Enrichment the worker applies to every event: pure functions and per-process parsers.

Build one ``UserAgentParser`` and one ``GeoLocator`` per worker process and pass them
in; nothing here holds module-level state.
"""

from __future__ import annotations

from sightline.geo import GeoInfo, GeoLocator, default_city_db
from sightline.ipaddr import anonymise, public_address
from worker.enrich.bots import is_automated_agent, is_bot
from worker.enrich.campaign import CampaignInfo, Channel, parse_campaign
from worker.enrich.clock import correct_timestamp
from worker.enrich.useragent import DeviceType, UserAgentInfo, UserAgentParser

__all__ = [
    "CampaignInfo",
    "Channel",
    "DeviceType",
    "GeoInfo",
    "GeoLocator",
    "UserAgentInfo",
    "UserAgentParser",
    "anonymise",
    "correct_timestamp",
    "default_city_db",
    "is_automated_agent",
    "is_bot",
    "parse_campaign",
    "public_address",
]
