"""What each scenario does and its defaults: the single place the parameters are written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Kind = Literal["stream", "handshakes", "idle", "http", "fanout", "held"]
MIB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    connections: int
    in_flight: int = 1  # messages outstanding per connection
    size: int = 32  # bytes per message
    text: bool = False  # text frames, otherwise binary
    duration: float = 10.0  # measured window, seconds
    warmup: float = 2.0  # traffic before the window opens, seconds
    unit: str = "msgs"  # what one operation is, for the table
    # http: the request method, and the app the scenario needs ("raw", "starlette",
    # "fastapi"); None: a WebSocket scenario, run by every server except the fastapi ones.
    method: str = "GET"
    app: str | None = None
    # held: echo clients measured while `connections` idle WebSockets are held open.
    active: int = 0
    # permessage-deflate offered as browsers offer it, servers started with it on, and the
    # messages JSON-like text (wsload's --json); stream scenarios on wsload only.
    deflate: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        return cls(**data)


DEFAULTS: dict[str, Scenario] = {
    "echo": Scenario("echo", "stream", connections=100, size=32, text=True),
    "pipelined": Scenario("pipelined", "stream", connections=10, in_flight=16, size=32),
    "large": Scenario("large", "stream", connections=4, size=MIB),
    "handshakes": Scenario("handshakes", "handshakes", connections=50, unit="handshakes"),
    "idle": Scenario("idle", "idle", connections=10_000, duration=3.0, warmup=0.0, unit="conns"),
    # HTTP/1.1 keep-alive on wrk; size is the request body (POST: Content-Length, read by the app).
    "http-get": Scenario("http-get", "http", connections=50, size=0, unit="requests", app="raw"),
    "http-post": Scenario(
        "http-post", "http", connections=50, size=1024, unit="requests", method="POST", app="raw"
    ),
    "starlette-http": Scenario(
        "starlette-http", "http", connections=50, size=0, unit="requests", app="starlette"
    ),
    "fastapi-http": Scenario(
        "fastapi-http", "http", connections=50, size=0, unit="requests", app="fastapi"
    ),
    # One publisher, `connections` subscribers, `in_flight` messages published and not yet
    # delivered to every subscriber; one op is one delivery (a message to one subscriber).
    "fanout": Scenario(
        "fanout",
        "fanout",
        connections=1000,
        in_flight=4,
        size=32,
        text=True,
        unit="deliveries",
        app="raw",
    ),
    # `connections` idle WebSockets held open (one echo each, then only the server's pings),
    # and `active` echo clients measured meanwhile as in `echo`. The window is longer than
    # the servers' 20 s ping interval, so every held connection is pinged inside it. On the
    # raw-app servers only: its target compares those, and each run takes about a minute.
    "idle+active": Scenario(
        "idle+active",
        "held",
        connections=10_000,
        active=100,
        text=True,
        duration=25.0,
        app="raw",
    ),
    # Echo with permessage-deflate, as a browser runs it: 32-byte and 4 KiB JSON-like text.
    # On the raw-app ASGI servers (the target's peers); the report keeps any that did not
    # negotiate deflate out of the comparison.
    "compressed-32": Scenario(
        "compressed-32", "stream", connections=100, size=32, text=True, app="raw", deflate=True
    ),
    "compressed-4k": Scenario(
        "compressed-4k", "stream", connections=100, size=4096, text=True, app="raw", deflate=True
    ),
}

# Names that stand for several scenarios in --scenarios and --connections.
GROUPS: dict[str, tuple[str, ...]] = {"compressed": ("compressed-32", "compressed-4k")}

# WebSocket scenarios run on every server but the fastapi variants (which exist for HTTP).
WS_APPS = ("raw", "starlette", "native")
# The raw app on asgiws with --ws-deflate-min-size 0: in the deflate scenarios only.
DEFLATE_ALL = "raw, every message compressed"
# The raw app on asgiws with Prometheus metrics on: where their cost is judged (and handshakes).
METRICS_ON = "raw, metrics on"
METRICS_SCENARIOS = ("echo", "pipelined", "handshakes")

# --quick: a smoke run of a few seconds per scenario.
QUICK: dict[str, dict[str, Any]] = {
    "echo": {"duration": 3.0, "warmup": 1.0},
    "pipelined": {"duration": 3.0, "warmup": 1.0},
    "large": {"duration": 3.0, "warmup": 1.0},
    "handshakes": {"duration": 3.0, "warmup": 1.0},
    "idle": {"connections": 1_000, "duration": 1.0},
    "http-get": {"duration": 3.0, "warmup": 1.0},
    "http-post": {"duration": 3.0, "warmup": 1.0},
    "starlette-http": {"duration": 3.0, "warmup": 1.0},
    "fastapi-http": {"duration": 3.0, "warmup": 1.0},
    "fanout": {"connections": 200, "duration": 3.0, "warmup": 1.0},
    "idle+active": {"connections": 1_000, "active": 20, "duration": 3.0, "warmup": 1.0},
    "compressed-32": {"duration": 3.0, "warmup": 1.0},
    "compressed-4k": {"duration": 3.0, "warmup": 1.0},
}


def expand(names: list[str]) -> list[str]:
    """Scenario names with each group replaced by its members, in order, each once."""
    out: list[str] = []
    for name in names:
        for member in GROUPS.get(name, (name,)):
            if member not in out:
                out.append(member)
    return out


def applies(scenario: Scenario, server_app: str) -> bool:
    """Whether a server running `server_app` takes part in this scenario."""
    if server_app == DEFLATE_ALL:
        return scenario.deflate
    if server_app == METRICS_ON:
        return scenario.name in METRICS_SCENARIOS
    if scenario.app is None:
        return server_app in WS_APPS
    return server_app == scenario.app


def build(
    names: list[str],
    *,
    quick: bool,
    duration: float | None,
    warmup: float | None,
    connections: dict[str, int],
) -> list[Scenario]:
    """The scenarios to run, defaults first, then --quick, then explicit flags."""
    chosen: list[Scenario] = []
    for name in names:
        scenario = DEFAULTS[name]
        if quick:
            scenario = replace(scenario, **QUICK[name])
        if duration is not None and scenario.kind != "idle":
            scenario = replace(scenario, duration=duration)
        if warmup is not None and scenario.kind != "idle":
            scenario = replace(scenario, warmup=warmup)
        if name in connections:
            scenario = replace(scenario, connections=connections[name])
        chosen.append(scenario)
    return chosen


def active_part(scenario: Scenario) -> Scenario:
    """A held scenario's echo clients, as the stream scenario either load generator runs."""
    if scenario.kind != "held":
        raise ValueError(f"{scenario.name!r} holds no idle connections")
    return replace(scenario, kind="stream", connections=scenario.active, active=0)
