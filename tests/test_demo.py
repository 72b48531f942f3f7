"""The demo chat app: in process against fake ASGI connections, then over real sockets.

The tests over real sockets run the demo under a real asgiws process. The browser test needs
``chromium`` (Debian package ``chromium``); it is skipped without it, except when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asgiws import demo

DEADLINE_S = 30.0
Message = dict[str, Any]


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coroutine(), DEADLINE_S))


async def call_http(method: str, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await demo.app(scope, receive, send)
    return sent


def headers_of(start: Message) -> dict[bytes, bytes]:
    return dict(start["headers"])


# -- HTTP and lifespan ---------------------------------------------------------------------------


def test_health() -> None:
    async def main() -> None:
        start, body = await call_http("GET", "/health")
        assert start["status"] == 200
        assert headers_of(start)[b"content-type"] == b"application/json"
        assert json.loads(body["body"]) == {"status": "ok"}
        assert headers_of(start)[b"content-length"] == str(len(body["body"])).encode()

    run(main)


def test_page() -> None:
    async def main() -> None:
        start, body = await call_http("GET", "/")
        assert start["status"] == 200
        assert headers_of(start)[b"content-type"] == b"text/html; charset=utf-8"
        page = body["body"].decode()
        assert 'new WebSocket(scheme + "//" + location.host + "/ws")' in page
        assert 'location.protocol === "https:" ? "wss:" : "ws:"' in page
        assert 'id="text"' in page and 'id="send"' in page and 'id="messages"' in page
        assert "autotest" in page

    run(main)


def test_head_404_405() -> None:
    async def main() -> None:
        start, body = await call_http("HEAD", "/")
        assert start["status"] == 200 and body["body"] == b""
        assert int(headers_of(start)[b"content-length"]) == len(demo.PAGE_BYTES)
        start, _ = await call_http("GET", "/nope")
        assert start["status"] == 404
        start, _ = await call_http("POST", "/")
        assert start["status"] == 405
        assert headers_of(start)[b"allow"] == b"GET, HEAD"

    run(main)


def test_lifespan() -> None:
    async def main() -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        sent: list[Message] = []

        async def send(message: Any) -> None:
            sent.append(dict(message))

        inbox.put_nowait({"type": "lifespan.startup"})
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await demo.app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    run(main)


# -- WebSocket, in process -----------------------------------------------------------------------


class FakeClient:
    """One WebSocket connection as the app sees it: a receive inbox and a record of sends."""

    def __init__(self, path: str = "/ws") -> None:
        self.path = path
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        # Replaces the recording send once set: a dead or a stuck connection.
        self.send_override: Callable[[Message], Awaitable[None]] | None = None

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Any) -> None:
        if self.send_override is not None:
            await self.send_override(dict(message))
        else:
            await self.sent.put(dict(message))

    async def connect(self) -> Message:
        scope = {"type": "websocket", "path": self.path, "headers": [], "subprotocols": []}
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(demo.app(scope, self.receive, self.send))
        return await self.next_sent()

    async def next_sent(self) -> Message:
        return await asyncio.wait_for(self.sent.get(), DEADLINE_S)

    def say(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    async def disconnect(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await asyncio.wait_for(self.task, DEADLINE_S)


@pytest.fixture
def fresh_room(monkeypatch: pytest.MonkeyPatch) -> demo.Room:
    room = demo.Room(outbox_size=4)
    monkeypatch.setattr(demo, "room", room)
    return room


def test_broadcast_reaches_everyone_including_the_sender(fresh_room: demo.Room) -> None:
    async def main() -> None:
        alice, bob = FakeClient(), FakeClient()
        assert (await alice.connect())["type"] == "websocket.accept"
        assert (await bob.connect())["type"] == "websocket.accept"
        alice.say("hello")
        for client in (alice, bob):
            assert await client.next_sent() == {"type": "websocket.send", "text": "hello"}
        bob.say("hi alice")
        for client in (alice, bob):
            assert (await client.next_sent())["text"] == "hi alice"
        await alice.disconnect()
        await bob.disconnect()
        assert fresh_room.members == set()

    run(main)


def test_binary_messages_are_ignored(fresh_room: demo.Room) -> None:
    async def main() -> None:
        alice = FakeClient()
        await alice.connect()
        alice.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x00"})
        alice.say("text")
        assert (await alice.next_sent())["text"] == "text"
        await alice.disconnect()

    run(main)


def test_other_websocket_paths_are_refused(fresh_room: demo.Room) -> None:
    async def main() -> None:
        client = FakeClient("/elsewhere")
        assert (await client.connect())["type"] == "websocket.close"
        assert client.task is not None
        await asyncio.wait_for(client.task, DEADLINE_S)
        assert fresh_room.members == set()

    run(main)


def test_a_dead_client_is_dropped_and_others_go_on(fresh_room: demo.Room) -> None:
    async def main() -> None:
        alice, dead = FakeClient(), FakeClient()
        await alice.connect()
        await dead.connect()
        failed = asyncio.Event()

        async def failing_send(message: Message) -> None:
            failed.set()
            raise OSError("connection reset")

        dead.send_override = failing_send
        alice.say("one")
        assert (await alice.next_sent())["text"] == "one"
        await failed.wait()
        # The failed send took the dead client out of the room; the others go on.
        assert len(fresh_room.members) == 1
        alice.say("two")
        assert (await alice.next_sent())["text"] == "two"
        await dead.disconnect()
        await alice.disconnect()

    run(main)


def test_a_slow_client_is_closed_and_does_not_hold_up_others(fresh_room: demo.Room) -> None:
    async def main() -> None:
        alice, slow = FakeClient(), FakeClient()
        await alice.connect()
        await slow.connect()
        release = asyncio.Event()
        close_sent = asyncio.Event()
        sent_to_slow: list[Message] = []

        async def stuck_send(message: Message) -> None:
            sent_to_slow.append(message)
            if message["type"] == "websocket.close":
                close_sent.set()
            await release.wait()

        slow.send_override = stuck_send
        # One message stuck in the send, outbox_size waiting, then one too many.
        count = fresh_room.outbox_size + 3
        for n in range(count):
            alice.say(f"m{n}")
            assert (await alice.next_sent())["text"] == f"m{n}"
        # The slow member overflowed its outbox: it left the room, and is told to close.
        assert len(fresh_room.members) == 1
        release.set()
        await close_sent.wait()
        assert sent_to_slow[0] == {"type": "websocket.send", "text": "m0"}
        assert sent_to_slow[-1] == {
            "type": "websocket.close",
            "code": demo.CLOSE_TOO_SLOW,
            "reason": "too slow",
        }
        await slow.disconnect()
        await alice.disconnect()

    run(main)


# -- Over real sockets, with the real server -----------------------------------------------------


@pytest.fixture(scope="module")
def demo_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a demo server on 127.0.0.1, serving a socket bound here and passed by --fd."""
    log = tmp_path_factory.mktemp("demo") / "server.log"
    with socket.socket() as sock, log.open("w") as out:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASGIWS_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "asgiws", "asgiws.demo:app", "--fd", str(sock.fileno())],
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
            env=env,
        )
        try:
            yield sock.getsockname()[1]
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
    assert status == 0, log.read_text()


def test_two_clients_over_real_sockets(demo_port: int) -> None:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{demo_port}/ws"
    with (
        connect(url, open_timeout=DEADLINE_S) as alice,
        connect(url, open_timeout=DEADLINE_S) as bob,
    ):
        text = f"hello {uuid.uuid4()}"
        alice.send(text)
        assert alice.recv(timeout=DEADLINE_S) == text
        assert bob.recv(timeout=DEADLINE_S) == text


def test_health_and_page_over_real_sockets(demo_port: int) -> None:
    import httpx

    base = f"http://127.0.0.1:{demo_port}"
    response = httpx.get(f"{base}/health", timeout=DEADLINE_S)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    page = httpx.get(f"{base}/", timeout=DEADLINE_S)
    assert page.status_code == 200
    assert "asgiws chat" in page.text
    assert httpx.get(f"{base}/nope", timeout=DEADLINE_S).status_code == 404


def chromium_or_skip() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    reason = "chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set: a missing browser is a failure")
    pytest.skip(reason)


@pytest.mark.browser
def test_page_in_headless_chromium(demo_port: int, tmp_path: Path) -> None:
    from cdp import chromium_page, wait_for_expression
    from websockets.sync.client import connect

    browser = chromium_or_skip()
    text = f"hello-from-chromium-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{demo_port}/?autotest={text}"
    with (
        connect(f"ws://127.0.0.1:{demo_port}/ws", open_timeout=DEADLINE_S) as watcher,
        chromium_page(browser, url, tmp_path / "profile", DEADLINE_S) as page,
    ):
        # The page sent the text on open, the room broadcast it, the page rendered it.
        rendered = (
            "[...document.querySelectorAll('li.message')]"
            f".some((item) => item.textContent === {json.dumps(text)})"
        )
        assert page.evaluate(wait_for_expression(rendered, DEADLINE_S / 2), DEADLINE_S) is True
        state = "document.getElementById('status').dataset.state"
        assert page.evaluate(state, DEADLINE_S) == "open"
        # And the other member of the room got it too.
        assert watcher.recv(timeout=DEADLINE_S) == text
