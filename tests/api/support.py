"""Read credentials for the API tests: tokens straight from the store."""

from __future__ import annotations

from typing import Any

from sightline.store.tokens import TokenKind, create_token
from tests.harness import System


def token(system: System, product_id: str | None = None) -> str:
    """A new read key of ``product_id``, or an admin token when it is ``None``."""
    kind = TokenKind.ADMIN if product_id is None else TokenKind.READ
    with system.engine.begin() as conn:
        return create_token(conn, kind, product_id=product_id)[1]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def get(system: System, path: str, credential: str, **params: Any) -> Any:
    return system.client.get(path, params=params, headers=bearer(credential))


def track(system: System, event: str, key: str | None = None, **fields: Any) -> None:
    body = {"event": event, "userId": "u1", **fields}
    r = system.send("/v1/track", body, key=key)
    assert r.status_code == 200, r.text
