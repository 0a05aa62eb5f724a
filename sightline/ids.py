"""Identifiers: time-ordered UUIDv7 strings and random API keys."""

from __future__ import annotations

import os
import secrets
import time
import uuid


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit millisecond timestamp, then 74 random bits.

    Sorting the strings sorts by creation time, which keeps the events table's
    primary-key index append-mostly.
    """
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF
    return str(uuid.UUID(int=value))


def derived_id(*parts: str) -> str:
    """A stable id for something a client sent without one (e.g. the n-th event of a call).

    The same envelope always yields the same id, so replaying it stores nothing twice.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sightline:" + "\x1f".join(parts)))


def new_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"
