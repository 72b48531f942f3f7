"""The clients of tests/test_redis_chat.py and what every one of them must have seen.

Each client connects through nginx from its own loopback address and keeps every session (one
WebSocket, from its welcome to its close) with what it sent and what it got, so that the checks
at the end can tell exactly once, in order, and what was lost when (examples/chat/README.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT_S = 30.0  # every wait for a condition


# -- Clients -------------------------------------------------------------------------------------


@dataclass
class Session:
    """One WebSocket of a client, from its welcome to its close, with what it sent and got."""

    ws: ClientConnection
    welcome: dict[str, Any]
    up_since: float  # when the welcome said "up" or the last status "up" came (loop time)
    redis: str  # "up" or "down", as last told
    events: list[dict[str, Any]] = field(default_factory=list)
    sent: dict[int, tuple[float, str]] = field(default_factory=dict)  # seq: (when, text)
    got: set[tuple[str, int]] = field(default_factory=set)  # (sender, seq) of every message
    echoed: set[int] = field(default_factory=set)  # this session's own messages that came back
    errored: dict[int, str] = field(default_factory=dict)  # seq: reason
    down_outcomes: list[str | None] = field(default_factory=list)  # of messages sent while down
    close_code: int | None = None
    closed: bool = False

    @property
    def id(self) -> str:
        sender: str = self.welcome["id"]
        return sender

    @property
    def server(self) -> str:
        server: str = self.welcome["server"]
        return server

    @property
    def worker(self) -> tuple[str, int]:
        return self.server, self.welcome["pid"]


class World:
    """Every client and session of the test, and one condition to wait on their progress."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: list[Client] = []
        self.sessions: dict[str, Session] = {}
        self.changed = asyncio.Condition()
        self.stopping = False
        self.loads: list[asyncio.Task[None]] = []

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), TIMEOUT_S)
            except TimeoutError:
                raise AssertionError(f"not within {TIMEOUT_S} s: {what}\n{self}") from None

    def __str__(self) -> str:
        """Where each client is, for a failure message."""
        loads = [repr(t) for t in self.loads if t.done()]
        return f"loads ended: {loads}\n" + "\n".join(
            f"{c.address}: load echoes {c.load_echoes}; "
            + "; ".join(
                f"{s.id} on {s.server} redis {s.redis} sent {len(s.sent)} echoed {len(s.echoed)}"
                f" refused {len(s.errored)} got {len(s.got)} closed {s.closed} ({s.close_code})"
                f" down: {s.down_outcomes} last: {s.events[-3:]}"
                for s in c.sessions
            )
            for c in self.clients
        )

    def start_load(self, label: str) -> None:
        self.stopping = False
        self.loads = [asyncio.create_task(client.load(label)) for client in self.clients]

    async def stop_load(self) -> None:
        self.stopping = True
        await self.notify()
        await asyncio.wait_for(asyncio.gather(*self.loads), TIMEOUT_S)

    def open_sessions(self) -> list[Session]:
        return [client.session for client in self.clients if not client.session.closed]


class Client:
    """A chat client on its own loopback address, reconnecting through nginx when closed."""

    def __init__(self, world: World, index: int) -> None:
        self.world = world
        self.address = f"127.0.{1 + index // 250}.{1 + index % 250}"  # all of 127/8 is loopback
        self.sessions: list[Session] = []
        self.load_echoes = 0  # messages of the load that came back, over all sessions
        self.readers: list[asyncio.Task[None]] = []
        world.clients.append(self)

    @property
    def session(self) -> Session:
        return self.sessions[-1]

    async def open(self) -> Session:
        ws = await connect(
            self.world.url,
            local_addr=(self.address, 0),
            proxy=None,
            open_timeout=TIMEOUT_S,
            close_timeout=TIMEOUT_S,
        )
        welcome = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        assert welcome["type"] == "welcome", welcome
        # Through nginx's X-Forwarded-For, from a host that trusts only nginx's address.
        assert welcome["client"] == self.address, welcome
        now = asyncio.get_running_loop().time()
        session = Session(ws, welcome, up_since=now, redis=welcome["redis"])
        self.sessions.append(session)
        self.world.sessions[session.id] = session
        self.readers.append(asyncio.create_task(self.read(session)))
        return session

    async def read(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in session.ws:
                assert isinstance(raw, str), raw
                event = json.loads(raw)
                session.events.append(event)
                if event["type"] == "message":
                    session.got.add((event["sender"], event["seq"]))
                    if event["sender"] == session.id:
                        session.echoed.add(event["seq"])
                elif event["type"] == "error":
                    session.errored[event["seq"]] = event["reason"]
                elif event["type"] == "status":
                    session.redis = event["redis"]
                    if session.redis == "up":
                        session.up_since = loop.time()
                await self.world.notify()
        except ConnectionClosed:
            pass
        finally:
            received = session.ws.protocol.close_rcvd
            session.close_code = received.code if received is not None else None
            session.closed = True
            await self.world.notify()

    async def close(self) -> None:
        for session in self.sessions:
            await session.ws.close()
        await asyncio.wait_for(asyncio.gather(*self.readers), TIMEOUT_S)

    def send(self, text: str) -> tuple[Session, int]:
        session = self.session
        seq = len(session.sent) + 1  # the app numbers each sender's messages from 1
        session.sent[seq] = (asyncio.get_running_loop().time(), text)
        return session, seq

    async def say(self, text: str) -> str | None:
        """Send one message and wait for its echo or its error (None: the session closed)."""
        session, seq = self.send(text)
        await session.ws.send(text)
        await self.world.until(
            lambda: seq in session.echoed or seq in session.errored or session.closed,
            f"{self.address} message {seq}: neither echo nor error",
        )
        if seq in session.echoed:
            return "echo"
        return "error" if seq in session.errored else None

    async def burst(self, count: int, label: str) -> None:
        """Send ``count`` messages back to back, then wait until each is echoed."""
        session = self.session
        sent = [self.send(f"{self.address} {label} {n}")[1] for n in range(count)]
        for seq in sent:
            await session.ws.send(session.sent[seq][1])
        await self.world.until(
            lambda: all(seq in session.echoed for seq in sent),
            f"{self.address}: its {label} messages echoed",
        )

    async def wait_closed(self, session: Session) -> None:
        await self.world.until(lambda: session.closed, f"{self.address}: the session closed")

    async def wait_back(self, session: Session) -> None:
        await self.world.until(
            lambda: session.redis == "up" or session.closed or self.world.stopping,
            f"{self.address} told that redis is back",
        )

    async def load(self, label: str) -> None:
        """One message at a time until the test stops it: reconnect when closed, and while
        redis is down send one message (it must be refused) and wait to be told it is back."""
        for n in range(1, 100_000):
            if self.world.stopping:
                return
            session = self.session
            if session.closed:
                assert len(self.sessions) < 5, f"{self.address} reconnected too often"
                await self.open()
            elif session.redis == "down":
                if not session.down_outcomes:
                    try:
                        session.down_outcomes.append(await self.say(f"{self.address} down {n}"))
                        await self.world.notify()  # the test waits for it
                    except ConnectionClosed:
                        await self.wait_closed(session)
                await self.wait_back(session)
            else:
                try:
                    if await self.say(f"{self.address} {label} {n}") == "echo":
                        self.load_echoes += 1
                        await self.world.notify()
                except ConnectionClosed:
                    await self.wait_closed(session)
        raise AssertionError("the load was never stopped")


# -- What every client must have seen ------------------------------------------------------------


def order_problems(world: World) -> list[str]:
    """Exactly once and in order per sender, each text as sent, nothing while told "down"."""
    problems: list[str] = []
    for receiver in world.sessions.values():
        last: dict[str, int] = {}
        down = receiver.welcome["redis"] == "down"
        for event in receiver.events:
            if event["type"] == "status":
                down = event["redis"] == "down"
            if event["type"] != "message":
                continue
            where = f"{receiver.id} got {event['sender']}'s {event['seq']}"
            sender = world.sessions.get(event["sender"])
            if sender is None or sender.sent.get(event["seq"], (0, None))[1] != event["text"]:
                problems.append(f"{where}: not what was sent: {event!r}")
            if event["seq"] <= last.get(event["sender"], 0):
                problems.append(f"{where} after {last[event['sender']]}: twice or out of order")
            if down:
                problems.append(f"{where} while told that redis is down")
            last[event["sender"]] = event["seq"]
    return problems


def missing(world: World, first_only: bool = False) -> list[str]:
    """Messages an open session should have and has not: every message that reached redis (its
    sender got it back) sent after the session was welcomed with "up" or last told "up" (while
    its process has no subscription a message is lost: examples/chat/README.md)."""
    found: list[str] = []
    for receiver in world.open_sessions():
        if receiver.redis != "up":
            continue
        for sender in world.sessions.values():
            for seq in sender.echoed:
                sent_at = sender.sent[seq][0]
                if sent_at > receiver.up_since and (sender.id, seq) not in receiver.got:
                    found.append(f"{receiver.id} never got {sender.id}'s {seq}")
                    if first_only:
                        return found
    return found


async def wait_delivered(world: World, what: str) -> None:
    with contextlib.suppress(AssertionError):
        await world.until(lambda: not missing(world, first_only=True), what)
    problems = missing(world) + order_problems(world)
    assert not problems, f"{what}: {len(problems)} problems: {problems[:10]}"


def outcome_problems(world: World) -> list[str]:
    """Each message sent is echoed or refused, never both, and never neither unless its
    session closed while it was in flight (the load sends one message at a time)."""
    problems = []
    for session in world.sessions.values():
        for seq in session.sent:
            echoed, errored = seq in session.echoed, seq in session.errored
            if echoed and errored:
                problems.append(f"{session.id}'s {seq}: both echoed and refused")
            if not echoed and not errored and not (session.closed and seq == len(session.sent)):
                problems.append(f"{session.id}'s {seq}: neither echoed nor refused")
    return problems
