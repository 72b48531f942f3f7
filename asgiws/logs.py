"""Logging: the ``asgiws.error`` and ``asgiws.access`` loggers and the built-in access line.

The server logs through two loggers. ``asgiws.error`` (and every other ``asgiws.*`` logger) goes
to stderr; ``asgiws.access`` goes to stdout, one line per HTTP request and per WebSocket session:

    127.0.0.1:51234 - "GET /health HTTP/1.1" 200 in 0.001s
    127.0.0.1:51234 - "GET /ws" WebSocket 101 closed 1000 in 2.315s
    127.0.0.1:51234 - "GET /ws" WebSocket rejected 403 in 0.002s

(``--access-log-format`` makes other lines: :mod:`asgiws.accesslog`.) Both handlers sit on the
``asgiws`` logger, each with a filter (access records to stdout, the others to stderr), and the
``asgiws`` loggers propagate: a handler on the root logger sees every line, and in the default
setup, where the root has none, each line is written once. With ``--log-config``
(:mod:`asgiws.logconfig`) asgiws installs no handler at all: the file decides.

``configure_logging(level, access_log=False)`` switches the access lines off by raising the access
logger's level, so :func:`log_http_access` and :func:`log_ws_access` return before formatting
anything: the server may call them unconditionally.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .accesslog import AccessFormat
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
# JSON access lines carry their own time.
JSON_ACCESS_FORMAT = "%(message)s"

root_logger = logging.getLogger("asgiws")
error_logger = logging.getLogger("asgiws.error")
access_logger = logging.getLogger("asgiws.access")

# Marks the handlers installed here, so that configuring twice replaces them instead of adding
# a second copy of every line.
_OURS = "_asgiws_handler"


class Formatter(logging.Formatter):
    """``%(asctime)s`` as ISO 8601 local time with its offset, to the millisecond:
    ``2026-12-03T05:34:35.123+01:00``. Usable in a --log-config file
    (``"()": "asgiws.logs.Formatter"``, or ``class = asgiws.logs.Formatter`` in INI)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.datetime.fromtimestamp(record.created).astimezone()
        if datefmt:
            return moment.strftime(datefmt)
        return moment.isoformat(timespec="milliseconds")


def _is_access(record: logging.LogRecord) -> bool:
    return record.name == "asgiws.access"


def _not_access(record: logging.LogRecord) -> bool:
    return record.name != "asgiws.access"


def _remove_ours() -> None:
    for logger in (root_logger, access_logger):
        for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
            logger.removeHandler(old)
        logger.propagate = True


def _install(handler: logging.Handler, fmt: str, only: Callable[[logging.LogRecord], bool]) -> None:
    handler.setFormatter(Formatter(fmt))
    handler.addFilter(only)
    setattr(handler, _OURS, True)
    root_logger.addHandler(handler)


def configure_logging(
    level: str,
    *,
    access_log: bool = True,
    json_lines: bool = False,
    log_config: str | None = None,
) -> None:
    """Send asgiws' logs to stderr (access lines to stdout) at ``level`` (``critical`` ..
    ``debug``, or ``trace``). With ``access_log=False`` no access line is even formatted;
    ``json_lines``: the access lines are JSON objects, written without a prefix.

    With ``log_config`` (a file, see :mod:`asgiws.logconfig`) no handler is installed: the
    levels are set, then the file is applied (so the levels it sets win), and
    :class:`asgiws.logconfig.LogConfigError` says what is wrong with a file that cannot be.

    Only the ``asgiws`` loggers are touched (and what a ``log_config`` file configures).
    Calling it again replaces what an earlier call installed.
    """
    try:
        number = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"invalid log level {level!r} (expected one of {', '.join(LEVELS)})"
        ) from None
    _remove_ours()
    root_logger.setLevel(number)
    # Access lines are INFO: they follow the log level, and access_log=False turns them off.
    access_logger.setLevel(number)
    if log_config is not None:
        from .logconfig import apply_log_config

        apply_log_config(log_config)
    else:
        _install(logging.StreamHandler(sys.stderr), FORMAT, _not_access)
        access_format = JSON_ACCESS_FORMAT if json_lines else ACCESS_FORMAT
        _install(logging.StreamHandler(sys.stdout), access_format, _is_access)
    if not access_log:
        access_logger.setLevel(logging.CRITICAL + 1)


# A scope's client: (host, port), [host, port], a Unix socket path, or None when unknown.
Client = tuple[str, int] | list[Any] | str | None


def format_client(client: Client) -> str:
    """``127.0.0.1:51234``, ``[::1]:51234``, a Unix socket path, or ``-`` when unknown."""
    if client is None:
        return "-"
    if isinstance(client, str):
        return clean(client) or "-"
    host, port = client[0], client[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def clean(text: str) -> str:
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
        clean(method),
        clean(path),
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
            clean(path),
            outcome,
            duration_s,
        )
    else:
        access_logger.info(
            '%s - "GET %s" WebSocket rejected %s in %.3fs',
            format_client(client),
            clean(path),
            "-" if status is None else status,
            duration_s,
        )


def log_access(
    record: AccessRecord, duration_s: float, access_format: AccessFormat | None = None
) -> None:
    """The access line of one request cycle, from the record the core returned for it: the
    built-in line, or one of ``access_format`` (``--access-log-format``)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    if access_format is not None:
        access_logger.info("%s", access_format.message(record, duration_s))
        return
    kind, client, method, path, version = record.fields
    if kind == "websocket":
        log_ws_access(client, path, record.status, record.close_code, duration_s)
    else:
        log_http_access(client, method, path, version, record.status, duration_s)
