"""SIGTERM under load: N clients echo as fast as they can; the server gets SIGTERM mid-stream.

Promised: every client gets Close 1001; every echo the app sent reaches its client (none lost);
each session gets exactly one websocket.disconnect and nothing after it; exit status 0.
Usage: python -m stress.sigterm [--clients 200] [--seconds 3]
"""

from __future__ import annotations

import asyncio
import collections

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .common import HOST, Server, raise_fd_limit, script, session_problems, summary


async def client(port: int, index: int, ready: asyncio.Event, counts: list[int]) -> int | None:
    """Echo until the server closes; the close code it sent."""
    async with connect(f"ws://{HOST}:{port}/", max_queue=None) as ws:
        sequence = 0
        try:
            while True:
                sent = f"{index}:{sequence}"
                await ws.send(sent)
                if await ws.recv() != sent:
                    raise SystemExit(f"client {index}: a wrong echo")
                counts[index] += 1
                sequence += 1
                if sequence == 1:
                    ready.set()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None
    return None


async def main(clients: int, seconds: float) -> int:
    raise_fd_limit(4 * clients + 256)
    server = Server("--timeout-graceful-shutdown", "20")
    counts = [0] * clients
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(client(server.port, i, readies[i], counts)) for i in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    await asyncio.sleep(seconds)  # the load runs for this long; nothing to wait for instead
    server.terminate()
    codes = collections.Counter(await asyncio.wait_for(asyncio.gather(*tasks), 60))
    status, report = server.stop()
    lost = report["echoed"] - sum(counts)
    problems = session_problems(report, clients)
    if codes != {1001: clients}:
        problems.append(f"close codes {dict(codes)}")
    if lost:
        problems.append(f"{lost} echoes sent by the app never reached their client")
    return summary(
        f"sigterm: {clients} clients, {sum(counts)} echoes, close codes {dict(codes)}, "
        f"lost echoes {lost}, disconnects per session {report['disconnects']}, "
        f"after a disconnect {report['after_disconnect']}, exit {status}",
        problems,
        status,
    )


if __name__ == "__main__":
    script(main, __doc__ or "", clients=200, seconds=3.0)
