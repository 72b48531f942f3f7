"""``--metrics-port``: one process's figures as plain numbers, and the Prometheus text built from
them (by prometheus_client, the optional ``metrics`` extra) when a scrape asks.

The counters are attributes of one :class:`Metrics` object that the server's connections add to
(:mod:`asgiws.asyncio.metered`): an attribute increment costs a few nanoseconds, where a
prometheus_client ``Counter.inc()`` takes a lock. Only a scrape turns them into metric families
(:func:`render`), so that the cost of metrics on stays in the connections' hooks, and metrics off
costs nothing: no :class:`Metrics` exists and the server uses the plain connection protocol.

Under ``--workers`` each worker's :meth:`Metrics.snapshot` (plain JSON) is fetched by the
supervisor at each scrape and the snapshots are added up (:func:`merge`); the figures that
matter per worker (open connections, loop lag) keep a ``worker`` label.

This module imports prometheus_client only in :func:`render`; :func:`missing_extra` tells the
CLI, before anything starts, that it is not installed.
"""

from __future__ import annotations

import importlib.util
from bisect import bisect_left
from typing import Any

from .protocol import AccessRecord

# The request duration histogram's upper bounds, in seconds (+Inf is added).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Always shown, at 0 until one happens, so that dashboards and alerts see the series.
REJECTION_STATUSES = (400, 403, 405, 426, 431, 503)
EXCEPTION_TYPES = ("http", "websocket", "lifespan")
# The close code of a session whose TCP connection went without a closing handshake.
ABNORMAL_CLOSURE = 1006


def missing_extra() -> str | None:
    """Why --metrics-port cannot be served here, or None when prometheus_client is installed."""
    if importlib.util.find_spec("prometheus_client") is None:
        return "--metrics-port needs prometheus_client: pip install 'asgiws[metrics]'"
    return None


class Metrics:
    """The figures of one server process. Counts are whole since the process started."""

    __slots__ = (
        "_loop_lag",
        "app_exceptions",
        "codec_class",
        "duration_buckets",
        "duration_sum",
        "http_open",
        "http_statuses",
        "lifespan_exceptions",
        "messages_in",
        "messages_out",
        "payload_in",
        "payload_out",
        "reading_paused",
        "rejections",
        "send_blocked",
        "sessions",
        "small_in",
        "small_out",
        "websocket_open",
        "wire_in",
        "wire_out",
    )

    def __init__(self) -> None:
        # Connections before (or without) an upgrade, and after a 101, as of the last snapshot.
        self.http_open = 0
        self.websocket_open = 0
        self.sessions: dict[int, int] = {}  # by close code
        self.rejections: dict[int, int] = dict.fromkeys(REJECTION_STATUSES, 0)  # by status
        self.http_statuses: dict[int, int] = {}  # by status (snapshot() adds up classes)
        # Counts per DURATION_BUCKETS bound (not cumulative), the last one for +Inf.
        self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.app_exceptions: dict[str, int] = dict.fromkeys(EXCEPTION_TYPES, 0)
        self.lifespan_exceptions = 0
        self.messages_in = 0
        self.messages_out = 0
        self.payload_in = 0  # message payload bytes, uncompressed
        self.payload_out = 0
        self.wire_in = 0  # WebSocket bytes as read and written: frames, compressed
        self.wire_out = 0
        # The payload sizes of the messages of one small frame each (a 7-bit length): the hot
        # path appends one small int (a cached object: nothing is allocated), which costs less
        # than adding to three counters; their number, sum and wire bytes (6 more each in,
        # masked, 2 more out) are added in by fold(), at each loop lag sample (4 a second)
        # and at each snapshot. Between two samples a list holds at most the messages of
        # 0.25 s, 8 bytes each.
        self.small_in: list[int] = []
        self.small_out: list[int] = []
        self.reading_paused = 0  # times reading paused: the app was behind
        self.send_blocked = 0.0  # seconds send() waited for a client's reading
        self._loop_lag = 0.0  # the last sample, seconds
        # The FrameCodec subclass that counts into these figures (asgiws.asyncio.metered).
        self.codec_class: Any = None

    def cycle_ended(self, record: AccessRecord, duration: float) -> None:
        """One request cycle's access record: a session, a rejection or an HTTP request."""
        kind = record.kind  # (not record.fields, which builds all the access line's fields)
        status = record.status
        if kind == "websocket":
            if status == 101:
                code = record.close_code
                if code is None:
                    code = ABNORMAL_CLOSURE
                self.sessions[code] = self.sessions.get(code, 0) + 1
            elif status is not None:
                self.rejections[status] = self.rejections.get(status, 0) + 1
            return
        if status is not None:  # (None: the client left before any answer, no request)
            # As MeteredConnectionProtocol.cycle_ended does it for a cycle the app ran.
            self.http_statuses[status] = self.http_statuses.get(status, 0) + 1
            self.duration_buckets[bisect_left(DURATION_BUCKETS, duration)] += 1
            self.duration_sum += duration

    @property
    def loop_lag(self) -> float:
        return self._loop_lag

    @loop_lag.setter
    def loop_lag(self, seconds: float) -> None:
        """The last loop lag sample, seconds: the probe listener's timer sets it 4 times a
        second, which is when the small messages are folded in too."""
        self._loop_lag = seconds
        self.fold()

    def fold(self) -> None:
        """Add the small messages (see ``small_in``) to the counts."""
        lengths = self.small_in
        if lengths:
            count, payload = len(lengths), sum(lengths)
            lengths.clear()  # the same list: the counting codec holds it
            self.messages_in += count
            self.payload_in += payload
            self.wire_in += payload + 6 * count
        lengths = self.small_out
        if lengths:
            count, payload = len(lengths), sum(lengths)
            lengths.clear()
            self.messages_out += count
            self.payload_out += payload
            self.wire_out += payload + 2 * count

    def http_requests(self) -> dict[str, int]:
        """The HTTP requests answered, by status class: "2xx"."""
        classes: dict[str, int] = {}
        for status, count in self.http_statuses.items():
            status_class = f"{status // 100}xx"
            classes[status_class] = classes.get(status_class, 0) + count
        return classes

    def app_failed(self, scope_type: str) -> None:
        self.app_exceptions[scope_type] = self.app_exceptions.get(scope_type, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready data (the keys of labelled counts as strings)."""
        self.fold()
        exceptions = dict(self.app_exceptions)
        exceptions["lifespan"] = exceptions.get("lifespan", 0) + self.lifespan_exceptions
        return {
            "connections_open": {"http": self.http_open, "websocket": self.websocket_open},
            "sessions": {str(k): v for k, v in self.sessions.items()},
            "rejections": {str(k): v for k, v in self.rejections.items()},
            "http_requests": self.http_requests(),
            "duration_buckets": list(self.duration_buckets),
            "duration_sum": self.duration_sum,
            "app_exceptions": exceptions,
            "messages": {"in": self.messages_in, "out": self.messages_out},
            "bytes": {
                "in": {"yes": self.wire_in, "no": self.payload_in},
                "out": {"yes": self.wire_out, "no": self.payload_out},
            },
            "reading_paused": self.reading_paused,
            "send_blocked_seconds": self.send_blocked,
            "loop_lag_seconds": self.loop_lag,
        }


def _add(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            _add(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value


def merge(snapshots: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The snapshots of several workers (by worker label) added up; the per-worker figures
    (open connections, loop lag) are kept by worker under ``per_worker``."""
    total: dict[str, Any] = {}
    per_worker: dict[str, dict[str, Any]] = {}
    for worker, snapshot in snapshots.items():
        per_worker[worker] = {
            "connections_open": snapshot["connections_open"],
            "loop_lag_seconds": snapshot["loop_lag_seconds"],
        }
        rest = {k: v for k, v in snapshot.items() if k not in per_worker[worker]}
        buckets = rest.pop("duration_buckets")
        before = total.get("duration_buckets", [0] * len(buckets))
        total["duration_buckets"] = [a + b for a, b in zip(before, buckets, strict=True)]
        _add(total, rest)
    total["per_worker"] = per_worker
    return total


def render(merged: dict[str, Any], restarts: int = 0) -> bytes:
    """The Prometheus text format of :func:`merge`'s result."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    families: list[Metric] = []
    open_ = GaugeMetricFamily(
        "asgiws_connections_open", "Connections open now.", labels=["type", "worker"]
    )
    lag = GaugeMetricFamily(
        "asgiws_event_loop_lag_seconds",
        "How late the event loop ran a timer, last sample: a busy or blocked worker.",
        labels=["worker"],
    )
    for worker, figures in sorted(merged.get("per_worker", {}).items()):
        for kind in ("http", "websocket"):
            open_.add_metric([kind, worker], figures["connections_open"].get(kind, 0))
        lag.add_metric([worker], figures["loop_lag_seconds"])
    families += [open_, lag]

    def counter(name: str, help_: str, label: str | None, values: Any) -> None:
        family = CounterMetricFamily(name, help_, labels=[label] if label else None)
        if label is None:
            family.add_metric([], values)
        else:
            for key, value in sorted(values.items(), key=lambda kv: str(kv[0])):
                family.add_metric([str(key)], value)
        families.append(family)

    counter(
        "asgiws_websocket_sessions",
        "WebSocket sessions ended, by close code (1006: the TCP connection went without a "
        "closing handshake).",
        "close_code",
        merged.get("sessions", {}),
    )
    counter(
        "asgiws_handshake_rejections",
        "WebSocket handshakes answered with an HTTP error instead of the 101, by status.",
        "status",
        merged.get("rejections", {}),
    )
    counter(
        "asgiws_websocket_messages",
        "WebSocket messages received and sent.",
        "direction",
        merged.get("messages", {"in": 0, "out": 0}),
    )
    wire = CounterMetricFamily(
        "asgiws_websocket_bytes",
        "WebSocket bytes: compressed='yes' as on the wire (frames, compressed), 'no' the "
        "messages' payload (uncompressed): their ratio is the compression ratio.",
        labels=["direction", "compressed"],
    )
    for direction, by in sorted(merged.get("bytes", {}).items()):
        for compressed, value in sorted(by.items()):
            wire.add_metric([direction, compressed], value)
    families.append(wire)
    counter(
        "asgiws_http_requests",
        "HTTP requests answered, by status class.",
        "status_class",
        merged.get("http_requests", {}),
    )
    buckets = merged.get("duration_buckets", [0] * (len(DURATION_BUCKETS) + 1))
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*DURATION_BUCKETS, float("inf")), buckets, strict=True):
        running += count
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
    histogram = HistogramMetricFamily(
        "asgiws_http_request_duration_seconds",
        "HTTP request cycles: from the app's start (the request head has come) to the end of "
        "its call.",
    )
    histogram.add_metric([], cumulative, merged.get("duration_sum", 0.0))
    families.append(histogram)
    counter(
        "asgiws_app_exceptions",
        "Exceptions raised by the app, by scope type.",
        "type",
        merged.get("app_exceptions", {}),
    )
    counter(
        "asgiws_reading_paused",
        "Times reading paused because the app was behind (back-pressure from the app).",
        None,
        merged.get("reading_paused", 0),
    )
    counter(
        "asgiws_send_blocked_seconds",
        "Seconds the app's send() waited for clients that read slowly (back-pressure from "
        "clients).",
        None,
        merged.get("send_blocked_seconds", 0.0),
    )
    counter(
        "asgiws_worker_restarts",
        "Worker processes replaced by the supervisor (--workers).",
        None,
        restarts,
    )

    class Families(Collector):
        def collect(self) -> Any:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    return generate_latest(registry)
