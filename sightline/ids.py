"""Identifiers: time-ordered UUIDv7 strings and random API keys."""

from __future__ import annotations

import random
import secrets
import time
import uuid

_random = random.Random()  # ids need uniqueness, not secrecy: no syscall per id


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit millisecond timestamp, version, 74 random bits.

    Sorting the strings sorts by creation time, which keeps the events table's
    primary-key index append-mostly. Built as text directly: this is on the
    collector's hot path (one per envelope).
    """
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    rand = _random.getrandbits(74)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62) << 64
    value |= 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_id(*parts: str) -> str:
    """A stable id for something a client sent without one (e.g. the n-th event of a call).

    The same envelope always yields the same id, so replaying it stores nothing twice.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sightline:" + "\x1f".join(parts)))


def new_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"
