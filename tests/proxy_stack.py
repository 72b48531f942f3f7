"""What the nginx and HAProxy tests share: the app behind the proxy, the client's address, a
free port, waiting for a proxy that prints nothing when ready, and a GET from the client."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
from cli_process import DEADLINE_S
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


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for bind(0) and outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


PORTS_FROM = 10_000  # free_port() picks below the ephemeral range, from here up


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a proxy or server that binds it later.

    It is picked below the kernel's ephemeral range: a port from bind(0) is also a candidate
    for every outgoing connection made until the proxy binds it (a race that once cost a CI
    run "Address already in use"), while one below that range is taken only by a listener.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(PORTS_FROM, max(low, PORTS_FROM + 1000))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range in 200 tries")


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
