"""Errors a client can cause, and their one translation into HTTP responses.

Endpoints raise these; ``exception_handlers`` in the app turn them into JSON
bodies that name the failing field and why. A dialect whose wire format promises
another error shape registers its own renderer (see ``ErrorStyle``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

import msgspec


class FieldError(msgspec.Struct, frozen=True):
    field: str
    reason: str


class ErrorStyle(str, Enum):
    """How a dialect's clients expect errors to look."""

    SIGHTLINE = "sightline"  # {"success": false, "error": ..., "errors": [{field, reason}]}
    DAS = "das"  # 422 {"detail": [{"loc": [...], "msg": ..., "type": ...}]}


class ClientError(Exception):
    status: int = 400

    def __init__(
        self,
        message: str,
        errors: Sequence[FieldError] = (),
        *,
        status: int | None = None,
        style: ErrorStyle = ErrorStyle.SIGHTLINE,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = tuple(errors)
        self.style = style
        if status is not None:
            self.status = status


class InvalidInput(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401


class Forbidden(ClientError):
    status = 403


class NotFound(ClientError):
    status = 404


class PayloadTooLarge(ClientError):
    status = 413


class TooManyRequests(ClientError):
    """A rate limit: 429 with ``Retry-After``."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, round(retry_after + 0.5))


class QueueUnavailable(Exception):
    """Redis did not acknowledge in time: the client must retry (503 + Retry-After)."""

    retry_after = 1


_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def field_error(exc: msgspec.ValidationError | msgspec.DecodeError, prefix: str = "") -> FieldError:
    """Turn msgspec's message ("Expected `str`, got `int` - at `$.userId`") into a FieldError.

    A missing field is named itself ("event"), not the object that lacks it.
    """
    match = _AT.match(str(exc))
    reason = match.group("reason") if match else str(exc)
    path = (match.group("path") if match else None) or ""
    missing = _MISSING.search(reason)
    if missing:
        path = f"{path}.{missing.group('name')}"
    field = (prefix + path.lstrip(".") if prefix else path).strip(".")
    return FieldError(field=field or "$", reason=reason.replace("`", ""))
