"""HTTPS and wss:// with certificates from trustme, real clients, real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cli_process import run_cli
from tls_certs import Scopes, client_context, recording_app, write_server_cert
from websockets.asyncio.client import connect


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    _cert, certfile, keyfile = write_server_cert(ca, tmp_path)
    return certfile, keyfile


async def test_https_request(serve: Any, ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    scopes: Scopes = []
    certfile, keyfile = cert_files
    running = await serve(
        recording_app(scopes, b"secure"), ssl_certfile=certfile, ssl_keyfile=keyfile
    )
    url = f"https://127.0.0.1:{running.port}/"
    async with httpx.AsyncClient(verify=client_context(ca)) as client:
        response = await client.get(url)
    assert (response.status_code, response.text) == (200, "secure")
    assert scopes[0]["scheme"] == "https"


async def test_wss_echo(serve: Any, ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    scopes: Scopes = []
    certfile, keyfile = cert_files
    running = await serve(
        recording_app(scopes, b"secure"), ssl_certfile=certfile, ssl_keyfile=keyfile
    )
    url = f"wss://127.0.0.1:{running.port}/ws"
    async with connect(url, ssl=client_context(ca)) as ws:
        await ws.send("over TLS")
        assert await ws.recv() == "over TLS"
    assert scopes[0]["scheme"] == "wss"


async def test_plain_http_to_a_tls_port_gets_no_response(
    serve: Any, cert_files: tuple[str, str]
) -> None:
    certfile, keyfile = cert_files
    running = await serve(recording_app([], b"secure"), ssl_certfile=certfile, ssl_keyfile=keyfile)
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
