"""The dialect registry: name -> the function that maps an envelope to the canonical model.

Each dialect is one module owning its wire schema, endpoints and mapping;
``collector.routes`` holds its endpoints and this table its normaliser.
"""

from __future__ import annotations

from collections.abc import Callable

from collector.dialects import das, fuzy, gameball, native, pixel, pyze
from collector.envelope import Envelope
from sightline.model import Normalised

Normaliser = Callable[[Envelope], Normalised]

NORMALISERS: dict[str, Normaliser] = {
    native.NAME: native.normalise,
    pixel.NAME: pixel.normalise,
    fuzy.NAME: fuzy.normalise,
    pyze.NAME: pyze.normalise,
    das.NAME: das.normalise,
    gameball.NAME: gameball.normalise,
}


class UnknownDialect(LookupError):
    pass


def resolve_normaliser(name: str) -> Normaliser:
    try:
        return NORMALISERS[name]
    except KeyError:
        raise UnknownDialect(f"no dialect named {name!r}") from None
