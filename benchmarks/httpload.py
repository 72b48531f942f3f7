"""The HTTP scenarios' load generator: wrk, its Lua script, its output, and a first check.

wrk (Debian package `wrk`) keeps `connections` keep-alive HTTP/1.1 connections busy from one
thread. Its own counters check every response: a status of 400 or more ("Non-2xx or 3xx
responses") and socket errors (connect, read, write, timeout) are counted, and a run with any
of them fails the measurement. The benchmark apps answer 400 to a POST whose body they did
not read in full, so that check covers the body too. Before wrk starts, one request on a raw
socket checks the whole response (status 200, Content-Length, the exact body).

Standard library only: the parsing is tested without the bench venv.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.apps import HTTP_JSON, OK_BODY

NAME = "wrk"
WRK_TIMEOUT = 10  # seconds wrk waits for one response before it counts a timeout error
PROBE_TIMEOUT = 10.0  # seconds for the first check's connect and response
SUMMARY_MARK = "WRK-SUMMARY "
PERCENTILES = (50, 75, 90, 99)
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class WrkOutputError(Exception):
    """wrk's output lacks a figure the result needs."""


def available() -> str | None:
    return shutil.which(NAME)


def body_for(size: int) -> bytes:
    """The request body of a POST scenario: `size` bytes of printable text."""
    pattern = b"0123456789abcdefghijklmnopqrstuvwxyz"
    return (pattern * (size // len(pattern) + 1))[:size]


def expected_body(app: str) -> bytes:
    """What `GET /` answers with in the app a scenario runs (apps.py)."""
    if app == "raw":
        return OK_BODY
    return json.dumps(HTTP_JSON, separators=(",", ":")).encode()


def lua_script(method: str, body_size: int) -> str:
    """The wrk script: the request, and a done() that prints exact counts and p99.9."""
    lines = []
    if method != "GET" or body_size:
        body = body_for(body_size).decode()
        lines += [
            f'wrk.method = "{method}"',
            f'wrk.body = "{body}"',  # wrk.format adds Content-Length for a body
            'wrk.headers["Content-Type"] = "application/octet-stream"',
        ]
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        f'  io.write(string.format("{SUMMARY_MARK}{{\\"requests\\": %d, \\"duration_us\\": %d, '
        '\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"status\\": %d, '
        '\\"timeout\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"p999_us\\": %d}\\n", '
        "summary.requests, summary.duration, e.connect, e.read, e.write, e.status, "
        "e.timeout, latency:percentile(50), latency:percentile(99), "
        "latency:percentile(99.9)))",
        "end",
    ]
    return "\n".join(lines) + "\n"


def command(wrk: str, url: str, connections: int, seconds: float, script: Path) -> list[str]:
    """wrk on one thread (one core), whole seconds (wrk's -d takes no fractions)."""
    whole = max(1, round(seconds))
    return [
        wrk, "-t1", f"-c{connections}", f"-d{whole}s", "--latency",
        "--timeout", f"{WRK_TIMEOUT}s", "-s", str(script), url,
    ]  # fmt: skip


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float]  # p50, p75, p90, p99 from --latency; p99.9 from the script
    non_2xx: int = 0  # wrk counts statuses of 400 and over here
    socket_errors: dict[str, int] = field(default_factory=dict)
    summary: dict[str, int] | None = None  # the script's exact counts

    @property
    def errors(self) -> list[str]:
        """Every error wrk counted, in words; empty when every response was right."""
        found = []
        status = max(self.non_2xx, (self.summary or {}).get("status", 0))
        if status:
            found.append(f"{status} responses with status >= 400")
        counts = dict(self.socket_errors)
        for kind in ("connect", "read", "write", "timeout"):
            counts[kind] = max(counts.get(kind, 0), (self.summary or {}).get(kind, 0))
        found += [f"{n} socket {kind} errors" for kind, n in counts.items() if n]
        return found


_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.M)
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.M)
_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.M
)


def parse(text: str) -> WrkResult:
    """wrk's stdout (with --latency and the script above) as figures; raises WrkOutputError."""
    requests = _REQUESTS.search(text)
    rate = _RATE.search(text)
    if requests is None or rate is None:
        raise WrkOutputError(f"no request count or rate in wrk's output: {text[-300:]!r}")
    latency = {f"p{m[1]}": round(_ms(m[2], m[3]), 4) for m in _PERCENTILE.finditer(text)}
    if set(latency) != {f"p{p}" for p in PERCENTILES}:
        raise WrkOutputError(f"wrk printed no latency distribution (--latency): {text[-300:]!r}")
    result = WrkResult(
        requests=int(requests[1]),
        duration_s=_ms(requests[2], requests[3]) / 1000,
        requests_per_s=float(rate[1]),
        latency_ms=latency,
    )
    if (non_2xx := _NON_2XX.search(text)) is not None:
        result.non_2xx = int(non_2xx[1])
    if (sockets := _SOCKET.search(text)) is not None:
        kinds = ("connect", "read", "write", "timeout")
        result.socket_errors = {kind: int(sockets[i + 1]) for i, kind in enumerate(kinds)}
    for line in text.splitlines():
        if line.startswith(SUMMARY_MARK):
            summary = json.loads(line[len(SUMMARY_MARK) :])
            result.summary = {key: int(value) for key, value in summary.items()}
            result.latency_ms["p99.9"] = round(result.summary["p999_us"] / 1000, 4)
    return result


def probe(host: str, port: int, method: str, body_size: int, expected: bytes) -> str | None:
    """One request on a raw socket; None when the response is exactly right, else why not."""
    body = body_for(body_size)
    head = f"{method} / HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if method != "GET" or body_size:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
    request = head.encode() + b"Connection: close\r\n\r\n" + body
    data = b""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as conn:
            conn.sendall(request)
            while len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return f"first request failed: {type(exc).__name__}: {exc}"
    head_bytes, sep, content = data.partition(b"\r\n\r\n")
    if not sep or not head_bytes.startswith(b"HTTP/1.1 200 "):
        return f"first request: expected HTTP/1.1 200, got {data[:120]!r}"
    lengths = [
        line.split(b":", 1)[1].strip()
        for line in head_bytes.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    ]
    if lengths != [str(len(expected)).encode()] or content != expected:
        return f"first request: expected body {expected!r}, got {data[:200]!r}"
    return None


def result_fields(wrk: WrkResult) -> dict[str, Any]:
    """The parts of a results line that come from wrk itself."""
    return {
        "wrk_requests": wrk.requests,
        "wrk_duration_s": round(wrk.duration_s, 3),
        "wrk_requests_per_s": wrk.requests_per_s,
        "wrk_errors": wrk.errors,
        "latency_ms": {
            "p50": wrk.latency_ms["p50"],
            "p99": wrk.latency_ms["p99"],
            "p99.9": wrk.latency_ms.get("p99.9"),
        },
        "latency_dist_ms": wrk.latency_ms,
    }
