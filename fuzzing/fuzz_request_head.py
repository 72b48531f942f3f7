"""Fuzz target: a request head through the core, by the fast path and by h11, with one outcome.

The fast path (asgiws.fasthead) takes a whole plain upgrade head that arrives in one read; a
head whose first byte comes alone always goes through h11. So each input is fed to two fresh
HTTPConnections, whole and as its first byte then the rest, and the app's side is played the
same way in both (read what comes, accept a WebSocket, answer a request with 200): the scope,
the messages, the state and every byte written must be equal (for a head refused before any
app, its status: the reason names the first problem found, which the cut may change). A head
may never get a 101 from one path and a 4xx from the other, nor a 101 when the app answers
before the bytes behind the head have come and a 4xx when they are there. Nothing may raise
out of the core on any input.

    python fuzzing/fuzz_request_head.py fuzzing/corpus/request_head -max_total_time=3600
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import instrumented, main

with instrumented(__name__):
    from asgiws.config import Config
    from asgiws.http import HTTPConnection
    from asgiws.protocol import ServerHeaders
    from asgiws.states import ClientDisconnected

CONFIG = Config(max_queue=4)
SERVER_HEADERS = ServerHeaders([(b"server", b"asgiws")])
# More messages than this for one request means something loops.
MAX_MESSAGES = 64


def outcome(chunks: list[bytes]) -> dict[str, Any]:
    """What the client and the app see when the head comes in these reads."""
    conn = HTTPConnection(
        CONFIG, client=("127.0.0.1", 50000), server=("127.0.0.1", 8000),
        server_headers=SERVER_HEADERS,
    )  # fmt: skip
    for chunk in chunks:
        conn.receive_data(chunk)
    seen: dict[str, Any] = {"scope": conn.next_scope(), "messages": [], "error": None}
    scope = seen["scope"]
    written = b"".join(conn.data_to_send())
    if scope is not None and scope["type"] == "websocket":
        seen["messages"].append(conn.next_message())
        try:
            conn.send({"type": "websocket.accept"})
        except (RuntimeError, ClientDisconnected) as exc:
            # An upgrade request with a body: 400, and a RuntimeError; with a malformed chunked
            # body the 400 has already closed the connection: ClientDisconnected.
            seen["error"] = f"{type(exc).__name__}: {exc}"
        ws = conn.upgraded
        if ws is not None:
            written += b"".join(ws.data_to_send())
            for _ in range(MAX_MESSAGES):
                message = ws.next_message()
                if message is None:
                    break
                seen["messages"].append(message)
                if message["type"] == "websocket.disconnect":
                    break
            seen["ws_state"] = ws.state.name
    elif scope is not None:
        for _ in range(MAX_MESSAGES):
            message = conn.next_message()
            written += b"".join(conn.data_to_send())  # a 100 Continue
            if message is None:
                break
            seen["messages"].append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        conn.send({"type": "http.response.start", "status": 200})
        conn.send({"type": "http.response.body", "body": b"ok"})
        conn.app_finished(None)
        seen["next_scope"] = conn.next_scope()  # a pipelined request
    written += b"".join(conn.data_to_send())
    seen["state"] = conn.state.name
    seen["written"] = written
    if written[9:10] == b"4" and scope is None:
        # A head refused before any app: the status must agree; the reason names the first
        # problem found, which may be another one when the head comes in other reads.
        seen["written"] = written[:12]
    return seen


def status(seen: dict[str, Any]) -> bytes:
    return bytes(seen["written"][9:12]) or b"none"


def answered_early(head: bytes, rest: bytes) -> bytes:
    """The status when the app answers once the head has come, before the rest has."""
    conn = HTTPConnection(CONFIG, client=None, server=None, server_headers=SERVER_HEADERS)
    conn.receive_data(head)
    scope = conn.next_scope()
    if scope is not None and scope["type"] == "websocket":
        with contextlib.suppress(RuntimeError, ClientDisconnected):
            conn.send({"type": "websocket.accept"})
    elif scope is not None:
        conn.send({"type": "http.response.start", "status": 200})
        conn.send({"type": "http.response.body", "body": b"ok"})
    written = b"".join((conn.upgraded or conn).data_to_send())
    if rest:
        (conn.upgraded or conn).receive_data(rest)
    return written[9:12] or b"none"


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        outcome([data] if data else [])  # (an empty read would be EOF to h11: never made)
        return
    fast = outcome([data])
    h11 = outcome([data[:1], data[1:]])
    assert fast == h11, (
        f"status {status(fast).decode()} whole, {status(h11).decode()} in two reads: "
        f"{data[:200]!r}\nwhole: {fast}\nsplit: {h11}"
    )
    end = data.find(b"\r\n\r\n") + 4
    if 4 <= end < len(data) and fast["scope"] is not None:
        # The app answers before what follows the head (a body, frames) has come: a 101
        # exactly when it is a 101 with everything there.
        early = answered_early(data[:end], data[end:])
        assert (early == b"101") == (status(fast) == b"101"), (
            f"status {early.decode()} answered early, {status(fast).decode()} with all the "
            f"bytes there: {data[:200]!r}"
        )


if __name__ == "__main__":
    main(test_one_input, "request_head")
