"""Connection limits of one process: --limit-concurrency and --limit-per-client, counted.

Sans-IO: no asyncio, no clock, no socket. The asyncio layer owns one :class:`ConnectionLimits`
per server and calls :meth:`ConnectionLimits.opened` when a connection is made (it gets the
connection's :class:`Slot`) and :meth:`ConnectionLimits.closed` when it is gone; the core
(:class:`asgiws.http.HTTPConnection`) asks :meth:`Slot.admit` for every request head, once the
proxy headers have set the scope's client, and refuses with 503 the requests it is told to.

What is counted: a connection holds a place under --limit-concurrency from its first admitted
request until it closes, WebSockets included (a WebSocket keeps the place of its upgrade
request). A connection that has sent no request yet holds none (its head is bounded by
--timeout-handshake): otherwise a burst of connects could fill the budget before any of them
has spoken, and every one of them would be refused. A connection refused is closed with its
503, so it gives nothing back but takes nothing either.

Under --limit-per-client the place belongs to one client address (the host, not the port): the
scope's ``client`` after the proxy headers of a trusted peer are applied, so clients behind one
proxy each have their own budget. One keep-alive connection from a proxy may carry requests of
several clients in turn (a proxy pools its upstream connections); the place moves with the
request: a request of another client than the last one gives the old client's place back and
takes one of the new client's budget, or is refused when that budget is spent. A connection is
then counted for the client of its latest request, until its next request or its close. A
request with no client address (a Unix socket without proxy headers) is not counted per client.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["RETRY_AFTER", "ConnectionLimits", "Slot"]

# The Retry-After of a 503 for a limit (RFC 9110 §10.2.3: seconds): a place is freed when any
# connection closes, so asking again soon is reasonable.
RETRY_AFTER: Final = b"1"


class Slot:
    """What one connection holds: nothing, a place under the concurrency limit, and the client
    host its place is counted for."""

    __slots__ = ("admitted", "host", "limits")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.admitted = False
        self.host: str | None = None

    def admit(self, client: Any) -> str | None:
        """A request with the scope's ``client`` (``(host, port)``, or None) arrived on this
        connection: None to serve it, or the plain-text reason of the 503."""
        limits = self.limits
        if not self.admitted:
            limit = limits.concurrency
            if limit is not None and limits.active >= limit:
                return f"server at --limit-concurrency ({limit} connections)"
        per_client = limits.per_client
        if per_client is not None:
            host = str(client[0]) if client else None
            if host != self.host:
                if host is not None and limits.clients.get(host, 0) >= per_client:
                    return f"client {host} at --limit-per-client ({per_client} connections)"
                self._release_host()
                if host is not None:
                    limits.clients[host] = limits.clients.get(host, 0) + 1
                    self.host = host
        if not self.admitted:
            self.admitted = True
            limits.active += 1
        return None

    def release(self) -> None:
        """Give back what the slot holds (the connection is gone)."""
        if self.admitted:
            self.admitted = False
            self.limits.active -= 1
        self._release_host()

    def _release_host(self) -> None:
        host = self.host
        if host is None:
            return
        self.host = None
        clients = self.limits.clients
        left = clients[host] - 1
        if left:
            clients[host] = left
        else:
            del clients[host]  # no entry kept per client that has left: memory stays bounded


class ConnectionLimits:
    """The counts of one server: connections open, holding a place, and per client host."""

    __slots__ = ("active", "clients", "concurrency", "open", "per_client")

    def __init__(self, concurrency: int | None, per_client: int | None) -> None:
        self.concurrency = concurrency
        self.per_client = per_client
        self.open = 0  # connections made and not yet gone
        self.active = 0  # of those, the ones holding a place (admitted)
        self.clients: dict[str, int] = {}  # client host -> connections counted for it

    def opened(self) -> Slot:
        """A connection was made: its slot, holding nothing yet."""
        self.open += 1
        return Slot(self)

    def closed(self, slot: Slot) -> None:
        """The connection of ``slot`` is gone."""
        self.open -= 1
        slot.release()
