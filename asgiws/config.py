"""Every option of asgiws, defined once.

The CLI flags (``--ws-max-size``), the environment variables (``ASGIWS_WS_MAX_SIZE``), the keyword
arguments of :func:`asgiws.run` and the README's option table are all generated from the fields of
:class:`Config`. To add an option, add a field here with :func:`option`; nothing else lists them.
How values are parsed, checked and named in errors is :mod:`asgiws.options`.

This module is imported by the sans-IO core, so it must not import asyncio or do I/O.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, Literal

# Units, as written in help texts and in the README table.
BYTES = "bytes"
SECONDS = "seconds"
COUNT = "count"

LoopName = Literal["auto", "asyncio", "uvloop"]
LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What the CLI, the environment reader and the docs need to know about one option."""

    help: str
    unit: str | None = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # "0 turns it off" and similar remarks, shown after the help text.
    zero_means: str | None = None
    # Options that only make sense from the command line (the APP argument itself is separate).
    metavar: str | None = None
    # For a list option (``tuple[str, ...]``): what separates items in the environment variable.
    # On the command line the flag is repeated instead.
    separator: str = ","
    # Another environment variable read when ASGIWS_<NAME> is not set (one other servers use).
    also_env: str | None = None
    # Words taken for values, case-insensitively: ("required", 2) lets "--ssl-cert-reqs required"
    # mean 2.
    aliases: tuple[tuple[str, Any], ...] = ()


def option(
    default: Any,
    help: str,
    *,
    unit: str | None = None,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    zero_means: str | None = None,
    metavar: str | None = None,
    separator: str = ",",
    also_env: str | None = None,
    aliases: tuple[tuple[str, Any], ...] = (),
) -> Any:
    spec = OptionSpec(
        help=help,
        unit=unit,
        choices=choices,
        minimum=minimum,
        maximum=maximum,
        zero_means=zero_means,
        metavar=metavar,
        separator=separator,
        also_env=also_env,
        aliases=aliases,
    )
    return dataclasses.field(default=default, metadata={"asgiws": spec})


KIB = 1024
MIB = 1024 * 1024


@dataclasses.dataclass
class Config:
    """All settings of one server. Field order is the order of the CLI reference."""

    # -- Application -----------------------------------------------------------------------------
    factory: bool = option(
        False, "Treat APP as a factory: call it with no arguments to get the ASGI app."
    )
    app_dir: str = option(
        ".", "Directory inserted at the front of sys.path before importing APP.", metavar="DIR"
    )
    lifespan: LifespanMode = option(  # noqa: RUF009 (option() returns a dataclasses.field)
        "auto",
        "Run the ASGI lifespan protocol: 'on' requires it, 'off' skips it, 'auto' runs it and "
        "carries on without it if the app does not support it.",
        choices=("auto", "on", "off"),
    )
    root_path: str = option(
        "", "ASGI root_path, for an app mounted below a prefix behind a proxy.", metavar="PATH"
    )
    env_file: str | None = option(
        None,
        "Load environment variables from this dotenv file (the 'dotenv' extra) before the "
        "options are read, so ASGIWS_* variables in it count; variables already set win.",
        metavar="FILE",
    )

    # -- Socket ----------------------------------------------------------------------------------
    host: str = option("127.0.0.1", "Address to bind.", metavar="ADDRESS")
    port: int = option(
        8000, "Port to bind.", minimum=0, maximum=65535, zero_means="pick a free port"
    )
    uds: str | None = option(None, "Bind to this Unix domain socket instead.", metavar="PATH")
    fd: int | None = option(
        None, "Serve on this already-open listening socket file descriptor.", minimum=0
    )
    backlog: int = option(2048, "Listen backlog.", unit=COUNT, minimum=1)
    proxy_headers: bool = option(
        True,
        "Believe the proxy headers (Forwarded, X-Forwarded-For, -Proto, -Host, -Port) of peers "
        "in --forwarded-allow-ips: the app then sees the client's address and scheme, not the "
        "proxy's. Headers from any other peer are ignored.",
    )
    forwarded_allow_ips: str = option(
        "127.0.0.1,::1",
        "Comma list of the proxies whose headers are believed: addresses, networks "
        "(10.0.0.0/8), 'unix' for peers on a Unix socket, or '*' for every peer.",
        metavar="LIST",
        also_env="FORWARDED_ALLOW_IPS",
    )
    ssl_certfile: str | None = option(
        None,
        "Serve HTTPS and wss:// with this PEM certificate chain (the key may be in it too).",
        metavar="PATH",
    )
    ssl_keyfile: str | None = option(
        None, "PEM private key for --ssl-certfile, when it is a separate file.", metavar="PATH"
    )
    ssl_keyfile_password: str | None = option(
        None, "Password of an encrypted --ssl-keyfile.", metavar="PASSWORD"
    )
    ssl_ca_certs: str | None = option(
        None,
        "PEM file of the certificate authorities that client certificates are verified against "
        "(with --ssl-cert-reqs 1 or 2: mutual TLS).",
        metavar="PATH",
    )
    ssl_cert_reqs: int = option(
        0,
        "Client certificates: 0 (or 'none') not asked for, 1 ('optional') verified when "
        "sent, 2 ('required') a client without a valid one is refused in the TLS handshake. "
        "Verified against --ssl-ca-certs; the app sees the certificate in "
        "scope['extensions']['tls'].",
        choices=(0, 1, 2),
        aliases=(
            ("none", 0),
            ("optional", 1),
            ("required", 2),
            ("cert_none", 0),
            ("cert_optional", 1),
            ("cert_required", 2),
        ),
    )
    ssl_ciphers: str | None = option(
        None,
        "OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are not affected), such as "
        "'ECDHE+AESGCM'. Unset: Python's ssl defaults (not uvicorn's 'TLSv1', which on "
        "OpenSSL 3 also allows unencrypted and anonymous suites).",
        metavar="CIPHERS",
    )

    # -- Runtime ---------------------------------------------------------------------------------
    loop: LoopName = option(  # noqa: RUF009 (option() returns a dataclasses.field)
        "auto",
        "Event loop: 'uvloop' (the fast one, from the 'fast' extra), 'asyncio', or 'auto' "
        "(uvloop when installed).",
        choices=("auto", "asyncio", "uvloop"),
    )
    log_level: LogLevel = option(  # noqa: RUF009 (option() returns a dataclasses.field)
        "info",
        "Log level.",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    )
    access_log: bool = option(True, "Log one line per HTTP request and per WebSocket session.")
    log_config: str | None = option(
        None,
        "Configure logging from this file with logging.config: .json or .yaml/.yml (needs "
        "PyYAML) as a dictConfig, .ini/.cfg/.conf as a fileConfig. asgiws then installs no "
        "handler of its own; the asgiws.error and asgiws.access loggers propagate to the root.",
        metavar="FILE",
    )
    access_log_format: str | None = option(
        None,
        "The access line: a template of {fields} (client, method, path, http_version, kind, "
        "status, close_code, duration, duration_ms, bytes, pid; the README says what each "
        "shows), or 'json' for one JSON object per line with all of them. Unset: the built-in "
        "line.",
        metavar="FORMAT",
    )
    malloc_keep: int = option(
        64 * MIB,
        "Linux with glibc: freed memory the allocator keeps for reuse instead of returning it to "
        "the system at once (M_TRIM_THRESHOLD), with blocks up to --ws-max-size (at most 32 MiB) "
        "taken from that reusable heap (M_MMAP_THRESHOLD). Without it, every large message maps "
        "fresh pages and page-faults on each; the cost is up to this much memory held after a "
        "burst of large messages.",
        unit=BYTES,
        minimum=0,
        zero_means="glibc's own settings",
    )
    reload: bool = option(
        False,
        "For development: serve the app in a fresh Python process and start a new one when a "
        "watched file changes (--reload-dir, --reload-include, --reload-exclude). Needs the "
        "'reload' extra (watchfiles). Not with --workers.",
    )
    reload_dir: tuple[str, ...] = option(
        (".",),
        "With --reload: a directory whose files are watched, subdirectories included (repeat "
        "the flag for more; ':' separates them in the environment variable).",
        metavar="DIR",
        separator=":",
    )
    reload_include: tuple[str, ...] = option(
        (),
        "With --reload: a glob of more files to watch besides `*.py`, matched against the file "
        "name or its path under the --reload-dir (repeat the flag for more), e.g. `*.html`.",
        metavar="GLOB",
    )
    reload_exclude: tuple[str, ...] = option(
        (),
        "With --reload: a glob of files or directories not to watch (repeat the flag for "
        "more), e.g. `tests`. Hidden files and directories (`.*`), `__pycache__` and editor "
        "backups (`*~`) are never watched.",
        metavar="GLOB",
    )
    workers: int = option(
        1,
        "Worker processes serving the one listening socket, under a supervisor that replaces "
        "a worker that dies, restarts them all without refusing a connection on SIGHUP, and "
        "adds or removes one on SIGTTIN / SIGTTOU. 1: a single process, no supervisor.",
        unit=COUNT,
        minimum=1,
        also_env="WEB_CONCURRENCY",
    )
    timeout_worker_healthcheck: float = option(
        30.0,
        "Under --workers: kill (SIGKILL) and replace a worker whose event loop has not "
        "answered the supervisor for this long (blocked by a synchronous call, say); a worker "
        "that is starting has at least 60 seconds.",
        unit=SECONDS,
        minimum=0.0,
        zero_means="no health check",
    )

    # -- HTTP ------------------------------------------------------------------------------------
    h11_max_incomplete_event_size: int = option(
        16 * KIB,
        "Largest HTTP request head (request line and headers); larger gets 431.",
        unit=BYTES,
        minimum=1024,
    )
    max_header_count: int = option(
        100, "Most header fields in one request head; more gets 431.", unit=COUNT, minimum=1
    )
    max_queue: int = option(
        16,
        "Unread messages held for the app per connection; reading from the socket pauses "
        "while this many are waiting.",
        unit=COUNT,
        minimum=1,
    )
    header: tuple[str, ...] = option(
        (),
        "Add this header to every response, 101 and error responses included (repeat the "
        "flag; in the environment one per line), written NAME:VALUE. A header the app sets "
        "itself replaces it.",
        metavar="NAME:VALUE",
        separator="\n",
    )
    server_header: bool = option(
        True, "Send 'server: asgiws' (unless the app or --header sets its own server header)."
    )
    date_header: bool = option(
        True, "Send a date header with the current time (unless the app sets its own)."
    )
    timeout_keep_alive: float = option(
        5.0, "Close an idle keep-alive connection after this long.", unit=SECONDS, minimum=0.0
    )
    timeout_handshake: float = option(
        10.0,
        "Disconnect a client that has not sent a complete request head within this time.",
        unit=SECONDS,
        minimum=0.0,
        zero_means="no limit",
    )
    limit_max_requests: int | None = option(
        None,
        "Stop after serving this many HTTP requests, through the graceful shutdown; under "
        "--workers the supervisor starts a fresh worker in its place. Unset: no limit.",
        unit=COUNT,
        minimum=1,
    )
    limit_max_requests_jitter: int = option(
        0,
        "Add a random 0 to this many requests to --limit-max-requests, so that workers started "
        "together are not all recycled together.",
        unit=COUNT,
        minimum=0,
    )
    limit_concurrency: int | None = option(
        None,
        "Connections served at once by this process, WebSockets included: a connection holds a "
        "place from its first request until it closes. A request over it (an upgrade too) "
        "gets 503 with Retry-After before the app runs. Unset: no limit.",
        unit=COUNT,
        minimum=1,
    )
    limit_per_client: int | None = option(
        None,
        "Connections served at once for one client address (the host; behind a trusted proxy, "
        "the client its headers name), WebSockets included; over it, 503 with Retry-After. "
        "Unset: no limit.",
        unit=COUNT,
        minimum=1,
    )
    timeout_graceful_shutdown: float = option(
        30.0,
        "On SIGINT/SIGTERM, wait this long for requests and WebSocket sessions to end before "
        "cancelling them.",
        unit=SECONDS,
        minimum=0.0,
    )

    # -- WebSocket -------------------------------------------------------------------------------
    ws_max_size: int = option(
        16 * MIB,
        "Largest WebSocket message, counted after decompression while it is reassembled; "
        "larger closes with 1009.",
        unit=BYTES,
        minimum=1,
    )
    ws_allowed_origins: tuple[str, ...] = option(
        (),
        "Origins allowed to open a WebSocket (repeat the flag, or a comma list): exact ones "
        "such as https://app.example.com, and https://*.example.com for its subdomains. Any "
        "other Origin gets 403 before the app runs. Unset: no check.",
        metavar="ORIGIN",
    )
    ws_origin_required: bool = option(
        True,
        "With --ws-allowed-origins: refuse (403) a WebSocket request without an Origin header. "
        "Browsers always send one; turn this off for non-browser clients that send none.",
    )
    ws_ping_interval: float = option(
        20.0,
        "Send a keep-alive ping this long after the last one was answered, while the connection "
        "is open. The first comes in its last three quarters, spread so that connections opened "
        "together are not pinged together.",
        unit=SECONDS,
        minimum=0.0,
        zero_means="no pings",
    )
    ws_ping_timeout: float = option(
        20.0,
        "Close with 1011 when nothing at all arrives within this time after a ping.",
        unit=SECONDS,
        minimum=0.0,
        zero_means="no timeout",
    )
    ws_close_timeout: float = option(
        10.0,
        "Wait this long for the peer's Close frame (and for the app to read a pending close) "
        "before dropping the TCP connection.",
        unit=SECONDS,
        minimum=0.0,
    )
    ws_send_timeout: float = option(
        0.0,
        "Close a WebSocket with 1008 when one send() has waited this long for a client that "
        "does not read (the app's send() then raises): one stalled reader cannot stall a "
        "broadcast to the others.",
        unit=SECONDS,
        minimum=0.0,
        zero_means="wait as long as it takes",
    )
    ws_shutdown_code: int = option(
        1001,
        "Close code sent to every WebSocket on shutdown: 1001 (Going Away) or 1012 "
        "(Service Restart).",
        choices=(1001, 1012),
    )
    ws_per_message_deflate: bool = option(
        True, "Accept permessage-deflate (RFC 7692) when the client offers it."
    )
    ws_deflate_window_bits: int = option(
        12,
        "zlib window of the server's compressor (9 to 15): memory per compressing connection "
        "grows with it.",
        unit="bits",
        minimum=9,
        maximum=15,
    )
    ws_deflate_client_window_bits: int = option(
        12,
        "Largest zlib window (9 to 15) the client's compressor may use, where the client lets "
        "the server choose (browsers do): the server keeps an inflater window this large per "
        "compressing connection, 2^bits bytes.",
        unit="bits",
        minimum=9,
        maximum=15,
    )
    ws_deflate_mem_level: int = option(
        5,
        "zlib memory level of the server's compressor (1 to 9).",
        minimum=1,
        maximum=9,
    )
    ws_deflate_level: int = option(
        1,
        "zlib compression level of the server's compressor, 1 (fastest) to 9 (smallest). 1, "
        "as nginx's gzip and Go's gorilla/websocket: on 4 KiB JSON-like messages it compresses "
        "in two thirds of zlib's default level 6 time, to some 8 % more bytes.",
        minimum=1,
        maximum=9,
    )
    ws_deflate_zlib: str = option(
        "auto",
        "Library of the permessage-deflate streams: 'zlib-ng' (the 'fast' extra) compresses a "
        "4 KiB JSON message in a third of CPython's 'zlib' time and inflates in half, to ~25 % "
        "more bytes at level 1, but takes ~200 KiB per compressing connection against ~51 KiB; "
        "'auto': zlib-ng when installed.",
        choices=("auto", "zlib", "zlib-ng"),
    )
    ws_deflate_min_size: int = option(
        1024,
        "Smallest message payload the server compresses, where permessage-deflate was "
        "negotiated; shorter messages go out uncompressed, as RFC 7692 allows (the default "
        "of Node's ws and of OkHttp). Compressing a short message costs more CPU than it saves "
        "bytes, and a connection that never compresses never holds a compressor. 0: compress "
        "every message.",
        unit="bytes",
        minimum=0,
    )

    # -- Metrics ---------------------------------------------------------------------------------
    metrics_port: int | None = option(
        None,
        "Serve Prometheus metrics (/metrics) and the probes /ready and /live on this port of "
        "--metrics-host, never on the application's port (the 'metrics' extra: "
        "prometheus_client). With --workers the figures of all workers are added up. Unset: "
        "no metrics, and no cost.",
        minimum=0,
        maximum=65535,
        zero_means="pick a free port",
    )
    metrics_host: str = option(
        "127.0.0.1", "Address the --metrics-port listens on.", metavar="ADDRESS"
    )


def option_fields() -> list[tuple[dataclasses.Field[Any], OptionSpec]]:
    """The fields of :class:`Config` that are options, in declaration order, with their specs."""
    return [(f, f.metadata["asgiws"]) for f in dataclasses.fields(Config) if "asgiws" in f.metadata]


def option_default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
    return factory()


# -- Sections ------------------------------------------------------------------------------------
# The field that opens each section of the CLI help and of the README table. A test checks that
# every name here is a field, so renaming a field cannot silently drop a heading.
SECTIONS: dict[str, str] = {
    "factory": "Application",
    "host": "Socket",
    "loop": "Runtime",
    "h11_max_incomplete_event_size": "HTTP",
    "ws_max_size": "WebSocket",
    "metrics_port": "Metrics",
}


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m asgiws.config", description="Print the option reference."
    )
    parser.add_argument(
        "--markdown", action="store_true", help="the README's option table (the default)"
    )
    parser.parse_args(argv)
    from .options import markdown_table

    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
