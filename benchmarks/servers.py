"""The servers under test: how each is started, pinned, waited for and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.scenarios import DEFLATE_ALL, METRICS_ON

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for a server to accept TCP connections
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL
RAW_APP = "benchmarks.apps:echo"
STARLETTE_APP = "benchmarks.apps:starlette_echo"
FASTAPI_APP = "benchmarks.apps:fastapi_echo"


class Argv(Protocol):
    """(python, port) -> the command line; with `deflate`, permessage-deflate on."""

    def __call__(self, python: str, port: int, deflate: bool = False) -> list[str]: ...


@dataclass(frozen=True)
class Server:
    name: str
    argv: Argv
    asgi: bool  # False for the ceilings, which run their own echo, not an ASGI app
    app: str  # "raw", "starlette", "fastapi", "native", scenarios.DEFLATE_ALL or METRICS_ON
    packages: tuple[str, ...]  # whose versions the results record


# Compression is off unless a scenario asks for it (`deflate`): then each server runs with
# its own permessage-deflate defaults (asgiws's and uvicorn's are on; hypercorn and granian
# have no flag for it). Whether a server then negotiates it is what the client records.
def _asgiws(app: str, *extra: str) -> Argv:
    def argv(python: str, port: int, deflate: bool = False) -> list[str]:
        return [
            python, "-m", "asgiws", app, "--host", HOST, "--port", str(port),
            "--no-access-log", "--log-level", "warning",
            *(() if deflate else ("--no-ws-per-message-deflate",)), "--loop", "uvloop", *extra,
        ]  # fmt: skip

    return argv


def _uvicorn(ws: str, app: str) -> Argv:
    def argv(python: str, port: int, deflate: bool = False) -> list[str]:
        return [
            python, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--ws", ws,
            "--ws-per-message-deflate", "true" if deflate else "false", "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip

    return argv


def _hypercorn(app: str) -> Argv:
    def argv(python: str, port: int, deflate: bool = False) -> list[str]:
        return [
            python, "-m", "hypercorn", app, "--bind", f"{HOST}:{port}", "--workers", "1",
            "--worker-class", "uvloop", "--log-level", "warning",
        ]  # fmt: skip

    return argv


def _granian(app: str) -> Argv:
    def argv(python: str, port: int, deflate: bool = False) -> list[str]:
        return [
            python, "-c", "from granian.cli import entrypoint; entrypoint()",
            "--interface", "asgi", "--host", HOST, "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--no-access-log", "--log-level", "warning", app,
        ]  # fmt: skip

    return argv


def _ceiling(name: str) -> Argv:
    def argv(python: str, port: int, deflate: bool = False) -> list[str]:
        return [python, "-m", "benchmarks.ceilings", name, "--port", str(port)]

    return argv


_UVICORN = ("uvicorn", "uvloop", "httptools")
SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        Server("asgiws", _asgiws(RAW_APP), True, "raw", ("asgiws", "uvloop")),
        # asgiws compressing every message, as the peers do (its default leaves those under
        # --ws-deflate-min-size, 1 KiB, uncompressed): the compressed-* scenarios only.
        Server("asgiws-deflate-all", _asgiws(RAW_APP, "--ws-deflate-min-size", "0"), True,
               DEFLATE_ALL, ("asgiws", "uvloop")),
        # asgiws with Prometheus metrics on (a probe port the kernel picks): what they cost.
        Server("asgiws+metrics", _asgiws(RAW_APP, "--metrics-port", "0"), True, METRICS_ON,
               ("asgiws", "uvloop", "prometheus_client")),
        Server("uvicorn-sansio", _uvicorn("websockets-sansio", RAW_APP), True, "raw",
               (*_UVICORN, "websockets")),
        Server("uvicorn-websockets", _uvicorn("websockets", RAW_APP), True, "raw",
               (*_UVICORN, "websockets")),
        Server("uvicorn-wsproto", _uvicorn("wsproto", RAW_APP), True, "raw",
               (*_UVICORN, "wsproto")),
        Server("hypercorn", _hypercorn(RAW_APP), True, "raw", ("hypercorn", "wsproto", "uvloop")),
        Server("granian", _granian(RAW_APP), True, "raw", ("granian", "uvloop")),
        Server("asgiws+starlette", _asgiws(STARLETTE_APP), True, "starlette",
               ("asgiws", "uvloop", "starlette")),
        Server("uvicorn-sansio+starlette", _uvicorn("websockets-sansio", STARLETTE_APP), True,
               "starlette", (*_UVICORN, "websockets", "starlette")),
        Server("granian+starlette", _granian(STARLETTE_APP), True, "starlette",
               ("granian", "uvloop", "starlette")),
        Server("asgiws+fastapi", _asgiws(FASTAPI_APP), True, "fastapi",
               ("asgiws", "uvloop", "starlette", "fastapi")),
        Server("uvicorn-sansio+fastapi", _uvicorn("websockets-sansio", FASTAPI_APP), True,
               "fastapi", (*_UVICORN, "websockets", "starlette", "fastapi")),
        Server("granian+fastapi", _granian(FASTAPI_APP), True, "fastapi",
               ("granian", "uvloop", "starlette", "fastapi")),
        Server("websockets-server", _ceiling("websockets"), False, "native",
               ("websockets", "uvloop")),
        Server("picows-server", _ceiling("picows"), False, "native", ("picows", "uvloop")),
    )
}  # fmt: skip


# asgiws's command line with another checkout first on sys.path: its asgiws (checked), and its
# benchmarks/apps.py when it has one (else the suite's, from the current directory).
_FROM_TREE = """\
import runpy, sys
sys.path.insert(0, {tree!r})
import asgiws
if not asgiws.__file__.startswith({tree!r} + "/"):
    sys.exit(f"asgiws imported from {{asgiws.__file__}}, not from {tree}")
runpy.run_module("asgiws", run_name="__main__", alter_sys=True)
"""


def from_tree(tree: Path) -> Server:
    """asgiws as in the suite, run from the checkout `tree`: server `asgiws@<its name>`.

    For a before/after run of a change: `run.py --servers asgiws --tree ../before`.
    """
    base = SERVERS["asgiws"]
    launch = _FROM_TREE.format(tree=str(tree.resolve()))

    def argv(python: str, port: int, deflate: bool = False) -> list[str]:
        command = base.argv(python, port, deflate)
        assert command[1:3] == ["-m", "asgiws"], command
        return [python, "-c", launch, *command[3:]]

    return Server(f"asgiws@{tree.resolve().name}", argv, base.asgi, base.app, base.packages)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ServerFailed(Exception):
    """A server did not start, or died; the message ends with the tail of its log."""


class Running:
    """One started server process (and whatever it forks), pinned to one core."""

    def __init__(
        self,
        server: Server,
        python: str,
        core: int,
        cwd: Path,
        log_dir: Path,
        *,
        deflate: bool = False,
    ) -> None:
        self.server = server
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{server.name}-{self.port}.log"
        command = ["taskset", "-c", str(core), *server.argv(python, self.port, deflate)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:
            # Its own session, so stopping it reaches every process it forked.
            self.process = subprocess.Popen(
                command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"{self.server.name} exited with status {self.process.returncode} "
                    f"before accepting connections:\n{self.log_tail()}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.1)
        raise ServerFailed(
            f"{self.server.name} did not accept connections on port {self.port} "
            f"within {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerFailed(
                f"{self.server.name} died with status {self.process.returncode}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """SIGTERM to the whole session, SIGKILL after STOP_TIMEOUT; always reaps."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT)
        # Forked workers may outlive the leader: the group is killed either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
