"""Mutual TLS with certificates from trustme: --ssl-ca-certs, --ssl-cert-reqs, --ssl-ciphers,
and the ASGI TLS extension (``scope["extensions"]["tls"]``) as the app sees it, over real
sockets with real clients (raw asyncio TLS streams, httpx, ``websockets``). Expected values come
from the client's side of the connection and from the certificates themselves (parsed with
``cryptography``), not from the server's code."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from apps import TIMEOUT, read_response
from cli_process import run_cli
from cryptography import x509
from tls_certs import Scopes, client_context, recording_app, write_server_cert
from websockets.asyncio.client import connect
from wire import http_request

# RFC 8446 §B.4 and RFC 5289 §3.2: the numbers of the suites these tests negotiate.
SUITE_NUMBERS = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The authority of the server's certificate, which clients trust."""
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    """The authority of client certificates, which the server trusts (--ssl-ca-certs). Apart
    from ``ca``, so that a client cannot complete its chain from what it trusts: it sends the
    certificates it was given, no more (OpenSSL adds issuers it finds in its trust store)."""
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, client_ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """The server's certificate and key, and the CA file that client certificates are verified
    against."""
    server, certfile, keyfile = write_server_cert(ca, tmp_path)
    client_ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return {
        "cert": certfile,
        "key": keyfile,
        "ca": str(tmp_path / "ca.pem"),
        "server_pem": server.cert_chain_pems[0].bytes().decode("ascii"),
    }


@pytest.fixture
def client_cert(client_ca: trustme.CA) -> trustme.LeafCert:
    # A comma in the organisation: RFC 4514 escapes it.
    return client_ca.issue_cert(
        "alice@example.org", common_name="alice", organization_name="Example, Inc."
    )


def tls_options(files: dict[str, str], reqs: int | str = 2, **more: Any) -> dict[str, Any]:
    return {
        "ssl_certfile": files["cert"],
        "ssl_keyfile": files["key"],
        "ssl_ca_certs": files["ca"],
        "ssl_cert_reqs": reqs,
        **more,
    }


async def raw_get(port: int, context: ssl.SSLContext) -> tuple[int, dict[str, Any]]:
    """One request over a raw TLS stream: the status, and what the client saw of the TLS
    session (version and cipher)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        seen = {"version": ssl_object.version(), "cipher": ssl_object.cipher()[0]}
        writer.write(http_request("GET", "/", [("Host", "localhost"), ("Connection", "close")]))
        response = await read_response(reader)
        return response.status, seen
    finally:
        writer.close()


def refused(port: int, context: ssl.SSLContext) -> str:
    """One request over a blocking TLS socket (in a thread) that the server is to refuse in the
    TLS layer: how the connection ended, with no HTTP byte come back. asyncio (and uvloop) drop
    the connection when the handshake fails without flushing the TLS alert, so the client sees
    an EOF, a reset or an SSL error naming the EOF, depending on the TLS version and timing."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(http_request("GET", "/", [("Host", "localhost")]))
            data = tls.recv(65536)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        return type(exc).__name__
    assert data == b"", data
    return "EOF"


REFUSED = {"EOF", "SSLEOFError", "SSLError", "ConnectionResetError", "BrokenPipeError"}


def pem(cert: trustme.LeafCert) -> str:
    return cert.cert_chain_pems[0].bytes().decode("ascii")


def subject(cert: trustme.LeafCert) -> str:
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    return parsed.subject.rfc4514_string()


# -- a client with a certificate -----------------------------------------------------------------


async def test_the_app_sees_the_client_certificate_exactly(
    serve: Any, ca: trustme.CA, files: dict[str, str], client_cert: trustme.LeafCert
) -> None:
    scopes: Scopes = []
    running = await serve(recording_app(scopes), **tls_options(files))
    status, seen = await raw_get(running.port, client_context(ca, client_cert))
    assert status == 200
    assert seen["version"] == "TLSv1.3"
    assert scopes[0]["extensions"]["tls"] == {
        "server_cert": files["server_pem"],
        "client_cert_chain": [pem(client_cert)],
        "client_cert_name": subject(client_cert),
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": SUITE_NUMBERS[seen["cipher"]],
    }
    assert "O=Example\\, Inc." in scopes[0]["extensions"]["tls"]["client_cert_name"]


async def test_the_chain_the_client_sends(
    serve: Any, ca: trustme.CA, client_ca: trustme.CA, files: dict[str, str]
) -> None:
    """A client certificate from an intermediate authority, sent with it: Python 3.13 and later
    give the server the whole chain the client sent; before, only the client's own
    certificate."""
    intermediate = client_ca.create_child_ca()
    cert = intermediate.issue_cert("bob@example.org", common_name="bob")
    assert len(cert.cert_chain_pems) == 2
    scopes: Scopes = []
    running = await serve(recording_app(scopes), **tls_options(files))
    assert (await raw_get(running.port, client_context(ca, cert)))[0] == 200
    sent = [p.bytes().decode("ascii") for p in cert.cert_chain_pems]
    expected = sent if sys.version_info >= (3, 13) else sent[:1]
    tls = scopes[0]["extensions"]["tls"]
    assert tls["client_cert_chain"] == expected
    assert tls["client_cert_name"] == subject(cert)


async def test_tls_1_2_with_a_chosen_cipher(
    serve: Any, ca: trustme.CA, files: dict[str, str], client_cert: trustme.LeafCert
) -> None:
    scopes: Scopes = []
    # trustme's keys are ECDSA: this is the one TLS 1.2 suite left.
    options = tls_options(files, ssl_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    running = await serve(recording_app(scopes), **options)
    status, seen = await raw_get(running.port, client_context(ca, client_cert, tls12=True))
    assert status == 200
    assert seen == {"version": "TLSv1.2", "cipher": "ECDHE-ECDSA-AES128-GCM-SHA256"}
    tls = scopes[0]["extensions"]["tls"]
    assert (tls["tls_version"], tls["cipher_suite"]) == (0x0303, 0xC02B)
    assert tls["client_cert_name"] == subject(client_cert)


async def test_wss_and_https_carry_the_extension_on_every_request(
    serve: Any, ca: trustme.CA, files: dict[str, str], client_cert: trustme.LeafCert
) -> None:
    scopes: Scopes = []
    running = await serve(recording_app(scopes), **tls_options(files, "required"))
    context = client_context(ca, client_cert)
    async with connect(f"wss://127.0.0.1:{running.port}/ws", ssl=context) as ws:
        await ws.send("mutual")
        assert await ws.recv() == "mutual"
    async with httpx.AsyncClient(verify=context) as client:
        for _ in range(2):  # two requests on one keep-alive connection
            response = await client.get(f"https://127.0.0.1:{running.port}/")
            assert response.status_code == 200
    assert [s["type"] for s in scopes] == ["websocket", "http", "http"]
    assert scopes[0]["extensions"]["websocket.http.response"] == {}
    for scope in scopes:
        tls = scope["extensions"]["tls"]
        assert tls["client_cert_chain"] == [pem(client_cert)]
        assert tls["client_cert_name"] == subject(client_cert)
    # Each request has its own copy: what one app changes, the next does not see.
    assert scopes[1]["extensions"]["tls"] is not scopes[2]["extensions"]["tls"]
    assert (
        scopes[1]["extensions"]["tls"]["client_cert_chain"]
        is not (scopes[2]["extensions"]["tls"]["client_cert_chain"])
    )


# -- a client without one ------------------------------------------------------------------------


async def test_a_client_without_a_certificate_is_refused_in_the_handshake(
    serve: Any, ca: trustme.CA, files: dict[str, str], client_cert: trustme.LeafCert
) -> None:
    scopes: Scopes = []
    running = await serve(recording_app(scopes), **tls_options(files, 2))
    # TLS 1.3: the client's side of the handshake ends before the server has checked the
    # client's (missing) certificate; the server drops the connection before any HTTP.
    assert await asyncio.to_thread(refused, running.port, client_context(ca)) in REFUSED
    # TLS 1.2: the handshake itself fails.
    outcome = await asyncio.to_thread(refused, running.port, client_context(ca, tls12=True))
    assert outcome in REFUSED - {"EOF"}
    assert scopes == []
    # The same server serves a client that has a certificate.
    assert (await raw_get(running.port, client_context(ca, client_cert)))[0] == 200
    assert len(scopes) == 1


async def test_a_certificate_from_another_authority_is_refused(
    serve: Any, ca: trustme.CA, files: dict[str, str]
) -> None:
    scopes: Scopes = []
    running = await serve(recording_app(scopes), **tls_options(files, 1))
    # Signed by the authority of the server's own certificate, not by --ssl-ca-certs.
    stranger = ca.issue_cert("mallory@example.org", common_name="mallory")
    assert await asyncio.to_thread(refused, running.port, client_context(ca, stranger)) in REFUSED
    assert scopes == []


async def test_optional_serves_a_client_without_a_certificate(
    serve: Any, ca: trustme.CA, files: dict[str, str], client_cert: trustme.LeafCert
) -> None:
    scopes: Scopes = []
    running = await serve(recording_app(scopes), **tls_options(files, "optional"))
    assert (await raw_get(running.port, client_context(ca)))[0] == 200
    assert (await raw_get(running.port, client_context(ca, client_cert)))[0] == 200
    without, with_cert = (s["extensions"]["tls"] for s in scopes)
    assert (without["client_cert_chain"], without["client_cert_name"]) == ([], None)
    assert without["server_cert"] == files["server_pem"]
    assert with_cert["client_cert_name"] == subject(client_cert)


async def test_without_client_certificates_the_extension_is_still_there(
    serve: Any, ca: trustme.CA, files: dict[str, str], client_cert: trustme.LeafCert
) -> None:
    scopes: Scopes = []
    running = await serve(
        recording_app(scopes), ssl_certfile=files["cert"], ssl_keyfile=files["key"]
    )
    # A certificate the client has is not asked for, so not sent.
    status, seen = await raw_get(running.port, client_context(ca, client_cert))
    assert status == 200
    assert scopes[0]["extensions"]["tls"] == {
        "server_cert": files["server_pem"],
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": SUITE_NUMBERS[seen["cipher"]],
    }


async def test_plain_connections_have_no_tls_extension(serve: Any) -> None:
    scopes: Scopes = []
    running = await serve(recording_app(scopes))
    async with httpx.AsyncClient() as client:
        assert (await client.get(running.http)).status_code == 200
    async with connect(running.ws) as ws:
        await ws.send("plain")
        assert await ws.recv() == "plain"
    assert "extensions" not in scopes[0]
    assert "tls" not in scopes[1]["extensions"]


# -- the flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("2", 2),
        ("none", 0),
        ("Optional", 1),
        ("REQUIRED", 2),
        ("cert_required", 2),
    ],
)
def test_cert_reqs_takes_numbers_and_names(value: str, expected: int, tmp_path: Path) -> None:
    from asgiws import cli

    argv = ["myapp:app", "--ssl-certfile", "c.pem", "--ssl-ca-certs", "ca.pem"]
    _, config = cli.parse_command_line([*argv, "--ssl-cert-reqs", value], {})
    assert config.ssl_cert_reqs == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--ssl-cert-reqs", "3"],
            "asgiws: error: --ssl-cert-reqs: invalid value '3' (expected one of 0, 1, 2, or none, "
            "optional, required",
        ),
        (
            ["--ssl-cert-reqs", "always"],
            "asgiws: error: --ssl-cert-reqs: invalid value 'always' (expected one of 0, 1, 2",
        ),
        (
            ["--ssl-cert-reqs", "2"],
            "asgiws: error: --ssl-cert-reqs 2 needs --ssl-ca-certs: name the certificate "
            "authorities that client certificates are verified against",
        ),
    ],
)
def test_bad_cert_reqs_is_a_cli_error(args: list[str], message: str, files: dict[str, str]) -> None:
    result = run_cli(
        "asgiws.demo:app", "--ssl-certfile", files["cert"], "--ssl-keyfile", files["key"], *args
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--ssl-ca-certs", "--ssl-ciphers"])
def test_tls_flags_without_a_certificate_are_a_cli_error(flag: str) -> None:
    result = run_cli("asgiws.demo:app", flag, "x")
    assert result.returncode == 2
    assert f"asgiws: error: {flag} needs --ssl-certfile" in result.stderr
    assert "Traceback" not in result.stderr


def start_error(files: dict[str, str], *args: str) -> str:
    result = run_cli(
        "asgiws.demo:app", "--port", "0", "--ssl-certfile", files["cert"],
        "--ssl-keyfile", files["key"], *args,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_missing_ca_file_names_the_flag_and_the_file(
    files: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    err = start_error(files, "--ssl-ca-certs", str(missing), "--ssl-cert-reqs", "2")
    assert f"--ssl-ca-certs: cannot load '{missing}': No such file or directory" in err


def test_a_ca_file_that_is_no_certificate_names_the_flag(
    files: dict[str, str], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    err = start_error(files, "--ssl-ca-certs", str(garbage), "--ssl-cert-reqs", "1")
    assert f"--ssl-ca-certs: cannot load '{garbage}': " in err


def test_a_cipher_string_openssl_rejects_names_the_flag_and_the_value(
    files: dict[str, str],
) -> None:
    err = start_error(files, "--ssl-ciphers", "NO-SUCH-CIPHER")
    assert (
        "--ssl-ciphers: invalid value 'NO-SUCH-CIPHER': OpenSSL selects no cipher suite from it"
        in err
    )
