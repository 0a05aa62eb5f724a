"""Identifiers: time-ordered UUIDv7 strings and random API keys."""

from __future__ import annotations

import hashlib
import random
import secrets
import time
import uuid

_random = random.Random()  # ids need uniqueness, not secrecy: no syscall per id


_last_prefix = (-1, "")
"""The last millisecond an id was made in, and its ids' first 15 characters."""


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit millisecond timestamp, version, 74 random bits.

    Sorting the strings sorts by creation time, which keeps the events table's
    primary-key index append-mostly. Built as text directly: this is on the
    collector's hot path (one per envelope); the text of the millisecond (and the
    version digit) is made once per millisecond.
    """
    global _last_prefix
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    last = _last_prefix  # one tuple, replaced whole: threads never see half of it
    if last[0] != ms:
        h = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
        last = _last_prefix = (ms, f"{h[:8]}-{h[8:]}-7")
    rand = _random.getrandbits(74)
    # The version's 12 random bits, the variant (0b10) and 14 more, the last 48. (A
    # %-format: an f-string formats each field by a call, ~0.2 µs more.)
    return "%s%03x-%04x-%012x" % (  # noqa: UP031
        last[1],
        rand >> 62,
        0x8000 | rand >> 48 & 0x3FFF,
        rand & 0xFFFF_FFFF_FFFF,
    )


def derived_id(*parts: str) -> str:
    """A stable id for something a client sent without one (e.g. the n-th event of a call).

    The same envelope always yields the same id, so replaying it stores nothing twice.
    It is the UUIDv5 (URL namespace) of ``sightline:`` and the parts joined by U+001F, as
    ``uuid.uuid5`` makes it (the stored events' ids: it must never change), made without
    ``UUID`` objects: one per event without a message id on the worker's path, ~1 µs
    instead of ~2.
    """
    name = _DERIVED_PREFIX + "\x1f".join(parts).encode()
    h = hashlib.sha1(name, usedforsecurity=False).digest()[:16].hex()  # (uuid5 is SHA-1)
    # RFC 9562: the version (5) is the 13th digit; the variant (0b10) is the top two bits
    # of the 17th, whose low two bits are the hash's.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_DERIVED_PREFIX = uuid.NAMESPACE_URL.bytes + b"sightline:"
_VARIANT = "89ab"


def new_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"
