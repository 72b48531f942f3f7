"""The WebSocket Origin allow-list (``--ws-allowed-origins``): a defence against cross-site
WebSocket hijacking.

Browsers send cookies with a WebSocket handshake to any site, and the same-origin policy does
not apply to WebSockets: without a check, a page on another site can open a session as the
logged-in user. Browsers always send ``Origin`` (RFC 6455 §4.1, item 8; RFC 6454), so the
server can refuse the ones it does not know. Sans-IO: :func:`asgiws.request.open_request`
asks :meth:`OriginPolicy.allows` before any app runs.
"""

from __future__ import annotations

import functools

__all__ = ["OriginError", "OriginPolicy", "origin_policy"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


class OriginError(ValueError):
    """An entry of --ws-allowed-origins that is not scheme://host[:port] or
    scheme://*.domain[:port]."""


def _split(origin: str) -> tuple[str, str, str] | None:
    """``https://Example.com:443`` -> ("https", "example.com", "443"); the default port of the
    scheme when none is written; None for anything that is not an origin."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or not scheme or not scheme.isascii() or not scheme.isalpha():
        return None
    if not rest or "/" in rest or "@" in rest or "?" in rest or "#" in rest:
        return None
    if rest.startswith("["):  # an IPv6 literal
        end = rest.find("]")
        if end < 0:
            return None
        host, after = rest[: end + 1], rest[end + 1 :]
        port = after[1:] if after.startswith(":") else ("" if not after else None)
    else:
        host, colon, port_text = rest.partition(":")
        port = port_text if colon else ""
    if port is None or (port and not port.isdigit()) or not host:
        return None
    return scheme, host, port or _DEFAULT_PORTS.get(scheme, "")


class OriginPolicy:
    """Allowed origins: exact ones, and ``scheme://*.domain`` for every subdomain of a domain
    (not the domain itself)."""

    __slots__ = ("_exact", "_suffixes")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._exact: set[tuple[str, str, str]] = set()
        self._suffixes: list[tuple[str, str, str]] = []  # (scheme, ".domain", port)
        for pattern in patterns:
            parts = _split(pattern)
            if parts is None:
                raise OriginError(
                    f"{pattern!r} is not an origin: write scheme://host[:port], or "
                    "scheme://*.example.com for its subdomains"
                )
            scheme, host, port = parts
            if host.startswith("*."):
                if "*" in host[2:] or not host[2:]:
                    raise OriginError(f"{pattern!r}: only one leading '*.' is allowed")
                self._suffixes.append((scheme, host[1:], port))
            elif "*" in host:
                raise OriginError(f"{pattern!r}: a wildcard may only be a leading '*.'")
            else:
                self._exact.add(parts)

    def allows(self, origin: str) -> bool:
        parts = _split(origin)
        if parts is None:
            return False  # "null" (an opaque origin) and anything malformed
        if parts in self._exact:
            return True
        scheme, host, port = parts
        return any(
            scheme == s and port == p and host.endswith(suffix) and len(host) > len(suffix)
            for s, suffix, p in self._suffixes
        )


@functools.cache
def origin_policy(patterns: tuple[str, ...]) -> OriginPolicy:
    """The parsed --ws-allowed-origins, once per value; raises :class:`OriginError`."""
    return OriginPolicy(patterns)
