"""The asyncio layer of asgiws: sockets, tasks, timers, signals.

Everything a connection decides is decided by the sans-IO core (:mod:`asgiws.http`,
:mod:`asgiws.websocket`); this layer moves bytes between it and the transport
(:mod:`.connection`), runs the app as one task per request cycle in the server's task group
(:mod:`.server`), binds sockets and loads TLS (:mod:`.sockets`), arms the one timer each
connection asks for (:mod:`.timers`) and runs the lifespan protocol (:mod:`.lifespan`).
"""
