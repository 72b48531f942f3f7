"""Proxy headers: the client's address and scheme as a trusted reverse proxy reports them.

Sans-IO, decided before the app runs (:func:`asgiws.request.open_request` calls
:func:`apply`). Only when the immediate peer is trusted (``--forwarded-allow-ips``) are these
read, in this order of preference:

- ``Forwarded`` (RFC 7239): ``for=`` gives the client, ``proto=`` the scheme, ``host=`` the host
  the client asked for;
- otherwise ``X-Forwarded-For`` (the client), ``X-Forwarded-Proto`` (the scheme),
  ``X-Forwarded-Host`` and ``X-Forwarded-Port`` (the server's name and port as the client saw
  them).

Proxies append to a chain, so the client is the right-most address that is not itself a
trusted proxy (nginx's ``$proxy_add_x_forwarded_for`` appends the address it saw). A value that
does not parse (a garbage address, an over-long chain, an unknown scheme) is ignored whole, never
merged and never passed on: the scope keeps what the socket says.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from .asgi import Scope

__all__ = ["PROXY_FIELDS", "TrustError", "TrustedProxies", "apply", "trusted_proxies"]

# Request headers read here (collected with the handshake's in one scan of the head).
PROXY_FIELDS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
    }
)

# The most hops a chain may list; a longer one is ignored whole (a real chain has a few).
MAX_CHAIN = 32
# The longest host name (RFC 1035 §2.3.4) a forwarded host may have.
MAX_HOST = 253
# Schemes a proxy may report: ws and wss are what some proxies send for WebSocket requests.
_SECURE = {"https": True, "wss": True, "http": False, "ws": False}
# The word in --forwarded-allow-ips that trusts peers on a Unix socket (they have no address).
UNIX = "unix"

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustError(ValueError):
    """An entry of --forwarded-allow-ips that is no address, network, '*' or 'unix'."""


class TrustedProxies:
    """The peers whose proxy headers are believed: addresses, networks, ``*``, ``unix``."""

    __slots__ = ("_addresses", "_everyone", "_networks", "unix")

    def __init__(self, spec: str) -> None:
        self._everyone = False
        self.unix = False
        self._addresses: set[_IPAddress] = set()
        self._networks: list[_Network] = []
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self._everyone = self.unix = True
            elif entry.lower() == UNIX:
                self.unix = True
            elif "/" in entry:
                try:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise TrustError(f"{entry!r} is not an address or network") from None
            else:
                address = parse_address(entry)
                if address is None:
                    raise TrustError(f"{entry!r} is not an address or network")
                self._addresses.add(address)

    def trusts(self, host: str | None) -> bool:
        """Whether the peer ``host`` (None: a Unix socket peer) is a trusted proxy."""
        if host is None:
            return self.unix
        if self._everyone:
            return True
        return self._trusts_address(host)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one instance per --forwarded-allow-ips)
    def _trusts_address(self, host: str) -> bool:
        address = parse_address(host)
        if address is None:
            return False
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)


@functools.cache
def trusted_proxies(spec: str) -> TrustedProxies:
    """The parsed --forwarded-allow-ips, once per value; raises :class:`TrustError`."""
    return TrustedProxies(spec)


def parse_address(text: str) -> _IPAddress | None:
    """An IPv4 or IPv6 address (an IPv4-mapped IPv6 one as IPv4; brackets allowed), or None."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def apply(
    scope: Scope, fields: dict[bytes, list[bytes]], trusted: TrustedProxies, secure: bool
) -> bool:
    """Set ``client`` and ``server`` of ``scope`` from the proxy headers in ``fields`` when the
    peer is trusted; return whether the client's connection is secure (``https``/``wss``)."""
    client = scope["client"]
    peer = client[0] if client else None
    if not trusted.trusts(peer):
        return secure
    forwarded = fields.get(b"forwarded")
    if forwarded is not None:
        elements = _forwarded_elements(forwarded)
        if elements is not None:
            return _apply_forwarded(scope, elements, trusted, secure)
    chain = _chain(fields.get(b"x-forwarded-for"))
    if chain is not None:
        found = _client_of(chain, trusted)
        if found is not None:
            scope["client"] = (str(found), 0)
    proto = _last_value(fields.get(b"x-forwarded-proto"))
    if proto is not None and proto.lower() in _SECURE:
        secure = _SECURE[proto.lower()]
    host = _host(_last_value(fields.get(b"x-forwarded-host")))
    port = _port(_last_value(fields.get(b"x-forwarded-port")))
    _set_server(scope, host, port, secure)
    return secure


# -- X-Forwarded-* -------------------------------------------------------------------------------


def _chain(values: list[bytes] | None) -> list[_IPAddress] | None:
    """The addresses of X-Forwarded-For (every field line, in order), or None when absent,
    too long or not all addresses."""
    if not values:
        return None
    items = [item.strip() for value in values for item in value.split(b",")]
    if len(items) > MAX_CHAIN:
        return None
    chain = []
    for item in items:
        address = parse_address(item.decode("latin-1"))
        if address is None:
            return None
        chain.append(address)
    return chain


def _client_of(chain: list[Any], trusted: TrustedProxies) -> Any:
    """The right-most entry that is not a trusted proxy (the left-most when all are)."""
    for entry in reversed(chain):
        if not trusted.trusts(str(entry)):
            return entry
    return chain[0] if chain else None


def _last_value(values: list[bytes] | None) -> str | None:
    """The right-most item of a comma list header: what the nearest proxy set."""
    if not values:
        return None
    item = values[-1].rsplit(b",", 1)[-1].strip()
    return item.decode("latin-1") if item else None


def _host(text: str | None) -> tuple[str, int | None] | None:
    """The host name or address of a forwarded host, and its port if given; None if malformed."""
    if text is None or len(text) > MAX_HOST + 8:
        return None
    port: int | None = None
    if text.startswith("["):  # [IPv6] with an optional :port
        end = text.find("]")
        if end < 0 or parse_address(text[: end + 1]) is None:
            return None
        name, rest = text[: end + 1], text[end + 1 :]
        if rest:
            port = _port(rest[1:]) if rest.startswith(":") else None
            if port is None:
                return None
        return name, port
    name, colon, rest = text.partition(":")
    if colon:
        port = _port(rest)
        if port is None:
            return None
    if not name or len(name) > MAX_HOST:
        return None
    if not all(c.isascii() and (c.isalnum() or c in "-.") for c in name):
        return None
    return name.lower(), port


def _set_server(
    scope: Scope, host: tuple[str, int | None] | None, port: int | None, secure: bool
) -> None:
    """``server`` as the client addressed it: the forwarded host and port, the port defaulting
    to the one the host names, else the scheme's."""
    if host is not None:
        name, named_port = host
        scope["server"] = (name, port or named_port or (443 if secure else 80))
    elif port is not None:
        server = scope["server"]
        scope["server"] = (server[0] if server else None, port)


def _port(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


# -- Forwarded (RFC 7239) -----------------------------------------------------------------------


def _forwarded_elements(values: list[bytes]) -> list[dict[str, str]] | None:
    """The elements of every Forwarded field line, in order: ``for``, ``proto``, ``host``...
    as lower-case names; None when the header does not parse or lists too many."""
    elements: list[dict[str, str]] = []
    for value in values:
        text = value.decode("latin-1")
        pos = 0
        element: dict[str, str] = {}
        while pos <= len(text):
            # name=value, then ';' (same element), ',' (next element) or the end.
            eq = text.find("=", pos)
            if eq < 0:
                return None
            name = text[pos:eq].strip().lower()
            if not name or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name):
                return None
            pos = eq + 1
            if pos < len(text) and text[pos] == '"':
                end = pos + 1
                chars = []
                while end < len(text) and text[end] != '"':
                    if text[end] == "\\" and end + 1 < len(text):
                        end += 1
                    chars.append(text[end])
                    end += 1
                if end >= len(text):
                    return None  # an unterminated quoted string
                item = "".join(chars)
                pos = end + 1
            else:
                end = pos
                while end < len(text) and text[end] not in ";,":
                    end += 1
                item = text[pos:end].strip()
                pos = end
            if name in element:
                return None  # RFC 7239 §4: each parameter at most once per element
            element[name] = item
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos >= len(text):
                elements.append(element)
                break
            sep = text[pos]
            if sep == ",":
                elements.append(element)
                element = {}
            elif sep != ";":
                return None
            pos += 1
        if len(elements) > MAX_CHAIN:
            return None
    return elements or None


def _forwarded_node(text: str) -> _IPAddress | None:
    """The address of a ``for=`` node: ``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:80``;
    None for ``unknown``, obfuscated names and anything malformed."""
    if text.startswith("["):
        end = text.find("]")
        return parse_address(text[: end + 1]) if end > 0 else None
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return parse_address(text)


def _apply_forwarded(
    scope: Scope, elements: list[dict[str, str]], trusted: TrustedProxies, secure: bool
) -> bool:
    # The element the nearest proxy added is the last; walk back past trusted proxies.
    chosen = elements[-1]
    for element in reversed(elements):
        chosen = element
        node = _forwarded_node(element.get("for", ""))
        if node is None or not trusted.trusts(str(node)):
            break
    node = _forwarded_node(chosen.get("for", ""))
    if node is not None:
        scope["client"] = (str(node), 0)
    proto = elements[-1].get("proto", "").lower()
    if proto in _SECURE:
        secure = _SECURE[proto]
    _set_server(scope, _host(elements[-1].get("host")), None, secure)
    return secure
