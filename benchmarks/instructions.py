"""Server instructions per echoed message and per handshake loop, counted by valgrind.

On this noisy 2-core machine wall-clock figures move by about 10% between runs; callgrind's
instruction count for the same binary and input does not. Each figure is the difference of two
runs of the server under callgrind, one with ``--small`` and one with ``--large`` units of work,
divided by the difference in units: start-up and import cost cancel out.

    python benchmarks/instructions.py                       # this checkout
    python benchmarks/instructions.py --tree ../old-checkout  # another one, same harness
    python benchmarks/instructions.py --json

The server is ``python -m asgiws`` with the suite's raw echo app (uvloop, no access log, no
pings, no compression); the client is a small blocking one in this process: one connection
echoing 32-byte text frames one at a time, or connect, upgrade, one echo, close. Only
127.0.0.1; every loop is bounded and the server is always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
REQUEST = (
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MASK = bytes.fromhex("37fa213d")
PAYLOAD = b"x" * 32
ECHO_FRAME = bytes([0x81, 0x80 | 32]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
CLOSE_FRAME = bytes([0x88, 0x82]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(b"\x03\xe8"))
STARTUP_S = 120.0  # valgrind makes imports slow
IO_TIMEOUT_S = 60.0

_TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


def callgrind_total(text: bytes) -> int:
    """The instruction total of a callgrind output file."""
    found = _TOTAL.search(text)
    if found is None:
        raise ValueError("no 'summary:' or 'totals:' line in the callgrind output")
    return int(found[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _recv_exact(sock: socket.socket, size: int, buffer: bytes) -> tuple[bytes, bytes]:
    while len(buffer) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        buffer += chunk
    return buffer[:size], buffer[size:]


def _upgrade(sock: socket.socket) -> bytes:
    sock.sendall(REQUEST)
    buffer = b""
    for _ in range(100):
        if b"\r\n\r\n" in buffer:
            break
        buffer += sock.recv(4096)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"no 101: {head[:80]!r}")
    return rest


def _session(port: int, mode: str, units: int) -> None:
    deadline = time.monotonic() + STARTUP_S
    if mode == "echo":
        sock = _connect(port, deadline)
        rest = _upgrade(sock)
        for _ in range(units):
            sock.sendall(ECHO_FRAME)
            got, rest = _recv_exact(sock, 34, rest)
            if got[2:] != PAYLOAD:
                raise AssertionError(f"echo mismatch: {got!r}")
        sock.sendall(CLOSE_FRAME)
        _recv_exact(sock, 4, rest)
        sock.close()
        return
    for _ in range(units):
        sock = _connect(port, deadline)
        rest = _upgrade(sock)
        sock.sendall(ECHO_FRAME)
        _, rest = _recv_exact(sock, 34, rest)
        sock.sendall(CLOSE_FRAME)
        _recv_exact(sock, 4, rest)
        sock.close()


def count(python: str, tree: Path, mode: str, units: int) -> int:
    """Server instructions for one warm-up connection plus ``units`` of ``mode``."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{REPO}", PYTHONHASHSEED="0")
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            python, "-m", "asgiws", "benchmarks.apps:echo", "--port", str(port),
            "--loop", "uvloop", "--no-access-log", "--lifespan", "off",
            "--ws-ping-interval", "0", "--no-ws-per-message-deflate",
        ]  # fmt: skip
        server = subprocess.Popen(
            argv, cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _session(port, "echo", 1)  # warm-up: imports on first use, caches
            _session(port, mode, units)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=IO_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        return callgrind_total(out.read_bytes())


def per_unit(python: str, tree: Path, mode: str, small: int, large: int) -> float:
    return (count(python, tree, mode, large) - count(python, tree, mode, small)) / (large - small)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout whose asgiws to run")
    parser.add_argument("--python", default=sys.executable, help="interpreter with uvloop")
    parser.add_argument(
        "--echoes", type=int, nargs=2, default=(1000, 6000), metavar=("SMALL", "LARGE")
    )
    parser.add_argument(
        "--handshakes", type=int, nargs=2, default=(100, 600), metavar=("SMALL", "LARGE")
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = parser.parse_args(argv)
    for name in ("echoes", "handshakes"):
        small, large = getattr(args, name)
        if not 0 < small < large <= 1_000_000:
            parser.error(f"--{name}: need 0 < SMALL < LARGE <= 1000000, got {small} {large}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tree = args.tree.resolve()
    echo = per_unit(args.python, tree, "echo", *args.echoes)
    handshake = per_unit(args.python, tree, "handshake", *args.handshakes)
    if args.json:
        print(json.dumps({"tree": str(tree), "echo": round(echo), "handshake": round(handshake)}))
    else:
        print(f"echo: {echo:,.0f} server instructions per message")
        print(f"handshake: {handshake:,.0f} server instructions per loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
