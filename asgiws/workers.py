"""A gunicorn worker class: ``gunicorn -k asgiws.workers.AsgiwsWorker app:app``.

gunicorn (the arbiter) binds the sockets, imports the app, forks the workers and watches them;
each :class:`AsgiwsWorker` serves HTTP and WebSocket on the arbiter's sockets with an asgiws
server in its own event loop. What gunicorn asks of a worker, and how it is done here:

- SIGTERM, graceful: stop accepting, let HTTP requests finish, close each WebSocket with 1001
  (Going Away), or 1012 (Service Restart) when the arbiter is replacing its workers after a
  SIGHUP, all within ``--graceful-timeout``.
- SIGINT / SIGQUIT, quick: the same Close frames are written, then what is left is cancelled at
  once, without waiting for peers or apps.
- ``--timeout``: the event loop itself tells the arbiter it is alive, every half timeout, so a
  loop blocked by the app gets the worker killed (SIGABRT, then SIGKILL) and replaced.
- ``--max-requests`` (and its jitter): after that many HTTP requests the worker shuts down
  gracefully (WebSockets get 1012) and the arbiter starts a fresh one.

gunicorn's settings are mapped to asgiws's options where they mean the same thing
(:data:`SETTINGS`); every other asgiws option can be given as an ``ASGIWS_*`` environment
variable (``ASGIWS_WS_MAX_SIZE=1MiB``). A value asgiws refuses stops gunicorn with a message
naming the setting.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from gunicorn.workers.base import Worker

from .config import Config
from .options import Option, OptionError, build_config, env_values

# How gunicorn's worker exit statuses are read by the arbiter: this one stops gunicorn ("Worker
# failed to boot") instead of starting the same failing worker again and again.
WORKER_BOOT_ERROR = 3

# With gunicorn's --timeout 0, how often a worker still checks that its arbiter is there.
IDLE_BEAT_S = 5.0

# Close codes (RFC 6455 §7.4.1).
GOING_AWAY = 1001
SERVICE_RESTART = 1012

# gunicorn setting -> asgiws option, for those that mean the same thing. Not here:
# limit_request_line and limit_request_field_size, at most 8190 bytes each in gunicorn: asgiws
# bounds the request line and the headers together (--h11-max-incomplete-event-size, 16 KiB by
# default, so any request line gunicorn accepts fits; ASGIWS_H11_MAX_INCOMPLETE_EVENT_SIZE sets
# it); bind and backlog (the arbiter's sockets are served as they are); workers, threads and
# worker_connections (one event loop per worker serves every connection).
SETTINGS: dict[str, str] = {
    "keepalive": "timeout_keep_alive",
    "graceful_timeout": "timeout_graceful_shutdown",
    "limit_request_fields": "max_header_count",
    "max_requests": "limit_max_requests",
    "max_requests_jitter": "limit_max_requests_jitter",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "forwarded_allow_ips": "forwarded_allow_ips",
}

# gunicorn settings that asgiws does not apply, with why, logged once by the arbiter when set.
NOT_APPLIED: dict[str, str] = {
    "proxy_protocol": "asgiws does not read the PROXY protocol",
    "ca_certs": "client certificates are not checked by asgiws",
    "ciphers": "asgiws uses Python's default TLS ciphers",
    "threads": "one event loop serves every connection of a worker",
}


def gunicorn_values(cfg: Any) -> dict[str, Any]:
    """asgiws option values from gunicorn's configuration ``cfg``, by option name."""
    values: dict[str, Any] = {
        "timeout_keep_alive": float(cfg.keepalive),
        "timeout_graceful_shutdown": float(cfg.graceful_timeout),
        # gunicorn trusts the proxy headers of peers on Unix sockets unconditionally.
        "forwarded_allow_ips": ",".join([*cfg.forwarded_allow_ips, "unix"]),
        # A worker stopped after --max-requests is replaced: its WebSockets are told to
        # reconnect. SIGTERM and SIGINT name their code themselves.
        "ws_shutdown_code": SERVICE_RESTART,
    }
    if cfg.limit_request_fields > 0:
        values["max_header_count"] = int(cfg.limit_request_fields)
    if cfg.max_requests > 0:
        values["limit_max_requests"] = int(cfg.max_requests)
        values["limit_max_requests_jitter"] = int(cfg.max_requests_jitter)
    if cfg.certfile:
        values["ssl_certfile"] = str(cfg.certfile)
        if cfg.keyfile:
            values["ssl_keyfile"] = str(cfg.keyfile)
    level = str(cfg.loglevel).lower()
    values["log_level"] = level if level in ("critical", "error", "warning", "debug") else "info"
    values["access_log"] = cfg.accesslog is not None
    return values


def _setting_name(option: Option) -> str:
    for setting, name in SETTINGS.items():
        if name == option.name:
            return f"gunicorn's {setting}"
    return f"the {option.name} derived from gunicorn's settings"


def worker_config(cfg: Any, environ: dict[str, str] | None = None) -> Config:
    """The asgiws :class:`Config` of a worker: gunicorn's settings, then ``ASGIWS_*`` variables
    for the rest, then defaults. Raises :class:`OptionError` naming the setting or variable."""
    return build_config(
        (gunicorn_values(cfg), _setting_name),
        (env_values(os.environ if environ is None else environ), lambda o: o.env),
    )


# -- Telling a SIGHUP restart from a shutdown ----------------------------------------------------
# The arbiter sends SIGTERM both to stop and, after a SIGHUP, to retire the old workers once new
# ones are started with the reloaded configuration. Worker objects are created in the arbiter,
# before the fork: when one is created with a configuration object other than the last one's, a
# reload happened, and its age (gunicorn numbers workers in the order they are started) is written
# to memory every worker shares. A worker older than that, told to stop, is being replaced.
_AGE = struct.Struct("=q")


class _Generation:
    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, _AGE.size)  # anonymous and shared: forked workers see it
        self.cfg: object | None = None

    def worker_created(self, cfg: object, age: int) -> None:
        if self.cfg is not None and cfg is not self.cfg:
            _AGE.pack_into(self.memory, 0, age)
        self.cfg = cfg

    def replaced(self, age: int) -> bool:
        first_new: int = _AGE.unpack_from(self.memory, 0)[0]
        return first_new > age


class AsgiwsWorker(Worker):  # type: ignore[misc]  # gunicorn has no type information
    """Serves the app gunicorn loaded, on gunicorn's sockets, in an asgiws server."""

    _generation: ClassVar[_Generation | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # in the arbiter, before the fork
        generation = AsgiwsWorker._generation
        if generation is None:
            generation = AsgiwsWorker._generation = _Generation()
        generation.worker_created(self.cfg, self.age)
        self.server: Any = None  # the asgiws server, while run() serves
        self._stopping = False
        self._quick_stop = False

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """In the arbiter at startup: refuse a configuration asgiws cannot serve, before any
        worker is started (gunicorn prints "Error: ..." and exits 1)."""
        try:
            worker_config(cfg)
        except OptionError as exc:
            raise RuntimeError(f"asgiws: {exc}") from None
        for setting, reason in NOT_APPLIED.items():
            known = cfg.settings.get(setting)
            if known is not None and known.value != known.default:
                log.warning("asgiws does not apply gunicorn's %s setting: %s", setting, reason)

    # -- in the worker process -----------------------------------------------------------------

    def init_signals(self) -> None:
        # gunicorn's handlers for SIGUSR1 (reopen log files), SIGABRT (the arbiter's timeout:
        # runs even while the loop is blocked) and SIGWINCH stay; SIGTERM, SIGINT and SIGQUIT
        # are the event loop's, installed in run().
        super().init_signals()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)

    def handle_abort(self, sig: int, frame: Any) -> None:
        # The arbiter's --timeout: this worker is killed, not shut down.
        self._stopping = True
        super().handle_abort(sig, frame)

    def run(self) -> None:
        try:
            config = worker_config(self.cfg)
        except OptionError as exc:  # the environment changed since check_config()
            self.log.error("asgiws: %s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        self._route_logs(config)
        from .runtime import loop_factory, tune_malloc

        tune_malloc(config.malloc_keep, config.ws_max_size)
        try:
            factory = loop_factory(config.loop)
        except ImportError:
            self.log.error("asgiws: --loop uvloop: uvloop is not installed")
            sys.exit(WORKER_BOOT_ERROR)
        with asyncio.Runner(loop_factory=factory) as runner:
            started, status = runner.run(self._serve(config))
        if not started:
            sys.exit(WORKER_BOOT_ERROR)
        if status != 0 and not self._quick_stop:  # a quick stop cancels by design
            sys.exit(status)

    def _route_logs(self, config: Config) -> None:
        """asgiws's loggers write where gunicorn's do (--error-logfile, --access-logfile)."""
        for name, target in (
            ("asgiws", self.log.error_log),
            ("asgiws.access", self.log.access_log),
        ):
            logger = logging.getLogger(name)
            logger.handlers = list(target.handlers)
            logger.propagate = False
        logging.getLogger("asgiws").setLevel(self.log.error_log.level)
        access = logging.getLogger("asgiws.access")
        access.setLevel(logging.INFO if config.access_log else logging.CRITICAL + 1)

    async def _serve(self, config: Config) -> tuple[bool, int]:
        from .asyncio.server import Server

        loop = asyncio.get_running_loop()
        server = self.server = Server(self.wsgi, config)
        loop.add_signal_handler(signal.SIGTERM, self._graceful)
        loop.add_signal_handler(signal.SIGINT, self._quick)
        loop.add_signal_handler(signal.SIGQUIT, self._quick)
        # gunicorn's --timeout 0 turns its check off; the arbiter is still looked for.
        heartbeat = _Heartbeat(loop, self.timeout or IDLE_BEAT_S, self._beat)
        try:
            status = await server.run([s.sock for s in self.sockets], signals=False)
        finally:
            heartbeat.cancel()
        return server.started.is_set(), status

    def _beat(self) -> None:
        """Every half --timeout, from the event loop: alive. Stop if the arbiter is gone or
        wants this worker gone (gunicorn's own --reload sets ``alive``)."""
        self.notify()
        if self.alive and os.getppid() != self.ppid:
            self.log.info("asgiws: the gunicorn arbiter (pid %s) is gone, shutting down", self.ppid)
            self._graceful()
        elif not self.alive:
            self._graceful()

    def _graceful(self) -> None:
        if self._stopping:
            return  # gunicorn's SIGTERM asks once; SIGQUIT is the quick way
        self._stopping = True
        generation = AsgiwsWorker._generation
        restart = generation is not None and generation.replaced(self.age)
        code = SERVICE_RESTART if restart else GOING_AWAY
        why = "replaced by a new worker" if restart else "stopping"
        self.log.info("asgiws: %s, graceful shutdown (WebSockets closed with %d)", why, code)
        self.alive = False
        self.server.stop(code)

    def _quick(self) -> None:
        self.log.info("asgiws: quick shutdown (WebSockets closed with %d)", GOING_AWAY)
        self.alive = False
        self._quick_stop = True
        self.cfg.worker_int(self)
        self.server.stop(GOING_AWAY)
        self.server.force()


class _Heartbeat:
    """Calls ``beat`` now and every ``interval`` seconds on ``loop`` until cancelled."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, beat: Callable[[], None]
    ) -> None:
        self.loop = loop
        self.interval = interval
        self.beat = beat
        self.handle: asyncio.TimerHandle | None = None
        self._tick()

    def _tick(self) -> None:
        self.beat()
        self.handle = self.loop.call_later(self.interval, self._tick)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
