"""Proxy headers and the WebSocket Origin allow-list: decided by the core before any app runs.

The core tests feed exact request bytes to an HTTPConnection whose peer is given, and read the
scope the app would get; the last tests go through a real server socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from apps import Recorder, respond
from cli_process import run_cli
from wire import RFC_KEY, http_request

from asgiws.config import Config
from asgiws.http import HTTPConnection
from asgiws.options import OptionError, build_config, env_values, keyword_values
from asgiws.origins import OriginError, OriginPolicy
from asgiws.protocol import ServerHeaders
from asgiws.proxy import MAX_CHAIN, TrustedProxies, TrustError

UPGRADE_HEADERS = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY.decode()),
    ("Sec-WebSocket-Version", "13"),
]


def connect(
    headers: list[tuple[str, str]],
    *,
    peer: str | None = "127.0.0.1",
    upgrade: bool = False,
    tls: bool = False,
    **options: Any,
) -> HTTPConnection:
    conn = HTTPConnection(
        Config(**options),
        client=(peer, 50000) if peer is not None else None,
        server=("10.1.1.1", 8000),
        scheme="https" if tls else "http",
        server_headers=ServerHeaders([(b"server", b"asgiws")]),
    )
    base = UPGRADE_HEADERS if upgrade else [("Host", "example.com")]
    conn.receive_data(http_request("GET", "/p", [*base, *headers]))
    return conn


def scope_of(headers: list[tuple[str, str]], **kwargs: Any) -> dict[str, Any]:
    scope = connect(headers, **kwargs).next_scope()
    assert scope is not None
    return scope


def refusal(conn: HTTPConnection) -> bytes:
    assert conn.next_scope() is None  # no app is started
    return b"".join(conn.data_to_send())


# -- X-Forwarded-* -------------------------------------------------------------------------------


def test_trusted_peer_gives_client_and_scheme() -> None:
    scope = scope_of([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"
    assert scope["server"] == ("10.1.1.1", 8000)


def test_https_from_the_proxy_makes_a_websocket_scope_wss() -> None:
    scope = scope_of([("X-Forwarded-Proto", "https")], upgrade=True)
    assert scope["type"] == "websocket" and scope["scheme"] == "wss"
    scope = scope_of([("X-Forwarded-Proto", "WSS")], upgrade=True)
    assert scope["scheme"] == "wss"
    # And http from a proxy in front of a TLS listener says the client's hop was plain.
    scope = scope_of([("X-Forwarded-Proto", "http")], upgrade=True, tls=True)
    assert scope["scheme"] == "ws"


def test_headers_of_an_untrusted_peer_are_ignored() -> None:
    spoofed = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=198.51.100.1;proto=https"),
        ("X-Forwarded-Host", "evil.example"),
    ]
    scope = scope_of(spoofed, peer="192.0.2.9")
    assert scope["client"] == ("192.0.2.9", 50000)
    assert scope["scheme"] == "http"
    assert scope["server"] == ("10.1.1.1", 8000)


def test_no_proxy_headers_turns_it_off() -> None:
    scope = scope_of([("X-Forwarded-For", "203.0.113.7")], proxy_headers=False)
    assert scope["client"] == ("127.0.0.1", 50000)


def test_client_is_the_right_most_address_that_is_not_a_trusted_proxy() -> None:
    chain = [("X-Forwarded-For", "198.51.100.1, 10.0.0.2, 127.0.0.1")]
    assert scope_of(chain)["client"] == ("10.0.0.2", 0)
    wider = scope_of(chain, forwarded_allow_ips="127.0.0.1,10.0.0.0/8")
    assert wider["client"] == ("198.51.100.1", 0)
    # Two field lines are one list, in order.
    lines = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "10.0.0.2")]
    assert scope_of(lines)["client"] == ("10.0.0.2", 0)
    # Every hop trusted: the left-most is the client.
    assert scope_of([("X-Forwarded-For", "127.0.0.1")])["client"] == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "203.0.113.7, nonsense",
        "203.0.113.7:8080",  # XFF carries addresses only
        "999.1.1.1",
        ",".join(["203.0.113.7"] * (MAX_CHAIN + 1)),
        "203.0.113.7\x00",
    ],
)
def test_malformed_x_forwarded_for_never_reaches_the_scope(value: str) -> None:
    if "\x00" in value:
        # A NUL never gets past the head parser: the request is refused with 400.
        assert connect([("X-Forwarded-For", value)]).next_scope() is None
        return
    assert scope_of([("X-Forwarded-For", value)])["client"] == ("127.0.0.1", 50000)


def test_a_scheme_other_than_http_https_ws_wss_is_ignored() -> None:
    for proto in ("ftp", "https2", "", "javascript"):
        assert scope_of([("X-Forwarded-Proto", proto)])["scheme"] == "http"
    # The nearest proxy's value is the right-most.
    assert scope_of([("X-Forwarded-Proto", "http, https")])["scheme"] == "https"


def test_forwarded_host_and_port_give_the_server() -> None:
    scope = scope_of([("X-Forwarded-Host", "App.Example.com"), ("X-Forwarded-Proto", "https")])
    assert scope["server"] == ("app.example.com", 443)
    scope = scope_of([("X-Forwarded-Host", "app.example.com:8443")])
    assert scope["server"] == ("app.example.com", 8443)
    scope = scope_of([("X-Forwarded-Host", "app.example.com"), ("X-Forwarded-Port", "8080")])
    assert scope["server"] == ("app.example.com", 8080)
    assert scope_of([("X-Forwarded-Port", "9000")])["server"] == ("10.1.1.1", 9000)
    for bad_host in ("a b", "evil/path", "x" * 300, "[::1", "host:99999", "h:abc"):
        assert scope_of([("X-Forwarded-Host", bad_host)])["server"] == ("10.1.1.1", 8000)
    for bad_port in ("0", "65536", "-1", "80a", "123456"):
        assert scope_of([("X-Forwarded-Port", bad_port)])["server"] == ("10.1.1.1", 8000)


def test_unix_socket_peer_is_trusted_only_when_the_list_says_so() -> None:
    headers = [("X-Forwarded-For", "203.0.113.7")]
    assert scope_of(headers, peer=None)["client"] is None
    trusted = scope_of(headers, peer=None, forwarded_allow_ips="unix")
    assert trusted["client"] == ("203.0.113.7", 0)
    assert scope_of(headers, peer=None, forwarded_allow_ips="*")["client"] == ("203.0.113.7", 0)


def test_star_trusts_every_peer() -> None:
    scope = scope_of(
        [("X-Forwarded-For", "203.0.113.7")], peer="192.0.2.9", forwarded_allow_ips="*"
    )
    assert scope["client"] == ("203.0.113.7", 0)


def test_ipv6_peers_and_chains() -> None:
    scope = scope_of([("X-Forwarded-For", "2001:db8::1")], peer="::1")
    assert scope["client"] == ("2001:db8::1", 0)
    # An IPv4 peer seen on a dual-stack socket as IPv4-mapped IPv6 is that IPv4 address.
    scope = scope_of([("X-Forwarded-For", "203.0.113.7")], peer="::ffff:127.0.0.1")
    assert scope["client"] == ("203.0.113.7", 0)


def test_the_access_line_shows_the_forwarded_client() -> None:
    conn = connect([("X-Forwarded-For", "203.0.113.7")])
    assert conn.next_scope() is not None
    conn.send({"type": "http.response.start", "status": 204, "headers": []})
    conn.send({"type": "http.response.body", "body": b""})
    record = conn.app_finished(None)
    assert record.fields[1] == ("203.0.113.7", 0)


# -- Forwarded (RFC 7239) ------------------------------------------------------------------------


def test_forwarded_gives_client_scheme_and_host() -> None:
    scope = scope_of([("Forwarded", "for=192.0.2.60;proto=https;host=app.example.com")])
    assert scope["client"] == ("192.0.2.60", 0)
    assert scope["scheme"] == "https"
    assert scope["server"] == ("app.example.com", 443)


def test_forwarded_ipv6_quoted_with_port_and_chains() -> None:
    scope = scope_of([("Forwarded", 'for="[2001:db8:cafe::17]:4711"')])
    assert scope["client"] == ("2001:db8:cafe::17", 0)
    chain = [("Forwarded", "for=198.51.100.1, for=10.0.0.2;proto=https, for=127.0.0.1")]
    scope = scope_of(chain, forwarded_allow_ips="127.0.0.1,10.0.0.0/8")
    assert scope["client"] == ("198.51.100.1", 0)
    # RFC 7239 §7.1: the proto of the element the nearest proxy added (none here) counts.
    assert scope["scheme"] == "http"
    assert scope_of(chain)["client"] == ("10.0.0.2", 0)


def test_forwarded_wins_over_x_forwarded_for() -> None:
    scope = scope_of([("Forwarded", "for=192.0.2.60"), ("X-Forwarded-For", "203.0.113.7")])
    assert scope["client"] == ("192.0.2.60", 0)


@pytest.mark.parametrize(
    "value",
    [
        "for=unknown",
        "for=_hidden",
        'for="unterminated',
        "for",
        "=x",
        "for=1.2.3.4;for=5.6.7.8",  # a parameter twice in one element
        "for=1.2.3.4 junk",
        ", ".join(["for=192.0.2.1"] * (MAX_CHAIN + 1)),
    ],
)
def test_unusable_forwarded_keeps_the_peer(value: str) -> None:
    scope = scope_of([("Forwarded", value)])
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["scheme"] == "http"


def test_unparsable_forwarded_falls_back_to_x_forwarded_for() -> None:
    scope = scope_of([("Forwarded", 'for="broken'), ("X-Forwarded-For", "203.0.113.7")])
    assert scope["client"] == ("203.0.113.7", 0)


# -- --forwarded-allow-ips -----------------------------------------------------------------------


def test_trusted_proxies_parse() -> None:
    trusted = TrustedProxies("127.0.0.1, ::1, 10.0.0.0/8, fd00::/8")
    assert trusted.trusts("127.0.0.1") and trusted.trusts("::1")
    assert trusted.trusts("10.200.3.4") and trusted.trusts("fd00::5")
    assert not trusted.trusts("11.0.0.1") and not trusted.trusts("not an address")
    assert not trusted.trusts(None)
    for bad in ("10.0.0.0/33", "localhost", "1.2.3"):
        with pytest.raises(TrustError, match=repr(bad)):
            TrustedProxies(bad)


def test_forwarded_allow_ips_errors_name_the_source() -> None:
    with pytest.raises(OptionError, match=r"run\(forwarded_allow_ips=...\): invalid value"):
        build_config((keyword_values({"forwarded_allow_ips": "10.0.0.0/33"}), lambda o: o.keyword))
    result = run_cli("app:app", "--forwarded-allow-ips", "127.0.0.1,localhost")
    assert result.returncode == 2
    assert "--forwarded-allow-ips: invalid value: 'localhost' is not an address" in result.stderr
    assert "Traceback" not in result.stderr


def test_uvicorns_forwarded_allow_ips_variable_counts_below_ours() -> None:
    assert env_values({"FORWARDED_ALLOW_IPS": "*"}) == {"forwarded_allow_ips": "*"}
    both = {"FORWARDED_ALLOW_IPS": "*", "ASGIWS_FORWARDED_ALLOW_IPS": "10.0.0.1"}
    assert env_values(both) == {"forwarded_allow_ips": "10.0.0.1"}


# -- Origin --------------------------------------------------------------------------------------

ALLOWED = ("https://app.example.com", "https://*.example.org", "http://localhost:8000")


def upgrade_from(origin: str | None, **options: Any) -> HTTPConnection:
    headers = [("Origin", origin)] if origin is not None else []
    options.setdefault("ws_allowed_origins", ALLOWED)
    return connect(headers, upgrade=True, **options)


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "HTTPS://App.Example.COM",
        "https://app.example.com:443",
        "https://chat.example.org",
        "https://a.b.example.org",
        "http://localhost:8000",
    ],
)
def test_allowed_origins_reach_the_app(origin: str) -> None:
    conn = upgrade_from(origin)
    scope = conn.next_scope()
    assert scope is not None and scope["type"] == "websocket"
    assert conn.next_message() == {"type": "websocket.connect"}


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example.com",  # the scheme counts
        "https://app.example.com:8443",  # and the port
        "https://example.org",  # *. is for subdomains only
        "https://app.example.com.evil.example",
        "https://evilexample.org",
        "http://localhost",
        "null",
    ],
)
def test_other_origins_get_403_naming_them(origin: str) -> None:
    body = f"WebSocket origin {origin!r} is not allowed\n".encode()
    response = refusal(upgrade_from(origin))
    assert response == (
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\nserver: asgiws\r\n\r\n%s" % (len(body), body)
    )


def test_refused_origin_has_an_access_record() -> None:
    conn = upgrade_from("https://evil.example")
    refusal(conn)
    record = conn.connection_lost()
    assert record is not None
    assert record.status == 403
    assert record.fields == ("websocket", ("127.0.0.1", 50000), "GET", "/p", "1.1")


def test_absent_origin_is_refused_unless_not_required() -> None:
    assert refusal(upgrade_from(None)).endswith(b"WebSocket request without an Origin header\n")
    conn = upgrade_from(None, ws_origin_required=False)
    assert conn.next_scope() is not None


def test_no_allow_list_means_no_check() -> None:
    conn = connect([("Origin", "https://evil.example")], upgrade=True)
    assert conn.next_scope() is not None


def test_two_origin_headers_are_refused() -> None:
    headers = [("Origin", "https://app.example.com"), ("Origin", "https://evil.example")]
    conn = connect(headers, upgrade=True, ws_allowed_origins=ALLOWED)
    assert refusal(conn).startswith(b"HTTP/1.1 403 Forbidden\r\n")


def test_a_long_origin_is_shortened_in_the_reason() -> None:
    origin = "https://" + "a" * 500 + ".example"
    assert b"a" * 200 + b"...' is not allowed" not in refusal(upgrade_from(origin))
    assert b"...' is not allowed\n" in refusal(upgrade_from(origin))


def test_plain_http_requests_are_not_checked() -> None:
    conn = connect([("Origin", "https://evil.example")], ws_allowed_origins=ALLOWED)
    assert conn.next_scope() is not None


def test_origin_patterns_are_checked() -> None:
    for bad in ("app.example.com", "https://", "https://a/path", "https://a.*.com", "https://*."):
        with pytest.raises(OriginError):
            OriginPolicy((bad,))
    result = run_cli("app:app", "--ws-allowed-origins", "example.com")
    assert result.returncode == 2
    assert "--ws-allowed-origins: invalid value: 'example.com' is not an origin" in result.stderr


def test_origins_as_one_comma_list_or_repeated() -> None:
    config = build_config(
        (keyword_values({"ws_allowed_origins": ["https://a.example, https://b.example"]}), str)
    )
    assert config.ws_allowed_origins == ("https://a.example", "https://b.example")


# -- through a real socket -----------------------------------------------------------------------


async def test_real_socket_proxy_headers_and_origin(serve: Any) -> None:
    recorder = Recorder()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        recorder.scope(scope)
        if scope["type"] == "http":
            await respond(send, 200, b"ok")

    running = await serve(app, ws_allowed_origins=("https://app.example.com",))
    async with httpx.AsyncClient(base_url=running.http, timeout=10) as client:
        response = await client.get("/", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 200
    assert recorder.scopes[-1]["client"] == ("203.0.113.7", 0)
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        headers = [*UPGRADE_HEADERS, ("Origin", "https://evil.example")]
        writer.write(http_request("GET", "/ws", headers))
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert data.endswith(b"WebSocket origin 'https://evil.example' is not allowed\n")
    assert all(scope["type"] != "websocket" for scope in recorder.scopes)
