"""Web origins, written the one way browsers send them in ``Origin``.

A product's allowed origins are compared with the ``Origin`` header (or the origin of
a pixel's ``Referer``) as strings, so both sides are kept in the browser's form
(RFC 6454, section 6.1): scheme and host in lower case, the port only when it is not
the scheme's default, an IPv6 host in brackets, no path. ``https://Site.example:443/``
is stored as ``https://site.example``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = frozenset({"http", "https", "chrome-extension", "moz-extension"})
"""Where a page or an extension can send from; ``file:``, ``data:``, ``about:`` pages
have no origin a product could list."""
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str | None) -> str | None:
    """The origin of an absolute URL (or of an origin), or ``None`` when it has none."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, an unbalanced IPv6 bracket
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in SCHEMES or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def parse_origin(text: str) -> str:
    """An origin as a user typed it, in the browser's form; ``ValueError`` says why not.

    A trailing ``/`` is fine; a path, query or fragment is refused rather than silently
    dropped, since it suggests a page was meant rather than a site.
    """
    origin = origin_of(text)
    if origin is None:
        raise ValueError(
            f"{text!r} is not an origin: scheme://host[:port] with scheme "
            + ", ".join(sorted(SCHEMES))
        )
    rest = urlsplit(text.strip())
    if rest.path not in ("", "/") or rest.query or rest.fragment:
        raise ValueError(f"{text!r} is not an origin: no path, query or fragment ({origin})")
    return origin
