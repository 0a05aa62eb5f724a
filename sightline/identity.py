"""Identity modes for pages: how a product's visitors are recognised (a product setting).

- ``first-party`` (the default): the snippet keeps a random anonymous id on the device
  (``localStorage`` and its own ``sl_aid`` cookie). With ``server_cookie`` on, the
  collector also sets ``sl_id``, an HttpOnly, SameSite=Lax cookie of its own, on its ingest
  answers to pages of its own site (the collector served under the site's domain): a
  cookie set by a server is not subject to Safari's 7-day cap on script-set storage, and
  the id in it wins over a newer one the snippet sends.
- ``cookieless``: nothing on the device. The snippet (``data-mode="cookieless"``) sends
  no anonymous id and the collector fills in the day's cookieless id
  (``sightline.cookieless``: a keyed hash of the product, address and user agent with a
  salt that rotates daily and is deleted after two days).

Either way a consent upgrade (``sightline.consent()`` in the snippet) links the
cookieless id of the visit to the new persistent id (an ``alias`` the collector
completes), and the pixel follows the same rules: an anonymous pixel hit gets the
``sl_id`` cookie's id or the day's cookieless id, never a shared constant.
"""

from __future__ import annotations

from enum import Enum
from urllib.parse import urlsplit


class IdentityMode(str, Enum):
    FIRST_PARTY = "first-party"
    COOKIELESS = "cookieless"


SERVER_COOKIE = "sl_id"
"""The collector's own first-party cookie (``first-party`` mode with ``server_cookie``)."""
SERVER_COOKIE_MAX_AGE = 400 * 24 * 3600
"""400 days, the longest lifetime browsers allow a cookie; renewed on every answer."""


def same_site(origin: str | None, scheme: str, host: str) -> bool:
    """Whether a page at ``origin`` is on the collector's own site (``scheme://host``).

    Same scheme, and the same host or hosts under one parent domain of at least two
    labels (``www.site.example`` and ``stats.site.example``); an IP address only as
    itself. An approximation of the browser's registrable-domain rule, which the browser
    enforces anyway: a SameSite=Lax cookie is never sent with a cross-site request.
    """
    if not origin:
        return False
    parts = urlsplit(origin)
    page_host, own_host = (parts.hostname or "").lower(), host.lower().partition(":")[0]
    if parts.scheme != scheme or not page_host or not own_host:
        return False
    if page_host == own_host:
        return True
    if own_host.replace(".", "").isdigit() or ":" in own_host:
        return False
    page_labels, own_labels = page_host.split("."), own_host.split(".")
    for size in range(min(len(page_labels), len(own_labels)), 1, -1):
        if page_labels[-size:] == own_labels[-size:]:
            return True
    return False
