"""Every option of asgiws, defined once.

The CLI flags (``--ws-max-size``), the environment variables (``ASGIWS_WS_MAX_SIZE``), the keyword
arguments of :func:`asgiws.run` and the README's option table are all generated from the fields of
:class:`Config`. To add an option, add a field here with :func:`option`; nothing else lists them.

This module is imported by the sans-IO core, so it must not import asyncio or do I/O.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
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
) -> Any:
    spec = OptionSpec(
        help=help,
        unit=unit,
        choices=choices,
        minimum=minimum,
        maximum=maximum,
        zero_means=zero_means,
        metavar=metavar,
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
    ws_ping_interval: float = option(
        20.0,
        "Send a keep-alive ping this long after the last ping when the connection is open.",
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
}

ENV_PREFIX = "ASGIWS_"

# Booleans as written on the command line and in the environment, case-insensitively.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

# Size suffixes accepted for options counted in bytes ("64KiB", "16 MiB"); binary, as in the help.
_BYTE_SUFFIXES = {"kib": KIB, "mib": MIB, "gib": 1024 * MIB}
# Suffixes accepted for options counted in seconds ("500ms", "2s").
_SECOND_SUFFIXES = {"ms": 0.001, "s": 1.0}


class OptionError(ValueError):
    """A value that is not valid for an option. The message names the option and the value."""


class OptionTypeError(OptionError, TypeError):
    """A Python value of the wrong type given to :func:`asgiws.run`."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One field of :class:`Config`, with everything derived from it: flag, env var, type."""

    name: str
    kind: type  # bool, int, float or str: the type of the value, without None
    optional: bool  # None is a valid value (and the default): "not set"
    default: Any
    spec: OptionSpec
    section: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def negative_flag(self) -> str | None:
        return "--no-" + self.name.replace("_", "-") if self.kind is bool else None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def keyword(self) -> str:
        """How :func:`asgiws.run` errors name this option."""
        return f"run({self.name}=...)"

    @property
    def metavar(self) -> str:
        if self.spec.choices is not None:
            return "{" + ",".join(str(c) for c in self.spec.choices) + "}"
        if self.spec.metavar is not None:
            return self.spec.metavar
        if self.spec.unit == COUNT:
            return "N"
        if self.spec.unit is not None:
            return self.spec.unit.upper()
        return self.name.rsplit("_", 1)[-1].upper()

    def type_text(self) -> str:
        """The type as the README shows it: ``int``, ``auto | on | off``, ``str or unset``."""
        if self.spec.choices is not None:
            text = " \\| ".join(f"`{c}`" for c in self.spec.choices)
        else:
            text = self.kind.__name__
            bounds = _bounds_text(self.spec)
            if bounds:
                text += f", {bounds}"
        if self.optional:
            text += " (or unset)"
        return text

    def expected(self) -> str:
        """What a valid value looks like, for error messages: 'a whole number of bytes, at
        least 1'."""
        spec = self.spec
        if spec.choices is not None:
            text = "one of " + ", ".join(_show(c) for c in spec.choices)
        elif self.kind is bool:
            text = "a boolean: " + ", ".join(
                f"{t}/{f}" for t, f in zip(TRUE_WORDS, FALSE_WORDS, strict=True)
            )
        elif self.kind is str:
            text = "a string"
        else:
            noun = "a whole number" if self.kind is int else "a number"
            if spec.unit is not None and spec.unit != COUNT:
                noun += f" of {spec.unit}"
            bounds = _bounds_text(spec)
            text = f"{noun}, {bounds}" if bounds else noun
        if self.optional:
            text += ", or empty for unset"
        return text

    def default_text(self) -> str:
        """The default as the help and the README show it."""
        value = self.default
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, float):
            return _number(value)
        if isinstance(value, str):
            return value if self.spec.choices is not None else repr(value)
        text = str(value)
        if self.spec.unit == BYTES:
            for suffix, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", KIB)):
                if value >= size and value % size == 0:
                    return f"{text} ({value // size} {suffix})"
        return text

    def remarks(self) -> list[str]:
        """Unit, default and the zero remark, as short phrases for the help text."""
        parts = []
        if self.spec.unit is not None and self.spec.unit != COUNT:
            parts.append(self.spec.unit)
        parts.append(f"default {self.default_text()}")
        if self.spec.zero_means is not None:
            parts.append(f"0: {self.spec.zero_means}")
        return parts


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _number(value: float) -> str:
    return f"{value:g}"


def _bounds_text(spec: OptionSpec) -> str:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        return f"from {_number(low)} to {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    if high is not None:
        return f"at most {_number(high)}"
    return ""


def _resolve_kind(hint: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``Literal["a", "b"]`` -> (str, False)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        if len(kinds) != 1:
            raise TypeError(f"Literal with mixed types is not supported as an option: {hint!r}")
        return kinds.pop(), False
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"only 'X | None' unions are supported as options: {hint!r}")
        kind, _ = _resolve_kind(rest[0])
        return kind, True
    if hint in (bool, int, float, str):
        return typing.cast(type, hint), False
    raise TypeError(f"unsupported option type: {hint!r}")


@functools.cache
def options() -> tuple[Option, ...]:
    """Every option of :class:`Config`, in declaration order."""
    hints = typing.get_type_hints(Config)
    result = []
    section = ""
    for field, spec in option_fields():
        section = SECTIONS.get(field.name, section)
        kind, optional = _resolve_kind(hints[field.name])
        result.append(Option(field.name, kind, optional, option_default(field), spec, section))
    return tuple(result)


@functools.cache
def options_by_name() -> dict[str, Option]:
    return {o.name: o for o in options()}


def closest_name(name: str) -> str | None:
    """The option name closest to a misspelt ``name``, if one is close enough."""
    found = difflib.get_close_matches(name, list(options_by_name()), n=1, cutoff=0.6)
    return found[0] if found else None


def convert(option: Option, value: object, label: str, *, from_text: bool) -> Any:
    """Turn ``value`` into a valid value of ``option`` or raise :class:`OptionError`.

    This is the one conversion used by the CLI, the environment and :func:`asgiws.run`.
    ``label`` names where the value came from (``--port``, ``ASGIWS_PORT``, ``run(port=...)``) and
    starts every message. With ``from_text`` the value is text to parse (CLI, environment);
    without it, it must already have the option's Python type (a wrong type raises
    :class:`OptionTypeError`, which is a ``TypeError``).
    """

    def invalid(cls: type[OptionError] = OptionError) -> OptionError:
        return cls(f"{label}: invalid value {value!r} (expected {option.expected()})")

    kind = option.kind
    if from_text:
        if not isinstance(value, str):
            raise TypeError(f"{label}: expected text to parse, got {type(value).__name__}")
        text = value.strip()
        if option.optional and text == "":
            return None
        result: Any
        if kind is bool:
            word = text.lower()
            if word in TRUE_WORDS:
                result = True
            elif word in FALSE_WORDS:
                result = False
            else:
                raise invalid()
        elif kind is int:
            result = _parse_int(text, option)
            if result is None:
                raise invalid()
        elif kind is float:
            result = _parse_seconds(text) if option.spec.unit == SECONDS else _parse_float(text)
            if result is None:
                raise invalid()
        elif option.spec.choices is not None:
            # Choices are lower case words: "--log-level DEBUG" means "debug".
            result = text.lower()
        else:
            result = value
    else:
        if value is None and option.optional:
            return None
        # bool is a subclass of int: True is not a port number.
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise OptionTypeError(
                f"{label}: invalid value {value!r} of type {type(value).__name__} "
                f"(expected {option.expected()})"
            )
        result = float(typing.cast(float, value)) if kind is float else value
        if kind is float and not math.isfinite(result):
            raise invalid()

    spec = option.spec
    if spec.choices is not None and result not in spec.choices:
        raise invalid()
    if spec.minimum is not None and result < spec.minimum:
        raise invalid()
    if spec.maximum is not None and result > spec.maximum:
        raise invalid()
    return result


_INT_RE = re.compile(r"([+-]?\d+(?:_\d+)*)\s*([a-z]*)", re.IGNORECASE)


def _parse_int(text: str, option: Option) -> int | None:
    match = _INT_RE.fullmatch(text)
    if match is None:
        return None
    number, suffix = int(match[1]), match[2].lower()
    if not suffix:
        return number
    if option.spec.unit == BYTES and suffix in _BYTE_SUFFIXES:
        return number * _BYTE_SUFFIXES[suffix]
    return None


def _parse_float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_seconds(text: str) -> float | None:
    lowered = text.lower()
    for suffix, scale in _SECOND_SUFFIXES.items():
        # "ms" before "s": dict order puts it first.
        if lowered.endswith(suffix):
            number = _parse_float(lowered[: -len(suffix)].strip())
            return None if number is None else number * scale
    return _parse_float(text)


# -- Sources -------------------------------------------------------------------------------------


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Converted values of every ``ASGIWS_<NAME>`` variable set in ``environ``."""
    values = {}
    for option in options():
        if option.env in environ:
            values[option.name] = convert(option, environ[option.env], option.env, from_text=True)
    return values


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """``ASGIWS_*`` variables that are no option (typos), each with a suggestion if one is close."""
    known = {o.env for o in options()}
    found = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            guess = closest_name(name[len(ENV_PREFIX) :].lower())
            hint = f" (did you mean {ENV_PREFIX}{guess.upper()}?)" if guess else ""
            found.append(f"{name}{hint}")
    return found


def keyword_values(keywords: Mapping[str, Any]) -> dict[str, Any]:
    """Converted keyword arguments of :func:`asgiws.run`; an unknown name is a ``TypeError``."""
    by_name = options_by_name()
    values = {}
    for name, value in keywords.items():
        option = by_name.get(name)
        if option is None:
            guess = closest_name(name)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise TypeError(f"run() got an unexpected keyword argument {name!r}{hint}")
        values[name] = convert(option, value, option.keyword, from_text=False)
    return values


def build_config(*layers: tuple[Mapping[str, Any], Callable[[Option], str]]) -> Config:
    """A :class:`Config` from already converted values, the first layer winning.

    Each layer is ``(values, label)``: the values by field name, and how to name an option of
    that layer in an error (``lambda o: o.flag``). Later layers fill what earlier ones left out;
    defaults fill the rest. Checks that concern more than one option happen here.
    """
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for values, label in layers:
        for name, value in values.items():
            if name not in merged:
                merged[name] = value
                origin[name] = label(options_by_name()[name])
    if merged.get("uds") is not None and merged.get("fd") is not None:
        raise OptionError(
            f"{origin['uds']} and {origin['fd']} cannot be used together: "
            f"serve on the Unix socket {merged['uds']!r} or on file descriptor {merged['fd']}"
        )
    for needs_cert in ("ssl_keyfile", "ssl_keyfile_password"):
        if merged.get(needs_cert) is not None and merged.get("ssl_certfile") is None:
            raise OptionError(
                f"{origin[needs_cert]} needs {origin.get('ssl_certfile', '--ssl-certfile')}: "
                "name the certificate to serve with that key"
            )
    return Config(**merged)


# -- The README table ----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table() -> str:
    """The CLI reference table of the README, one row per option, grouped by section."""
    lines = [
        "| Flag | Environment variable | Type | Unit | Default | Description |",
        "|---|---|---|---|---|---|",
    ]
    section = None
    for option in options():
        if option.section != section:
            section = option.section
            lines.append(f"| **{section}** | | | | | |")
        flag = f"`{option.flag}`"
        if option.negative_flag:
            flag += f" / `{option.negative_flag}`"
        unit = option.spec.unit or ""
        description = option.spec.help
        if option.spec.zero_means is not None:
            description += f" 0: {option.spec.zero_means}."
        default = f"`{option.default_text()}`" if option.default is not None else "unset"
        lines.append(
            f"| {flag} | `{option.env}` | {option.type_text()} | {unit} | {_cell(default)} "
            f"| {_cell(description)} |"
        )
    return "\n".join(lines) + "\n"


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m asgiws.config", description="Print the option reference."
    )
    parser.add_argument(
        "--markdown", action="store_true", help="the README's option table (the default)"
    )
    parser.parse_args(argv)
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
