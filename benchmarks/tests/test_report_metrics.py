"""report.py's metrics-cost targets: asgiws+metrics against asgiws, echo and pipelined."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import report, scenarios, servers


def line(server: str, scenario: str, per_cpu_s: float) -> dict[str, Any]:
    known = servers.SERVERS[server]
    result = {
        "ok": True, "client": "wsload", "ops": 1000, "ops_per_s": per_cpu_s,
        "ops_per_server_cpu_s": per_cpu_s, "latency_ms": {"p50": 1.0, "p99": 2.0, "p99.9": 3.0},
        "client_cpu_share": 0.3,
    }  # fmt: skip
    return {
        "server": server, "asgi": known.asgi, "app": known.app, "round": 1,
        "scenario": scenarios.DEFAULTS[scenario].to_json(), "result": result,
    }  # fmt: skip


@pytest.mark.parametrize(("metered", "verdict"), [(97_000.0, "PASS"), (96_999.0, "FAIL")])
def test_metrics_on_must_stay_within_3_percent(metered: float, verdict: str) -> None:
    lines = [line("asgiws", "echo", 100_000.0), line("asgiws+metrics", "echo", metered)]
    found = {t.name: t for t in report.targets(report.summarize(lines))}
    echo = found["echo with metrics on >= 0.97x metrics off (msgs/CPU-s)"]
    assert echo.verdict == verdict
    assert echo.detail.startswith(f"asgiws+metrics {metered:,.0f} msgs/CPU-s vs asgiws 100,000")
    pipelined = found["pipelined with metrics on >= 0.97x metrics off (msgs/CPU-s)"]
    assert pipelined.verdict == "n/a"


def test_metrics_on_is_never_a_peer_and_runs_with_a_probe_port() -> None:
    metered = servers.SERVERS["asgiws+metrics"]
    assert metered.argv("/py", 1)[-2:] == ["--metrics-port", "0"]
    summary = report.summarize([line("asgiws+metrics", "echo", 1.0)])[0]
    assert not summary.comparable_peer
