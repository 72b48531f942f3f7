"""A private redis-server (Debian's package) for one test: loopback, a free port, its own
temporary directory, nothing saved to disk; never the machine's own service."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from lines import OutputLines
from ports import free_port

READY_S = 30.0  # to print "Ready to accept connections", and to exit after SIGTERM
PORT_TRIES = 3  # a free port can be taken by someone else before redis binds it


class RedisServer(OutputLines):
    """``with RedisServer(tmp_dir) as redis:`` a running redis-server at ``redis.url``."""

    what = "redis-server"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0

    def __enter__(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        for _ in range(PORT_TRIES):
            self.port = free_port()
            # No config file: every setting is on the command line. No RDB snapshots and no
            # append-only file, so nothing outlives the test but its temporary directory.
            command = [executable, "--bind", "127.0.0.1", "--port", str(self.port),
                       "--dir", str(self.directory), "--save", "", "--appendonly", "no",
                       "--daemonize", "no", "--loglevel", "notice"]  # fmt: skip
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self._read_lines()
            try:
                self.wait_for_line(r"Ready to accept connections", timeout=READY_S)
                return self
            except AssertionError:
                self.close()
                if not any("Address already in use" in line for line in self.lines):
                    raise
        raise AssertionError(f"redis-server found no free port in {PORT_TRIES} tries")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=READY_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=READY_S)
        self._reader.join(timeout=READY_S)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
