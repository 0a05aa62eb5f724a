"""Why an envelope could not be stored: typed reasons for dead letters."""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    ENVELOPE = "envelope"  # not an envelope at all
    ENVELOPE_VERSION = "envelope_version"  # written by a collector newer than this worker
    UNKNOWN_DIALECT = "unknown_dialect"
    SCHEMA = "schema"  # the body does not map to the canonical model
    SIZE = "size"  # a value longer than the store keeps (ids, names)
    UNKNOWN_PRODUCT = "unknown_product"  # deleted between collection and processing
    ENRICHMENT = "enrichment"
    IDENTITY = "identity"  # e.g. an account made its own ancestor
    PROFILE = "profile"  # an attribute operation that does not fit (increment a string)
    STORE = "store"  # the database refused the values (e.g. NUL in text on PostgreSQL)
    INTERNAL = "internal"  # a bug in the worker: replay once it is fixed


class Rejected(Exception):
    """An envelope (or one message of it) that goes to dead letters, with its reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
