"""A chat room in raw ASGI, with no dependencies: ``asgiws asgiws.demo:app``.

- ``GET /``: a page that opens a WebSocket to ``/ws`` on the page's own host (``wss:`` when the
  page came over ``https:``), with an input box, a send button and the list of messages.
- ``/ws``: every text message any client sends is broadcast to every client, sender included.
- ``GET /health``: ``200 {"status": "ok"}``. Anything else: 404.

The room lives in this process: with several workers, each has its own room.

``/?autotest=TEXT`` makes the page send TEXT once the socket opens: the browser test uses it.

Broadcasting never waits on a client. Each member has a bounded outbox drained by its own writer
task, so a slow reader only fills its own outbox (and is closed with 1008 when that is full) and
a dead one only fails its own send (and is dropped); the others are not held up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from asgiws.types import Receive, Scope, Send

logger = logging.getLogger("asgiws.demo")

# Messages waiting for one member before it counts as too slow and is closed.
OUTBOX_SIZE = 256
# RFC 6455 §7.4.1: 1008 "policy violation", the generic code for "you broke the room's rules".
CLOSE_TOO_SLOW = 1008


class Member:
    """One connected client: its outbox of texts, or None meaning "close, you are too slow"."""

    def __init__(self, outbox_size: int) -> None:
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(outbox_size)


class Room:
    """The clients of one process, and the broadcast between them."""

    def __init__(self, outbox_size: int = OUTBOX_SIZE) -> None:
        self.outbox_size = outbox_size
        self.members: set[Member] = set()

    def join(self) -> Member:
        member = Member(self.outbox_size)
        self.members.add(member)
        return member

    def leave(self, member: Member) -> None:
        self.members.discard(member)

    def broadcast(self, text: str) -> None:
        """Queue ``text`` for every member, without waiting on any of them."""
        for member in list(self.members):
            try:
                member.outbox.put_nowait(text)
            except asyncio.QueueFull:
                logger.info("closing a chat member %d messages behind", member.outbox.qsize())
                self.leave(member)
                # Empty the outbox so the close order gets through at once.
                while not member.outbox.empty():
                    member.outbox.get_nowait()
                member.outbox.put_nowait(None)


room = Room()


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asgiws chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto;
         padding: 0 1rem; }
  #messages { list-style: none; padding: 0; border: 1px solid #ccc; min-height: 12rem;
              max-height: 60vh; overflow-y: auto; }
  #messages li { padding: .25rem .5rem; border-bottom: 1px solid #eee; }
  form { display: flex; gap: .5rem; margin-top: .5rem; }
  #text { flex: 1; padding: .4rem; }
  #status { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>asgiws chat</h1>
<p id="status" data-state="connecting">connecting&hellip;</p>
<ul id="messages"></ul>
<form id="form">
  <input id="text" autocomplete="off" placeholder="Say something" maxlength="2000" autofocus>
  <button id="send" type="submit">Send</button>
</form>
<script>
"use strict";
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(scheme + "//" + location.host + "/ws");
const statusLine = document.getElementById("status");
const messages = document.getElementById("messages");
const input = document.getElementById("text");
function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}
socket.addEventListener("open", () => {
  setStatus("open", "connected");
  const autotest = new URLSearchParams(location.search).get("autotest");
  if (autotest) socket.send(autotest);
});
socket.addEventListener("message", (event) => {
  const item = document.createElement("li");
  item.className = "message";
  item.textContent = event.data;
  messages.appendChild(item);
  messages.scrollTop = messages.scrollHeight;
});
socket.addEventListener("close", (event) => {
  setStatus("closed", "disconnected (" + event.code + ")");
});
document.getElementById("form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (input.value && socket.readyState === WebSocket.OPEN) {
    socket.send(input.value);
    input.value = "";
  }
});
</script>
</body>
</html>
"""

PAGE_BYTES = PAGE.encode("utf-8")
HEALTH_BYTES = json.dumps({"status": "ok"}).encode("ascii")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The demo's ASGI 3 app."""
    kind = scope["type"]
    if kind == "http":
        await _http(scope, send)
    elif kind == "websocket":
        await _websocket(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
    else:
        raise ValueError(f"unsupported ASGI scope type: {kind!r}")


async def _respond(
    send: Send, status: int, content_type: bytes, body: bytes, *, head: bool, extra: Any = ()
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _http(scope: Scope, send: Send) -> None:
    path, method = scope["path"], scope["method"]
    routes = {
        "/": (b"text/html; charset=utf-8", PAGE_BYTES),
        "/health": (b"application/json", HEALTH_BYTES),
    }
    if path not in routes:
        await _respond(
            send, 404, b"text/plain; charset=utf-8", b"not found\n", head=method == "HEAD"
        )
        return
    if method not in ("GET", "HEAD"):
        await _respond(
            send,
            405,
            b"text/plain; charset=utf-8",
            b"method not allowed\n",
            head=False,
            extra=[(b"allow", b"GET, HEAD")],
        )
        return
    content_type, body = routes[path]
    await _respond(send, 200, content_type, body, head=method == "HEAD")


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        # Closing before accepting: the server answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    member = room.join()
    writer = asyncio.create_task(_write(member, send))
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is not None:
                room.broadcast(text)
            # Binary messages are not part of this chat: ignored.
    finally:
        room.leave(member)
        writer.cancel()
        try:
            await writer
        except asyncio.CancelledError:
            # The writer was cancelled above; if this task itself is being cancelled, go on
            # with that.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


async def _write(member: Member, send: Send) -> None:
    """Send one member's outbox to it until it is closed or its connection fails."""
    while True:
        text = await member.outbox.get()
        try:
            if text is None:
                await send(
                    {"type": "websocket.close", "code": CLOSE_TOO_SLOW, "reason": "too slow"}
                )
                return
            await send({"type": "websocket.send", "text": text})
        except Exception as exc:
            # A dead client: it leaves the room; the reader sees the disconnect and ends.
            logger.debug("dropping a chat member whose send failed: %r", exc)
            room.leave(member)
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
