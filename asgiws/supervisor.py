"""The supervisor of ``--workers N``: one listening socket, N worker processes serving it.

The supervisor binds the socket once (--host/--port, --uds or --fd) and starts each worker as a
fresh interpreter (:mod:`asgiws.worker_process`) that inherits the socket and a pipe to report
on. It never imports the app: each worker does, so that a rolling restart (SIGHUP) serves the
code as it is now, and the supervisor holds no app state. An app that cannot be imported is
found by the workers, which send the reason back; the supervisor gives up (exit status 3) once
GIVE_UP_SAME starts in a row failed the same way. The README's "Worker processes" section has
the signals (SIGTERM/SIGINT drain, a second one forces; SIGHUP rolling restart with 1012;
SIGTTIN/SIGTTOU one more, one fewer), the back-off, the health check and the request limit.

Everything happens in one control loop (:meth:`Supervisor.run`), woken by a worker's message,
SIGCHLD, a signal, or the next deadline (a back-off, a health check, a kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys

from ._version import __version__
from .config import Config
from .supervisor_probes import SupervisorProbes
from .worker_process import MSG_BEAT, MSG_FAIL, MSG_LIMIT, MSG_READY, WorkerSpec, beat_interval

logger = logging.getLogger("asgiws.error")

# Waits between failed starts: BACKOFF_FIRST_S, doubled after each further one, at most this.
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 8.0
# Give up (exit status 3) after this many failed starts in a row with the same reason (an
# import error, a lifespan startup that fails) ...
GIVE_UP_SAME = 5
# ... or after this many in a row whatever the reasons: never an endless restart loop.
GIVE_UP_ANY = 20
EXIT_GAVE_UP = 3
# A worker asked to stop is killed this long after --timeout-graceful-shutdown (it cancels what
# is left itself at that timeout, and waits for the cancelled tasks); after a second signal,
# this long after it.
KILL_MARGIN_S = 5.0

# A worker that is starting (importing the app, running the lifespan startup) has at least this
# long to answer, whatever --timeout-worker-healthcheck says: the interpreter starts and the
# imports run before its event loop can beat.
STARTUP_TIMEOUT_S = 60.0

STARTING = "starting"  # started, not ready yet
READY = "ready"  # serving
DRAINING = "draining"  # asked to stop (or stopping at --limit-max-requests): not replaced


@dataclasses.dataclass(eq=False, slots=True)
class Worker:
    """One worker process, as the supervisor sees it."""

    number: int
    process: subprocess.Popen[bytes]
    pipe: int | None  # the read end of its pipe, until it closes
    last_heard: float  # loop time of its last message (a start must answer too)
    buffer: bytes = b""  # a message not yet complete
    state: str = STARTING
    served: bool = False  # it was ready once
    retire: bool = False  # drain once a new worker is ready (a rolling restart)
    reason: str | None = None  # why the start failed, as the worker said
    kill_at: float | None = None  # when a worker asked to stop is killed
    kill_reason: str | None = None  # why the supervisor killed it
    metrics_port: int | None = None  # its probe listener's port (--metrics-port), once ready

    @property
    def pid(self) -> int:
        return self.process.pid

    def __str__(self) -> str:
        return f"worker {self.number} (pid {self.pid})"


def exit_text(status: int) -> str:
    """``exit status 1``, ``killed by SIGKILL``."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def listen_url(sock: socket.socket, tls: bool) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


class Supervisor:
    """Starts, watches, replaces and stops the workers; :meth:`run` returns the exit status."""

    def __init__(self, app_spec: str, config: Config, sock: socket.socket, url: str) -> None:
        self.app_spec = app_spec
        self.config = config
        self.sock = sock
        self.url = url
        # The workers' Config: the inherited socket, no supervisor of their own.
        self.worker_config = dataclasses.replace(config, fd=sock.fileno(), uds=None, workers=1)
        if config.metrics_port is not None:
            # Each worker's figures on a free loopback port, which the supervisor's scrapes read.
            self.worker_config = dataclasses.replace(
                self.worker_config, metrics_port=0, metrics_host="127.0.0.1"
            )
        self.restarts = 0  # workers replaced after they died or reached --limit-max-requests
        self.target = config.workers
        self.healthcheck = config.timeout_worker_healthcheck
        self.tick = beat_interval(self.healthcheck)
        self.workers: dict[int, Worker] = {}  # by pid
        self.started = 0  # workers started so far: the next one's number
        self.failures: list[str] = []  # reasons of the failed starts since one was ready
        self.next_start = 0.0  # loop time before which no worker is started (back-off)
        self.announced = False
        self.restarting = False
        self.stopping = False
        self.forced = False
        self.status = 0
        self._wake = asyncio.Event()

    # -- the control loop ------------------------------------------------------------------------

    async def run(self) -> int:
        self.loop = loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGHUP: self._on_restart,
            signal.SIGTTIN: self._on_more,
            signal.SIGTTOU: self._on_fewer,
            signal.SIGCHLD: lambda sig: self._wake.set(),
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler, sig)
        logger.info("supervisor (pid %d): starting %d workers", os.getpid(), self.target)
        probes: SupervisorProbes | None = None
        try:
            try:
                probes = await self._start_probes()
            except OSError as exc:
                where = f"{self.config.metrics_host}:{self.config.metrics_port}"
                why = exc.strerror or exc
                logger.error("could not listen on --metrics-port %s: %s", where, why)
                return 1
            while True:
                self._reap()
                self._check_times()
                self._reconcile()
                if self.stopping and not self.workers:
                    return self.status
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_wait())
        finally:
            for sig in handlers:
                loop.remove_signal_handler(sig)
            if probes is not None:
                probes.close()
            for worker in list(self.workers.values()):  # only when run() itself failed
                self._signal(worker, signal.SIGKILL)
                worker.process.wait()
                self._close_pipe(worker)

    def _next_wait(self) -> float:
        now = self.loop.time()
        waits = [self.tick]
        if self.next_start > now:
            waits.append(self.next_start - now)
        waits.extend(w.kill_at - now for w in self.workers.values() if w.kill_at is not None)
        return max(0.01, min(waits))

    def _reap(self) -> None:
        for worker in list(self.workers.values()):
            status = worker.process.poll()
            if status is not None:
                self._exited(worker, status)

    def _check_times(self) -> None:
        now = self.loop.time()
        for worker in self.workers.values():
            if worker.kill_reason is not None:
                continue
            if worker.kill_at is not None and now >= worker.kill_at:
                self._kill(worker, "it was still running after it was asked to stop")
                if self.stopping and self.status == 0:
                    self.status = 1
            elif self.healthcheck > 0:
                limit = self.healthcheck
                if worker.state == STARTING:
                    limit = max(limit, STARTUP_TIMEOUT_S)
                if now - worker.last_heard > limit:
                    self._kill(
                        worker,
                        f"it did not answer within {limit:g} s (--timeout-worker-healthcheck)",
                    )

    def _reconcile(self) -> None:
        """Start or drain workers until as many serve (or are starting) as asked for."""
        if self.stopping:
            return
        active = [w for w in self.workers.values() if w.state != DRAINING and not w.retire]
        missing = self.target - len(active)
        if missing > 0 and self.loop.time() >= self.next_start:
            for _ in range(missing):
                self._start()
        elif missing < 0:
            # One worker fewer: one still starting (the newest), else the oldest serving.
            starting = sorted((w for w in active if w.state == STARTING), key=lambda w: -w.number)
            serving = sorted((w for w in active if w.state == READY), key=lambda w: w.number)
            for worker in (starting + serving)[:-missing]:
                logger.info("%s: one worker fewer, draining it", worker)
                self._drain(worker, signal.SIGHUP)
        if self.restarting and not any(
            w.state == STARTING and not w.retire for w in self.workers.values()
        ):
            # Every new worker is ready (one fewer was asked for, say): the old ones go now.
            for worker in self._retiring():
                self._drain(worker, signal.SIGHUP)
            self.restarting = False
            logger.info("rolling restart done: %d workers serving", self.target)

    # -- starting workers and reading their pipes --------------------------------------------

    def _start(self) -> None:
        self.started += 1
        read_end, write_end = os.pipe()
        spec = WorkerSpec(self.app_spec, self.worker_config, write_end, self.started)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "asgiws.worker_process"],
                stdin=subprocess.PIPE,
                pass_fds=(self.sock.fileno(), write_end),
                # Not in the supervisor's process group: CTRL+C in a terminal reaches the
                # supervisor alone, which then stops the workers (one signal each).
                process_group=0,
            )
        except OSError as exc:
            os.close(read_end)
            self._start_failed(None, f"cannot start a worker process: {exc}")
            return
        finally:
            os.close(write_end)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(pickle.dumps(spec))
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        os.set_blocking(read_end, False)
        worker = Worker(self.started, process, read_end, self.loop.time())
        self.workers[process.pid] = worker
        self.loop.add_reader(read_end, self._read, worker)
        logger.debug("%s starting", worker)

    def _read(self, worker: Worker) -> None:
        """What the worker wrote on its pipe (see asgiws.worker_process)."""
        if worker.pipe is None:
            return
        try:
            data = os.read(worker.pipe, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(worker)
            return
        worker.last_heard = self.loop.time()
        *lines, worker.buffer = (worker.buffer + data).split(b"\n")
        for line in lines:
            kind, _, text = line.partition(b" ")
            if kind == MSG_READY:
                if text.isdigit():
                    worker.metrics_port = int(text)
                self._ready(worker)
            elif kind == MSG_LIMIT and worker.state != DRAINING:
                logger.info("%s reached --limit-max-requests: draining, starting another", worker)
                self.restarts += 1
                self._drain(worker, None)
                self._wake.set()
            elif kind == MSG_FAIL:
                worker.reason = text.decode("utf-8", "replace")
            elif kind != MSG_BEAT:
                logger.debug("%s: unknown message %r", worker, line)

    def _close_pipe(self, worker: Worker) -> None:
        if worker.pipe is not None:
            self.loop.remove_reader(worker.pipe)
            os.close(worker.pipe)
            worker.pipe = None

    def _ready(self, worker: Worker) -> None:
        if worker.state != STARTING:
            return
        worker.state = READY
        worker.served = True
        self.failures.clear()
        logger.info("%s ready", worker)
        if not self.announced and sum(w.state == READY for w in self.workers.values()) >= (
            self.target
        ):
            self.announced = True
            logger.info(
                "asgiws %s running on %s with %d workers (press CTRL+C to quit)",
                __version__,
                self.url,
                self.target,
            )
        if not worker.retire:
            for old in self._retiring()[:1]:
                logger.info("%s: replaced by %s, draining it", old, worker)
                self._drain(old, signal.SIGHUP)
        self._wake.set()

    def _retiring(self) -> list[Worker]:
        """Old workers of a rolling restart not asked to drain yet, oldest first."""
        found = [w for w in self.workers.values() if w.retire and w.state != DRAINING]
        return sorted(found, key=lambda w: w.number)

    # -- workers that end ----------------------------------------------------------------------

    def _exited(self, worker: Worker, status: int) -> None:
        self._read(worker)  # what it wrote last (why it failed), before closing its pipe
        self._close_pipe(worker)
        del self.workers[worker.pid]
        how = exit_text(status)
        if self.stopping or worker.state == DRAINING:
            logger.info("%s exited (%s)", worker, how)
            # A worker stopped while it was still starting ends by the signal: that is no
            # failure to shut down.
            stopped = status in (-signal.SIGTERM, -signal.SIGHUP) and not worker.served
            if self.stopping and status != 0 and not stopped and self.status == 0:
                self.status = 1
        elif worker.state == STARTING:
            if worker.retire:  # an old worker still starting when the restart began
                logger.info("%s exited (%s)", worker, how)
            else:
                reason = worker.reason or worker.kill_reason or f"it exited ({how})"
                self._start_failed(worker, reason)
        else:
            reason = worker.kill_reason or how
            replaced = "" if worker.retire else "; starting a replacement"
            if not worker.retire:
                self.restarts += 1
            logger.warning("%s died (%s)%s", worker, reason, replaced)

    def _start_failed(self, worker: Worker | None, reason: str) -> None:
        self.failures.append(reason)
        count = len(self.failures)
        name = str(worker) if worker is not None else "a worker"
        if self.restarting:
            logger.error(
                "rolling restart abandoned: %s failed to start: %s; the old workers keep serving",
                name,
                reason,
            )
            self.restarting = False
            for other in list(self.workers.values()):
                if other.retire:
                    other.retire = False
                elif other.state == STARTING:
                    self._drain(other, signal.SIGTERM)
            return
        same = count >= GIVE_UP_SAME and len(set(self.failures[-GIVE_UP_SAME:])) == 1
        if same or count >= GIVE_UP_ANY:
            how = "the same way" if same else "in a row"
            logger.error(
                "giving up: the last %d worker starts failed %s; the last one: %s",
                GIVE_UP_SAME if same else count,
                how,
                reason,
            )
            self.status = EXIT_GAVE_UP
            self._stop_all()
            return
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (count - 1))
        self.next_start = self.loop.time() + delay
        logger.warning(
            "%s failed to start: %s; starting another in %g s (%d failed start%s in a row)",
            name,
            reason,
            delay,
            count,
            "" if count == 1 else "s",
        )

    # -- --metrics-port ----------------------------------------------------------------------------

    async def _start_probes(self) -> SupervisorProbes | None:
        """The probe listener (None without --metrics-port); OSError when it cannot listen."""
        config = self.config
        if config.metrics_port is None:
            return None

        def scraped() -> list[tuple[str, int]]:
            return [
                (str(w.number), w.metrics_port)
                for w in self.workers.values()
                if w.metrics_port is not None and w.state != STARTING
            ]

        def ready() -> bool:
            return not self.stopping and any(w.state == READY for w in self.workers.values())

        probes = SupervisorProbes(
            config.metrics_host,
            config.metrics_port,
            workers=scraped,
            ready=ready,
            restarts=lambda: self.restarts,
        )
        await probes.start()
        host = config.metrics_host
        shown = f"[{host}]" if ":" in host else host
        logger.info("metrics on http://%s:%d/metrics", shown, probes.server.port)
        return probes

    # -- asking workers to stop ----------------------------------------------------------------

    def _signal(self, worker: Worker, sig: int) -> None:
        # Not reaped yet (poll() has not seen it exit), so the pid is still this worker's.
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    def _drain(self, worker: Worker, sig: int | None) -> None:
        """Stop counting the worker as serving; send it ``sig`` (SIGHUP: close WebSockets with
        1012, SIGTERM: with --ws-shutdown-code); kill it if it is still there at the deadline."""
        worker.state = DRAINING
        worker.retire = False
        worker.kill_at = self.loop.time() + self.config.timeout_graceful_shutdown + KILL_MARGIN_S
        if sig is not None:
            self._signal(worker, sig)

    def _kill(self, worker: Worker, reason: str) -> None:
        logger.warning("%s: %s, killing it (SIGKILL)", worker, reason)
        worker.kill_reason = reason
        self._signal(worker, signal.SIGKILL)

    def _stop_all(self) -> None:
        self.stopping = True
        for worker in self.workers.values():
            if worker.state != DRAINING:
                self._drain(worker, signal.SIGTERM)

    # -- signals ----------------------------------------------------------------------------------

    def _on_stop(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.stopping:
            if self.forced:
                return
            self.forced = True
            logger.warning("received %s again: forcing the workers to exit", name)
            deadline = self.loop.time() + KILL_MARGIN_S
            for worker in self.workers.values():
                self._signal(worker, signal.SIGTERM)  # a worker's second signal forces it
                worker.kill_at = min(worker.kill_at or deadline, deadline)
        else:
            logger.info("received %s: stopping %d workers", name, len(self.workers))
            self._stop_all()
        self._wake.set()

    def _on_restart(self, sig: int) -> None:
        if self.stopping:
            return
        serving = [w for w in self.workers.values() if w.state != DRAINING]
        logger.info("received SIGHUP: rolling restart of %d workers", len(serving))
        for worker in serving:
            worker.retire = True
        self.restarting = bool(serving)
        self.next_start = 0.0  # asked for: no back-off
        self._wake.set()

    def _on_more(self, sig: int) -> None:
        if not self.stopping:
            self.target += 1
            logger.info("received SIGTTIN: %d workers", self.target)
            self._wake.set()

    def _on_fewer(self, sig: int) -> None:
        if self.stopping:
            return
        if self.target == 1:
            logger.info("received SIGTTOU: keeping the last worker")
            return
        self.target -= 1
        logger.info("received SIGTTOU: %d workers", self.target)
        self._wake.set()
