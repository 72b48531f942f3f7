"""uvicorn's command-line flags and what they are in asgiws: one row per flag of ``uvicorn --help``
(uvicorn 0.55).

The CLI uses it so that a uvicorn command line typed as-is either works or fails with a message
naming the flag and the asgiws spelling (:func:`asgiws.cli.build_parser` registers the flags
asgiws does not have); the README's "Coming from uvicorn" table is :func:`markdown_table`, and
tests/test_uvicorn_flags.py checks both.

Flags that choose an implementation (``--http``, ``--ws``, ``--interface``) are accepted, with a
note on stderr, when the value names what asgiws does anyway (``--ws websockets``: asgiws has its
own RFC 6455 WebSocket; ``--interface asgi3``); other values are refused.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class UvicornFlag:
    """One uvicorn flag. ``asgiws``: the asgiws flag doing the same (the same name, or another
    spelling), or None when asgiws does not offer it; ``note``: how it differs, or why not."""

    flag: str
    asgiws: str | None
    note: str = ""
    negative: str | None = None  # the --no- form of a boolean pair
    takes_value: bool = True
    # Values accepted with a note because they name what asgiws does anyway, and the note.
    harmless: tuple[str, ...] = ()
    harmless_note: str = ""

    @property
    def same(self) -> bool:
        return self.asgiws == self.flag

    def flags(self) -> tuple[str, ...]:
        return (self.flag, self.negative) if self.negative else (self.flag,)

    def message(self, value: str | None = None) -> str:
        """What ``asgiws: error:`` says (or, for a harmless value, the note) when the flag is
        given."""
        if value is not None and value.lower() in self.harmless:
            return f"{self.flag} {value} ignored: {self.harmless_note}"
        if self.asgiws is not None and not self.same:
            return f"{self.flag} is uvicorn's; asgiws spells it {self.asgiws}"
        shown = f"{self.flag} {value}" if value is not None and self.harmless else self.flag
        return f"{shown} is not offered by asgiws: {self.note}"


def _same(
    flag: str, note: str = "", negative: bool = False, takes_value: bool = True
) -> UvicornFlag:
    neg = "--no-" + flag[2:] if negative else None
    return UvicornFlag(flag, flag, note, neg, takes_value and not negative)


FLAGS: tuple[UvicornFlag, ...] = (
    _same("--host"),
    _same("--port"),
    _same("--uds"),
    _same("--fd"),
    _same("--reload", takes_value=False),
    _same("--reload-dir"),
    _same("--reload-include"),
    _same("--reload-exclude"),
    UvicornFlag(
        "--reload-delay",
        None,
        "asgiws's --reload is woken by file-system events (watchfiles), there is no polling "
        "interval to set",
    ),
    _same("--workers", "Also reads WEB_CONCURRENCY; SIGHUP restarts without a refused connection."),
    _same("--loop", "auto, asyncio or uvloop; there is no zuvloop."),
    UvicornFlag(
        "--http",
        None,
        "asgiws parses HTTP/1.1 with h11 only",
        harmless=("auto", "h11"),
        harmless_note="asgiws always parses HTTP/1.1 with h11",
    ),
    UvicornFlag(
        "--http2",
        None,
        "asgiws speaks HTTP/1.1 (WebSocket over the HTTP/1.1 Upgrade); put an HTTP/2 proxy in "
        "front",
        takes_value=False,
    ),
    UvicornFlag(
        "--ws",
        None,
        "asgiws has its own RFC 6455 WebSocket implementation",
        harmless=("auto", "websockets", "websockets-sansio", "wsproto"),
        harmless_note="asgiws has its own RFC 6455 WebSocket implementation, nothing to choose",
    ),
    _same("--ws-max-size", "Bytes; also takes KiB/MiB (16MiB)."),
    UvicornFlag(
        "--ws-max-queue",
        "--max-queue",
        "Unread messages held for the app per connection (HTTP body chunks too).",
    ),
    _same("--ws-ping-interval", "Seconds; 0 turns pings off."),
    _same("--ws-ping-timeout", "Seconds."),
    _same(
        "--ws-per-message-deflate",
        "Takes true/false as in uvicorn, or bare, or --no-ws-per-message-deflate.",
    ),
    _same("--lifespan"),
    UvicornFlag(
        "--interface",
        None,
        "asgiws serves ASGI 3 apps only; wrap an ASGI 2 or WSGI app in an ASGI 3 adapter",
        harmless=("auto", "asgi3"),
        harmless_note="asgiws serves ASGI 3 apps, and only those",
    ),
    _same("--env-file"),
    _same("--log-config"),
    _same("--log-level"),
    _same("--access-log", negative=True),
    UvicornFlag(
        "--use-colors",
        None,
        "asgiws's log lines are plain text; colours belong in a --log-config formatter",
        negative="--no-use-colors",
        takes_value=False,
    ),
    UvicornFlag(
        "--proxy-headers",
        "--proxy-headers",
        "Forwarded and X-Forwarded-For/-Proto/-Host/-Port, from --forwarded-allow-ips peers only.",
        "--no-proxy-headers",
        takes_value=False,
    ),
    _same("--server-header", negative=True),
    _same("--date-header", negative=True),
    _same(
        "--forwarded-allow-ips",
        "Default 127.0.0.1,::1; also read from FORWARDED_ALLOW_IPS, as in uvicorn; 'unix' for "
        "peers on a Unix socket.",
    ),
    _same("--root-path"),
    _same(
        "--limit-concurrency",
        "Counts WebSocket connections too, from a connection's first request until it closes; "
        "over it, 503 with Retry-After.",
    ),
    _same("--backlog"),
    _same("--limit-max-requests"),
    _same("--limit-max-requests-jitter"),
    _same("--timeout-keep-alive", "Seconds (fractions allowed)."),
    _same("--timeout-graceful-shutdown", "Seconds; default 30 (uvicorn: none)."),
    _same(
        "--timeout-worker-healthcheck",
        "Seconds, default 30 (uvicorn: 5); the worker's event loop beats on a pipe, so a "
        "blocked loop is what it detects.",
    ),
    _same("--ssl-keyfile"),
    _same("--ssl-certfile"),
    _same("--ssl-keyfile-password"),
    UvicornFlag(
        "--ssl-version",
        None,
        "the TLS versions are Python's ssl defaults (TLS 1.2 and later); older protocols are not "
        "offered",
    ),
    _same(
        "--ssl-cert-reqs",
        "0, 1, 2 as in uvicorn, or none, optional, required; 1 and 2 need --ssl-ca-certs.",
    ),
    _same(
        "--ssl-ca-certs",
        "Client certificates are verified against these authorities only; the app sees the "
        "certificate in scope['extensions']['tls'].",
    ),
    _same(
        "--ssl-ciphers",
        "Default: Python's ssl defaults (uvicorn: 'TLSv1', which on OpenSSL 3 also allows "
        "unencrypted and anonymous TLS 1.2 suites).",
    ),
    _same("--header"),
    _same("--version", takes_value=False),
    _same("--app-dir"),
    _same("--h11-max-incomplete-event-size", "Bytes; larger request heads get 431."),
    UvicornFlag(
        "--reset-contextvars",
        None,
        "every request cycle already runs in a task of its own, so context variables set by one "
        "request do not reach another",
        takes_value=False,
    ),
    _same("--factory", takes_value=False),
    _same("--help", takes_value=False),
)


def by_flag() -> dict[str, UvicornFlag]:
    """Every uvicorn flag (both forms of a boolean pair) to its row."""
    return {name: row for row in FLAGS for name in row.flags()}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The README's table: uvicorn flag, asgiws flag, notes."""
    lines = ["| uvicorn | asgiws | Notes |", "|---|---|---|"]
    for row in FLAGS:
        uvicorn = " / ".join(f"`{name}`" for name in row.flags())
        if row.asgiws is None:
            asgiws = "not offered"
            note = row.note + "."
            if row.harmless:
                values = ", ".join(f"`{v}`" for v in row.harmless)
                note = (
                    f"{values} accepted with a note ({row.harmless_note}); other values "
                    f"refused: {row.note}."
                )
        else:
            asgiws = f"`{row.asgiws}`" + (f" / `--no-{row.asgiws[2:]}`" if row.negative else "")
            note = row.note if row.note else ("Same." if row.same else "")
        lines.append(f"| {uvicorn} | {asgiws} | {_cell(note)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
