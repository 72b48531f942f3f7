"""What the nginx and HAProxy tests share: the app behind the proxy, the client's address, a
free port, waiting for a proxy that prints nothing when ready, and a GET from the client."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cli_process import DEADLINE_S
from ports import free_port
from websockets.asyncio.client import ClientConnection

CLIENT_ADDRESS = "127.0.0.2"  # Linux routes all of 127/8 to the loopback interface
MIB = 1024 * 1024

APP = textwrap.dedent(
    """
    import json

    def describe(scope):
        return json.dumps(
            {"client": scope["client"], "scheme": scope["scheme"], "server": scope["server"]}
        )

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await receive()
            body = describe(scope).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": describe(scope)})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    print("disconnect", message["code"], message.get("reason", ""), flush=True)
                    return
                text = message.get("text")
                if text is not None and text.startswith("close:"):
                    _, code, reason = text.split(":", 2)
                    await send({"type": "websocket.close", "code": int(code), "reason": reason})
                    return
                await send({"type": "websocket.send", **{k: message[k] for k in ("text", "bytes")
                            if message.get(k) is not None}})
    """
)


def in_use(process: subprocess.Popen[bytes], error: AssertionError) -> bool:
    """Whether ``process`` exited because another process had taken one of its ports."""
    return process.poll() is not None and "Address already in use" in str(error)


def wait_listening(name: str, port: int, process: subprocess.Popen[bytes]) -> None:
    """The proxy ``name`` prints nothing when it is ready: try to connect, a bounded number of
    times."""
    deadline = time.monotonic() + DEADLINE_S
    for _ in range(600):
        if process.poll() is not None:
            errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AssertionError(f"{name} exited {process.returncode}: {errors}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise AssertionError(f"{name} did not start listening")


PORT_TRIES = 3  # a free port can be taken by another process before the proxy binds it


def start_on_free_ports(
    name: str, count: int, start: Callable[[tuple[int, ...]], subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], tuple[int, ...]]:
    """``start(ports)`` on ``count`` free ports, until the proxy ``name`` listens on the first:
    on new ports when it exited because another process had taken one (PORT_TRIES at most)."""
    for attempt in range(PORT_TRIES):
        ports = tuple(free_port() for _ in range(count))
        process = start(ports)
        try:
            wait_listening(name, ports[0], process)
            return process, ports
        except AssertionError as error:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=DEADLINE_S)
            if attempt == PORT_TRIES - 1 or not in_use(process, error):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def get(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """GET ``url`` from CLIENT_ADDRESS: the JSON the app answered with 200."""
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, **kwargs)
    with httpx.Client(transport=transport, timeout=DEADLINE_S) as client:
        response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def nginx_main(tmp: Path, site: str, connections: int) -> str:
    """A whole nginx configuration around the server blocks ``site``: in the foreground, one
    worker, every file under ``tmp``."""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"pid {tmp / 'nginx.pid'};\nerror_log stderr warn;\n"
        f"events {{ worker_connections {connections}; }}\n"
        f"http {{\n    access_log off;\n{temp}\n{textwrap.indent(site, '    ')}\n}}\n"
    )


async def echo_and_close(ws: ClientConnection) -> None:
    """Text, binary and a 1 MiB message come back through the proxy, then the client closes
    with 4001 "bye" (the app prints it)."""
    await ws.send("hello")
    assert await ws.recv() == "hello"
    await ws.send(b"\x00\x01\xff")
    assert await ws.recv() == b"\x00\x01\xff"
    big = os.urandom(MIB)
    await ws.send(big)
    assert await ws.recv() == big
    await ws.close(4001, "bye")
