"""The worker side of ``--workers``: one process the supervisor (:mod:`asgiws.supervisor`) starts
as a fresh interpreter, ``python -m asgiws.worker_process``, to serve the listening socket it
inherits.

The supervisor writes a pickled :class:`WorkerSpec` to the worker's stdin: the app to import
(each worker imports it itself, so a rolling restart serves new code), the Config (``fd`` is the
inherited socket) and the pipe to report on. The worker writes one short line per message on
that pipe (writes below PIPE_BUF bytes are atomic):

    beat        every :func:`beat_interval` seconds, from the event loop: a worker whose loop is
                blocked stops beating (--timeout-worker-healthcheck)
    ready [PORT] listening, the lifespan startup done; PORT: where this worker serves its
                figures (--metrics-port), for the supervisor's scrapes
    limit       --limit-max-requests reached: draining, to be replaced (not a crash)
    fail TEXT   the start failed, and why: the supervisor gives up when every start fails the
                same way

Signals: SIGTERM (or SIGINT) drains as a single process does (WebSockets closed with
--ws-shutdown-code, 1001); SIGHUP drains the same way with 1012 (Service Restart): a rolling
restart, or one worker fewer. A second signal forces. When the supervisor is gone (the pipe is
broken), the worker drains and exits too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable

from .accesslog import is_json
from .asyncio.server import Server
from .config import Config
from .importer import AppImportError, import_app
from .logs import configure_logging
from .types import ASGIApp

logger = logging.getLogger("asgiws.error")

MSG_BEAT = b"beat"
MSG_READY = b"ready"
MSG_LIMIT = b"limit"
MSG_FAIL = b"fail"


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor hands a worker."""

    app: str  # module:attribute
    config: Config  # fd: the listening socket, inherited
    pipe: int  # the write end of the pipe to the supervisor, inherited
    number: int  # 1, 2, ...: the supervisor's name for this worker in its log lines


def beat_interval(healthcheck_s: float) -> float:
    """Seconds between two beats: four beats per --timeout-worker-healthcheck, at most one a
    second (and one a second with no health check: the beat also tells the supervisor is gone)."""
    return min(1.0, healthcheck_s / 4) if healthcheck_s > 0 else 1.0


class Channel:
    """The pipe to the supervisor: beats from the event loop, and the messages above."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.broken = False
        self._beat: asyncio.TimerHandle | None = None

    def send(self, kind: bytes, text: str = "") -> bool:
        """Write one message; False when the supervisor is gone."""
        if self.broken:
            return False
        line = kind + (b" " + text.replace("\n", " ").encode("utf-8", "replace") if text else b"")
        try:
            # A message longer than PIPE_BUF (4096) would no longer be written at once.
            os.write(self.fd, line[:4000] + b"\n")
        except BlockingIOError:
            pass  # the supervisor is behind on reading: this beat is not needed
        except OSError:  # BrokenPipeError: the supervisor has exited
            self.broken = True
            return False
        return True

    def start_beats(self, interval: float, on_broken: Callable[[], None]) -> None:
        """Beat every ``interval`` seconds from the running loop; ``on_broken()`` once the
        supervisor is gone."""
        loop = asyncio.get_running_loop()

        def beat() -> None:
            if self.send(MSG_BEAT):
                self._beat = loop.call_later(interval, beat)
            else:
                on_broken()

        self._beat = loop.call_later(interval, beat)

    def stop_beats(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None


class WorkerServer(Server):
    """A Server that tells its supervisor when --limit-max-requests is reached."""

    def __init__(self, app: ASGIApp, config: Config, channel: Channel) -> None:
        super().__init__(app, config)
        self.announce = False  # the supervisor logs the URL, once for all workers
        self.channel = channel

    def request_done(self) -> None:
        super().request_done()
        if self.requests == self.request_limit:
            self.channel.send(MSG_LIMIT)


async def serve_worker(app: ASGIApp, spec: WorkerSpec, channel: Channel) -> int:
    """Serve the inherited socket until told to stop; report ready (or why the start failed)."""
    server = WorkerServer(app, spec.config, channel)
    server.metrics_worker = str(spec.number)
    loop = asyncio.get_running_loop()

    def restart() -> None:
        if not server.shutting_down:
            logger.info("received SIGHUP: closing WebSockets with 1012 (Service Restart)")
        server.stop(1012)

    def supervisor_gone() -> None:
        logger.warning("the supervisor is gone, shutting down")
        server.stop()

    loop.add_signal_handler(signal.SIGHUP, restart)
    channel.start_beats(beat_interval(spec.config.timeout_worker_healthcheck), supervisor_gone)
    running = asyncio.ensure_future(server.run())
    started = asyncio.ensure_future(server.started.wait())
    try:
        await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
        if server.started.is_set():
            # With --metrics-port, the port of this worker's figures (asgiws.supervisor_probes).
            probes = server.probes
            channel.send(MSG_READY, str(probes.port) if probes is not None else "")
        status = await running
    finally:
        started.cancel()
        channel.stop_beats()
    if not server.started.is_set():
        channel.send(MSG_FAIL, server.startup_error or f"the server stopped with status {status}")
    return status


class NameWorker(logging.Filter):
    """Starts each line of the worker's own log with ``worker N (pid P):``, as the supervisor
    names it (access lines are left as they are)."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.prefix = f"worker {number} (pid {os.getpid()}): "

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "asgiws_worker", False):
            record.msg = self.prefix + str(record.msg)
            record.asgiws_worker = True  # once, however many handlers see it
        return True


def main() -> int:
    spec = pickle.load(sys.stdin.buffer)
    if not isinstance(spec, WorkerSpec):
        sys.stderr.write("asgiws.worker_process: started by the asgiws supervisor only\n")
        return 2
    sys.stdin.close()
    config = spec.config
    configure_logging(
        config.log_level,
        access_log=config.access_log,
        json_lines=is_json(config.access_log_format),
        log_config=config.log_config,
    )
    for handler in logging.getLogger("asgiws").handlers:
        handler.addFilter(NameWorker(spec.number))
    channel = Channel(spec.pipe)
    try:
        app = import_app(spec.app, factory=config.factory, app_dir=config.app_dir)
    except AppImportError as exc:
        # The supervisor logs the reason (once per failed start, and when it gives up).
        if config.log_level in ("debug", "trace"):
            traceback.print_exception(exc, file=sys.stderr)
        channel.send(MSG_FAIL, str(exc))
        return 1

    # Imported only now, as in asgiws.cli: the import error above is reported without them.
    from .runtime import loop_factory, tune_malloc

    tune_malloc(config.malloc_keep, config.ws_max_size)
    try:
        factory = loop_factory(config.loop)
    except ImportError:
        channel.send(
            MSG_FAIL, "--loop uvloop: uvloop is not installed (pip install 'asgiws[fast]')"
        )
        return 1
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve_worker(app, spec, channel))


if __name__ == "__main__":
    # Run as asgiws.worker_process, not as __main__: the pickled WorkerSpec names that module.
    from asgiws.worker_process import main as worker_main

    raise SystemExit(worker_main())
