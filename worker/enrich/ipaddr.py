"""Moved to :mod:`sightline.ipaddr` (the collector applies a product's IP handling too);
re-exported here so existing imports keep working."""

from __future__ import annotations

from sightline.ipaddr import (
    anonymise,
    anonymise_addresses,
    parse_ip,
    public_address,
    replace_addresses,
)

__all__ = ["anonymise", "anonymise_addresses", "parse_ip", "public_address", "replace_addresses"]
