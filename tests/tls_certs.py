"""Certificates from trustme for the TLS tests: the server's files, a client's SSL context, and
the app that records each scope and echoes (HTTP: a fixed body; WebSocket: one text message)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trustme

Scopes = list[dict[str, Any]]


def write_server_cert(
    ca: trustme.CA, directory: Path, *hosts: str
) -> tuple[trustme.LeafCert, str, str]:
    """A certificate of ``ca`` for ``hosts`` (default 127.0.0.1 and localhost), written to
    ``directory`` as cert.pem (the chain, leaf first) and key.pem: the certificate and the
    two paths, for --ssl-certfile and --ssl-keyfile."""
    cert = ca.issue_cert(*(hosts or ("127.0.0.1", "localhost")))
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return cert, str(certfile), str(keyfile)


def client_context(
    ca: trustme.CA, cert: trustme.LeafCert | None = None, *, tls12: bool = False
) -> ssl.SSLContext:
    """A client's context that trusts ``ca``; with ``cert`` it presents that certificate, with
    ``tls12`` it goes no higher than TLS 1.2."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def recording_app(scopes: Scopes, body: bytes = b"ok") -> Any:
    """Appends each scope to ``scopes``; answers HTTP with 200 and ``body``, and echoes one
    WebSocket text message, then waits for the end of the session."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await receive()

    return app
