"""A subprocess's merged output, read line by line in a thread, for tests that wait on it."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

DEADLINE_S = 30.0  # default wait for a line, and for the process to exit once its output ended


class OutputLines:
    """Base of the test classes that wrap a process started with stdout=PIPE, stderr=STDOUT and
    text=True: call :meth:`_read_lines` once it is started."""

    process: subprocess.Popen[str]
    what = "the process"  # for messages: "the server", "the container" ...

    def _read_lines(self) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, pattern: str, timeout: float = DEADLINE_S) -> re.Match[str]:
        """The first output line (from now on, or already seen) matching ``pattern``."""
        regex = re.compile(pattern)
        for line in self.lines:
            found = regex.search(line)
            if found:
                return found
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self._next_line(deadline, f"a line matching {pattern!r}"))
            if found:
                return found

    def wait_for_count(self, pattern: str, count: int, timeout: float = DEADLINE_S) -> list[str]:
        """The first ``count`` output lines matching ``pattern`` (seen or to come), each as its
        first group, or the whole match when the pattern has none."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [m[1] if regex.groups else m[0] for m in map(regex.search, self.lines) if m]
            if len(found) >= count:
                return found[:count]
            self._next_line(deadline, f"{count} lines matching {pattern!r}")

    def _next_line(self, deadline: float, wanted: str) -> str:
        """The next output line, kept in ``lines``; AssertionError naming ``wanted`` when the
        deadline passes or the process's output ends first."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {wanted} in time: {self.lines!r}")
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError(
                    f"{self.what} exited ({self.process.wait(timeout=DEADLINE_S)}) before "
                    f"printing {wanted}: {self.lines!r}"
                )
            self.lines.append(item)
            return item

    def output(self) -> str:
        """Everything printed, after the process has exited."""
        self._reader.join(timeout=DEADLINE_S)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)
