"""Slowloris: N connections that send a request head a byte at a time and never finish it, while
a normal client keeps making requests.

Promised: every slow connection is cut at --timeout-handshake (measured from its first byte);
every normal request is served meanwhile; the server's open files return to where they began.
Usage: python -m stress.slowloris [--connections 10000] [--timeout 2]
"""

from __future__ import annotations

import asyncio
import statistics
import time

from .common import HOST, Server, raise_fd_limit, script, settle_fds, summary

BATCH = 500  # connections opened at a time (the listen backlog is 2048)


async def slow(port: int, opened: list[float], cut: list[float]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    start = time.monotonic()
    opened.append(start)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
        for _ in range(60):  # a byte a second, for at most a minute
            writer.write(b"X")
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    break  # the server closed it
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        cut.append(time.monotonic() - start)
        writer.close()


async def normal(port: int, until: asyncio.Event, latencies: list[float]) -> int:
    failures = 0
    while not until.is_set() and len(latencies) < 100_000:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            response = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if not response.startswith(b"HTTP/1.1 200 "):
                failures += 1
        except (OSError, TimeoutError):
            failures += 1
        latencies.append(time.monotonic() - start)
        await asyncio.sleep(0.02)  # a request every 20 ms: a steady, light load
    return failures


async def main(connections: int, timeout: float) -> int:
    raise_fd_limit(connections * 2 + 512)
    server = Server("--timeout-handshake", str(timeout), "--backlog", "4096")
    baseline = server.fds()
    opened: list[float] = []
    cut: list[float] = []
    latencies: list[float] = []
    done = asyncio.Event()
    prober = asyncio.create_task(normal(server.port, done, latencies))
    tasks = []
    for first in range(0, connections, BATCH):
        tasks += [
            asyncio.create_task(slow(server.port, opened, cut))
            for _ in range(min(BATCH, connections - first))
        ]
        await asyncio.sleep(0)  # let the batch connect before the next
    await asyncio.wait_for(asyncio.gather(*tasks), timeout + 120)
    done.set()
    failures = await prober
    fds = await settle_fds(server, baseline)
    status, _report = server.stop()
    late = [c for c in cut if c > timeout + 2.0]
    problems = []
    if len(cut) != connections:
        problems.append(f"{connections - len(cut)} slow connections never ended")
    if late:
        problems.append(f"{len(late)} cut later than the timeout + 2 s (max {max(late):.1f} s)")
    if failures:
        problems.append(f"{failures} normal requests failed")
    if fds > baseline:
        problems.append(f"open files {fds}, {baseline} before")
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1 else 0.0
    return summary(
        f"slowloris: {connections} held, cut after {min(cut):.1f}-{max(cut):.1f} s "
        f"(--timeout-handshake {timeout:g}), {len(latencies) - failures}/{len(latencies)} normal "
        f"requests served meanwhile (p99 {p99:.1f} ms), open files {baseline} -> {fds}, "
        f"exit {status}",
        problems,
        status,
    )


if __name__ == "__main__":
    script(main, __doc__ or "", connections=10_000, timeout=2.0)
