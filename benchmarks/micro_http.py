"""The sans-IO core's cost of one keep-alive HTTP request cycle, without sockets or a loop.

Usage: python benchmarks/micro_http.py [--cycles N] [--scenario get|post|both]

Drives :class:`asgiws.http.HTTPConnection` as the asyncio layer does for a raw ASGI app that
answers 200 "ok": bytes in, the scope, ``http.request`` (read by the app), the response start
and body, the bytes out, the next cycle. It prints microseconds per cycle; run it under
``valgrind --tool=callgrind`` (or ``perf stat -e instructions``) for the steady figure: the
instructions of N cycles, minus those of a run with ``--cycles 0``, divided by N.
"""

from __future__ import annotations

import argparse
import time

from asgiws.config import Config
from asgiws.http import HTTPConnection
from asgiws.protocol import ServerHeaders

GET = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
POST = (
    b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 1024\r\n\r\n" + b"x" * 1024
)
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}
BODY = {"type": "http.response.body", "body": b"ok"}


def run(request: bytes, cycles: int) -> float:
    conn = HTTPConnection(
        Config(),
        client=("127.0.0.1", 50000),
        server=("127.0.0.1", 8000),
        server_headers=ServerHeaders(
            [(b"server", b"asgiws"), (b"date", b"Thu, 03 Dec 2026 05:00:00 GMT")]
        ),
    )
    started = time.perf_counter()
    for _ in range(cycles):
        conn.receive_data(request)
        scope = conn.next_scope()
        assert scope is not None
        message = conn.next_message()
        assert message is not None and message["type"] == "http.request"
        conn.send(START)
        conn.send(BODY)
        out = conn.data_to_send()
        assert out
        conn.app_finished(None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20000)
    parser.add_argument("--scenario", choices=("get", "post", "both"), default="both")
    args = parser.parse_args()
    for name, request in (("get", GET), ("post", POST)):
        if args.scenario in (name, "both"):
            elapsed = run(request, args.cycles)
            per = elapsed / args.cycles * 1e6 if args.cycles else 0.0
            print(f"{name}: {args.cycles} cycles, {per:.2f} us per cycle")


if __name__ == "__main__":
    main()
