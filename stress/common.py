"""What the stress scripts share: an asgiws subprocess serving stress.app, its fds and memory."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class Server:
    """``python -m asgiws stress.app:app --port 0 ...``; its output lines are kept."""

    def __init__(self, *options: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASGIWS_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "asgiws", "stress.app:app", "--port", "0",
             "--lifespan", "on", "--no-access-log", *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        self.lines: list[str] = []
        self.terminated = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        found = self.wait_for(r"running on http://127\.0\.0\.1:(\d+)", 30)
        self.port = int(found[1])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern)
        for line in self.lines:
            if found := regex.search(line):
                return found
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                break
            self.lines.append(item)
            if found := regex.search(item):
                return found
        raise SystemExit(f"no line matching {pattern!r} from the server: {self.lines[-20:]}")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def terminate(self) -> None:
        """SIGTERM, once: a second one would force the exit."""
        if not self.terminated and self.process.poll() is None:
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> tuple[int, dict[str, Any]]:
        """SIGTERM (unless sent already); the exit status and the app's report."""
        self.terminate()
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        report = json.loads(self.wait_for(r"^STRESS-APP (.*)$", 10)[1])
        return status, report


def raise_fd_limit(wanted: int) -> int:
    """As many open files as the hard limit allows, up to ``wanted``; what was set."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def session_problems(report: dict[str, Any], sessions: int) -> list[str]:
    """What broke the one-disconnect promise, if anything."""
    problems = []
    disconnects = report["disconnects"]
    if report["sessions"] != sessions:
        problems.append(f"{report['sessions']} sessions seen by the app, not {sessions}")
    if disconnects.get("0") or disconnects.get("2"):
        problems.append(f"disconnects per session {disconnects} (exactly one each is promised)")
    if report["after_disconnect"]:
        problems.append(f"{report['after_disconnect']} messages after a disconnect")
    return problems


async def settle_fds(server: Server, baseline: int) -> int:
    """The server's open files once they are back to ``baseline`` (it notices the last closes
    a moment after the client), or after 10 s."""
    fds = server.fds()
    for _ in range(200):
        if fds <= baseline:
            break
        await asyncio.sleep(0.05)
        fds = server.fds()
    return fds


def summary(line: str, problems: list[str], status: int) -> int:
    """Print the script's one line; its exit status: 1 when a promise broke."""
    if status != 0:
        problems = [*problems, f"exit status {status}"]
    print(line + (f" -- FAILED: {'; '.join(problems)}" if problems else ""))
    return 1 if problems else 0


def script(main: Callable[..., Coroutine[Any, Any, int]], doc: str, **options: float) -> None:
    """Run ``main`` with the command line's options (``--name`` for each keyword, its default
    and type from the value given here) and exit with its status."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    for name, default in options.items():
        parser.add_argument("--" + name, type=type(default), default=default)
    sys.exit(asyncio.run(main(**vars(parser.parse_args()))))
