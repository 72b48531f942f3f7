"""A real HAProxy (Debian's, installed by .ci/run) in front of a real asgiws, with the config that
deploy/haproxy.cfg documents: HTTP, WebSocket text, binary and a 1 MiB message through the
tunnel, close codes and reasons both ways, TLS ended at HAProxy (wss for the app), and the
client's address from X-Forwarded-For, where a client's own Forwarded, X-Forwarded-For and
X-Forwarded-Proto headers change nothing. The client connects from 127.0.0.2, HAProxy from
127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cli_process import DEADLINE_S, ServerProcess
from ports import free_port
from proxy_stack import (
    APP,
    CLIENT_ADDRESS,
    MIB,
    echo_and_close,
    start_on_free_ports,
)
from proxy_stack import get as get_from_client
from tls_certs import client_context
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "haproxy.cfg"

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None and not os.environ.get("CI"),
    reason="haproxy is not installed (CI installs it: .ci/run)",
)

SPOOFED = {
    "Forwarded": "for=198.51.100.7;proto=https",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
}


@dataclass
class Proxy:
    http: int
    https: int
    ca: trustme.CA
    server: ServerProcess

    def client_ssl(self) -> ssl.SSLContext:
        return client_context(self.ca)


def haproxy_config(tmp: Path, upstream_port: int, http: int, https: int) -> str:
    """deploy/haproxy.cfg with this test's ports and certificate."""
    config = CONFIG.read_text()
    for old, new in [
        ("server asgiws1 127.0.0.1:8000", f"server asgiws1 127.0.0.1:{upstream_port}"),
        ("maxconn 20000", "maxconn 500"),  # within this process's open-file limit
        ("bind :80\n", f"bind 127.0.0.1:{http}\n"),
        ("bind :443 ssl", f"bind 127.0.0.1:{https} ssl"),
        ("/etc/haproxy/certs/example.pem", str(tmp / "haproxy.pem")),
    ]:
        assert config.count(old) == 1, old
        config = config.replace(old, new)
    return config


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Proxy]:
    (tmp_path / "proxied.py").write_text(APP)
    port = free_port()
    server = ServerProcess("proxied:app", "--app-dir", str(tmp_path), "--port", str(port))
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    # HAProxy's crt: the certificate and its key in one PEM file.
    with open(tmp_path / "haproxy.pem", "wb") as pem:
        pem.write(cert.cert_chain_pems[0].bytes())
        pem.write(cert.private_key_pem.bytes())
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        server.wait_for_line(r"running on http://")

        def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
            (tmp_path / "haproxy.cfg").write_text(haproxy_config(tmp_path, port, *ports))
            check = subprocess.run(
                ["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                capture_output=True,
                text=True,
                timeout=DEADLINE_S,
            )
            assert check.returncode == 0, check.stdout + check.stderr
            # -db: in the foreground, no daemon.
            return subprocess.Popen(
                ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

        haproxy, (http, https) = start_on_free_ports("haproxy", 2, start)
        yield Proxy(http, https, ca, server)
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(timeout=DEADLINE_S)
            if haproxy.stderr is not None:
                haproxy.stderr.close()
        server.stop()


def get(url: str, **kwargs: Any) -> dict[str, Any]:
    """A GET that also sends forged forwarding headers: they must change nothing."""
    return get_from_client(url, SPOOFED, **kwargs)


def test_http_through_haproxy_sees_the_real_client(stack: Proxy) -> None:
    seen = get(f"http://127.0.0.1:{stack.http}/")
    assert seen["client"] == [CLIENT_ADDRESS, 0]
    assert seen["scheme"] == "http"


def test_https_at_haproxy_reaches_the_app_as_https(stack: Proxy) -> None:
    seen = get(f"https://127.0.0.1:{stack.https}/", verify=stack.client_ssl())
    assert seen["client"] == [CLIENT_ADDRESS, 0]
    assert seen["scheme"] == "https"


async def test_websocket_through_haproxy(stack: Proxy) -> None:
    async with connect(
        f"ws://127.0.0.1:{stack.http}/ws",
        local_addr=(CLIENT_ADDRESS, 0),
        max_size=2 * MIB,
        additional_headers=SPOOFED,
        proxy=None,
    ) as ws:
        seen = json.loads(await ws.recv())
        assert seen["client"] == [CLIENT_ADDRESS, 0] and seen["scheme"] == "ws"
        await echo_and_close(ws)  # the app sees the code and reason through the proxy
    assert ws.protocol.close_rcvd is not None
    assert ws.protocol.close_rcvd.code == 4001
    stack.server.wait_for_line(r"disconnect 4001 bye")


async def test_server_close_and_wss_through_haproxy(stack: Proxy) -> None:
    async with connect(
        f"wss://127.0.0.1:{stack.https}/ws",
        local_addr=(CLIENT_ADDRESS, 0),
        ssl=stack.client_ssl(),
        proxy=None,
    ) as ws:
        seen = json.loads(await ws.recv())
        assert seen["client"] == [CLIENT_ADDRESS, 0] and seen["scheme"] == "wss"
        await ws.send("close:4002:done here")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "done here")
