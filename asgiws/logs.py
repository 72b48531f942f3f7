"""Logging: the ``asgiws.error`` and ``asgiws.access`` loggers and the access-line formats.

The server logs through two loggers. ``asgiws.error`` (and every other ``asgiws.*`` logger) goes
to stderr; ``asgiws.access`` goes to stdout, one line per HTTP request and per WebSocket session:

    127.0.0.1:51234 - "GET /health HTTP/1.1" 200 in 0.001s
    127.0.0.1:51234 - "GET /ws" WebSocket 101 closed 1000 in 2.315s
    127.0.0.1:51234 - "GET /ws" WebSocket rejected 403 in 0.002s

``configure_logging(level, access_log=False)`` switches the access lines off by raising the access
logger's level, so :func:`log_http_access` and :func:`log_ws_access` return before formatting
anything: the server may call them unconditionally.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .protocol import AccessRecord

# One level below DEBUG for per-frame and per-event detail.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS: dict[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
ACCESS_FORMAT = "%(asctime)s ACCESS  %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

root_logger = logging.getLogger("asgiws")
error_logger = logging.getLogger("asgiws.error")
access_logger = logging.getLogger("asgiws.access")

# Marks the handlers installed here, so that configuring twice replaces them instead of adding
# a second copy of every line.
_OURS = "_asgiws_handler"


def _install(logger: logging.Logger, handler: logging.Handler, fmt: str) -> None:
    for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(old)
    handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
    setattr(handler, _OURS, True)
    logger.addHandler(handler)
    logger.propagate = False


def configure_logging(level: str, *, access_log: bool = True) -> None:
    """Send asgiws' logs to stderr (access lines to stdout) at ``level`` (``critical`` ..
    ``debug``, or ``trace``). With ``access_log=False`` no access line is even formatted.

    Only the ``asgiws`` loggers are touched: the root logger and the app's loggers are left as
    they are. Calling it again replaces what an earlier call installed.
    """
    try:
        number = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"invalid log level {level!r} (expected one of {', '.join(LEVELS)})"
        ) from None
    _install(root_logger, logging.StreamHandler(sys.stderr), FORMAT)
    root_logger.setLevel(number)
    _install(access_logger, logging.StreamHandler(sys.stdout), ACCESS_FORMAT)
    # Access lines are INFO: they follow the log level, and access_log=False turns them off.
    access_logger.setLevel(number if access_log else logging.CRITICAL + 1)


# A scope's client: (host, port), [host, port], a Unix socket path, or None when unknown.
Client = tuple[str, int] | list[Any] | str | None


def format_client(client: Client) -> str:
    """``127.0.0.1:51234``, ``[::1]:51234``, a Unix socket path, or ``-`` when unknown."""
    if client is None:
        return "-"
    if isinstance(client, str):
        return _clean(client) or "-"
    host, port = client[0], client[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _clean(text: str) -> str:
    """Escape what could forge or break a log line: quotes, backslashes, control characters."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def log_http_access(
    client: Client,
    method: str,
    path: str,
    http_version: str,
    status: int | None,
    duration_s: float,
) -> None:
    """``127.0.0.1:51234 - "GET /health HTTP/1.1" 200 in 0.001s``; status ``-`` when the client
    left before any response was sent."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    access_logger.info(
        '%s - "%s %s HTTP/%s" %s in %.3fs',
        format_client(client),
        _clean(method),
        _clean(path),
        http_version,
        "-" if status is None else status,
        duration_s,
    )


def log_ws_access(
    client: Client,
    path: str,
    status: int | None,
    close_code: int | None,
    duration_s: float,
) -> None:
    """One line per WebSocket session, when it ends.

    ``status`` is the handshake's: 101 when the session was accepted (then ``close_code`` is the
    code it closed with, or None when the connection dropped without a Close frame), anything
    else when the handshake was rejected, None when the client left before any answer.
    """
    if not access_logger.isEnabledFor(logging.INFO):
        return
    if status == 101:
        outcome = "closed" if close_code is None else f"closed {close_code}"
        access_logger.info(
            '%s - "GET %s" WebSocket 101 %s in %.3fs',
            format_client(client),
            _clean(path),
            outcome,
            duration_s,
        )
    else:
        access_logger.info(
            '%s - "GET %s" WebSocket rejected %s in %.3fs',
            format_client(client),
            _clean(path),
            "-" if status is None else status,
            duration_s,
        )


def log_access(record: AccessRecord, duration_s: float) -> None:
    """The access line of one request cycle, from the record the core returned for it."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    kind, client, method, path, version = record.fields
    if kind == "websocket":
        log_ws_access(client, path, record.status, record.close_code, duration_s)
    else:
        log_http_access(client, method, path, version, record.status, duration_s)
