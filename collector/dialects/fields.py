"""Field types every dialect shares: the rules for sizes, ids and names live here once."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

MAX_ID = 255
MAX_NAME = 255

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
"""A user, account, message or entity id."""
LooseId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)] | int
"""An id some SDKs send as a number; normalised to text."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Properties = dict[str, Any]


def text_id(value: str | int | None) -> str | None:
    return None if value is None else str(value)
