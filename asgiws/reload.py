"""``--reload``: serve the app in a child process and start a new one when a watched file changes.

For development. The reloader binds the listening socket once and hands it to each child
(``--fd``), so the address stays bound across restarts: a connection made while the app restarts
waits in the listen backlog instead of being refused. Each child is a fresh interpreter
(``python -m asgiws APP``, with every option passed as an ``ASGIWS_*`` variable), so the changed
code is imported anew. On a change the running child is stopped gracefully (SIGTERM: requests
finish, WebSockets are closed with --ws-shutdown-code) before the next one starts.

A child that exits by itself (an app that fails to import, a syntax error in the edited file)
is reported, and nothing is served until the next change starts a new one: fix the file and
it is picked up.

Watched: files named ``*.py`` or matching a ``--reload-include`` glob under each
``--reload-dir``, except those matching a ``--reload-exclude`` glob, hidden files and
directories, ``__pycache__`` and editor backups. The events come from watchfiles (the ``reload``
extra).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import Config
from .options import Option, options

logger = logging.getLogger("asgiws.error")

INCLUDE = ("*.py",)
EXCLUDE = (".*", "__pycache__", "*~")
# How long a stopped child may take beyond --timeout-graceful-shutdown (its cancel wait and
# lifespan shutdown) before it is killed.
STOP_MARGIN_S = 10.0
# Changes listed by name in the restart line; more are counted.
SHOWN_CHANGES = 3


class ReloadError(Exception):
    """--reload cannot run: watchfiles is missing, or a --reload-dir is not a directory."""


class ChangeFilter:
    """Which changed paths restart the app: the include globs (``*.py`` and --reload-include)
    against the file name or its path below the watched directory, unless an exclude glob
    matches that path, the file name or one of the directories on the way."""

    def __init__(self, dirs: Iterable[Path], include: Iterable[str], exclude: Iterable[str]):
        self.dirs = [d.resolve() for d in dirs]
        self.include = (*INCLUDE, *include)
        self.exclude = (*EXCLUDE, *exclude)

    def _relative(self, path: Path) -> Path:
        resolved = path.resolve() if path.is_absolute() else path
        for directory in self.dirs:
            with contextlib.suppress(ValueError):
                return resolved.relative_to(directory)
        return Path(path.name)

    def __call__(self, change: object, path: str) -> bool:
        relative = self._relative(Path(path))
        text = relative.as_posix()
        for pattern in self.exclude:
            if fnmatch.fnmatchcase(text, pattern):
                return False
            if any(fnmatch.fnmatchcase(part, pattern) for part in relative.parts):
                return False
        name = relative.name
        return any(
            fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(text, pattern)
            for pattern in self.include
        )


def option_text(option: Option, value: Any) -> str:
    """``value`` as the text ``ASGIWS_<NAME>`` takes back (asgiws.options.convert)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return option.spec.separator.join(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def child_environ(config: Config, fd: int, environ: dict[str, str]) -> dict[str, str]:
    """The environment of a child: ``environ`` without its ``ASGIWS_*`` variables (already read
    into ``config``), plus one for every option of ``config``, serving on ``fd``."""
    env = {k: v for k, v in environ.items() if not k.startswith("ASGIWS_")}
    for option in options():
        env[option.env] = option_text(option, getattr(config, option.name))
    env["ASGIWS_RELOAD"] = "0"
    env["ASGIWS_FD"] = str(fd)
    env["ASGIWS_UDS"] = ""
    return env


def watched_dirs(config: Config) -> list[Path]:
    dirs = []
    for name in config.reload_dir:
        path = Path(name).absolute()
        if not path.is_dir():
            raise ReloadError(f"--reload-dir: {name!r} is not a directory")
        dirs.append(path)
    return dirs


def _describe(changes: set[tuple[Any, str]], dirs: list[Path]) -> str:
    names = []
    for _change, path in sorted(changes, key=lambda c: c[1]):
        shown = path
        for directory in dirs:
            with contextlib.suppress(ValueError):
                shown = str(Path(path).relative_to(directory))
                break
        names.append(shown)
    text = ", ".join(names[:SHOWN_CHANGES])
    if len(names) > SHOWN_CHANGES:
        text += f" and {len(names) - SHOWN_CHANGES} more"
    return text


class Child:
    """One serving process, and a thread that reports when it exits by itself."""

    def __init__(self, app: str, env: dict[str, str], fd: int) -> None:
        self.stopping = False
        self.exited = threading.Event()
        # Its own process group: a terminal's CTRL+C reaches the reloader only, which stops the
        # child once, gracefully.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "asgiws", app], env=env, pass_fds=(fd,), process_group=0
        )
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        status = self.process.wait()
        self.exited.set()
        if not self.stopping:
            logger.error(
                "the app's process (pid %d) exited with status %d: waiting for a file to change "
                "to start it again",
                self.process.pid,
                status,
            )

    def signal(self, sig: int) -> None:
        if not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def stop(self, timeout: float) -> None:
        """SIGTERM, and wait up to ``timeout`` seconds before killing it."""
        self.stopping = True
        self.signal(signal.SIGTERM)
        if not self.exited.wait(timeout):
            logger.warning(
                "the app's process (pid %d) did not stop within %gs: killing it",
                self.process.pid,
                timeout,
            )
            self.signal(signal.SIGKILL)
            self.exited.wait(timeout)


def run_reloader(app: str, config: Config, stop: threading.Event | None = None) -> int:
    """Serve ``app`` in child processes, restarting on changes, until SIGINT/SIGTERM (or until
    ``stop`` is set, for a caller that runs it in its own way). Call it in the main thread."""
    try:
        import watchfiles
    except ImportError:
        logger.error("--reload needs watchfiles: pip install 'asgiws[reload]'")
        return 1
    from .asyncio.sockets import describe_address, make_socket

    try:
        dirs = watched_dirs(config)
    except ReloadError as exc:
        logger.error("%s", exc)
        return 1
    try:
        sock = make_socket(config)
    except OSError as exc:
        logger.error("could not listen on %s: %s", describe_address(config), exc.strerror or exc)
        return 1
    bound_uds = sock.family == getattr(socket, "AF_UNIX", None) and config.fd is None
    accept = ChangeFilter(dirs, config.reload_include, config.reload_exclude)
    env = child_environ(config, sock.fileno(), dict(os.environ))
    stop = threading.Event() if stop is None else stop
    timeout = config.timeout_graceful_shutdown + STOP_MARGIN_S
    child: Child | None = None

    def on_signal(sig: int, frame: Any) -> None:
        if stop.is_set() and child is not None:
            child.signal(signal.SIGTERM)  # a second signal: the child stops waiting too
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    patterns = ", ".join((*INCLUDE, *config.reload_include))
    logger.info(
        "reloader (pid %d) watching %s for %s, with watchfiles",
        os.getpid(),
        ", ".join(str(d) for d in dirs),
        patterns,
    )
    try:
        child = Child(app, env, sock.fileno())
        for changes in watchfiles.watch(
            *dirs, watch_filter=accept, stop_event=stop, raise_interrupt=False
        ):
            logger.info("changed: %s; restarting", _describe(changes, dirs))
            child.stop(timeout)
            if stop.is_set():
                break
            child = Child(app, env, sock.fileno())
    finally:
        if child is not None:
            child.stop(timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        name = sock.getsockname() if bound_uds else None
        sock.close()
        if isinstance(name, str) and name:
            with contextlib.suppress(OSError):
                os.unlink(name)
    return 0
