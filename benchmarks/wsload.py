"""The C load generator, `wsload.c`: its build, its command line, and one run of it.

gcc builds it on first use into the gitignored `.cache/wsload/`, under a name keyed by the
hash of the source and the flags, so an edited source is rebuilt and an unchanged one never
is. Without gcc, `build()` returns None and loadgen.py falls back to its Python clients.

A run prints a JSON line when its measured window opens and one when it closes (each with
its CLOCK_MONOTONIC time and its own CPU time so far), then the result line. The caller
reads the server's CPU and the cores' busy time from /proc at those two markers, so every
figure covers the same window as the C program's counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.scenarios import Scenario

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "wsload.c"
BUILD_DIR = HERE.parent / ".cache" / "wsload"
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror")
LIBS = ("-lz",)  # zlib, for permessage-deflate (Debian: zlib1g-dev)
BUILD_TIMEOUT = 120.0  # seconds for gcc
NAME = "wsload"  # how results name this client


class BuildFailed(Exception):
    """gcc is there but could not build wsload.c; the message has its diagnostics."""


def compiler() -> str | None:
    return shutil.which("gcc")


def binary_path(directory: Path = BUILD_DIR) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join((*CFLAGS, *LIBS)).encode())
    return directory / f"wsload-{digest.hexdigest()[:16]}"


def build(directory: Path = BUILD_DIR) -> Path | None:
    """The built program (built now if it is missing), or None when there is no gcc."""
    target = binary_path(directory)
    if target.exists():
        return target
    gcc = compiler()
    if gcc is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name, then renamed: a concurrent build or an interrupted one
    # never leaves a half-written program under the final name.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".building-")
    os.close(fd)
    try:
        try:
            done = subprocess.run(
                [gcc, *CFLAGS, "-o", temporary, str(SOURCE), *LIBS],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            message = f"gcc did not finish building {SOURCE.name} in {exc.timeout} s"
            raise BuildFailed(message) from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            hint = ""
            if "zlib.h" in output or "-lz" in output:
                hint = " (it needs zlib's headers and library: Debian package zlib1g-dev)"
            raise BuildFailed(
                f"gcc could not build {SOURCE.name}{hint} (exit {done.returncode}):\n{output}"
            )
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def command(binary: Path, scenario: Scenario, port: int) -> list[str]:
    """The command line for one scenario against 127.0.0.1:port (stream or handshakes)."""
    if scenario.kind not in ("stream", "handshakes"):
        raise ValueError(f"wsload does not run {scenario.kind!r} scenarios")
    # The handshake loop's one echo is a text message, as in loadgen.py's Python client.
    text = scenario.text or scenario.kind == "handshakes"
    return [
        str(binary), "--mode", scenario.kind, "--port", str(port),
        "--connections", str(scenario.connections), "--in-flight", str(scenario.in_flight),
        "--size", str(scenario.size), "--text" if text else "--binary",
        "--warmup", repr(float(scenario.warmup)), "--duration", repr(float(scenario.duration)),
        *(("--json", "--deflate") if scenario.deflate else ()),
    ]  # fmt: skip


def time_bound(scenario: Scenario) -> float:
    """Seconds a run may take at most: it bounds itself well within this."""
    # Its own bounds: connects 10 s (+ N/200), the window, drain 10 s (handshakes: 12 s),
    # close handshakes 2 s; its hard deadline (SIGALRM) is 10 s past all of those.
    own = 10 + scenario.connections / 200 + scenario.warmup + scenario.duration + 22
    return own + 10 + scenario.connections / 2000 + 5


@dataclass(frozen=True)
class Marker:
    """An edge of the measured window, as the C program saw it."""

    t: float  # CLOCK_MONOTONIC seconds
    utime: float  # the program's user CPU seconds so far
    stime: float  # its system CPU seconds so far


def _lines(stream: IO[bytes], deadline: float) -> Iterator[bytes]:
    """Complete lines from a pipe until EOF; TimeoutError past the deadline."""
    fd = stream.fileno()
    # poll, not select: in idle+active the caller holds thousands of sockets, so this pipe's
    # descriptor can be past select()'s FD_SETSIZE (1024).
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pending = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if not poller.poll(remaining * 1000):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            if pending.strip():
                yield pending
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())


def run(
    argv: list[str],
    *,
    timeout: float,
    on_start: Callable[[Marker], None] = lambda marker: None,
    on_end: Callable[[Marker], None] = lambda marker: None,
) -> dict[str, Any]:
    """Run wsload to its end; call on_start and on_end as its window opens and closes.

    Returns its result line, always with "ok", and with "error" (and "wrong_echo") when it
    failed, including when it exited without a result or ran past `timeout` (then it is
    killed). "exit_status" is its exit status.
    """
    deadline = time.monotonic() + timeout
    result: dict[str, Any] | None = None
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors) as process,
    ):
        assert process.stdout is not None
        try:
            for raw in _lines(process.stdout, deadline):
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                event = line.get("event")
                if event in ("start", "end"):
                    marker = Marker(line["t"], line["utime"], line["stime"])
                    (on_start if event == "start" else on_end)(marker)
                else:
                    result = line
            status = process.wait(max(0.1, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return {
                "ok": False,
                "error": f"wsload still running after {timeout:.0f} s: killed",
                "exit_status": process.returncode,
            }
        errors.seek(0)
        stderr = errors.read().decode(errors="replace").strip()
    if result is None:
        tail = " | ".join(stderr.splitlines()[-5:]) or "no output"
        return {"ok": False, "error": f"wsload exit {status}: {tail}", "exit_status": status}
    result["exit_status"] = status
    if status != 0 and result.get("ok"):
        result["ok"] = False
        result["error"] = f"wsload exit {status} after reporting success: {stderr[-300:]}"
    result.setdefault("error", None)
    if result["error"] is None:
        del result["error"]
    return result
