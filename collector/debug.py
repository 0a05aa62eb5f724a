"""Debug mode: any ingest request, sent under ``/debug``, validated and normalised, not stored.

``POST /debug/v1/track`` (or ``/debug/<any ingest path>``) runs exactly what
``POST /v1/track`` runs: reading, validation, authorisation (so a refusal is the
same status and body, every reason in it). Instead of enqueueing, the accepted
payloads are normalised with their dialect, as the worker would, and the answer
is ``200 {"debug": true, "stored": false, "envelopes": [...], "records": [...]}``:
the envelopes as they would travel and the canonical events, users, accounts and
aliases each would become, with the ``authority`` the worker would apply them under
(the write-key policy: ``sightline.store.effects``). Enrichment (user agent, GeoIP,
IP policy, campaign, clock correction) is the worker's and is not shown.

A format with a debug endpoint of its own (GA4's ``/debug/mp/collect``) declares it
as an ordinary route, which is tried before this mount.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sightline.dialects import UnknownDialect, resolve
from sightline.envelope import Envelope
from sightline.model import ClientIdentity, Normalised, authority_of

PREFIX = "/debug"
_json = msgspec.json.Encoder()


def is_debug(request: Request) -> bool:
    root_path = request.scope.get("root_path")
    return bool(root_path) and str(root_path).endswith(PREFIX)


class DebugAnswer(Exception):
    """Raised instead of enqueueing: carries what would have been enqueued."""

    def __init__(self, envelopes: list[Envelope]) -> None:
        super().__init__("debug request: not stored")
        self.envelopes = envelopes


def _normalised(envelope: Envelope, policy: ClientIdentity) -> Normalised | dict[str, str]:
    as_received = msgspec.convert(
        msgspec.json.decode(_json.encode(envelope)), Envelope, strict=False
    )  # the body as the worker receives it: plain JSON values
    try:
        normalised = resolve(envelope.dialect).normalise(as_received)
    except (UnknownDialect, msgspec.ValidationError, KeyError, ValueError, TypeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    # What the worker's store would let it change (the write-key policy).
    authority = authority_of(envelope.key, policy)
    return msgspec.structs.replace(normalised, authority=authority)


def _policy(request: Request, envelope: Envelope) -> ClientIdentity:
    product = request.state.directory.product(envelope.product_id)
    return product.client_identity if product is not None else ClientIdentity.RESTRICTED


async def debug_answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DebugAnswer)
    body: dict[str, Any] = {
        "debug": True,
        "stored": False,
        "envelopes": exc.envelopes,
        "records": [
            _normalised(envelope, _policy(request, envelope)) for envelope in exc.envelopes
        ],
    }
    return Response(_json.encode(body), media_type="application/json")
