"""asgiws (and gunicorn) as real subprocesses: their environment, starting, stopping, and the
listening socket a test hands over with --fd. Shared by the command-line tests; the fixture
that stops every server a test started is ``servers`` in conftest.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from lines import DEADLINE_S, OutputLines

__all__ = [
    "DEADLINE_S",
    "ServerProcess",
    "Stoppable",
    "clean_env",
    "listening_socket",
    "run_cli",
    "stop_process",
]


class Stoppable(Protocol):
    """A process wrapper the ``servers`` fixture stops after the test (ServerProcess, ...)."""

    def stop(self) -> None: ...


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGIWS_")}
    env["COLUMNS"] = "200"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m asgiws ARGS`` to completion (for commands that do not start a server)."""
    return subprocess.run(
        [sys.executable, "-m", "asgiws", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        timeout=60,
    )


def stop_process(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` if it still runs, wait up to DEADLINE_S for it to exit (then kill it), and
    close its output pipe."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


class ServerProcess(OutputLines):
    """An asgiws subprocess whose output (stdout and stderr, merged) is read line by line."""

    what = "the server"

    def __init__(self, *args: str, pass_fds: tuple[int, ...] = (), **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "asgiws", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(**env),
            pass_fds=pass_fds,
        )
        self._read_lines()

    def stop(self) -> None:
        stop_process(self.process)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock
