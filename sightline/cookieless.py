"""Cookieless visitor ids: who a visitor is for one day, from what every request carries.

A page tagged with a tracker that stores nothing on the device (Plausible; Umami's
tracker before its ``vid``) sends no visitor id. Plausible counts visitors anyway by
hashing, server-side, the site, the client's address and user agent with a salt that
changes every day and is deleted after two; the hash cannot be turned back into the
address, and once the salt is gone nobody, the operator included, can recompute it
from a guessed address (see ``Plausible.Ingestion.Event.generate_user_id`` in
plausible/analytics: ``SipHash.hash!(salt, user_agent <> remote_ip <> domain <>
root_domain)``, with ``Plausible.Session.Salts`` rotating the salt daily).

:func:`cookieless_visitor_id` is that hash: a keyed BLAKE2b (the standard library's
keyed hash, where Plausible uses SipHash: the ids are Sightline's own either way),
written as a UUID so it sits in ``anonymous_id`` like any other visitor id. The salt
is the caller's: the collector keeps one random salt per UTC day in Redis, for two
days, and never the inputs (``collector.salts``).

What it cannot do, by design: the same person is a new visitor each UTC day, on each
device, after a change of network or browser version; people behind one address with
the same browser (an office, a carrier-grade NAT) count as one.
"""

from __future__ import annotations

import hashlib
import uuid

SALT_BYTES = 16
"""What a salt is: 16 random bytes (``secrets.token_bytes``), BLAKE2b's key."""


def derived_uuid(salt: bytes, *parts: str) -> str:
    """A UUID (version 8, RFC 9562's custom layout) of ``parts`` keyed with ``salt``.

    The parts are length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    digest = hashlib.blake2b(digest_size=16, key=salt, person=b"sightline.cl.v1")
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    value = bytearray(digest.digest())
    value[6] = (value[6] & 0x0F) | 0x80  # version 8
    value[8] = (value[8] & 0x3F) | 0x80  # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(value)))


def cookieless_visitor_id(
    salt: bytes, product_id: str, ip: str | None, user_agent: str | None
) -> str:
    """The visitor id of a client of ``product_id`` for as long as ``salt`` is the day's.

    Pure: the same salt, product, address and user agent give the same id; change any
    of them and the id is unrelated. A missing address or agent counts as empty.
    """
    return derived_uuid(salt, "visitor", product_id, ip or "", user_agent or "")
