"""What a request head means, decided before any app runs: refused (and why), a plain HTTP
request, or a valid WebSocket upgrade, each with its scope.

Sans-IO: :class:`asgiws.http.HTTPConnection` hands a parsed head over (from the fast path,
with its handshake fields, or from h11) with what its connection knows (:class:`Peer`) and acts
on the answer. The only state it touches is the connection's place under ``--limit-*``.
"""

from __future__ import annotations

from typing import Any

from .asgi import Headers, Scope, make_websocket_scope, request_scope
from .config import Config
from .handshake import (
    Fields,
    HandshakeError,
    Upgrade,
    handshake_fields,
    is_upgrade_request,
    upgrade_request,
)
from .http11 import head_problem
from .limits import RETRY_AFTER, Slot
from .origins import origin_policy
from .proxy import PROXY_FIELDS, apply, trusted_proxies

__all__ = ["Peer", "Refusal", "open_request"]


class Peer:
    """What every request on one connection shares: the options, both addresses, the scheme,
    the lifespan state, its place under ``--limit-*`` and its TLS details. An HTTPConnection is
    one (a subclass); the fuzz targets make their own."""

    __slots__ = ("client", "config", "lifespan_state", "secure", "server", "slot", "tls")

    def __init__(
        self,
        config: Config,
        client: Any,
        server: Any,
        secure: bool,
        lifespan_state: dict[str, Any] | None,
        slot: Slot | None,
        tls: dict[str, Any] | None,
    ) -> None:
        self.config = config
        self.client = client
        self.server = server
        self.secure = secure
        self.lifespan_state = lifespan_state
        self.slot = slot  # this connection's place under --limit-* (asgiws.limits)
        self.tls = tls  # the ASGI TLS extension of a TLS connection, for every scope


class Refusal(Exception):
    """A request answered by the server itself: ``status``, a plain-text ``reason`` and any
    headers the answer needs. ``path`` is the request's decoded path once it is known, and
    ``websocket`` says the request was an upgrade, and ``scope`` is the scope of a request
    refused after it was built (both for its access line)."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Headers = (),  # type: ignore[assignment]
        *,
        websocket: bool = False,
        path: str | None = None,
        scope: Scope | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers
        self.websocket = websocket
        self.path = path
        self.scope = scope


def open_request(
    method: bytes,
    target: bytes,
    http_version: bytes,
    headers: Headers,
    fields: Fields | None,
    upgrading: bool,
    peer: Peer,
) -> tuple[Scope, Upgrade | None]:
    """The scope of a request head and, for a WebSocket upgrade, what it offered; raises
    :class:`Refusal`. ``fields`` come with heads the fast path took, with ``upgrading`` (the
    head asks for a WebSocket, checked); heads from h11 (``fields`` None) are measured and
    scanned here. A request admitted holds a place under ``--limit-*`` from here on."""
    config = peer.config
    if fields is None and method == b"CONNECT":
        # RFC 9110 §9.3.6: CONNECT asks for a tunnel, which an ASGI app has no way to serve
        # (h11 would switch protocols at a 2xx). Only h11 takes CONNECT (see http11.Wire).
        raise Refusal(501, "CONNECT is not supported: an ASGI server opens no tunnels")
    if fields is None or len(headers) > config.max_header_count:
        problem = head_problem(
            method,
            target,
            headers,
            measure=fields is None,
            limit=config.h11_max_incomplete_event_size,
            max_count=config.max_header_count,
        )
        if problem is not None:
            # A refused upgrade is a refused handshake (its access line, --metrics-port).
            if fields is None:
                upgrading = is_upgrade_request(handshake_fields(headers))
            raise Refusal(431, problem, websocket=upgrading)
    if fields is None:
        fields = handshake_fields(headers)
        upgrading = is_upgrade_request(fields)
    # Positional calls here: CPython 3.11 does not specialize a call with keywords. A plain
    # request's scope is an http scope at once (make_http_scope's keys, in the same order);
    # only an https scheme is set below, once the proxy headers are read.
    scope = request_scope(
        target, http_version, headers, config.root_path, peer.client, peer.server,
        peer.lifespan_state, None if upgrading else method,
    )  # fmt: skip
    if b"transfer-encoding" in fields and b"content-length" in fields:
        # RFC 9112 §6.1: the server MUST close the connection after answering such a request,
        # whose framing two hops may read differently; h11 would go on reading it as chunked.
        raise Refusal(400, "a request may not have both Content-Length and Transfer-Encoding")
    secure = peer.secure
    if config.proxy_headers and not PROXY_FIELDS.isdisjoint(fields):
        secure = apply(scope, fields, trusted_proxies(config.forwarded_allow_ips), secure)
    upgrade: Upgrade | None = None
    if upgrading:
        try:
            upgrade = upgrade_request(method, http_version, fields)
        except HandshakeError as exc:
            raise Refusal(
                exc.status, exc.reason, exc.headers, websocket=True, path=scope["path"]
            ) from None
        if config.ws_allowed_origins:
            _check_origin(fields.get(b"origin"), config, scope["path"])
        make_websocket_scope(scope, upgrade[1], secure)  # (its subprotocols)
    elif secure:
        scope["scheme"] = "https"  # (the rest of make_http_scope's work is done)
    if peer.slot is not None:
        # After the proxy headers: the client they name is the one counted.
        over = peer.slot.admit(scope["client"])
        if over is not None:
            headers = [(b"retry-after", RETRY_AFTER)]
            raise Refusal(503, over, headers, websocket=upgrading, scope=scope)
    tls = peer.tls
    if tls is not None:
        extensions = scope.setdefault("extensions", {})
        extensions["tls"] = {**tls, "client_cert_chain": list(tls["client_cert_chain"])}
    return scope, upgrade


# The longest Origin a 403's reason repeats.
_SHOWN_ORIGIN = 200


def _check_origin(values: list[bytes] | None, config: Config, path: str) -> None:
    """--ws-allowed-origins: refuse with 403 an Origin not allowed, or none when one is
    required (--ws-origin-required)."""
    if values is None:
        if config.ws_origin_required:
            raise Refusal(
                403, "WebSocket request without an Origin header", websocket=True, path=path
            )
        return
    origin = values[0].decode("latin-1")
    if len(values) > 1 or not origin_policy(config.ws_allowed_origins).allows(origin):
        shown = origin if len(origin) <= _SHOWN_ORIGIN else origin[:_SHOWN_ORIGIN] + "..."
        raise Refusal(403, f"WebSocket origin {shown!r} is not allowed", websocket=True, path=path)
