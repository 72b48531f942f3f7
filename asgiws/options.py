"""How option values are read, checked and named: the machinery behind :class:`Config`.

One :class:`Option` per field of :class:`asgiws.config.Config`, with its flag, environment
variable and type; :func:`convert` is the one conversion the CLI, the environment and
:func:`asgiws.run` share; :func:`build_config` merges them and checks what concerns more than one
option; :func:`markdown_table` is the README's reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .config import (
    BYTES,
    COUNT,
    KIB,
    MIB,
    SECONDS,
    SECTIONS,
    Config,
    OptionSpec,
    option_default,
    option_fields,
)

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
    kind: type  # bool, int, float, str, or tuple (of str: a list option), without None
    optional: bool  # None is a valid value (and the default): "not set"
    default: Any
    spec: OptionSpec
    section: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def repeated(self) -> bool:
        """A list option: the flag may be given more than once, each time one item."""
        return self.kind is tuple

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
        elif self.repeated:
            text = "list of str"
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
            if spec.aliases:
                text += ", or " + ", ".join(alias for alias, _ in spec.aliases)
        elif self.kind is bool:
            text = "a boolean: " + ", ".join(
                f"{t}/{f}" for t, f in zip(TRUE_WORDS, FALSE_WORDS, strict=True)
            )
        elif self.kind is str:
            text = "a string"
        elif self.repeated:
            text = f"strings (the flag repeated, or separated by {self.spec.separator!r})"
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
        if isinstance(value, tuple):
            return self.spec.separator.join(value) if value else "none"
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
    if origin is tuple and args == (str, Ellipsis):
        return tuple, False
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
    if kind is tuple:
        return _convert_list(option, value, label, from_text=from_text)
    if option.spec.aliases and isinstance(value, str):
        word = value.strip().lower()
        for alias, meaning in option.spec.aliases:
            if word == alias:
                return meaning
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


def _convert_list(option: Option, value: object, label: str, *, from_text: bool) -> tuple[str, ...]:
    """A list option. From the environment, one string split on the option's separator; from the
    command line, the list of the repeated flag's values, each one item; from run(), a list or
    tuple of strings. Empty items are dropped."""
    items: list[str]
    if from_text and isinstance(value, str):
        items = value.split(option.spec.separator)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = list(value)
    elif from_text:
        raise TypeError(f"{label}: expected text to parse, got {type(value).__name__}")
    else:
        raise OptionTypeError(
            f"{label}: invalid value {value!r} of type {type(value).__name__} "
            f"(expected a list of strings)"
        )
    result = tuple(item.strip() for item in items if item.strip())
    if option.spec.choices is not None:
        for item in result:
            if item not in option.spec.choices:
                raise OptionError(f"{label}: invalid value {item!r} (expected {option.expected()})")
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
        name = option.env
        if name not in environ:
            name = option.spec.also_env or name
        if name in environ:
            values[option.name] = convert(option, environ[name], name, from_text=True)
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


def keyword_values(keywords: Mapping[str, Any], caller: str = "run") -> dict[str, Any]:
    """Converted keyword arguments of :func:`asgiws.run` (or of ``caller``, as errors name it:
    ``Server``); an unknown name is a ``TypeError``."""
    by_name = options_by_name()
    values = {}
    for name, value in keywords.items():
        option = by_name.get(name)
        if option is None:
            guess = closest_name(name)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}{hint}")
        values[name] = convert(option, value, f"{caller}({name}=...)", from_text=False)
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
    for needs_cert in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers"):
        if merged.get(needs_cert) is not None and merged.get("ssl_certfile") is None:
            why = (
                "name the certificate to serve with that key"
                if needs_cert.startswith("ssl_keyfile")
                else "it applies to TLS, which a certificate to serve turns on"
            )
            raise OptionError(
                f"{origin[needs_cert]} needs {origin.get('ssl_certfile', '--ssl-certfile')}: {why}"
            )
    if merged.get("ssl_cert_reqs", 0) and merged.get("ssl_ca_certs") is None:
        raise OptionError(
            f"{origin['ssl_cert_reqs']} {merged['ssl_cert_reqs']} needs "
            f"{origin.get('ssl_ca_certs', '--ssl-ca-certs')}: name the certificate authorities "
            "that client certificates are verified against"
        )
    # --workers is a field of another change: merged holds it only where it exists and was given.
    if merged.get("reload") and merged.get("workers") is not None:
        raise OptionError(
            f"{origin['reload']} and {origin['workers']} cannot be used together: --reload "
            "serves one process for development; drop one of them"
        )
    if merged.get("ws_deflate_zlib") == "zlib-ng":
        from .deflate import zlib_library

        try:
            zlib_library("zlib-ng")
        except LookupError as exc:
            raise OptionError(f"{origin['ws_deflate_zlib']} zlib-ng: {exc}") from None
    _check_lists(merged, origin)
    return Config(**merged)


def _check_lists(merged: dict[str, Any], origin: dict[str, str]) -> None:
    """Values whose items are parsed when a request comes: checked now, named by source."""
    from .accesslog import AccessFormatError, access_format
    from .headers import HeaderError, parse_header
    from .origins import OriginError, origin_policy
    from .proxy import TrustError, trusted_proxies

    try:
        trusted_proxies(merged.get("forwarded_allow_ips", "127.0.0.1,::1"))
    except TrustError as exc:
        raise OptionError(f"{origin['forwarded_allow_ips']}: invalid value: {exc}") from None
    allowed = merged.get("ws_allowed_origins")
    if allowed:
        # A comma list given as one item (the flag once, or run(ws_allowed_origins=[...])).
        items = tuple(i.strip() for item in allowed for i in item.split(",") if i.strip())
        merged["ws_allowed_origins"] = items
        try:
            origin_policy(items)
        except OriginError as exc:
            raise OptionError(f"{origin['ws_allowed_origins']}: invalid value: {exc}") from None
    for item in merged.get("header", ()):
        try:
            parse_header(item)
        except HeaderError as exc:
            raise OptionError(f"{origin['header']}: invalid value {item!r}: {exc}") from None
    template = merged.get("access_log_format")
    if template is not None:
        try:
            access_format(template)
        except AccessFormatError as exc:
            raise OptionError(
                f"{origin['access_log_format']}: invalid value {template!r}: {exc}"
            ) from None


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
        env = f"`{option.env}`"
        if option.spec.also_env:
            env += f" or `{option.spec.also_env}`"
        lines.append(
            f"| {flag} | {env} | {option.type_text()} | {unit} | {_cell(default)} "
            f"| {_cell(description)} |"
        )
    return "\n".join(lines) + "\n"
