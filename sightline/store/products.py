"""Products and their keys: created by the CLI and Fuzy's /v3/product, read by the collector."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from sightline.identity import IdentityMode
from sightline.ids import new_key
from sightline.model import BotHandling, ClientIdentity, IpHandling
from sightline.origins import origin_of, parse_origin
from sightline.store.queries import as_utc
from sightline.store.schema import product_identifiers, product_keys, products

DEFAULT_PRODUCT_NAME = "Default product"


class Product(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    allowed_origins: tuple[str, ...] = ()
    """Origins browsers may send from; empty means any origin."""
    ip_handling: IpHandling = IpHandling.FULL
    bot_handling: BotHandling = BotHandling.FLAG
    is_enabled: bool = True
    channel_merging: bool = False
    write_keys: tuple[str, ...] = ()
    server_keys: tuple[str, ...] = ()
    rate_per_key: float = 0.0
    """Events per second the product's keys may send, all clients together; 0: no limit."""
    rate_per_ip: float = 0.0
    """Events per second one client address may send to the product; 0: no limit."""
    identity_mode: IdentityMode = IdentityMode.FIRST_PARTY
    """How pages recognise visitors (``sightline.identity``): ``first-party`` or ``cookieless``."""
    server_cookie: bool = False
    """``first-party`` only: the collector sets its HttpOnly ``sl_id`` cookie for pages of its
    own site."""
    identifiers: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    """Other trackers' names for this product, by format (``sightline products ids``)."""
    client_identity: ClientIdentity = ClientIdentity.RESTRICTED
    """What its write keys may change of users and accounts (``sightline products policy``;
    the worker applies it: ``sightline/store/effects.py``)."""
    created_at: datetime | None = None

    def allows_origin(self, origin: str | None) -> bool:
        return origin is None or not self.allowed_origins or origin in self.allowed_origins


class ProductSettings(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The changeable part of a product; ``None`` leaves a field as it is."""

    name: str | None = None
    allowed_origins: tuple[str, ...] | None = None
    ip_handling: IpHandling | None = None
    bot_handling: BotHandling | None = None
    is_enabled: bool | None = None
    channel_merging: bool | None = None


def create_product(
    conn: sa.Connection,
    name: str,
    *,
    allowed_origins: Sequence[str] = (),
    product_id: str | None = None,
) -> Product:
    now = datetime.now(UTC)
    pid = product_id or new_key("prd")[:28]
    conn.execute(
        sa.insert(products).values(
            id=pid,
            name=name,
            allowed_origins=normalise_origins(allowed_origins),
            settings={},
            created_at=now,
            updated_at=now,
        )
    )
    write_key, server_key = new_key("wk"), new_key("sk")
    conn.execute(
        sa.insert(product_keys),
        [
            {"key": write_key, "product_id": pid, "kind": "write", "created_at": now},
            {"key": server_key, "product_id": pid, "kind": "server", "created_at": now},
        ],
    )
    product = get_product(conn, pid)
    assert product is not None
    return product


def normalise_origins(origins: Sequence[str]) -> list[str]:
    """Origins in the browser's form, each once, in the order given.

    ``ValueError`` (from :func:`~sightline.origins.parse_origin`) names the first that
    is not an origin: the CLI and the product API check them first, with their own
    error shapes.
    """
    return list(dict.fromkeys(parse_origin(origin) for origin in origins))


def update_product(
    conn: sa.Connection, product_id: str, changes: ProductSettings
) -> Product | None:
    values: dict[str, Any] = {
        k: v for k, v in msgspec.structs.asdict(changes).items() if v is not None
    }
    if changes.allowed_origins is not None:
        values["allowed_origins"] = normalise_origins(changes.allowed_origins)
    if values:
        values["updated_at"] = datetime.now(UTC)
        conn.execute(sa.update(products).where(products.c.id == product_id).values(**values))
    return get_product(conn, product_id)


def list_products(conn: sa.Connection) -> list[Product]:
    identifiers: dict[str, dict[str, list[str]]] = {}
    for row in conn.execute(
        sa.select(product_identifiers).order_by(
            product_identifiers.c.format, product_identifiers.c.value
        )
    ):
        identifiers.setdefault(row.product_id, {}).setdefault(row.format, []).append(row.value)
    keys: dict[str, dict[str, list[str]]] = {}
    for row in conn.execute(
        sa.select(product_keys.c.product_id, product_keys.c.kind, product_keys.c.key)
        .where(product_keys.c.revoked_at.is_(None))
        .order_by(product_keys.c.created_at)
    ):
        keys.setdefault(row.product_id, {}).setdefault(row.kind, []).append(row.key)
    result = []
    for row in conn.execute(sa.select(products).order_by(products.c.created_at, products.c.id)):
        product_keys_of = keys.get(row.id, {})
        result.append(
            Product(
                id=row.id,
                name=row.name,
                # rows written before origins were normalised on save
                allowed_origins=tuple(origin_of(o) or o for o in row.allowed_origins or ()),
                ip_handling=IpHandling(row.ip_handling),
                bot_handling=BotHandling(row.bot_handling),
                is_enabled=row.is_enabled,
                channel_merging=row.channel_merging,
                write_keys=tuple(product_keys_of.get("write", ())),
                server_keys=tuple(product_keys_of.get("server", ())),
                identifiers={f: tuple(v) for f, v in identifiers.get(row.id, {}).items()},
                **_rate_limits(row.settings),
                identity_mode=_identity(row.settings)[0],
                server_cookie=_identity(row.settings)[1],
                client_identity=_client_identity(row.settings),
                created_at=as_utc(row.created_at),
            )
        )
    return result


RATE_LIMITS = "rate_limits"


def _rate_limits(settings: Any) -> dict[str, float]:
    limits = settings.get(RATE_LIMITS) if isinstance(settings, dict) else None
    if not isinstance(limits, dict):
        return {}
    return {k: float(v) for k, v in limits.items() if k in ("rate_per_key", "rate_per_ip")}


def set_rate_limits(
    conn: sa.Connection, product_id: str, *, per_key: float, per_ip: float
) -> Product | None:
    """The product's rate limits, events per second (0: none); ``None``: no such product."""
    current = conn.execute(
        sa.select(products.c.settings).where(products.c.id == product_id)
    ).scalar()
    if current is None:
        return None
    settings = dict(current) | {RATE_LIMITS: {"rate_per_key": per_key, "rate_per_ip": per_ip}}
    conn.execute(
        sa.update(products)
        .where(products.c.id == product_id)
        .values(settings=settings, updated_at=datetime.now(UTC))
    )
    return get_product(conn, product_id)


IDENTITY = "identity"


def _identity(settings: Any) -> tuple[IdentityMode, bool]:
    identity = settings.get(IDENTITY) if isinstance(settings, dict) else None
    if not isinstance(identity, dict):
        return IdentityMode.FIRST_PARTY, False
    try:
        mode = IdentityMode(identity.get("mode", IdentityMode.FIRST_PARTY.value))
    except ValueError:
        return IdentityMode.FIRST_PARTY, False
    return mode, bool(identity.get("server_cookie"))


def set_identity(
    conn: sa.Connection, product_id: str, mode: IdentityMode, *, server_cookie: bool = False
) -> Product | None:
    """The product's identity mode for pages (``sightline.identity``); ``None``: no such
    product. ``server_cookie`` applies to ``first-party`` only."""
    current = conn.execute(
        sa.select(products.c.settings).where(products.c.id == product_id)
    ).scalar()
    if current is None:
        return None
    identity = {
        "mode": mode.value,
        "server_cookie": server_cookie and mode is not IdentityMode.COOKIELESS,
    }
    settings = dict(current) | {IDENTITY: identity}
    conn.execute(
        sa.update(products)
        .where(products.c.id == product_id)
        .values(settings=settings, updated_at=datetime.now(UTC))
    )
    return get_product(conn, product_id)


POLICY = "policy"


def _client_identity(settings: Any) -> ClientIdentity:
    policy = settings.get(POLICY) if isinstance(settings, dict) else None
    value = policy.get("client_identity") if isinstance(policy, dict) else None
    try:
        return ClientIdentity(value) if value is not None else ClientIdentity.RESTRICTED
    except ValueError:
        return ClientIdentity.RESTRICTED  # unknown: the safe default


def set_client_identity(
    conn: sa.Connection, product_id: str, value: ClientIdentity
) -> Product | None:
    """What the product's write keys may change of users and accounts (the write-key
    policy: ``restricted``, the default, or ``open``); ``None``: no such product."""
    current = conn.execute(
        sa.select(products.c.settings).where(products.c.id == product_id)
    ).scalar()
    if current is None:
        return None
    policy = dict(current.get(POLICY) or {}) | {"client_identity": value.value}
    conn.execute(
        sa.update(products)
        .where(products.c.id == product_id)
        .values(settings=dict(current) | {POLICY: policy}, updated_at=datetime.now(UTC))
    )
    return get_product(conn, product_id)


def get_product(conn: sa.Connection, product_id: str) -> Product | None:
    return next((p for p in list_products(conn) if p.id == product_id), None)


def ensure_default_product(conn: sa.Connection) -> tuple[Product, bool]:
    """The first product, creating it on first start. Returns (product, created)."""
    existing = list_products(conn)
    if existing:
        return existing[0], False
    return create_product(conn, DEFAULT_PRODUCT_NAME), True


# -- keys ----------------------------------------------------------------------------------

KEY_PREFIXES = {"write": "wk", "server": "sk"}


def add_key(conn: sa.Connection, product_id: str, kind: str) -> str:
    """A new ``write`` or ``server`` key for the product (the old ones keep working until
    revoked: rotate by adding, deploying the new one, then revoking the old)."""
    key = new_key(KEY_PREFIXES[kind])
    conn.execute(
        sa.insert(product_keys).values(
            key=key, product_id=product_id, kind=kind, created_at=datetime.now(UTC)
        )
    )
    return key


def revoke_key(conn: sa.Connection, product_id: str, key: str) -> bool:
    """Revoke one of the product's keys; ``False`` when it has no such live key."""
    revoked = conn.execute(
        sa.update(product_keys)
        .where(
            product_keys.c.key == key,
            product_keys.c.product_id == product_id,
            product_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(revoked.rowcount)


# -- other trackers' identifiers -----------------------------------------------------------


def _digits(value: str) -> str:
    if not value.isascii() or not value.isdigit():
        raise ValueError("a Matomo site id is a number")
    return str(int(value))


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("a Umami website id is a UUID") from None


IDENTIFIER_FORMATS: dict[str, Callable[[str], str]] = {
    "posthog": str.strip,  # a project API key (token)
    "snowplow": str.strip,  # an app id (aid)
    "plausible": lambda value: value.strip().lower().removeprefix("www."),  # a site domain
    "umami": _uuid,  # a website id
    "matomo": _digits,  # a site id (idsite)
    "ga4": lambda value: value.strip().upper(),  # a measurement id, G-XXXXXXX
    "fuzy": str.strip,  # a Fuzy product id (fuzy-js's productId, an event's product)
}
"""Each format whose requests name their product, and that name's canonical form."""


class IdentifierTaken(ValueError):
    """The identifier already names another product."""


def normalise_identifier(format: str, value: str) -> str:
    """``value`` as ``format`` writes it canonically; ``ValueError`` says why it is not one."""
    if format not in IDENTIFIER_FORMATS:
        raise ValueError(f"unknown format {format!r}: one of {', '.join(IDENTIFIER_FORMATS)}")
    canonical = IDENTIFIER_FORMATS[format](value)
    if not 1 <= len(canonical) <= 255:
        raise ValueError("an identifier is 1 to 255 characters")
    return canonical


def add_identifier(conn: sa.Connection, product_id: str, format: str, value: str) -> str:
    """Register ``value`` as ``product_id``'s name in ``format``; returns its canonical form."""
    canonical = normalise_identifier(format, value)
    owner = conn.execute(
        sa.select(product_identifiers.c.product_id).where(
            product_identifiers.c.format == format, product_identifiers.c.value == canonical
        )
    ).scalar()
    if owner is not None and owner != product_id:
        raise IdentifierTaken(f"{format} {canonical!r} already names product {owner}")
    if owner is None:
        conn.execute(
            sa.insert(product_identifiers).values(
                format=format, value=canonical, product_id=product_id, created_at=datetime.now(UTC)
            )
        )
    return canonical


def remove_identifier(conn: sa.Connection, product_id: str, format: str, value: str) -> bool:
    """Forget ``value`` as ``product_id``'s name in ``format``; whether it was registered."""
    canonical = normalise_identifier(format, value)
    deleted = conn.execute(
        sa.delete(product_identifiers).where(
            product_identifiers.c.format == format,
            product_identifiers.c.value == canonical,
            product_identifiers.c.product_id == product_id,
        )
    )
    return bool(deleted.rowcount)
