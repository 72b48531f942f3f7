"""A chat room across processes and hosts: each process keeps one Redis pub/sub subscription and
fans every message out to its own WebSockets. See README.md in this folder for the protocol, the
command lines and what clients see when Redis goes away.

    REDIS_URL=redis://127.0.0.1:6379/0 asgiws app:app --app-dir examples/chat
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL = os.environ.get("CHAT_CHANNEL", "chat")
# Reconnecting to Redis: the first retry after BACKOFF_FIRST_S, doubling up to BACKOFF_MAX_S,
# each delay drawn between half and all of its value so that processes do not retry in step.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = float(os.environ.get("CHAT_BACKOFF_MAX", "5"))
CONNECT_TIMEOUT_S = 5.0  # to open a connection to Redis
# Messages waiting for one WebSocket: a client that falls this far behind is closed with 1013
# (try again later), so that one slow reader never holds up the fan-out to the others.
OUTBOX_MESSAGES = int(os.environ.get("CHAT_OUTBOX", "1000"))

log = logging.getLogger("chat")
if not log.handlers:  # asgiws configures its own loggers only
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s chat: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


class Unavailable(Exception):
    """Redis cannot take a message now; the text says why."""


class Member:
    """One WebSocket's place in the room: the messages waiting for it, in order."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_MESSAGES)
        self.too_slow = asyncio.Event()

    def deliver(self, text: str) -> None:
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.too_slow.set()


class Hub:
    """This process's one subscription, and the WebSockets it fans out to."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.members: set[Member] = set()
        self.up = False
        # No retries inside redis-py: a lost connection must reach run() (which tells clients
        # and backs off) and a PUBLISH must never be sent twice (a retry could duplicate it).
        self.redis = Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=CONNECT_TIMEOUT_S
        )

    def join(self, member: Member) -> None:
        self.members.add(member)

    def leave(self, member: Member) -> None:
        self.members.discard(member)

    def status(self) -> str:
        return "up" if self.up else "down"

    def tell_all(self, text: str) -> None:
        for member in list(self.members):
            member.deliver(text)

    def set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.tell_all(json.dumps({"type": "status", "redis": self.status()}))

    async def publish(self, text: str) -> None:
        if not self.up:
            raise Unavailable("redis is unavailable")
        try:
            await self.redis.publish(self.channel, text)
        except (RedisError, OSError) as error:
            raise Unavailable(f"redis is unavailable: {error}") from error

    async def run(self) -> None:
        """Subscribe, fan out, and when Redis goes away tell every client and resubscribe."""
        delay = BACKOFF_FIRST_S
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        pid = os.getpid()
                        log.info("subscribed to %r at %s (pid %d)", self.channel, self.url, pid)
                        delay = BACKOFF_FIRST_S
                        self.set_up(True)
                    elif message["type"] == "message":
                        self.tell_all(message["data"].decode())
            except Exception as error:  # any failure: tell the clients, resubscribe, never stop
                if not isinstance(error, (RedisError, OSError)):
                    log.exception("the subscriber failed")
                was_up = self.up
                self.set_up(False)
                # The pooled connections for PUBLISH went to the Redis that is gone: drop them,
                # so that the first message after the comeback does not fail on a dead one.
                await self.redis.connection_pool.disconnect()
                wait = random.uniform(delay / 2, delay)
                verb = "lost" if was_up else "cannot reach"
                why = describe(error)
                log.warning("%s redis at %s (%s); next try in %.2f s", verb, self.url, why, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, BACKOFF_MAX_S)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8


def describe(error: BaseException) -> str:
    """The error, after the one it was raised while handling: redis-py tries to reconnect once
    when a connection breaks, so the first error says what happened and the second what then."""
    first = error.__context__
    if isinstance(first, RedisError) and str(first) != str(error):
        return f"{first}; then {error}"
    return str(error)


async def chat(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    sender = uuid.uuid4().hex[:12]
    client = websocket.client.host if websocket.client else None
    server = websocket.scope.get("server")
    member = Member()
    welcome = {
        "type": "welcome",
        "id": sender,
        "client": client,
        "server": f"{server[0]}:{server[1]}" if server else None,
        "pid": os.getpid(),
        "redis": hub.status(),
    }
    member.deliver(json.dumps(welcome))
    hub.join(member)
    reader = asyncio.ensure_future(read(websocket, hub, member, sender))
    writer = asyncio.ensure_future(write(websocket, member))
    slow = asyncio.ensure_future(member.too_slow.wait())
    try:
        done, _ = await asyncio.wait([reader, writer, slow], return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.leave(member)
        for task in (reader, writer, slow):
            task.cancel()
        results = await asyncio.gather(reader, writer, slow, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
    # The writer is stopped: the close is the one thing sent from here on.
    if slow in done:
        log.warning("closing %s (%s): %d messages behind", sender, client, OUTBOX_MESSAGES)
        await websocket.close(1013, "too slow: messages were piling up")
    elif reader in done and reader.result() is not None:
        await websocket.close(1003, reader.result())


async def read(websocket: WebSocket, hub: Hub, member: Member, sender: str) -> str | None:
    """Each text from the client is published with the sender's id and the next number. Returns
    at the client's close (None) or with the reason to close with 1003 (unsupported data)."""
    seq = 0
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            return "this room takes text messages only"
        seq += 1
        payload = {"type": "message", "sender": sender, "seq": seq, "text": text}
        try:
            await hub.publish(json.dumps(payload))
        except Unavailable as error:
            member.deliver(json.dumps({"type": "error", "seq": seq, "reason": str(error)}))


async def write(websocket: WebSocket, member: Member) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.send_text(await member.outbox.get())


async def health(request: Request) -> JSONResponse:
    """200 while this process is subscribed, 503 while it is not (a readiness probe)."""
    hub: Hub = request.app.state.hub
    body: dict[str, Any] = {"redis": hub.status(), "pid": os.getpid(), "clients": len(hub.members)}
    return JSONResponse(body, status_code=200 if hub.up else 503)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    hub = Hub(REDIS_URL, CHANNEL)
    app.state.hub = hub
    subscriber = asyncio.create_task(hub.run())
    try:
        yield
    finally:
        subscriber.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await subscriber
        await hub.redis.aclose()


app = Starlette(
    routes=[WebSocketRoute("/ws", chat), Route("/health", health)],
    lifespan=lifespan,
)
