"""Options: one conversion for the CLI, the environment and asgiws.run()."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import types
from typing import Any

import pytest

import asgiws
from asgiws import config
from asgiws import options as optionlib
from asgiws.config import Config
from asgiws.options import (
    OptionError,
    OptionTypeError,
    build_config,
    convert,
    env_values,
    keyword_values,
    options,
    options_by_name,
)


def opt(name: str) -> optionlib.Option:
    return options_by_name()[name]


def parse(name: str, text: str) -> Any:
    option = opt(name)
    return convert(option, text, option.flag, from_text=True)


def keyword(name: str, value: object) -> Any:
    option = opt(name)
    return convert(option, value, option.keyword, from_text=False)


# -- The option table itself ---------------------------------------------------------------------


def test_every_field_is_an_option_with_a_known_kind() -> None:
    names = [f.name for f in dataclasses.fields(Config)]
    assert [o.name for o in options()] == names
    for option in options():
        assert option.kind in (bool, int, float, str, tuple), option.name
        assert option.spec.help.strip(), option.name
        assert option.default == getattr(Config(), option.name)


def test_defaults_are_valid_values() -> None:
    for option in options():
        if option.default is None:
            assert option.optional
            continue
        assert convert(option, option.default, option.keyword, from_text=False) == option.default


def test_sections_name_real_fields() -> None:
    names = {o.name for o in options()}
    assert set(config.SECTIONS) <= names
    assert options()[0].name in config.SECTIONS


def test_derived_names() -> None:
    option = opt("ws_max_size")
    assert option.flag == "--ws-max-size"
    assert option.env == "ASGIWS_WS_MAX_SIZE"
    assert option.metavar == "BYTES"
    assert opt("access_log").negative_flag == "--no-access-log"
    assert opt("port").negative_flag is None
    assert opt("lifespan").metavar == "{auto,on,off}"
    assert opt("uds").optional and opt("fd").optional and not opt("port").optional


def test_kinds_come_from_the_annotations() -> None:
    assert opt("port").kind is int
    assert opt("timeout_keep_alive").kind is float
    assert opt("access_log").kind is bool
    assert opt("loop").kind is str  # Literal["auto", ...]
    assert opt("ws_shutdown_code").kind is int
    assert (opt("fd").kind, opt("fd").optional) == (int, True)


# -- Text: the CLI and the environment -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1048576", 1048576), ("1_048_576", 1048576), (" 42 ", 42), ("64KiB", 65536),
     ("16MiB", 16 * 1024 * 1024), ("1 gib", 1024**3)],
)  # fmt: skip
def test_int_bytes(text: str, expected: int) -> None:
    assert parse("ws_max_size", text) == expected


@pytest.mark.parametrize("text", ["ten", "1.5", "", "0x10", "16MB", "16 MiB extra", "1e6"])
def test_int_bytes_rejects(text: str) -> None:
    with pytest.raises(OptionError) as info:
        parse("ws_max_size", text)
    assert str(info.value) == (
        f"--ws-max-size: invalid value {text!r} (expected a whole number of bytes, at least 1)"
    )


def test_suffixes_only_for_bytes() -> None:
    with pytest.raises(OptionError, match=r"--backlog: invalid value '2KiB'"):
        parse("backlog", "2KiB")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("ws_max_size", "0", "--ws-max-size: invalid value '0' (expected a whole number of "
                              "bytes, at least 1)"),
        ("port", "65536", "--port: invalid value '65536' (expected a whole number, from 0 to "
                          "65535)"),
        ("port", "-1", "--port: invalid value '-1' (expected a whole number, from 0 to 65535)"),
        ("ws_deflate_window_bits", "8", "--ws-deflate-window-bits: invalid value '8' (expected "
                                        "a whole number of bits, from 9 to 15)"),
        ("backlog", "0", "--backlog: invalid value '0' (expected a whole number, at least 1)"),
        ("h11_max_incomplete_event_size", "1023", "--h11-max-incomplete-event-size: invalid "
         "value '1023' (expected a whole number of bytes, at least 1024)"),
        ("timeout_keep_alive", "-0.5", "--timeout-keep-alive: invalid value '-0.5' (expected a "
                                       "number of seconds, at least 0)"),
    ],
)  # fmt: skip
def test_range(name: str, text: str, message: str) -> None:
    with pytest.raises(OptionError) as info:
        parse(name, text)
    assert str(info.value) == message


def test_range_edges_are_valid() -> None:
    assert parse("port", "0") == 0
    assert parse("port", "65535") == 65535
    assert parse("ws_deflate_window_bits", "9") == 9
    assert parse("ws_deflate_window_bits", "15") == 15
    assert parse("ws_ping_interval", "0") == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20", 20.0), ("2.5", 2.5), ("500ms", 0.5), ("3s", 3.0), ("1.5 s", 1.5), ("0", 0.0)],
)
def test_float_seconds(text: str, expected: float) -> None:
    value = parse("ws_ping_interval", text)
    assert isinstance(value, float)
    assert math.isclose(value, expected)


@pytest.mark.parametrize("text", ["soon", "nan", "inf", "-inf", "5 min", "ms", ""])
def test_float_seconds_rejects(text: str) -> None:
    with pytest.raises(OptionError, match=r"^--ws-ping-interval: invalid value .* \(expected a "
                       r"number of seconds, at least 0\)$"):  # fmt: skip
        parse("ws_ping_interval", text)


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " On "])
def test_bool_true(text: str) -> None:
    assert parse("access_log", text) is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off"])
def test_bool_false(text: str) -> None:
    assert parse("access_log", text) is False


@pytest.mark.parametrize("text", ["", "2", "y", "enabled", "nope"])
def test_bool_rejects(text: str) -> None:
    with pytest.raises(OptionError) as info:
        parse("access_log", text)
    assert str(info.value) == (
        f"--access-log: invalid value {text!r} "
        "(expected a boolean: 1/0, true/false, yes/no, on/off)"
    )


def test_str_kept_as_given() -> None:
    assert parse("root_path", "/api") == "/api"
    assert parse("root_path", "") == ""
    assert parse("host", "::1") == "::1"


def test_choices() -> None:
    assert parse("lifespan", "on") == "on"
    assert parse("ws_shutdown_code", "1012") == 1012
    assert parse("log_level", " DEBUG ") == "debug"
    with pytest.raises(OptionError) as info:
        parse("lifespan", "maybe")
    assert str(info.value) == (
        "--lifespan: invalid value 'maybe' (expected one of 'auto', 'on', 'off')"
    )
    with pytest.raises(OptionError) as info:
        parse("ws_shutdown_code", "1000")
    assert str(info.value) == (
        "--ws-shutdown-code: invalid value '1000' (expected one of 1001, 1012)"
    )


def test_none_able() -> None:
    assert parse("fd", "3") == 3
    assert parse("fd", "") is None
    assert parse("uds", "/run/app.sock") == "/run/app.sock"
    assert parse("uds", "") is None
    with pytest.raises(OptionError, match=r"^--fd: invalid value 'three' \(expected a whole "
                       r"number, at least 0, or empty for unset\)$"):  # fmt: skip
        parse("fd", "three")


# -- Python values: run() ------------------------------------------------------------------------


def test_keyword_values_keep_their_type() -> None:
    assert keyword("port", 0) == 0
    assert keyword("access_log", False) is False
    value = keyword("ws_ping_interval", 5)
    assert value == 5.0 and isinstance(value, float)
    assert keyword("fd", None) is None
    assert keyword("loop", "asyncio") == "asyncio"


@pytest.mark.parametrize(
    ("name", "value"),
    [("port", "8000"), ("port", 80.0), ("port", True), ("access_log", 1), ("access_log", "yes"),
     ("ws_ping_interval", "5"), ("ws_ping_interval", False), ("host", 127), ("port", None),
     ("loop", None)],
)  # fmt: skip
def test_keyword_wrong_type_is_type_error(name: str, value: object) -> None:
    with pytest.raises(TypeError) as info:
        keyword(name, value)
    assert isinstance(info.value, OptionTypeError)
    message = str(info.value)
    assert message.startswith(f"run({name}=...): invalid value {value!r} of type ")
    assert "(expected " in message


@pytest.mark.parametrize(
    ("name", "value"),
    [("port", 70000), ("ws_max_size", 0), ("ws_ping_interval", -1.0),
     ("ws_ping_interval", math.inf), ("ws_ping_interval", math.nan), ("lifespan", "sometimes"),
     ("ws_shutdown_code", 1000)],
)  # fmt: skip
def test_keyword_bad_value_is_value_error(name: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        keyword(name, value)
    assert not isinstance(info.value, TypeError)
    assert str(info.value).startswith(f"run({name}=...): invalid value {value!r} (expected ")


def test_unknown_keyword_suggests_the_closest_name() -> None:
    with pytest.raises(TypeError) as info:
        keyword_values({"ws_maxsize": 10})
    assert str(info.value) == (
        "run() got an unexpected keyword argument 'ws_maxsize' (did you mean 'ws_max_size'?)"
    )
    with pytest.raises(TypeError, match=r"^run\(\) got an unexpected keyword argument 'zzz'$"):
        keyword_values({"zzz": 1})


def test_run_checks_keywords_before_doing_anything() -> None:
    # These fail before any import of the app or of the server.
    with pytest.raises(TypeError, match="did you mean 'port'"):
        asgiws.run("nosuchmodule:app", prot=8000)
    with pytest.raises(ValueError, match=r"run\(port=\.\.\.\): invalid value 70000"):
        asgiws.run("nosuchmodule:app", port=70000)
    with pytest.raises(TypeError, match=r"run\(port=\.\.\.\): invalid value '80' of type str"):
        asgiws.run("nosuchmodule:app", port="80")
    with pytest.raises(TypeError, match=r"run\(app=\.\.\.\): expected an ASGI app"):
        asgiws.run(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be used together"):
        asgiws.run("nosuchmodule:app", uds="/tmp/x.sock", fd=3)


def test_run_reports_import_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgiws.importer import AppImportError

    monkeypatch.delenv("ASGIWS_LOG_LEVEL", raising=False)
    with pytest.raises(AppImportError, match="could not import module 'nosuchmodule_xyz'"):
        asgiws.run("nosuchmodule_xyz:app")


# -- Environment and precedence ------------------------------------------------------------------


def test_env_values() -> None:
    environ = {
        "ASGIWS_WS_MAX_SIZE": "1048576",
        "ASGIWS_ACCESS_LOG": "off",
        "ASGIWS_PORT": "0",
        "ASGIWS_UDS": "",
        "UNRELATED": "x",
    }
    assert env_values(environ) == {"ws_max_size": 1048576, "access_log": False, "port": 0,
                                   "uds": None}  # fmt: skip


def test_env_error_names_the_variable() -> None:
    with pytest.raises(OptionError) as info:
        env_values({"ASGIWS_WS_MAX_SIZE": "ten"})
    assert str(info.value) == (
        "ASGIWS_WS_MAX_SIZE: invalid value 'ten' (expected a whole number of bytes, at least 1)"
    )


def test_unknown_env_names() -> None:
    found = optionlib.unknown_env_names({"ASGIWS_WS_MAXSIZE": "1", "ASGIWS_PORT": "1", "X": "1"})
    assert found == ["ASGIWS_WS_MAXSIZE (did you mean ASGIWS_WS_MAX_SIZE?)"]


def test_precedence_first_layer_wins_then_defaults() -> None:
    cli = {"port": 1}
    env = {"port": 2, "host": "0.0.0.0"}
    built = build_config((cli, lambda o: o.flag), (env, lambda o: o.env))
    assert built.port == 1
    assert built.host == "0.0.0.0"
    assert built.ws_max_size == Config().ws_max_size


def test_conflict_names_where_each_came_from() -> None:
    with pytest.raises(OptionError) as info:
        build_config(({"uds": "/tmp/a.sock"}, lambda o: o.flag), ({"fd": 3}, lambda o: o.env))
    assert str(info.value).startswith("--uds and ASGIWS_FD cannot be used together")


def test_run_still_checks_an_overridden_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGIWS_PORT", "70000")
    with pytest.raises(ValueError, match="ASGIWS_PORT: invalid value '70000'"):
        asgiws.run("nosuchmodule:app", port=1)


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Config]]:
    """Stand in for asgiws.runtime.serve: record what run() would serve, return 0."""
    calls: list[tuple[Any, Config]] = []

    def serve(app: Any, cfg: Config) -> int:
        calls.append((app, cfg))
        return 0

    module = types.ModuleType("asgiws.runtime")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgiws.runtime", module)
    for name in [n for n in os.environ if n.startswith("ASGIWS_")]:
        monkeypatch.delenv(name)
    return calls


async def tiny_app(scope: Any, receive: Any, send: Any) -> None:
    raise NotImplementedError


def test_run_precedence_keyword_env_default(
    fake_serve: list[tuple[Any, Config]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASGIWS_PORT", "9000")
    monkeypatch.setenv("ASGIWS_HOST", "0.0.0.0")
    monkeypatch.setenv("ASGIWS_LOG_LEVEL", "warning")
    assert asgiws.run(tiny_app, port=0, ws_max_size=1 << 20) == 0
    app, cfg = fake_serve[0]
    assert app is tiny_app
    assert (cfg.port, cfg.host, cfg.ws_max_size) == (0, "0.0.0.0", 1 << 20)
    assert cfg.backlog == Config().backlog


def test_run_imports_a_string_app_and_calls_a_factory(
    fake_serve: list[tuple[Any, Config]],
) -> None:
    asgiws.run("asgiws.demo:app", log_level="warning")
    from asgiws import demo

    assert fake_serve[0][0] is demo.app
    asgiws.run(lambda: tiny_app, factory=True, log_level="warning")
    assert fake_serve[1][0] is tiny_app


# -- Help texts and the README table -------------------------------------------------------------


def test_expected_texts() -> None:
    assert opt("ws_max_size").expected() == "a whole number of bytes, at least 1"
    assert opt("port").expected() == "a whole number, from 0 to 65535"
    assert opt("max_queue").expected() == "a whole number, at least 1"
    assert opt("timeout_keep_alive").expected() == "a number of seconds, at least 0"
    assert opt("root_path").expected() == "a string"
    assert opt("uds").expected() == "a string, or empty for unset"


def test_remarks_show_unit_default_and_zero() -> None:
    assert opt("ws_ping_interval").remarks() == ["seconds", "default 20", "0: no pings"]
    assert opt("ws_max_size").remarks() == ["bytes", "default 16777216 (16 MiB)"]
    assert opt("access_log").remarks() == ["default on"]
    assert opt("uds").remarks() == ["default unset"]
    assert opt("lifespan").remarks() == ["default auto"]


def test_markdown_table_has_a_row_per_option() -> None:
    table = optionlib.markdown_table()
    for option in options():
        row = next(line for line in table.splitlines() if f"`{option.env}`" in line)
        assert f"`{option.flag}`" in row
        assert row.count(" | ") >= 5


def test_markdown_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "asgiws.config", "--markdown"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == optionlib.markdown_table()


def _list_option(separator: str = ",") -> optionlib.Option:
    spec = config.OptionSpec(help="items", separator=separator)
    return optionlib.Option("items", tuple, False, (), spec, "Test")


def test_list_option_from_each_source() -> None:
    option = _list_option()
    # Environment: one string split on the separator, blanks dropped.
    assert convert(option, " a, b ,,c ", "ASGIWS_ITEMS", from_text=True) == ("a", "b", "c")
    # Command line: the repeated flag's values, each one item even when it holds a comma.
    assert convert(option, ["x: 1, 2", "y"], "--items", from_text=True) == ("x: 1, 2", "y")
    # run(): a list or tuple of strings.
    assert convert(option, ["p"], "run(items=...)", from_text=False) == ("p",)
    with pytest.raises(OptionTypeError, match=r"run\(items=...\): invalid value 'p' of type str"):
        convert(option, "p", "run(items=...)", from_text=False)
    with pytest.raises(OptionTypeError, match="expected a list of strings"):
        convert(option, [1], "run(items=...)", from_text=False)
    assert option.default_text() == "none"
    assert option.type_text() == "list of str"
    assert convert(_list_option("\n"), "a,b\nc", "ASGIWS_ITEMS", from_text=True) == ("a,b", "c")
