"""Interoperability with Node's ws client (tests/node/client.mjs), with and without
permessage-deflate, over a real socket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with tests/node's locked dependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the interop tests under CI")
        pytest.skip("node and npm are not installed")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return node


def echo_app(disconnects: list[dict[str, Any]], scopes: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                disconnects.append(message)
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    return app


@pytest.mark.parametrize("mode", ["deflate", "plain"])
async def test_node_ws_client_round_trip(serve: Any, node: str, mode: str) -> None:
    disconnects: list[dict[str, Any]] = []
    scopes: list[dict[str, Any]] = []
    running = await serve(echo_app(disconnects, scopes))
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / "client.mjs"),
        f"{running.ws}/interop",
        mode,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["protocol"] == "superchat"
    assert result["received"] == result["expected"]  # every echo, byte for byte, in order
    assert (result["code"], result["reason"]) == (4000, "node done")
    assert disconnects == [{"type": "websocket.disconnect", "code": 4000, "reason": "node done"}]
    assert scopes[0]["subprotocols"] == ["chat", "superchat"]
    if mode == "deflate":
        assert result["extensions"].startswith("permessage-deflate")
    else:
        assert result["extensions"] == ""
