"""Listening sockets and TLS: binding --host/--port, --uds or --fd, and --ssl-* loaded once."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import stat
from typing import Any

from ..config import Config


class TLSConfigError(Exception):
    """A file of --ssl-certfile / --ssl-keyfile / --ssl-ca-certs could not be loaded, or the
    --ssl-ciphers string selects nothing."""


class Listener:
    """What every connection accepted on one listening socket shares."""

    __slots__ = ("scheme", "server_address", "unix")

    def __init__(self, sock: socket.socket, tls: bool, uds: str | None) -> None:
        self.unix = sock.family == socket.AF_UNIX
        self.scheme = "https" if tls else "http"
        # The scope's "server": the same for every connection of a Unix socket or of a socket
        # bound to one address; None where each connection must ask (0.0.0.0, ::).
        self.server_address: Any
        if self.unix:
            name = sock.getsockname()
            self.server_address = [str(name or uds or ""), None]
        else:
            host, port = sock.getsockname()[:2]
            unspecified = ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
            self.server_address = None if unspecified else (str(host), int(port))


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context of --ssl-certfile and the other --ssl-* options, or None; raises
    TLSConfigError naming the flag and the value."""
    if config.ssl_certfile is None:
        return None
    # Without a CA file nothing is verified against the system's authorities either: a client
    # certificate is only ever checked against --ssl-ca-certs.
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config.ssl_ca_certs)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"--ssl-ca-certs: cannot load {config.ssl_ca_certs!r}: {_reason(exc)}"
        ) from None
    try:
        context.load_cert_chain(
            config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password
        )
    except (OSError, ssl.SSLError) as exc:
        flag = "--ssl-keyfile" if config.ssl_keyfile else "--ssl-certfile"
        shown = config.ssl_keyfile or config.ssl_certfile
        raise TLSConfigError(f"{flag}: cannot load {shown!r}: {_reason(exc)}") from None
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSConfigError(
                f"--ssl-ciphers: invalid value {config.ssl_ciphers!r}: OpenSSL selects no "
                "cipher suite from it"
            ) from None
    # 0, 1, 2 are ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED.
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    # The handshake offers HTTP/1.1 only: h2 is not spoken here.
    context.set_alpn_protocols(["http/1.1"])
    return context


def _reason(exc: OSError | ssl.SSLError) -> object:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc


def make_socket(config: Config) -> socket.socket:
    """The listening socket of --fd, --uds or --host/--port, non-blocking."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
        sock.setblocking(False)
        return sock
    if config.uds:
        path = config.uds
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # A stale socket from an earlier run.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(config.backlog)
        sock.setblocking(False)
        return sock
    infos = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _type, proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(config.backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def describe_address(config: Config) -> str:
    """Where the server was asked to listen, for an error message."""
    if config.fd is not None:
        return f"file descriptor {config.fd}"
    if config.uds:
        return f"unix socket {config.uds}"
    return f"{config.host}:{config.port}"
