"""``--access-log-format``: access lines from a template of named fields, or as JSON lines.

A template is text with ``{field}`` placeholders (``{{`` and ``}}`` for literal braces)::

    --access-log-format '{client} {method} {path} {status} {close_code} {duration}s {bytes}B'

``json`` instead writes one JSON object per line, every field in it plus ``time`` (ISO 8601,
with the offset), for log shippers. :data:`FIELDS` lists the fields; the README shows them.
Without the option the built-in line of :mod:`asgiws.logs` is written, as it always was.

Templates are checked when the configuration is built (an unknown field is an error naming
it and the known ones), so that writing a line cannot fail.
"""

from __future__ import annotations

import datetime
import json
import os
import string
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .protocol import AccessRecord

JSON = "json"

# Each field and what it shows; in a template a missing value is "-", in JSON null.
FIELDS: dict[str, str] = {
    "client": "the client's address: 127.0.0.1:51234, [::1]:51234, a Unix socket path, or -",
    "method": "the request method (GET for a WebSocket)",
    "path": "the path, with the query string after ?",
    "http_version": "1.1 or 1.0",
    "kind": "http or websocket",
    "status": "the status sent: 101 for an accepted WebSocket; - when the client left first",
    "close_code": "the code a WebSocket closed with (- for HTTP, or when none was received)",
    "duration": "seconds from the start of the request cycle to its end, as 0.001",
    "duration_ms": "the same in milliseconds, as 1.234",
    "bytes": "response body bytes sent (an HTTP response, a refusal, a WebSocket's denial "
    "response); - for an accepted WebSocket session",
    "pid": "the process id of the server (one per worker)",
}


class AccessFormatError(ValueError):
    """A template that cannot be used; the message names the problem."""


class AccessFormat:
    """A checked ``--access-log-format``: :meth:`message` makes one access line."""

    __slots__ = ("fields", "json", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        self.json = is_json(template)
        self.fields: tuple[str, ...] = tuple(FIELDS) if self.json else _template_fields(template)

    def values(self, record: AccessRecord, duration_s: float) -> dict[str, Any]:
        """Every field of ``record`` as a Python value (None where there is none)."""
        from .logs import format_client

        kind, client, method, path, version = record.fields
        if kind == "websocket":
            method = method or "GET"
        return {
            "client": None if client is None else format_client(client),
            # "-": a refused request whose request line could not be read.
            "method": None if method == "-" else method,
            "path": None if path == "-" else path,
            "http_version": version,
            "kind": kind,
            "status": record.status,
            "close_code": record.close_code,
            "duration": round(duration_s, 6),
            "duration_ms": round(duration_s * 1000.0, 3),
            "bytes": record.body_bytes,
            "pid": os.getpid(),
        }

    def message(self, record: AccessRecord, duration_s: float) -> str:
        values = self.values(record, duration_s)
        if self.json:
            now = datetime.datetime.now().astimezone()
            line = {"time": now.isoformat(timespec="milliseconds"), **values}
            return json.dumps(line, separators=(",", ":"))
        from .logs import clean

        shown = {
            "duration": f"{duration_s:.3f}",
            "duration_ms": f"{duration_s * 1000.0:.3f}",
        }
        for name in self.fields:
            if name not in shown:
                value = values[name]
                shown[name] = "-" if value is None else clean(str(value)) or "-"
        return self.template.format_map(shown)


def _template_fields(template: str) -> tuple[str, ...]:
    if not template.strip():
        raise AccessFormatError("the template is empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise AccessFormatError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    names: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            known = ", ".join(FIELDS)
            shown = f"{{{name}}}" if name else "{}"
            raise AccessFormatError(f"unknown field {shown} (the fields: {known})")
        if spec or conversion:
            raise AccessFormatError(f"{{{name}}}: write the field bare, without ! or :")
        names.append(name)
    return tuple(dict.fromkeys(names))


def is_json(template: str | None) -> bool:
    """Whether ``template`` asks for JSON lines."""
    return template is not None and template.strip().lower() == JSON


def access_format(template: str | None) -> AccessFormat | None:
    """The checked format of ``template``; None (the built-in line) for None."""
    return None if template is None else AccessFormat(template)
