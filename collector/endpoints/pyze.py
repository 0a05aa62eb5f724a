"""Pyze's Enterprise Events and User Profiles APIs (``sightline.dialects.pyze``)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from collector.auth import authorize, basic_auth_user, bearer_token
from collector.bodies import read_body
from collector.directory import KeyKind
from collector.intake import Payload, accept
from collector.routing import (
    ANY_KEY_SCHEMES,
    READ_ERRORS,
    SERVER_KEY_SCHEMES,
    Endpoint,
    ErrorBody,
    Schema,
    path_id,
)
from sightline.dialects import pyze, pyze_profiles
from sightline.errors import ClientError, FieldError, Forbidden, InvalidInput, NotFound
from sightline.store.lookups import UserRecord, find_user, read

ACCEPTED_EVENT = b'{"message":"Event has been accepted for processing"}'


class PyzeAccepted(msgspec.Struct, kw_only=True):
    message: str
    count: int | None = None


PYZE_ERRORS: dict[int, Schema] = {400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody}
"""The page's code table (400, 401, 403; 503 when the queue is away): no 413 nor 415."""


async def _read(request: Request, limit: int) -> bytes:
    """The body, or a 400 in Pyze's shape: its code table has no 413 nor 415."""
    try:
        return await read_body(request, limit)
    except ClientError as exc:
        if exc.status in (400, 401, 403):
            raise
        raise InvalidInput(f"Not a valid input: {exc.message}", exc.errors) from None


def _header_key(request: Request) -> str | None:
    return bearer_token(request) or request.headers.get("x-api-key") or basic_auth_user(request)


async def track_event(request: Request) -> Response:
    raw = await _read(request, pyze.MAX_EVENT_BYTES)
    event = pyze.validate_event(raw)
    directory = request.state.directory
    grant = await authorize(directory, event.appKey, origin=request.headers.get("origin"))
    key = grant.kind
    header_key = _header_key(request)
    if header_key is not None:
        caller = await authorize(directory, header_key)
        if caller.product.id != grant.product.id:
            raise Forbidden("Need access to the provided app: the key is for another app")
        if caller.kind is KeyKind.SERVER:
            key = KeyKind.SERVER  # the server key in the header vouches for the event
    await accept(
        request,
        dialect=pyze.NAME,
        product_id=grant.product.id,
        key=key,
        payloads=[Payload(pyze.EVENT_KIND, msgspec.Raw(raw))],
        sent_at=pyze.instant(event.sentAt) if event.sentAt is not None else None,
    )
    return Response(ACCEPTED_EVENT, status_code=202, media_type="application/json")


async def upload_profiles(request: Request) -> Response:
    raw = await _read(request, pyze_profiles.MAX_PROFILES_BYTES)
    profiles = pyze_profiles.validate_profiles(raw)
    grant = await authorize(request.state.directory, _header_key(request), require=KeyKind.SERVER)
    encode = msgspec.json.encode
    await accept(
        request,
        dialect=pyze.NAME,
        product_id=grant.product.id,
        key=grant.kind,
        payloads=[Payload(pyze_profiles.PROFILE_KIND, msgspec.Raw(encode(p))) for p in profiles],
    )
    body = PyzeAccepted(
        message="User profiles have been accepted for processing", count=len(profiles)
    )
    return Response(encode(body), status_code=202, media_type="application/json")


def merged_profile(user: UserRecord) -> dict[str, Any]:
    """A stored user in the upload's own shape, so what was sent reads back the same."""
    profile: dict[str, Any] = {"userId": user.id, "customer_id": user.id}
    labelled = []
    for alias in user.aliases:
        if alias.kind == pyze_profiles.PYZE_ID_KIND:
            profile["pyze_id"] = alias.alias
        elif alias.kind not in ("anonymous", "merged"):
            labelled.append({"alias_label": alias.kind, "alias_id": alias.alias})
    if labelled:
        profile[pyze_profiles.ALIAS_FIELD] = labelled
    profile.update(user.attributes)
    if user.email is not None:
        profile.setdefault(pyze_profiles.EMAIL_FIELD, user.email)
    return profile


async def read_profile(request: Request) -> Response:
    grant = await authorize(request.state.directory, _header_key(request), require=KeyKind.SERVER)
    wanted = str(request.path_params["id"])
    user = await asyncio.to_thread(
        read, request.state.engine, lambda conn: find_user(conn, grant.product.id, wanted)
    )
    if user is None:
        raise NotFound(f"no user profile {wanted!r}", [FieldError("id", "no such user")])
    return Response(msgspec.json.encode(merged_profile(user)), media_type="application/json")


ENDPOINTS = (
    Endpoint(
        "/v1/events",
        ("POST",),
        track_event,
        "pyze.track_event",
        "Pyze: Enterprise Events API (appKey in the body)",
        key=KeyKind.WRITE,
        schemes=SERVER_KEY_SCHEMES,
        key_in_body=True,
        request=pyze.PyzeEvent,
        responses={202: PyzeAccepted, **PYZE_ERRORS},
    ),
    Endpoint(
        "/users/profile",
        ("POST",),
        upload_profiles,
        "pyze.upload_profiles",
        "Pyze: User Profiles API",
        key=KeyKind.SERVER,
        schemes=ANY_KEY_SCHEMES,
        request=pyze_profiles.ProfileUpload,
        responses={202: PyzeAccepted, **PYZE_ERRORS},
    ),
    Endpoint(
        "/users/profile/{id}",
        ("GET",),
        read_profile,
        "pyze.read_profile",
        "Pyze: a merged user profile",
        key=KeyKind.SERVER,
        schemes=ANY_KEY_SCHEMES,
        responses={200: dict[str, Any], **READ_ERRORS},
        parameters=path_id("userId, customer_id, pyze_id or a user_alias id"),
    ),
)
