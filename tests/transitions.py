"""Every state change the test suite makes, checked against the tables in asgiws.states.

An autouse fixture (imported by conftest.py) wraps the one writer of each phase's state,
``_set_state``, for every test that runs in this process: sans-IO tests and in-process servers
alike. A test whose connections make a transition that ``HTTP_TRANSITIONS`` or
``WS_TRANSITIONS`` does not list fails, naming the pair.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from asgiws.http import HTTPConnection
from asgiws.states import HTTP_TRANSITIONS, WS_TRANSITIONS
from asgiws.websocket import WebSocketConnection

TABLES: dict[type, Mapping[Any, Sequence[Any]]] = {
    HTTPConnection: HTTP_TRANSITIONS,
    WebSocketConnection: WS_TRANSITIONS,
}

# Every pair made in this test session, by phase: for a summary, and for the tables' own test.
SEEN: dict[type, set[tuple[enum.Enum, enum.Enum]]] = {cls: set() for cls in TABLES}


def illegal(pairs: Sequence[tuple[type, enum.Enum, enum.Enum]]) -> list[str]:
    """The pairs that their phase's table does not allow, described."""
    return [
        f"{cls.__name__}: {old.name} -> {new.name}"
        for cls, old, new in pairs
        if new not in TABLES[cls][old]
    ]


@pytest.fixture(autouse=True)
def legal_transitions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    made: list[tuple[type, enum.Enum, enum.Enum]] = []
    for cls in TABLES:
        original = cls.__dict__["_set_state"]

        def recording(self: Any, state: Any, original: Any = original, cls: type = cls) -> None:
            made.append((cls, self.state, state))
            SEEN[cls].add((self.state, state))
            original(self, state)

        monkeypatch.setattr(cls, "_set_state", recording)
    yield made
    bad = illegal(made)
    assert not bad, f"transitions missing from asgiws.states: {bad}"
