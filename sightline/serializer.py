"""RQ's job serializer: JSON through msgspec.

JSON (not pickle) so a job is readable, language-neutral and cannot run code on
load; msgspec because the collector's envelopes carry their validated bodies as
``msgspec.Raw`` and are encoded without a detour through Python dicts.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class JSONSerializer:
    @staticmethod
    def dumps(obj: Any) -> bytes:
        return _encoder.encode(obj)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return _decoder.decode(data)
