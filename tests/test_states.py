"""asgiws.states: the transition tables are well formed, and the suite's checker uses them."""

from __future__ import annotations

import enum

import pytest
from transitions import TABLES, illegal

from asgiws.config import Config
from asgiws.http import HTTPConnection
from asgiws.states import (
    CLOSED_STATES,
    HTTP_CLOSED,
    HTTP_NO_TIMER,
    HTTP_TRANSITIONS,
    WS_CLOSED,
    WS_TRANSITIONS,
    HTTPState,
    WSState,
)
from asgiws.websocket import WebSocketConnection


@pytest.mark.parametrize(
    ("table", "kind"), [(HTTP_TRANSITIONS, HTTPState), (WS_TRANSITIONS, WSState)]
)
def test_every_state_has_a_row_of_its_own_kind(
    table: dict[enum.Enum, tuple[enum.Enum, ...]], kind: type[enum.Enum]
) -> None:
    assert set(table) == set(kind)
    for old, targets in table.items():
        assert all(isinstance(new, kind) for new in targets), old
        assert old not in targets, f"{old.name} -> itself"  # no state is set twice
        assert len(set(targets)) == len(targets)


def test_closed_is_final_and_reachable_from_every_state() -> None:
    for table, closed in ((HTTP_TRANSITIONS, HTTPState.CLOSED), (WS_TRANSITIONS, WSState.CLOSED)):
        assert closed in CLOSED_STATES
        assert table[closed] == ()  # type: ignore[index]
        for old in table:
            reached, frontier = {old}, [old]
            while frontier:
                for new in table[frontier.pop()]:  # type: ignore[index]
                    if new not in reached:
                        reached.add(new)
                        frontier.append(new)
            # UPGRADED ends the HTTP phase by handing over, not by closing.
            assert closed in reached or old is HTTPState.UPGRADED, old


def test_the_upgrade_is_the_only_way_out_of_the_handshake_but_closing() -> None:
    assert HTTP_TRANSITIONS[HTTPState.WS_CONNECTING] == (
        HTTPState.UPGRADED,
        HTTPState.WS_DENYING,
        HTTPState.CLOSED,
    )
    assert HTTP_TRANSITIONS[HTTPState.UPGRADED] == ()


def test_the_state_groups_the_code_tests_by_identity() -> None:
    # HTTPConnection._set_state tests ``state is not IDLE`` for HTTP_NO_TIMER, and the I/O
    # layer's _step tests the two closed states one by one for CLOSED_STATES.
    assert set(HTTP_NO_TIMER) == set(HTTPState) - {HTTPState.IDLE}
    assert len(HTTP_NO_TIMER) == len(set(HTTP_NO_TIMER))
    assert CLOSED_STATES == (HTTP_CLOSED, WS_CLOSED)


def test_the_checker_names_a_pair_the_table_does_not_allow() -> None:
    assert {HTTPConnection: HTTP_TRANSITIONS, WebSocketConnection: WS_TRANSITIONS} == TABLES
    pairs = [
        (HTTPConnection, HTTPState.IDLE, HTTPState.HTTP),
        (WebSocketConnection, WSState.LOCAL_CLOSING, WSState.REMOTE_CLOSING),
        (HTTPConnection, HTTPState.CLOSED, HTTPState.IDLE),
    ]
    assert illegal(pairs) == [
        "WebSocketConnection: LOCAL_CLOSING -> REMOTE_CLOSING",
        "HTTPConnection: CLOSED -> IDLE",
    ]


def test_the_checker_sees_the_transitions_of_this_test(legal_transitions: list[object]) -> None:
    # No head timeout: a connection waiting for its first request is closed on shutdown.
    conn = HTTPConnection(Config(timeout_handshake=0), client=None, server=None)
    conn.shutdown(1001)
    assert legal_transitions == [(HTTPConnection, HTTPState.IDLE, HTTPState.CLOSED)]


# The modules that run for every request, frame and step: in their functions, an enum member is
# named by its module constant (CYCLE_HTTP), never looked up on its class (Cycle.HTTP). On
# Python 3.11 that lookup runs the enum metaclass's code: about 900 instructions each, which
# once added 3 % to every WebSocket handshake.
HOT_MODULES = (
    "http", "http11", "responder", "request", "websocket", "frames", "frame_checks", "fasthead",
    "writer", "asgi", "handshake", "protocol", "events", "reassembly", "deflate", "limits",
    "metrics", "asyncio/connection", "asyncio/server", "asyncio/timers", "asyncio/metered",
)  # fmt: skip


@pytest.mark.parametrize("module", HOT_MODULES)
def test_hot_code_names_enum_members_by_their_module_constants(module: str) -> None:
    import ast
    import inspect
    from pathlib import Path

    import asgiws
    from asgiws import events, states

    enums = {
        name
        for source in (states, events)
        for name, value in vars(source).items()
        if inspect.isclass(value) and issubclass(value, enum.Enum)
    }
    assert {"Cycle", "App", "HTTPState", "WSState", "Timer", "Opcode", "CloseCode"} <= enums
    path = Path(asgiws.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    lookups = [
        f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}"
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in enums
        and node.attr.isupper()
    ]
    assert not lookups, lookups
