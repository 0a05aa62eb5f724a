"""The dialect registry: every wire format Sightline accepts, by name.

Each dialect is one pure module (wire schema, validation, ``normalise``) that
declares itself as a :class:`~sightline.dialects.base.Dialect`. The worker
resolves an envelope's dialect here; the collector's endpoint modules import
their dialect module directly.
"""

from __future__ import annotations

from sightline.dialects import (
    das,
    fuzy,
    ga4,
    gameball,
    matomo,
    native,
    pixel,
    plausible,
    posthog,
    pyze,
    snowplow,
    umami,
)
from sightline.dialects.base import Dialect

DIALECTS: dict[str, Dialect] = {
    module.DIALECT.name: module.DIALECT
    for module in (
        native,
        pixel,
        fuzy,
        pyze,
        das,
        gameball,
        posthog,
        snowplow,
        plausible,
        umami,
        matomo,
        ga4,
    )
}


class UnknownDialect(LookupError):
    pass


def resolve(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise UnknownDialect(f"no dialect named {name!r}") from None
