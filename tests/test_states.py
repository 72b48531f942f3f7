"""asgiws.states: the transition tables are well formed, and the suite's checker uses them."""

from __future__ import annotations

import enum

import pytest
from transitions import TABLES, illegal

from asgiws.config import Config
from asgiws.http import HTTPConnection
from asgiws.states import (
    CLOSED_STATES,
    HTTP_TRANSITIONS,
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
