"""A server process for the benchmark tools' tests: started in its own session, waited for
until its port accepts, killed with its session at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LISTEN_TIMEOUT = 30.0  # seconds for the server to accept connections


@contextlib.contextmanager
def listening(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``argv`` (a server that listens on 127.0.0.1:``port``) from the repository; yield
    the port once it accepts connections."""
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, f"no listener within {LISTEN_TIMEOUT:g} s"
            time.sleep(0.05)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        if process.stderr:
            process.stderr.close()
