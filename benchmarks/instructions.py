"""Server instructions per echoed message and per handshake loop, counted by callgrind.

Usage: python benchmarks/instructions.py [--echoes N] [--handshakes N] [--python PATH]
                                         [--tree DIR ...] [--repeat N] [--json]

Wall-clock figures on this shared 2-core VM move by ±10 % from run to run; the number of
instructions the server executes for a fixed amount of work barely moves. This tool starts
asgiws as the suite does (`servers.SERVERS["asgiws"]`: the raw echo app of apps.py, uvloop, no
access log, no compression offered; only its ping and head timers are a day, see `server_argv`)
under `valgrind --tool=callgrind`, drives it with a small bounded Python client on 127.0.0.1
(wsload.c runs for a time, not a count), and reads callgrind's counters (the `summary:` line
of each dump: what ran since the last zero or dump) around two measured windows only:

1. echo: C connections (default 10), one 32-byte text message in flight each. Warm-up
   echoes first; then, with the client idle, `callgrind_control --zero`; then exactly N
   echoes (default 20,000, spread over the connections), checked one by one; the client goes
   idle again and `callgrind_control --dump` writes the window's count. The connections then
   close (Close 1000 both ways).
2. handshakes: warm-up loops, zero, exactly N loops (default 2,000), dump. A loop is what the
   suite's handshake scenario does: TCP connect, upgrade (a fresh key, 101 and
   Sec-WebSocket-Accept checked), one 32-byte text echo, Close 1000, the server's Close, wait
   for the server to end TCP. Loops run one at a time.

Then 5 s with no traffic, dumped too: the instructions per second the server spends on its
clock (the Date header's tick, timer-wheel ticks). That work is in every window's count in
proportion to the window's wall-clock length, which is what still moves between runs (by
about 0.1-0.3 % of the handshake figure, less of the echo one).

Startup, imports and first-use costs fall outside both windows, so nothing is subtracted.
The server runs with PYTHONHASHSEED=0 and the client's keys, masks and payloads come from a
seeded generator, so two runs feed the server the same bytes. The server is pinned to one core
and the client to the other (as in the suite); under valgrind the server is far slower than
the client, so each time it polls, every connection's next message is already there.

`--tree DIR` (repeatable) runs the server from another checkout with the same harness, app
and client: its `asgiws` is imported from DIR (checked before the run), by `--python` when
given, else DIR's `.venv/bin/python` when it has one, else this interpreter. Each tree's
commit is printed with its figures; with two or more trees, the change against the first.

Every wait is bounded: the server must listen within 120 s, each socket operation and each
callgrind_control call has a timeout, the whole run has `--timeout`; the server (its own
session, killed with its parent) is always killed at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.servers import HOST, RAW_APP, SERVERS, free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APP_MODULE = "instructions_echo_app"  # the harness's apps.py, copied so every tree runs it
START_TIMEOUT = 120.0  # seconds for the server under valgrind to accept connections
IO_TIMEOUT = 30.0  # seconds for any one socket operation (valgrind is slow, not this slow)
CONTROL_TIMEOUT = 60.0  # seconds for one callgrind_control call
SETTLE = 0.5  # seconds of client silence before each zero and dump
IDLE = 5.0  # seconds of the idle window after the handshakes
SIZE = 32  # bytes per echoed message, as in the suite's echo and handshake scenarios
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SEED = 6455
FAR_TIMEOUT = 86_400  # seconds: no ping or head timeout comes due in a run (server_argv)
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
PR_SET_PDEATHSIG = 1


class Failed(Exception):
    """A measurement could not be made: the server, the client or callgrind failed."""


# ---- command line -------------------------------------------------------------------------


def positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--echoes", type=positive, default=20_000, help="measured echoes")
    parser.add_argument("--connections", type=positive, default=10, help="echo connections")
    parser.add_argument(
        "--warmup-echoes", type=positive, default=200, help="echoes per connection before"
    )
    parser.add_argument(
        "--handshakes", type=positive, default=2_000, help="measured handshake loops"
    )
    parser.add_argument("--warmup-handshakes", type=positive, default=50, help="loops before")
    parser.add_argument(
        "--python", help="the server's interpreter (default: TREE/.venv/bin/python, else this)"
    )
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="checkout to run asgiws from (repeatable, for before/after; default: this one)",
    )
    parser.add_argument("--repeat", type=positive, default=1, help="runs per tree")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds for one run, all included"
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep callgrind's files here")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.connections > args.echoes:
        parser.error("--connections must not exceed --echoes")
    if args.connections > 1000:
        parser.error("--connections is at most 1000")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if not args.tree:
        args.tree = [REPO]
    return args


# ---- callgrind's output -------------------------------------------------------------------


def parse_counts(text: str) -> dict[str, int]:
    """Event name -> count from a callgrind output file's `events:` and `summary:` lines.

    `summary:` is what the program executed since the last zero or dump. `totals:`, the sum
    of the file's cost lines, stands in only when a file has no summary: after
    `callgrind_control --zero` it also carries a fixed few million instructions from before
    the zero (measured: 3.9M with ten connections open, the same at 2,000 and 20,000 echoes,
    where the summary grows in proportion), so it is not the window's count.
    """
    events: list[str] | None = None
    found: dict[str, list[int]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key == "events":
            events = value.split()
        elif key in ("summary", "totals"):
            try:
                found[key] = [int(number) for number in value.split()]
            except ValueError:
                raise ValueError(f"not a count: {line!r}") from None
    counts = found.get("summary", found.get("totals"))
    if events is None or counts is None:
        raise ValueError("not a callgrind output file: no events: and summary: lines")
    if len(counts) > len(events):
        raise ValueError(f"{len(counts)} counts for {len(events)} events")
    # Trailing zero counts may be left out.
    return {name: counts[i] if i < len(counts) else 0 for i, name in enumerate(events)}


def dump_trigger(text: str) -> str | None:
    """What made callgrind write this file (`desc: Trigger: ...`), if it says."""
    match = re.search(r"^desc: Trigger: (.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


# ---- the client: frames, upgrade, echo ---------------------------------------------------


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, rng: random.Random) -> bytes:
    """One masked, final frame as a client sends it."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = rng.randbytes(4)
    return head + key + mask(payload, key)


def parse_frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each complete server frame at the front; consumed from buffer."""
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        if second & 0x80:
            raise Failed("the server sent a masked frame")
        if not first & 0x80:
            raise Failed("the server fragmented a 32-byte message")
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return
            (length,), offset = struct.unpack_from("!H", buffer, 2), 4
        elif length == 127:
            if len(buffer) < 10:
                return
            (length,), offset = struct.unpack_from("!Q", buffer, 2), 10
        if len(buffer) < offset + length:
            return
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        yield first & 0x0F, payload


def upgrade_request(port: int, key: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def check_upgrade(head: bytes, key: str) -> None:
    """Status 101, Upgrade, Connection and the right Sec-WebSocket-Accept; no extensions."""
    lines = head.decode("latin-1").split("\r\n")
    if not re.fullmatch(r"HTTP/1\.1 101( .*)?", lines[0]):
        raise Failed(f"upgrade refused: {lines[0]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if fields.get("sec-websocket-accept") != expected:
        raise Failed(f"wrong Sec-WebSocket-Accept {fields.get('sec-websocket-accept')!r}")
    if fields.get("upgrade", "").lower() != "websocket":
        raise Failed("upgrade response lacks Upgrade: websocket")
    if "upgrade" not in fields.get("connection", "").lower():
        raise Failed("upgrade response lacks Connection: Upgrade")
    if "sec-websocket-extensions" in fields:
        raise Failed("the server chose an extension the client never offered")


def payload_for(connection: int, counter: int) -> bytes:
    """32 ASCII bytes, different per connection and message, same in every run."""
    stamp = f"{counter:08x}{connection:08x}".encode()
    return stamp + b"0123456789abcdef"[: SIZE - len(stamp)]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, cap: float = IO_TIMEOUT) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise Failed("the run's --timeout passed")
        return min(remaining, cap)


class Connection:
    """One client WebSocket over a blocking socket; every read has a timeout."""

    def __init__(self, number: int, port: int, rng: random.Random, deadline: Deadline) -> None:
        self.number = number
        self.rng = rng
        self.deadline = deadline
        self.buffer = bytearray()
        self.sock = socket.create_connection((HOST, port), timeout=deadline.left())
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(rng.randbytes(16)).decode()
            self.sock.sendall(upgrade_request(port, key))
            while b"\r\n\r\n" not in self.buffer:
                if len(self.buffer) > 16384:
                    raise Failed("upgrade response head longer than 16 KiB")
                self.receive()
            end = self.buffer.index(b"\r\n\r\n")
            check_upgrade(bytes(self.buffer[:end]), key)
            del self.buffer[: end + 4]
        except BaseException:
            self.sock.close()
            raise

    def receive(self) -> None:
        self.sock.settimeout(self.deadline.left())
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise Failed(f"connection {self.number}: no data from the server in time") from None
        if not chunk:
            raise Failed(f"connection {self.number}: the server closed the connection")
        self.buffer += chunk

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(client_frame(opcode, payload, self.rng))

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Frames already received; pings answered, pongs skipped."""
        for opcode, payload in parse_frames(self.buffer):
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode != OP_PONG:
                yield opcode, payload

    def next_frame(self) -> tuple[int, bytes]:
        while True:
            for frame in self.frames():
                return frame
            self.receive()

    def expect_echo(self, payload: bytes) -> None:
        opcode, data = self.next_frame()
        if opcode != OP_TEXT or data != payload:
            raise Failed(f"connection {self.number}: wrong echo {opcode:#x} {data[:40]!r}")

    def close(self) -> None:
        """Close 1000, the server's Close, then wait for the server to end TCP."""
        try:
            self.send(OP_CLOSE, struct.pack("!H", 1000))
            opcode, data = self.next_frame()
            if opcode != OP_CLOSE or data[:2] != struct.pack("!H", 1000):
                raise Failed(f"connection {self.number}: expected Close 1000, got {data[:2]!r}")
            if not self.buffer:
                self.sock.settimeout(self.deadline.left())
                try:
                    if not self.sock.recv(65536):
                        return
                except TimeoutError:
                    raise Failed(f"connection {self.number}: TCP still open") from None
            raise Failed(f"connection {self.number}: data after the server's Close")
        finally:
            self.sock.close()


def echo_phase(connections: list[Connection], counts: list[int], first: int) -> int:
    """Each connection echoes counts[i] messages, one in flight; returns the echoes done."""
    remaining = list(counts)
    counters = [first] * len(connections)
    by_fd = {conn.sock.fileno(): i for i, conn in enumerate(connections)}
    outstanding: dict[int, bytes] = {}
    for i, conn in enumerate(connections):
        if remaining[i]:
            outstanding[i] = payload_for(i, counters[i])
            conn.send(OP_TEXT, outstanding[i])
    done = 0
    deadline = connections[0].deadline
    while outstanding:
        waiting = [connections[i].sock for i in outstanding]
        ready, _, _ = select.select(waiting, [], [], deadline.left())
        if not ready:
            raise Failed(f"no echo from the server in {IO_TIMEOUT:.0f} s")
        for sock in ready:
            i = by_fd[sock.fileno()]
            conn = connections[i]
            conn.receive()
            for opcode, data in conn.frames():
                expected = outstanding.pop(i, None)
                if opcode != OP_TEXT or data != expected:
                    raise Failed(f"connection {i}: wrong echo {opcode:#x} {data[:40]!r}")
                done += 1
                remaining[i] -= 1
                counters[i] += 1
                if remaining[i]:
                    outstanding[i] = payload_for(i, counters[i])
                    conn.send(OP_TEXT, outstanding[i])
    return done


def handshake_loop(number: int, port: int, rng: random.Random, deadline: Deadline) -> None:
    conn = Connection(number, port, rng, deadline)
    payload = payload_for(number, 0)
    try:
        conn.send(OP_TEXT, payload)
        conn.expect_echo(payload)
    except BaseException:
        conn.sock.close()
        raise
    conn.close()


def spread(total: int, parts: int) -> list[int]:
    """total split into `parts` whole counts that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# ---- the server under callgrind -----------------------------------------------------------


@dataclass
class Target:
    tree: Path
    python: str
    commit: str = "unknown"
    asgiws_file: str = ""


def git_commit(tree: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "asgiws"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def resolve_target(tree: Path, python: str | None) -> Target:
    """The checkout and interpreter to run; checks that asgiws is imported from that tree."""
    tree = tree.resolve()
    if not (tree / "asgiws" / "__init__.py").is_file():
        raise Failed(f"{tree} is not an asgiws checkout (no asgiws/__init__.py)")
    if python is None:
        own = tree / ".venv" / "bin" / "python"
        python = str(own) if own.exists() else sys.executable
    elif os.sep in python:
        python = os.path.abspath(python)  # the server starts in the tree; links kept (venvs)
    else:
        python = shutil.which(python) or python
    probe = "import asgiws, uvloop; print(asgiws.__file__)"
    try:
        found = subprocess.run(
            [python, "-c", probe], cwd=tree, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failed(f"cannot run {python}: {exc}") from None
    if found.returncode != 0:
        raise Failed(f"{python} cannot import asgiws and uvloop in {tree}:\n{found.stderr}")
    where = Path(found.stdout.strip()).resolve()
    if not where.is_relative_to(tree):
        raise Failed(f"{python} imports asgiws from {where}, not from {tree}")
    return Target(tree, python, git_commit(tree), str(where))


def server_argv(python: str, port: int) -> list[str]:
    """The suite's asgiws command line, with the app taken from the harness's copy.

    One change: the keep-alive ping interval and the request-head timeout are a day. Under
    valgrind the server runs some 50 times slower, so the default 20 s and 10 s timers fire
    inside a window or not depending on how fast the machine was that minute: ten pings moved
    the echo figure by 0.15 %, and the timer wheel's ticks for the (long disarmed) head
    timeouts of connections 10 s old moved the handshake figure by up to 0.6 %. At full speed
    both are a negligible share per message or loop. The code path stays the same: each
    connection still arms and disarms both timers; they only never come due.
    """
    argv = SERVERS["asgiws"].argv(python, port)
    argv = [f"{APP_MODULE}:echo" if part == RAW_APP else part for part in argv]
    return [
        *argv, "--ws-ping-interval", str(FAR_TIMEOUT), "--timeout-handshake", str(FAR_TIMEOUT),
    ]  # fmt: skip


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Callgrind:
    """asgiws under callgrind, in its own session; `zero()` and `dump()` bound a window."""

    def __init__(self, target: Target, workdir: Path, core: int | None) -> None:
        self.workdir = workdir
        self.out = workdir / "callgrind.out"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        app_dir = workdir / "app"
        app_dir.mkdir()
        shutil.copyfile(HERE / "apps.py", app_dir / f"{APP_MODULE}.py")
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}",
            *server_argv(target.python, self.port),
        ]  # fmt: skip
        if core is not None:
            command = ["taskset", "-c", str(core), *command]
        env = {
            **os.environ,
            "PYTHONPATH": str(app_dir),
            "PYTHONHASHSEED": "0",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=target.tree, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.dumps = 0
        self.window_start = 0.0  # when the counts were last zeroed or dumped
        self.window = 0.0  # seconds the last dump covered

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise Failed(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")

    def wait_ready(self, deadline: Deadline) -> None:
        until = time.monotonic() + min(START_TIMEOUT, deadline.left(START_TIMEOUT))
        while time.monotonic() < until:
            self.check_alive()
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                if probe.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.25)
        raise Failed(f"the server did not listen within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def control(self, *options: str) -> None:
        self.check_alive()
        argv = ["callgrind_control", *options, str(self.process.pid)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=CONTROL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failed(f"{' '.join(options)}: callgrind_control did not answer") from None
        if done.returncode != 0 or "OK" not in done.stdout:
            raise Failed(f"callgrind_control {' '.join(options)}: {done.stdout}{done.stderr}")

    def zero(self) -> None:
        time.sleep(SETTLE)
        self.control("--zero")
        self.window_start = time.monotonic()

    def dump(self, label: str) -> dict[str, int]:
        """Write the counts since the last zero or dump; return them."""
        time.sleep(SETTLE)
        self.control(f"--dump={label}")
        now = time.monotonic()
        self.window, self.window_start = now - self.window_start, now
        self.dumps += 1
        path = Path(f"{self.out}.{self.dumps}")
        for _ in range(100):  # written before callgrind_control returns; a bounded recheck
            if path.exists():
                text = path.read_text(errors="replace")
                if "\ntotals:" in text:
                    break
            time.sleep(0.1)
        else:
            raise Failed(f"callgrind wrote no complete {path.name}")
        trigger = dump_trigger(text) or ""
        if label not in trigger:
            raise Failed(f"{path.name} was written for {trigger!r}, not for {label!r}")
        return parse_counts(text)

    def stop(self) -> None:
        """SIGKILL to the whole session (the counts are already written); always reaps."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


# ---- one measurement -----------------------------------------------------------------------


@dataclass
class Result:
    tree: str
    commit: str
    python: str
    asgiws_file: str
    run: int
    echoes: int
    connections: int
    echo_instructions: int
    handshakes: int
    handshake_instructions: int
    echo_seconds: float  # wall-clock length of each window
    handshake_seconds: float
    idle_instructions: int  # with no client traffic, over idle_seconds
    idle_seconds: float
    seconds: float  # the whole run
    echo_per_message: float = field(init=False)
    handshake_per_loop: float = field(init=False)
    idle_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.echo_per_message = self.echo_instructions / self.echoes
        self.handshake_per_loop = self.handshake_instructions / self.handshakes
        self.idle_per_second = self.idle_instructions / self.idle_seconds


def measure(target: Target, args: argparse.Namespace, run: int, log: Any) -> Result:
    started = time.monotonic()
    deadline = Deadline(args.timeout)
    rng = random.Random(SEED)
    cores = os.cpu_count() or 1
    server_core = args.server_core if cores > 1 else None
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="instr-")))
        server = Callgrind(target, workdir, server_core)
        stack.callback(server.stop)
        log(f"  starting asgiws under callgrind (port {server.port}) ...")
        server.wait_ready(deadline)

        log(f"  echo: {args.connections} connections, warm-up ...")
        connections: list[Connection] = []
        for i in range(args.connections):
            connections.append(Connection(i, server.port, rng, deadline))
            stack.callback(connections[-1].sock.close)
        warm = args.warmup_echoes
        echo_phase(connections, [warm] * args.connections, 0)
        server.zero()
        log(f"  echo: {args.echoes:,} measured echoes ...")
        done = echo_phase(connections, spread(args.echoes, args.connections), warm)
        if done != args.echoes:
            raise Failed(f"{done} echoes instead of {args.echoes}")
        echo, echo_seconds = server.dump("echo")["Ir"], server.window
        for conn in connections:
            conn.close()

        log(f"  handshakes: {args.warmup_handshakes} warm-up loops ...")
        for i in range(args.warmup_handshakes):
            handshake_loop(i, server.port, rng, deadline)
        server.zero()
        log(f"  handshakes: {args.handshakes:,} measured loops ...")
        for i in range(args.handshakes):
            handshake_loop(i, server.port, rng, deadline)
        handshake, handshake_seconds = server.dump("handshakes")["Ir"], server.window
        # Work that follows the clock, not the traffic (the Date header's tick, timer-wheel
        # ticks): its rate shows how much of a window's count the window's length decides.
        time.sleep(IDLE)
        idle, idle_seconds = server.dump("idle")["Ir"], server.window
        server.check_alive()
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in workdir.glob("callgrind.out.*"):
                tag = target.commit.replace("+", "-")
                shutil.copyfile(path, args.keep / f"{tag}-run{run}-{path.name}")
    return Result(
        tree=str(target.tree), commit=target.commit, python=target.python,
        asgiws_file=target.asgiws_file, run=run, echoes=args.echoes,
        connections=args.connections, echo_instructions=echo, handshakes=args.handshakes,
        handshake_instructions=handshake, echo_seconds=round(echo_seconds, 1),
        handshake_seconds=round(handshake_seconds, 1), idle_instructions=idle,
        idle_seconds=round(idle_seconds, 2), seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip


# ---- output ---------------------------------------------------------------------------------


def summary_lines(results: list[Result]) -> list[str]:
    lines: list[str] = []
    for result in results:
        lines += [
            f"{result.commit} run {result.run} ({result.tree}, {result.seconds:.0f} s):",
            f"  echo: {result.echo_per_message:,.0f} instructions per message "
            f"({result.echoes:,} echoes over {result.connections} connections, "
            f"{result.echo_instructions:,} in all, {result.echo_seconds:.0f} s)",
            f"  handshake: {result.handshake_per_loop:,.0f} per loop "
            f"({result.handshakes:,} loops, {result.handshake_instructions:,} in all, "
            f"{result.handshake_seconds:.0f} s)",
            f"  idle: {result.idle_per_second:,.0f} per second with no traffic "
            f"(clock-driven work; part of every window's count)",
        ]
    for attr, name in (("echo_per_message", "echo"), ("handshake_per_loop", "handshake")):
        by_commit: dict[str, list[float]] = {}
        for result in results:
            by_commit.setdefault(f"{result.commit} {result.tree}", []).append(getattr(result, attr))
        for key, values in by_commit.items():
            if len(values) > 1:
                low, high = min(values), max(values)
                lines.append(
                    f"{name} spread over {len(values)} runs of {key.split()[0]}: "
                    f"{100 * (high - low) / low:.2f} %"
                )
        if len(by_commit) > 1:
            means = {key: sum(v) / len(v) for key, v in by_commit.items()}
            (first_key, first), *others = means.items()
            for key, value in others:
                lines.append(
                    f"{name}: {key.split()[0]} vs {first_key.split()[0]}: "
                    f"{value:,.0f} vs {first:,.0f} ({100 * (value - first) / first:+.2f} %)"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"instructions.py: {tool} is not installed", file=sys.stderr)
            return 1

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    cores = os.cpu_count() or 1
    if cores > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.client_core})
    results: list[Result] = []
    try:
        targets = [resolve_target(tree, args.python) for tree in args.tree]
        for target in targets:
            for run in range(1, args.repeat + 1):
                log(f"{target.commit} ({target.tree}), run {run} of {args.repeat}:")
                results.append(measure(target, args, run, log))
    except Failed as exc:
        print(f"instructions.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("instructions.py: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"results": [asdict(result) for result in results]}, indent=2))
    else:
        print("\n".join(summary_lines(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
