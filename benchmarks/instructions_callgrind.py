"""instructions.py's server under valgrind's callgrind, and the counts callgrind writes.

`Callgrind` starts the server in its own session (killed with its parent), waits for it to
listen, bounds each measured window with `callgrind_control --zero` and `--dump=LABEL`, and
reads each dump's `summary:` line. Every wait has a limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.instructions_client import Deadline, Failed
from benchmarks.servers import HOST, free_port

START_TIMEOUT = 120.0  # seconds for the server under valgrind to accept connections
CONTROL_TIMEOUT = 60.0  # seconds for one callgrind_control call
SETTLE = 0.5  # seconds of client silence before each zero and dump
PR_SET_PDEATHSIG = 1


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


# ---- the server under callgrind -----------------------------------------------------------


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Callgrind:
    """The server under callgrind, in its own session; `zero()` and `dump()` bound a window."""

    def __init__(
        self,
        argv: Callable[[int], list[str]],
        cwd: Path,
        pythonpath: Path,
        workdir: Path,
        core: int | None,
    ) -> None:
        """Start `argv(port)` in `cwd` on a free port; callgrind's files go to `workdir`."""
        self.workdir = workdir
        self.out = workdir / "callgrind.out"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", *argv(self.port),
        ]  # fmt: skip
        if core is not None:
            command = ["taskset", "-c", str(core), *command]
        env = {
            **os.environ,
            "PYTHONPATH": str(pythonpath),
            "PYTHONHASHSEED": "0",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
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
