"""HTTPS and wss:// with certificates from trustme, real clients, real sockets."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from test_cli import run_cli
from websockets.asyncio.client import connect

Scopes = list[dict[str, Any]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def recording_app(scopes: Scopes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"secure"})
            return
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await receive()

    return app


async def test_https_request(serve: Any, ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    scopes: Scopes = []
    certfile, keyfile = cert_files
    running = await serve(recording_app(scopes), ssl_certfile=certfile, ssl_keyfile=keyfile)
    url = f"https://127.0.0.1:{running.port}/"
    async with httpx.AsyncClient(verify=client_context(ca)) as client:
        response = await client.get(url)
    assert (response.status_code, response.text) == (200, "secure")
    assert scopes[0]["scheme"] == "https"


async def test_wss_echo(serve: Any, ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    scopes: Scopes = []
    certfile, keyfile = cert_files
    running = await serve(recording_app(scopes), ssl_certfile=certfile, ssl_keyfile=keyfile)
    url = f"wss://127.0.0.1:{running.port}/ws"
    async with connect(url, ssl=client_context(ca)) as ws:
        await ws.send("over TLS")
        assert await ws.recv() == "over TLS"
    assert scopes[0]["scheme"] == "wss"


async def test_plain_http_to_a_tls_port_gets_no_response(
    serve: Any, cert_files: tuple[str, str]
) -> None:
    certfile, keyfile = cert_files
    running = await serve(recording_app([]), ssl_certfile=certfile, ssl_keyfile=keyfile)
    reply = await running.raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert not reply.startswith(b"HTTP/1.1 200")


def test_unloadable_certificate_exits_2_naming_flag_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = run_cli("asgiws.demo:app", "--port", "0", "--ssl-certfile", str(missing))
    assert result.returncode == 2
    assert f"--ssl-certfile: cannot load '{missing}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_keyfile_without_certificate_exits_2(tmp_path: Path) -> None:
    result = run_cli("asgiws.demo:app", "--ssl-keyfile", str(tmp_path / "key.pem"))
    assert result.returncode == 2
    assert "--ssl-keyfile needs --ssl-certfile" in result.stderr
