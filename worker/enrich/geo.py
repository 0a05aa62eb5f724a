"""Moved to :mod:`sightline.geo` (the collector locates addresses it may not keep);
re-exported here so existing imports keep working."""

from __future__ import annotations

from sightline.geo import GeoInfo, GeoLocator, Method, default_city_db

__all__ = ["GeoInfo", "GeoLocator", "Method", "default_city_db"]
