"""The ASGI type aliases, defined once for the whole package.

``Scope`` and ``Message`` are what an app is handed and hands back, typed as mutable mappings,
as ASGI apps and frameworks (Starlette among them) type them. The core builds and checks plain
dicts (ASGI 3 says the scope and messages are dicts): ``ScopeDict`` and ``MessageDict``, which
:mod:`asgiws.asgi` exports as ``Scope`` and ``ASGIMessage``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "ASGIApp",
    "Headers",
    "Message",
    "MessageDict",
    "Receive",
    "Scope",
    "ScopeDict",
    "Send",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ScopeDict = dict[str, Any]
MessageDict = dict[str, Any]
# Header lines as ASGI carries them: (name, value) byte pairs, names lower-cased.
Headers = list[tuple[bytes, bytes]]
