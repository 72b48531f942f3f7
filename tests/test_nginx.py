"""A real nginx (Debian's, installed by .ci/run) in front of a real asgiws, with the config that
deploy/nginx.conf documents: HTTP, WebSocket text and binary, a 1 MiB message, close codes both
ways, wss ended at nginx, and a Unix-socket upstream. The client connects from 127.0.0.2 so that
its address differs from nginx's (127.0.0.1): the app must see 127.0.0.2 when proxy headers are
trusted, and nginx's address when they are not."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from cli_process import DEADLINE_S, ServerProcess
from ports import free_port
from proxy_stack import (
    APP,
    CLIENT_ADDRESS,
    MIB,
    echo_and_close,
    get,
    nginx_main,
    start_on_free_ports,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "nginx.conf"

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not os.environ.get("CI"),
    reason="nginx is not installed (CI installs it: .ci/run)",
)


@dataclass
class Proxy:
    http: int
    https: int
    unix: int
    ca: trustme.CA
    servers: tuple[ServerProcess, ...] = ()  # asgiws on TCP, then on the Unix socket

    def client_ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def nginx_config(tmp: Path, upstream_port: int, sock: Path, ports: tuple[int, ...]) -> str:
    """deploy/nginx.conf with this test's ports, paths and certificate, in a whole nginx.conf."""
    http, https, unix = ports
    site = CONFIG.read_text()
    for old, new in [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("server unix:/run/asgiws.sock;", f"server unix:{sock};"),
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;"),
        ("listen 8080;", f"listen 127.0.0.1:{unix};"),
        ("/etc/ssl/certs/example.pem", str(tmp / "cert.pem")),
        ("/etc/ssl/private/example.key", str(tmp / "key.pem")),
    ]:
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    return nginx_main(tmp, site, 256)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "proxied.py").write_text(APP)
    return tmp_path


def start_nginx(tmp: Path, upstream_port: int, sock: Path) -> tuple[subprocess.Popen[bytes], Proxy]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp / "cert.pem")
    cert.private_key_pem.write_to_path(tmp / "key.pem")

    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        (tmp / "nginx.conf").write_text(nginx_config(tmp, upstream_port, sock, ports))
        return subprocess.Popen(
            ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    process, (http, https, unix) = start_on_free_ports("nginx", 3, start)
    return process, Proxy(http, https, unix, ca)


@pytest.fixture
def stack(request: pytest.FixtureRequest, app_dir: Path, tmp_path: Path) -> Iterator[Proxy]:
    """asgiws on TCP and on a Unix socket, nginx in front; params: extra asgiws options."""
    extra: list[str] = list(getattr(request, "param", []))
    port = free_port()
    sock = tmp_path / "asgiws.sock"
    common = ["proxied:app", "--app-dir", str(app_dir), "--log-level", "warning", *extra]
    tcp = ServerProcess(*common, "--port", str(port), "--log-level", "info")
    unix = ServerProcess(
        *common, "--uds", str(sock), "--forwarded-allow-ips", "unix", "--log-level", "info"
    )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        tcp.wait_for_line(r"running on http://")
        unix.wait_for_line(r"running on unix:")
        nginx, proxy = start_nginx(tmp_path, port, sock)
        proxy.servers = (tcp, unix)
        yield proxy
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=DEADLINE_S)
            if nginx.stderr is not None:
                nginx.stderr.close()
        tcp.stop()
        unix.stop()


def test_http_through_nginx_sees_the_real_client(stack: Proxy) -> None:
    seen = get(f"http://127.0.0.1:{stack.http}/")
    assert seen["client"] == [CLIENT_ADDRESS, 0]
    assert seen["scheme"] == "http"


def test_https_at_nginx_reaches_the_app_as_https(stack: Proxy) -> None:
    seen = get(f"https://127.0.0.1:{stack.https}/", verify=stack.client_ssl())
    assert seen["client"] == [CLIENT_ADDRESS, 0]
    assert seen["scheme"] == "https"


def test_forged_forwarding_headers_from_the_client_change_nothing(stack: Proxy) -> None:
    forged = {
        "Forwarded": "for=6.6.6.6;proto=https;host=evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "6666",
        "X-Forwarded-Proto": "https",
    }
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(transport=transport, timeout=DEADLINE_S) as client:
        response = client.get(f"http://127.0.0.1:{stack.http}/", headers=forged)
    seen = response.json()
    assert seen["client"] == [CLIENT_ADDRESS, 0]
    assert seen["scheme"] == "http"
    assert "evil" not in json.dumps(seen) and "6666" not in json.dumps(seen)


def test_unix_socket_upstream(stack: Proxy) -> None:
    seen = get(f"http://127.0.0.1:{stack.unix}/")
    assert seen["client"] == [CLIENT_ADDRESS, 0]


@pytest.mark.parametrize("stack", [["--no-proxy-headers"]], indirect=True)
def test_untrusted_proxy_headers_leave_nginxs_address(stack: Proxy) -> None:
    seen = get(f"http://127.0.0.1:{stack.http}/")
    assert seen["client"][0] == "127.0.0.1"  # nginx's own address
    assert seen["client"][1] != 0  # and its port: nothing came from the headers


async def test_websocket_through_nginx(stack: Proxy) -> None:
    async with connect(
        f"ws://127.0.0.1:{stack.http}/ws", local_addr=(CLIENT_ADDRESS, 0), max_size=2 * MIB
    ) as ws:
        seen = json.loads(await ws.recv())
        assert seen["client"] == [CLIENT_ADDRESS, 0] and seen["scheme"] == "ws"
        await echo_and_close(ws)  # the app sees the code and reason through the proxy
    tcp, _ = stack.servers
    tcp.wait_for_line(r"disconnect 4001 bye")


async def test_server_close_code_and_reason_reach_the_client(stack: Proxy) -> None:
    async with connect(f"ws://127.0.0.1:{stack.http}/ws", local_addr=(CLIENT_ADDRESS, 0)) as ws:
        await ws.recv()
        await ws.send("close:4002:done here")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "done here")


async def test_wss_at_nginx_is_wss_for_the_app(stack: Proxy) -> None:
    async with connect(
        f"wss://127.0.0.1:{stack.https}/ws", local_addr=(CLIENT_ADDRESS, 0), ssl=stack.client_ssl()
    ) as ws:
        seen = json.loads(await ws.recv())
        assert seen["client"] == [CLIENT_ADDRESS, 0]
        assert seen["scheme"] == "wss"
        await ws.send("over tls")
        assert await ws.recv() == "over tls"


async def test_websocket_over_the_unix_socket_upstream(stack: Proxy) -> None:
    async with connect(f"ws://127.0.0.1:{stack.unix}/ws", local_addr=(CLIENT_ADDRESS, 0)) as ws:
        seen = json.loads(await ws.recv())
        assert seen["client"] == [CLIENT_ADDRESS, 0]
        await ws.send("unix")
        assert await ws.recv() == "unix"
