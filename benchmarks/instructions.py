"""Server instructions per echo, compressed echo, handshake, HTTP request, fanout delivery.

Usage: python benchmarks/instructions.py [--echoes N] [--handshakes N] [--requests N]
                                         [--compressed N] [--compressed-size BYTES]
                                         [--fanout N]
                                         [--server NAME ...] [--python PATH]
                                         [--tree DIR ...] [--metrics] [--repeat N] [--json]
                                         [--app raw|starlette|fastapi]

Wall-clock figures on this shared 2-core VM move by ±10 % from run to run; the number of
instructions the server executes for a fixed amount of work barely moves. This tool starts
asgiws as the suite does (`servers.SERVERS["asgiws"]`: the raw echo app of apps.py, uvloop, no
access log, compression off unless `--compressed`; only its ping, head and keep-alive timers
are a day, see `server_argv`) under `valgrind --tool=callgrind`, drives it with a small
bounded Python client on 127.0.0.1 (instructions_client.py; wsload.c and wrk run for a time,
not a count), and reads callgrind's counters (the `summary:` line of each dump: what ran since
the last zero or dump) around the measured windows only:

1. echo: C connections (default 10), one 32-byte text message in flight each. Warm-up
   echoes first; then, with the client idle, `callgrind_control --zero`; then exactly N
   echoes (default 20,000, spread over the connections), checked one by one; the client goes
   idle again and `callgrind_control --dump` writes the window's count. The connections then
   close (Close 1000 both ways).
2. handshakes: warm-up loops, zero, exactly N loops (default 2,000), dump. A loop is what the
   suite's handshake scenario does: TCP connect, upgrade (a fresh key, 101 and
   Sec-WebSocket-Accept checked), one 32-byte text echo, Close 1000, the server's Close, wait
   for the server to end TCP. Loops run one at a time.
3. http-get: `--http-connections` keep-alive connections (default 10), one request in flight
   each; `--warmup-requests` `GET /` on each, zero, exactly `--requests` (default 5,000,
   spread over the connections), dump. Each response is checked: status 200, a Content-Length
   and exactly that many bytes, the body "ok", the connection kept alive.
4. http-post: on the same connections, the same with `POST /` and a 1,024-byte body
   (Content-Length): the raw app reads it all and answers 200 "ok", 400 had it read another
   length. Then the connections close (the client's FIN, then the server's).
5. compressed (`--compressed N`, default 0: not run): `--compressed-connections` (default
   10) connections that offer permessage-deflate as browsers do (`Sec-WebSocket-Extensions:
   permessage-deflate; client_max_window_bits`); each 101 must answer with permessage-deflate.
   One 32-byte JSON-like text message (`{"seq": 12, "text": "..."}`, the letters from a
   generator seeded per connection) in flight each, compressed by the client with one
   raw-deflate stream per connection (context takeover, the window the server allows,
   sync flush, the trailing 00 00 ff ff left out, RSV1 set). The server's answers are inflated
   when RSV1 is set and taken as they are when not (asgiws sends messages under
   --ws-deflate-min-size, 1 KiB, uncompressed: so the echoes come back plain, and the window
   counts inflating 32-byte messages, not compressing them). `--warmup-echoes` per
   connection, zero, exactly N echoes, each checked, dump; then Close 1000 both ways.
   `--compressed-size BYTES` (33 to 4,096; default 32, the messages above) sends instead the
   JSON objects of exactly that size that the suite's compressed scenarios send (wsload's
   `--json`, the same generator and seed: from 256 bytes on an array of items with ids,
   timestamps, user names and words; each message's "seq" its counter and connection), so
   `--compressed-size 4096` is run.py's compressed-4k message, which asgiws compresses
   (it is over --ws-deflate-min-size): the window then counts inflating and deflating. The
   suite's command line turns compression off (`--no-ws-per-message-deflate`); with N above
   0 asgiws starts without that flag, as the suite's compressed scenarios start it. No window
   above offers an extension, so the flag does not change the code they run (the handshake
   reads the setting only when an offer came); measured, their figures moved within their
   run-to-run spread, http-get by -0.2 %: compare runs made with the same flags.
6. fanout (`--fanout N`, default 0: not run): the raw app's /fanout/sub and /fanout/pub
   (the suite's `fanout` scenario): `--fanout-subscribers` (default 100) subscribers, each
   told "subscribed" before the next connects, and one publisher. `--warmup-publishes`
   (default 5) messages first, then zero, exactly N published 32-byte text messages, each
   carrying its sequence number, one in flight: sent, then every subscriber's copy read and
   checked before the next is sent; dump. Figures per delivery (one message to one
   subscriber) and per published message. Then every connection closes (Close 1000).

5 and 6, like 1 and 2, are asgiws's only: a peer never runs them. They run after 4, so their
traffic comes after 1 to 4 (only the compression flag above differs for those).

`--requests 0` leaves out 3 and 4. `--server NAME` (repeatable) counts a peer of servers.py
instead of, or as well as, asgiws: uvicorn (httptools, uvloop, the same copied app) with its
own suite command line, its keep-alive timeout a day too (`PEER_FLAGS`). A peer gets the HTTP
windows only, run from this checkout; it is labelled by its name and package versions, its
interpreter is `--python`, else the suite's `.cache/bench-venv` when it exists, else this one.
With two or more servers or trees, the comparison lines give each against the first.

Then 5 s with no traffic, dumped too (from the last dump; after 5 or 6, from a zero once
their connections have closed): the instructions per second the server spends on its
clock (the Date header's tick, timer-wheel ticks). That work is in every window's count in
proportion to the window's wall-clock length, which is what still moves between runs (by
about 0.1-0.3 % of the handshake figure, less of the echo one).

Startup, imports and first-use costs fall outside every window, so nothing is subtracted.
The server runs with PYTHONHASHSEED=0 and the client's keys, masks and payloads come from a
seeded generator, so two runs feed the server the same bytes. The server is pinned to one core
and the client to the other (as in the suite); under valgrind the server is far slower than
the client, so each time it polls, every connection's next message is already there.

`--tree DIR` (repeatable) runs asgiws from another checkout with the same harness, app
and client: its `asgiws` is imported from DIR (checked before the run), by `--python` when
given, else DIR's `.venv/bin/python` when it has one, else this interpreter. Each tree's
commit is printed with its figures; with two or more trees, the change against the first.

`--metrics` counts each asgiws tree twice, one run after the other: as above (metrics off),
then with `--metrics-port 0` (metrics on: the metered connection protocol; nothing scrapes),
labelled `COMMIT+metrics`; the comparison lines then give the cost of metrics on.

`--app starlette` or `--app fastapi` runs, on asgiws and on the peers alike, the suite's
framework app instead of the raw one (apps.py's `starlette_echo` / `fastapi_echo`, taken from
the same copy of apps.py: its module `__getattr__` builds them). Starlette's WebSocket route
and FastAPI's echo as the raw app does, so echo and handshakes run as above. Their `GET /`
route answers the JSON object `HTTP_JSON`, and each response must be exactly the bytes
httpload.py expects of that app (`expected_body`).
They have no POST route (405), so http-post is skipped (said in the log, None in --json);
--compressed and --fanout are the raw app's windows and are refused. The server's interpreter
must import the framework (checked before the run, the missing package named). A run's label
gets `+APP` (`183362b+starlette`, `uvicorn-sansio+fastapi`, as servers.py names them) and
--json gives `app` in every row.

Every wait is bounded: the server must listen within 120 s, each socket operation and each
callgrind_control call has a timeout, the whole run has `--timeout`; the server (its own
session, killed with its parent) is always killed at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_venv
from benchmarks.httpload import expected_body
from benchmarks.instructions_callgrind import Callgrind
from benchmarks.instructions_client import (
    BODY_SIZE,
    FANOUT_PUB,
    SIZE,
    WSLOAD_JSON_MIN,
    Connection,
    Deadline,
    DeflateConnection,
    Failed,
    HttpConnection,
    JsonPayloads,
    Payloads,
    WsloadJsonPayloads,
    echo_phase,
    fanout_phase,
    handshake_loop,
    http_phase,
    http_request,
    spread,
    subscribe,
)
from benchmarks.servers import RAW_APP, SERVERS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APP_MODULE = "instructions_echo_app"  # the harness's apps.py, copied so every tree runs it
IDLE = 5.0  # seconds of the idle window at the end
SEED = 6455
FAR_TIMEOUT = 86_400  # seconds: no ping, head or keep-alive timeout comes due in a run
# The peers instructions.py runs (HTTP windows only), and the flags that push their timers
# as far away as server_argv pushes asgiws's: uvicorn closes an idle keep-alive connection
# after 5 s by default.
PEER_FLAGS: dict[str, tuple[str, ...]] = {
    name: ("--timeout-keep-alive", str(FAR_TIMEOUT))
    for name in ("uvicorn-sansio", "uvicorn-websockets", "uvicorn-wsproto")
}
# --app: the copied apps.py's attribute each runs, and the package it needs beyond the server's.
APPS: dict[str, tuple[str, str | None]] = {
    "raw": ("echo", None),
    "starlette": ("starlette_echo", "starlette"),
    "fastapi": ("fastapi_echo", "fastapi"),
}


# ---- command line -------------------------------------------------------------------------


def count(text: str, least: int = 0) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive(text: str) -> int:
    return count(text, 1)


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
        "--requests",
        type=count,
        default=5_000,
        help="measured keep-alive GET / requests, then as many POST / with a 1 KiB body "
        "(0: no HTTP windows)",
    )
    parser.add_argument(
        "--http-connections", type=positive, default=10, help="keep-alive HTTP connections"
    )
    parser.add_argument(
        "--warmup-requests", type=positive, default=50, help="requests per connection before"
    )
    parser.add_argument(
        "--compressed",
        type=count,
        default=0,
        help="measured echoes over permessage-deflate connections (0: no compressed window)",
    )
    parser.add_argument(
        "--compressed-connections",
        type=positive,
        default=10,
        help="permessage-deflate echo connections",
    )
    parser.add_argument(
        "--compressed-size",
        type=positive,
        default=SIZE,
        metavar="BYTES",
        help=f"bytes per compressed echo: {SIZE} for the short JSON-like messages, "
        f"{WSLOAD_JSON_MIN + 1} to 4096 for wsload's --json messages (compressed-4k: 4096)",
    )
    parser.add_argument(
        "--fanout",
        type=count,
        default=0,
        help="measured published messages in the fanout window (0: no fanout window)",
    )
    parser.add_argument(
        "--fanout-subscribers", type=positive, default=100, help="fanout subscribers"
    )
    parser.add_argument(
        "--warmup-publishes", type=positive, default=5, help="fanout messages published before"
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=["asgiws", *PEER_FLAGS],
        default=argparse.SUPPRESS,
        help="server to count (repeatable; default asgiws). A peer (uvicorn with httptools "
        "and uvloop, as in servers.py) gets the HTTP windows only: no echo or handshakes",
    )
    parser.add_argument(
        "--app",
        choices=list(APPS),
        default="raw",
        help="the app every server runs: apps.py's raw echo, or its Starlette or FastAPI app "
        "(GET / answers JSON; no POST window, no --compressed or --fanout; fastapi: HTTP "
        "windows only)",
    )
    parser.add_argument(
        "--python",
        help="the server's interpreter (default for asgiws: TREE/.venv/bin/python, else this; "
        "for a peer: the suite's .cache/bench-venv when there is one, else this)",
    )
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="checkout to run asgiws from (repeatable, for before/after; default: this one; "
        "asgiws only)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="count each asgiws tree with metrics off, then on (--metrics-port 0), "
        "labelled COMMIT+metrics",
    )
    parser.add_argument("--repeat", type=positive, default=1, help="runs per tree or peer")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds for one run, all included"
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep callgrind's files here")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    args.server = list(dict.fromkeys(getattr(args, "server", None) or ["asgiws"]))
    if args.connections > args.echoes:
        parser.error("--connections must not exceed --echoes")
    if args.connections > 1000 or args.http_connections > 1000:
        parser.error("--connections and --http-connections are at most 1000")
    if args.requests and args.http_connections > args.requests:
        parser.error("--http-connections must not exceed --requests")
    if args.compressed and args.compressed_connections > args.compressed:
        parser.error("--compressed-connections must not exceed --compressed")
    if args.compressed_size != SIZE and not WSLOAD_JSON_MIN < args.compressed_size <= 4096:
        parser.error(f"--compressed-size is {SIZE}, or {WSLOAD_JSON_MIN + 1} to 4096")
    if args.compressed_connections > 1000 or args.fanout_subscribers > 1000:
        parser.error("--compressed-connections and --fanout-subscribers are at most 1000")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.tree and "asgiws" not in args.server:
        parser.error("--tree runs asgiws from a checkout: it needs --server asgiws")
    if args.metrics and "asgiws" not in args.server:
        parser.error("--metrics is asgiws's --metrics-port: it needs --server asgiws")
    if (args.compressed or args.fanout) and "asgiws" not in args.server:
        parser.error("--compressed and --fanout are asgiws's windows: they need --server asgiws")
    if args.requests == 0 and args.server != ["asgiws"]:
        parser.error("a peer has only the HTTP windows: --requests must not be 0")
    if args.app != "raw" and (args.compressed or args.fanout):
        parser.error(
            f"--compressed and --fanout are the raw app's windows: not with --app {args.app}"
        )
    if not args.tree:
        args.tree = [REPO]
    return args


# ---- the server: which one, its command line ----------------------------------------------


@dataclass
class Target:
    tree: Path  # asgiws's checkout; for a peer, this one (the harness and its app)
    python: str
    commit: str = "unknown"  # asgiws's commit; for a peer, the harness's
    asgiws_file: str = ""  # empty for a peer
    server: str = "asgiws"
    versions: str = ""  # a peer's packages and versions, as servers.py lists them
    metrics: bool = False  # asgiws with --metrics-port
    app: str = "raw"  # --app

    @property
    def label(self) -> str:
        return _with_app(self.server, self.commit, self.metrics, self.app)

    def argv(self, port: int, *, deflate: bool = False) -> list[str]:
        """The command line; `deflate` (asgiws only): permessage-deflate allowed."""
        if self.server == "asgiws":
            return server_argv(
                self.python, port, metrics=self.metrics, deflate=deflate, app=self.app
            )
        return peer_argv(self.server, self.python, port, app=self.app)


def _with_app(server: str, commit: str, metrics: bool, app: str) -> str:
    """A run's label: the peer's name or asgiws's commit (+metrics), then +APP unless raw."""
    label = server if server != "asgiws" else f"{commit}+metrics" if metrics else commit
    return label if app == "raw" else f"{label}+{app}"


def check_app(python: str, app: str) -> None:
    """Fails, naming the package, when `python` cannot import the framework `app` needs."""
    package = APPS[app][1]
    if package is None:
        return
    try:
        found = subprocess.run(
            [python, "-c", f"import {package}"], cwd=REPO, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failed(f"cannot run {python}: {exc}") from None
    if found.returncode != 0:
        error = (found.stderr.strip().splitlines() or ["no error output"])[-1]
        raise Failed(
            f"--app {app} needs the package {package}, which {python} cannot import ({error}); "
            f"give --python an interpreter that has it, such as the suite's bench venv "
            f"({bench_venv.python()})"
        )


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


_PEER_PROBE = """\
import importlib, importlib.metadata, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(", ".join(f"{n} {importlib.metadata.version(n)}" for n in sys.argv[1:]))
"""


def resolve_peer(name: str, python: str | None) -> Target:
    """A peer of servers.py, run from this checkout (its app); checks its packages import."""
    if python is None:
        own = bench_venv.python()
        python = str(own) if own.exists() else sys.executable
    elif os.sep in python:
        python = os.path.abspath(python)
    else:
        python = shutil.which(python) or python
    packages = SERVERS[name].packages
    try:
        found = subprocess.run(
            [python, "-c", _PEER_PROBE, *packages],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failed(f"cannot run {python}: {exc}") from None
    if found.returncode != 0:
        raise Failed(f"{python} cannot import {', '.join(packages)}:\n{found.stderr}")
    return Target(REPO, python, git_commit(REPO), "", name, found.stdout.strip())


def server_argv(
    python: str, port: int, *, metrics: bool = False, deflate: bool = False, app: str = "raw"
) -> list[str]:
    """The suite's asgiws command line, with the app taken from the harness's copy.

    One change: the keep-alive ping interval, the request-head timeout and the HTTP
    keep-alive timeout are a day. Under
    valgrind the server runs some 50 times slower, so the default 20 s and 10 s timers fire
    inside a window or not depending on how fast the machine was that minute: ten pings moved
    the echo figure by 0.15 %, and the timer wheel's ticks for the (long disarmed) head
    timeouts of connections 10 s old moved the handshake figure by up to 0.6 %. At full speed
    both are a negligible share per message or loop. The 5 s keep-alive timeout would close
    an HTTP connection left idle between two windows. The code path stays the same: each
    connection still arms and disarms its timers; they only never come due.

    ``metrics``: with ``--metrics-port 0`` too (the probe listener on a free port).
    ``deflate``: without ``--no-ws-per-message-deflate`` (the suite's command line for its
    compressed scenarios), so a client that offers permessage-deflate gets it.
    ``app``: the --app to run (its attribute of the copied apps.py, see APPS).
    """
    far = str(FAR_TIMEOUT)
    return [
        *_with_copied_app(SERVERS["asgiws"].argv(python, port, deflate=deflate), app),
        "--ws-ping-interval", far, "--timeout-handshake", far, "--timeout-keep-alive", far,
        *(["--metrics-port", "0"] if metrics else []),
    ]  # fmt: skip


def peer_argv(name: str, python: str, port: int, *, app: str = "raw") -> list[str]:
    """servers.py's command line for a peer, with the copied app and its far timers."""
    return [*_with_copied_app(SERVERS[name].argv(python, port), app), *PEER_FLAGS[name]]


def _with_copied_app(argv: list[str], app: str = "raw") -> list[str]:
    if RAW_APP not in argv:
        raise Failed(f"the command line does not run {RAW_APP}: {argv}")
    copied = f"{APP_MODULE}:{APPS[app][0]}"
    return [copied if part == RAW_APP else part for part in argv]


# ---- one measurement -----------------------------------------------------------------------


@dataclass(kw_only=True)
class Result:
    """One run's counts; a window that did not run (a peer's echo, --requests 0) is None."""

    tree: str
    commit: str
    server: str
    versions: str  # a peer's packages; empty for asgiws (its commit says)
    python: str
    asgiws_file: str
    run: int
    echoes: int
    connections: int
    echo_instructions: int | None = None
    echo_seconds: float | None = None  # wall-clock length of each window
    handshakes: int
    handshake_instructions: int | None = None
    handshake_seconds: float | None = None
    requests: int  # in each HTTP window, GET and POST
    http_connections: int
    post_body: int = BODY_SIZE
    get_instructions: int | None = None
    get_seconds: float | None = None
    post_instructions: int | None = None
    post_seconds: float | None = None
    compressed: int = 0  # permessage-deflate echoes (0: the window did not run)
    compressed_connections: int = 0
    compressed_size: int = SIZE  # bytes per compressed echo
    compressed_instructions: int | None = None
    compressed_seconds: float | None = None
    compressed_replies: int | None = None  # echoes the server sent compressed (RSV1 set)
    fanout: int = 0  # published messages (0: the window did not run)
    fanout_subscribers: int = 0
    fanout_instructions: int | None = None
    fanout_seconds: float | None = None
    idle_instructions: int  # with no client traffic, over idle_seconds
    idle_seconds: float
    seconds: float  # the whole run
    metrics: bool = False  # asgiws with --metrics-port
    app: str = "raw"  # --app: raw, starlette or fastapi
    echo_per_message: float | None = field(init=False)
    handshake_per_loop: float | None = field(init=False)
    get_per_request: float | None = field(init=False)
    post_per_request: float | None = field(init=False)
    compressed_per_message: float | None = field(init=False)
    fanout_per_delivery: float | None = field(init=False)
    fanout_per_message: float | None = field(init=False)
    idle_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.echo_per_message = _per(self.echo_instructions, self.echoes)
        self.handshake_per_loop = _per(self.handshake_instructions, self.handshakes)
        self.get_per_request = _per(self.get_instructions, self.requests)
        self.post_per_request = _per(self.post_instructions, self.requests)
        self.compressed_per_message = _per(self.compressed_instructions, self.compressed)
        self.fanout_per_delivery = _per(
            self.fanout_instructions, self.fanout * self.fanout_subscribers
        )
        self.fanout_per_message = _per(self.fanout_instructions, self.fanout)
        self.idle_per_second = self.idle_instructions / self.idle_seconds

    @property
    def label(self) -> str:
        return _with_app(self.server, self.commit, self.metrics, self.app)


def _per(total: int | None, n: int) -> float | None:
    return None if total is None or n == 0 else total / n


def _window(server: Callgrind, label: str) -> tuple[int, float]:
    return server.dump(label)["Ir"], round(server.window, 1)


def websocket_windows(
    server: Callgrind, args: argparse.Namespace, deadline: Deadline, log: Any
) -> dict[str, Any]:
    rng = random.Random(SEED)
    log(f"  echo: {args.connections} connections, warm-up ...")
    connections: list[Connection] = []
    try:
        for i in range(args.connections):
            connections.append(Connection(i, server.port, rng, deadline))
        warm = args.warmup_echoes
        echo_phase(connections, [warm] * args.connections, 0)
        server.zero()
        log(f"  echo: {args.echoes:,} measured echoes ...")
        done = echo_phase(connections, spread(args.echoes, args.connections), warm)
        if done != args.echoes:
            raise Failed(f"{done} echoes instead of {args.echoes}")
        echo, echo_seconds = _window(server, "echo")
        for conn in connections:
            conn.close()
    finally:
        for conn in connections:
            conn.sock.close()

    log(f"  handshakes: {args.warmup_handshakes} warm-up loops ...")
    for i in range(args.warmup_handshakes):
        handshake_loop(i, server.port, rng, deadline)
    server.zero()
    log(f"  handshakes: {args.handshakes:,} measured loops ...")
    for i in range(args.handshakes):
        handshake_loop(i, server.port, rng, deadline)
    handshake, handshake_seconds = _window(server, "handshakes")
    return {
        "echo_instructions": echo, "echo_seconds": echo_seconds,
        "handshake_instructions": handshake, "handshake_seconds": handshake_seconds,
    }  # fmt: skip


def http_windows(
    server: Callgrind, args: argparse.Namespace, deadline: Deadline, log: Any
) -> dict[str, Any]:
    """GET / then POST / with a 1 KiB body, each: warm-up, zero, exactly --requests, dump."""
    figures: dict[str, Any] = {}
    count, warm = args.http_connections, args.warmup_requests
    connections: list[HttpConnection] = []
    try:
        for i in range(count):
            connections.append(HttpConnection(i, server.port, deadline))
        for method, size, key in (("GET", 0, "get"), ("POST", BODY_SIZE, "post")):
            if method == "POST" and args.app != "raw":
                log(f"  http-post: skipped: the {args.app} app has no POST route (raw app only)")
                continue
            request = http_request(server.port, method, size)
            expected = expected_body(args.app) if method == "GET" else expected_body("raw")
            log(f"  http-{key}: {count} keep-alive connections, {warm} warm-up requests each ...")
            http_phase(connections, [warm] * count, request, expected)
            server.zero()
            log(f"  http-{key}: {args.requests:,} measured requests ...")
            done = http_phase(connections, spread(args.requests, count), request, expected)
            if done != args.requests:
                raise Failed(f"{done} {method} requests instead of {args.requests}")
            figures[f"{key}_instructions"], figures[f"{key}_seconds"] = _window(
                server, f"http-{key}"
            )
        for conn in connections:
            conn.close()
    finally:
        for conn in connections:
            conn.sock.close()
    return figures


def compressed_window(
    server: Callgrind, args: argparse.Namespace, deadline: Deadline, log: Any
) -> dict[str, Any]:
    """Echoes over permessage-deflate connections: warm-up, zero, exactly --compressed, dump."""
    rng = random.Random(SEED + 1)
    size = args.compressed_size
    payloads: Payloads = JsonPayloads(SEED) if size == SIZE else WsloadJsonPayloads(size)
    count, warm = args.compressed_connections, args.warmup_echoes
    log(f"  compressed: {count} permessage-deflate connections, warm-up ...")
    connections: list[DeflateConnection] = []
    try:
        for i in range(count):
            connections.append(DeflateConnection(i, server.port, rng, deadline))
        echo_phase(list(connections), [warm] * count, 0, payloads)
        before = sum(conn.compressed_received for conn in connections)
        server.zero()
        log(f"  compressed: {args.compressed:,} measured echoes ...")
        done = echo_phase(list(connections), spread(args.compressed, count), warm, payloads)
        if done != args.compressed:
            raise Failed(f"{done} compressed echoes instead of {args.compressed}")
        instructions, seconds = _window(server, "compressed")
        replies = sum(conn.compressed_received for conn in connections) - before
        for conn in connections:
            conn.close()
    finally:
        for conn in connections:
            conn.sock.close()
    return {
        "compressed": args.compressed, "compressed_connections": count,
        "compressed_size": size,
        "compressed_instructions": instructions, "compressed_seconds": seconds,
        "compressed_replies": replies,
    }  # fmt: skip


def fanout_window(
    server: Callgrind, args: argparse.Namespace, deadline: Deadline, log: Any
) -> dict[str, Any]:
    """S subscribers, one publisher: warm-up, zero, exactly --fanout published messages, one
    in flight, every copy checked, dump."""
    rng = random.Random(SEED + 2)
    count, warm = args.fanout_subscribers, args.warmup_publishes
    log(f"  fanout: {count} subscribers and a publisher, {warm} warm-up messages ...")
    connections: list[Connection] = []
    try:
        for i in range(count):
            connections.append(subscribe(i, server.port, rng, deadline))
        subscribers = list(connections)
        publisher = Connection(count, server.port, rng, deadline, FANOUT_PUB)
        connections.append(publisher)
        fanout_phase(publisher, subscribers, 0, warm)
        server.zero()
        log(f"  fanout: {args.fanout:,} measured messages to {count} subscribers ...")
        done = fanout_phase(publisher, subscribers, warm, args.fanout)
        if done != args.fanout * count:
            raise Failed(f"{done} fanout deliveries instead of {args.fanout * count}")
        instructions, seconds = _window(server, "fanout")
        for conn in connections:
            conn.close()
    finally:
        for conn in connections:
            conn.sock.close()
    return {
        "fanout": args.fanout, "fanout_subscribers": count,
        "fanout_instructions": instructions, "fanout_seconds": seconds,
    }  # fmt: skip


def measure(target: Target, args: argparse.Namespace, run: int, log: Any) -> Result:
    started = time.monotonic()
    deadline = Deadline(args.timeout)
    cores = os.cpu_count() or 1
    server_core = args.server_core if cores > 1 else None
    asgiws = target.server == "asgiws"
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="instr-")))
        app_dir = workdir / "app"
        app_dir.mkdir()
        shutil.copyfile(HERE / "apps.py", app_dir / f"{APP_MODULE}.py")
        deflate = asgiws and args.compressed > 0

        def argv(port: int) -> list[str]:
            return target.argv(port, deflate=deflate)

        server = Callgrind(argv, target.tree, app_dir, workdir, server_core)
        stack.callback(server.stop)
        log(f"  starting {target.server} under callgrind (port {server.port}) ...")
        server.wait_ready(deadline)
        figures = websocket_windows(server, args, deadline, log) if asgiws else {}
        if args.requests:
            figures.update(http_windows(server, args, deadline, log))
        # After the windows above, so that turning these on leaves those as they were.
        if asgiws and args.compressed:
            figures.update(compressed_window(server, args, deadline, log))
        if asgiws and args.fanout:
            figures.update(fanout_window(server, args, deadline, log))
        if asgiws and (args.compressed or args.fanout):
            # Their connections' closing work, which the server finishes after the client
            # is done, stays out of the idle window (it multiplied its rate by 3 to 10).
            server.zero()
        # Work that follows the clock, not the traffic (the Date header's tick, timer-wheel
        # ticks): its rate shows how much of a window's count the window's length decides.
        time.sleep(IDLE)
        idle, idle_seconds = server.dump("idle")["Ir"], server.window
        server.check_alive()
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in workdir.glob("callgrind.out.*"):
                tag = target.label.replace("+", "-")
                shutil.copyfile(path, args.keep / f"{tag}-run{run}-{path.name}")
    return Result(
        tree=str(target.tree), commit=target.commit, server=target.server,
        versions=target.versions, python=target.python, asgiws_file=target.asgiws_file,
        run=run, echoes=args.echoes if asgiws else 0, connections=args.connections,
        handshakes=args.handshakes if asgiws else 0, requests=args.requests,
        http_connections=args.http_connections, idle_instructions=idle,
        idle_seconds=round(idle_seconds, 2), seconds=round(time.monotonic() - started, 1),
        metrics=target.metrics, app=target.app, **figures,
    )  # fmt: skip


# ---- output ---------------------------------------------------------------------------------

FIGURES = (
    ("echo_per_message", "echo"),
    ("handshake_per_loop", "handshake"),
    ("get_per_request", "http-get"),
    ("post_per_request", "http-post"),
    ("compressed_per_message", "compressed"),
    ("fanout_per_delivery", "fanout"),
)


def result_lines(result: Result) -> list[str]:
    where = result.tree if result.server == "asgiws" else result.versions
    lines = [f"{result.label} run {result.run} ({where}, {result.seconds:.0f} s):"]
    if result.echo_per_message is not None:
        lines.append(
            f"  echo: {result.echo_per_message:,.0f} instructions per message "
            f"({result.echoes:,} echoes over {result.connections} connections, "
            f"{result.echo_instructions:,} in all, {result.echo_seconds:.0f} s)"
        )
    if result.handshake_per_loop is not None:
        lines.append(
            f"  handshake: {result.handshake_per_loop:,.0f} per loop "
            f"({result.handshakes:,} loops, {result.handshake_instructions:,} in all, "
            f"{result.handshake_seconds:.0f} s)"
        )
    if result.get_per_request is not None:
        lines.append(
            f"  http-get: {result.get_per_request:,.0f} instructions per request "
            f"({result.requests:,} keep-alive GET / over {result.http_connections} "
            f"connections, {result.get_instructions:,} in all, {result.get_seconds:.0f} s)"
        )
    if result.post_per_request is not None:
        lines.append(
            f"  http-post: {result.post_per_request:,.0f} per request "
            f"({result.requests:,} POST / with {result.post_body:,} bytes, "
            f"{result.post_instructions:,} in all, {result.post_seconds:.0f} s)"
        )
    if result.compressed_per_message is not None:
        lines.append(
            f"  compressed: {result.compressed_per_message:,.0f} instructions per message "
            f"({result.compressed:,} permessage-deflate echoes of {result.compressed_size:,} "
            f"bytes over "
            f"{result.compressed_connections} connections, {result.compressed_replies:,} "
            f"answered compressed, {result.compressed_instructions:,} in all, "
            f"{result.compressed_seconds:.0f} s)"
        )
    if result.fanout_per_delivery is not None and result.fanout_per_message is not None:
        lines.append(
            f"  fanout: {result.fanout_per_delivery:,.0f} instructions per delivery, "
            f"{result.fanout_per_message:,.0f} per published message ({result.fanout:,} "
            f"messages to {result.fanout_subscribers} subscribers, "
            f"{result.fanout_instructions:,} in all, {result.fanout_seconds:.0f} s)"
        )
    lines.append(
        f"  idle: {result.idle_per_second:,.0f} per second with no traffic "
        f"(clock-driven work; part of every window's count)"
    )
    return lines


def summary_lines(results: list[Result]) -> list[str]:
    lines = [line for result in results for line in result_lines(result)]
    for attr, name in FIGURES:
        by_run: dict[tuple[str, str], list[float]] = {}
        for result in results:
            value = getattr(result, attr)
            if value is not None:
                by_run.setdefault((result.label, result.tree), []).append(value)
        for (label, _), values in by_run.items():
            if len(values) > 1:
                low, high = min(values), max(values)
                lines.append(
                    f"{name} spread over {len(values)} runs of {label}: "
                    f"{100 * (high - low) / low:.2f} %"
                )
        means = {key: sum(v) / len(v) for key, v in by_run.items()}
        if len(means) > 1:
            ((first_label, _), first), *others = means.items()
            for (label, _), value in others:
                lines.append(
                    f"{name}: {label} vs {first_label}: "
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
        targets: list[Target] = []
        for name in args.server:
            if name == "asgiws":
                for tree in args.tree:
                    target = resolve_target(tree, args.python)
                    targets.append(target)
                    if args.metrics:
                        targets.append(dataclasses.replace(target, metrics=True))
            else:
                targets.append(resolve_peer(name, args.python))
        targets = [dataclasses.replace(target, app=args.app) for target in targets]
        for python in dict.fromkeys(target.python for target in targets):
            check_app(python, args.app)
        for target in targets:
            where = target.tree if target.server == "asgiws" else target.versions
            for run in range(1, args.repeat + 1):
                log(f"{target.label} ({where}), run {run} of {args.repeat}:")
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
