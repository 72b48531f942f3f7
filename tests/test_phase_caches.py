"""The HTTP phase's step is ConnectionProtocol._step again with a code object of its own
(asgiws.asyncio.connection.own_caches): the same bytecode, so the same behaviour, and inline
caches that meet HTTPConnections only. Merged back into one function, every attribute read of a
step would meet both phases' classes and miss (about 0.5 % more instructions per handshake on
CPython 3.11)."""

from __future__ import annotations

from collections.abc import Callable

from asgiws.asyncio.connection import ConnectionProtocol, own_caches


def test_the_http_step_is_the_step_with_its_own_code_object() -> None:
    step = ConnectionProtocol._step
    http_step = ConnectionProtocol._http_step
    assert http_step is not step
    assert http_step.__code__ is not step.__code__
    assert http_step.__code__.co_code == step.__code__.co_code
    assert http_step.__code__.co_consts == step.__code__.co_consts
    assert http_step.__qualname__ == step.__qualname__
    assert http_step.__doc__ == step.__doc__


def test_a_copy_keeps_defaults_closure_and_globals() -> None:
    offset = 10

    def add(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c + offset

    copy: Callable[..., int] = own_caches(add)
    assert copy is not add and copy.__code__ is not add.__code__
    assert copy(1) == add(1) == 16
    assert copy(1, 1, c=1) == add(1, 1, c=1) == 13
    assert copy.__globals__ is add.__globals__
