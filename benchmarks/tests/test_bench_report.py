"""The benchmark suite's verdict logic: medians, targets, tables, results files, /proc readings.

Result lines are synthetic but shaped like the ones `benchmarks/run.py` writes (the same keys,
the scenario parameters from `scenarios.DEFAULTS`, `asgi` and `app` from `servers.SERVERS`).
The /proc readings run on real child processes, each bounded in time and killed at the end.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.tooling
report = importlib.import_module("benchmarks.report")
procstat = importlib.import_module("benchmarks.procstat")
scenarios = importlib.import_module("benchmarks.scenarios")
servers = importlib.import_module("benchmarks.servers")


def _import_loadgen() -> types.ModuleType:
    """benchmarks.loadgen, for its pure helpers (percentiles_ms, window_result).

    It imports picows at the top for its Python clients. Where picows is not installed (the
    test venv has no reason to hold it), a placeholder stands in for the import only, and the
    module is then taken out of sys.modules again, so no other test sees either of them.
    """
    if importlib.util.find_spec("picows") is not None:
        return importlib.import_module("benchmarks.loadgen")
    placeholder = types.ModuleType("picows")
    placeholder.WSListener = type("WSListener", (), {})  # type: ignore[attr-defined]
    for name in ("WSCloseCode", "WSFrame", "WSMsgType", "WSTransport", "ws_connect"):
        setattr(placeholder, name, None)
    sys.modules["picows"] = placeholder
    try:
        module = importlib.import_module("benchmarks.loadgen")
    finally:
        del sys.modules["picows"]
        sys.modules.pop("benchmarks.loadgen", None)
        with contextlib.suppress(AttributeError):
            delattr(sys.modules["benchmarks"], "loadgen")
    return module


loadgen = _import_loadgen()

RUN_ID = "20261122T112033Z"
TARGET_NAMES = [
    "echo msgs/CPU-s >= 1.5x best ASGI peer",
    "pipelined msgs/CPU-s >= 1.5x best ASGI peer",
    "1 MiB echo msgs/s >= 95% of best server",
    "handshakes/s >= granian",
    "idle <= 8 KiB/conn",
    "echo p99 latency <= best ASGI peer",
]
ECHO, PIPELINED, LARGE, HANDSHAKES, IDLE, P99 = TARGET_NAMES
HTTP_TARGET_NAMES = [
    "http-get req/CPU-s >= 1.2x uvicorn",
    "http-post req/CPU-s >= 1.2x uvicorn",
    "starlette-http req/CPU-s >= 1.1x uvicorn",
    "fastapi-http req/CPU-s >= 1.1x uvicorn",
    "http-get p99 latency <= uvicorn",
    "http-post p99 latency <= uvicorn",
    "starlette-http p99 latency <= uvicorn",
    "fastapi-http p99 latency <= uvicorn",
    "fanout deliveries/CPU-s >= 1.5x best ASGI peer",
]
HELD_TARGET_NAMES = ["idle+active p99 latency <= best ASGI peer"]
COMPRESSED_TARGET_NAMES = [
    "compressed-32 msgs/CPU-s >= 1.5x best ASGI peer with deflate",
    "compressed-4k msgs/CPU-s >= 1.5x best ASGI peer with deflate",
]
METRICS_TARGET_NAMES = [
    "echo with metrics on >= 0.97x metrics off (msgs/CPU-s)",
    "pipelined with metrics on >= 0.97x metrics off (msgs/CPU-s)",
]
ALL_TARGET_NAMES = (
    TARGET_NAMES
    + HTTP_TARGET_NAMES
    + HELD_TARGET_NAMES
    + COMPRESSED_TARGET_NAMES
    + METRICS_TARGET_NAMES
)


# --- synthetic results lines ---------------------------------------------------------------


def stream(
    ops_per_s: float = 1000.0,
    per_cpu: float | None = None,
    *,
    p50: float = 1.0,
    p99: float = 2.0,
    p999: float = 3.0,
    client_share: float = 0.5,
    server_share: float = 0.99,
    client_bound: bool = False,
    saturated: bool = False,
    client: str = "wsload",
    client_per_op: float | None = 5.0,
    server_per_op: float = 10.0,
    sys_share: float = 0.9,
    ok: bool = True,
    error: str | None = None,
) -> dict[str, Any]:
    """A stream or handshakes result as loadgen.run_wsload returns it (per_cpu: ops_per_s)."""
    result: dict[str, Any] = {
        "client": client,
        "client_bound": client_bound,
        "client_build": "wsload-0123456789abcdef",
        "client_core_busy": client_share + 0.01,
        "client_core_saturated": saturated,
        "client_cpu_per_op_us": client_per_op,
        "client_cpu_s": client_share * 10,
        "client_cpu_share": client_share,
        "client_sys_share": sys_share,
        "latency_ms": {"p50": p50, "p99": p99, "p99.9": p999},
        "ok": ok,
        "ops": int(ops_per_s * 10),
        "ops_per_s": ops_per_s,
        "ops_per_server_cpu_s": ops_per_s if per_cpu is None else per_cpu,
        "server_core_busy": 0.996,
        "server_cpu_per_op_us": server_per_op,
        "server_cpu_s": server_share * 10,
        "server_cpu_share": server_share,
        "window_s": 10.0,
    }
    if error is not None:
        result["error"] = error
        result["wrong_echo"] = False
    return result


def idle(bytes_per_conn: float) -> dict[str, Any]:
    """An idle result as loadgen.run_idle returns it: no window, no latency."""
    return {
        "bytes_per_conn": bytes_per_conn,
        "client": "picows",
        "client_bound": False,
        "client_core_saturated": False,
        "held_cpu_s": 0.0,
        "ok": True,
        "open_s": 2.9,
        "ops": 10000,
        "rss_before_bytes": 31_000_000,
        "rss_held_bytes": int(31_000_000 + 10000 * bytes_per_conn),
    }


def failed(error: str | None = "load generator exit 1: boom") -> dict[str, Any]:
    """A measurement that never got a window (the server did not start, and the like)."""
    result: dict[str, Any] = {"ok": False, "client": "wsload"}
    if error is not None:
        result["error"] = error
    return result


def line(server: str, scenario: str, result: dict[str, Any], round_: int = 1) -> dict[str, Any]:
    """One results line, keyed as run.py writes it."""
    known = servers.SERVERS[server]
    versions = {"asgiws": "0.1.0", "granian": "2.8.7", "uvloop": "0.23.0", "picows": "2.3.1"}
    return {
        "app": known.app,
        "asgi": known.asgi,
        "asgiws_source": "24de7cf",
        "date": "2026-11-22T11:20:45+00:00",
        "machine": {"cores": 2, "cpu_model": "AMD EPYC", "kernel": "6.1", "memory_gib": 23.5},
        "packages": {name: versions.get(name) for name in known.packages},
        "python": "3.11.7",
        "quick": False,
        "result": result,
        "round": round_,
        "run_id": RUN_ID,
        "scenario": scenarios.DEFAULTS[scenario].to_json(),
        "server": server,
        "versions": versions,
    }


def by_name(targets: list[Any]) -> dict[str, Any]:
    return {target.name: target for target in targets}


def verdicts(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return by_name(report.targets(report.summarize(lines)))


def full_run(rounds: int = 1) -> list[dict[str, Any]]:
    """Every scenario for asgiws, two ASGI peers and a ceiling; every target met."""
    lines = []
    for round_ in range(1, rounds + 1):
        for server, echo, pipe, large, shakes, p99, kib in (
            ("asgiws", 20_000, 40_000, 3_000, 12_000, 1.5, 6.0),
            ("uvicorn-sansio", 10_000, 20_000, 1_800, 4_000, 2.0, 19.0),
            ("granian", 9_000, 5_000, 1_700, 10_000, 3.0, 148.0),
            ("picows-server", 30_000, 35_000, 2_500, 12_500, 1.0, 28.0),
        ):
            lines += [
                line(server, "echo", stream(echo, p99=p99), round_),
                line(server, "pipelined", stream(pipe), round_),
                line(server, "large", stream(large), round_),
                line(server, "handshakes", stream(shakes), round_),
                line(server, "idle", idle(kib * 1024), round_),
            ]
    return lines


def test_helper_lines_have_the_keys_of_a_real_results_line() -> None:
    real_keys = {
        "app",
        "asgi",
        "asgiws_source",
        "date",
        "machine",
        "packages",
        "python",
        "quick",
        "result",
        "round",
        "run_id",
        "scenario",
        "server",
        "versions",
    }
    made = line("asgiws", "echo", stream())
    assert set(made) == real_keys
    assert made["scenario"]["name"] == "echo"
    assert made["asgi"] is True and made["app"] == "raw"
    assert line("picows-server", "idle", idle(1.0))["asgi"] is False


# --- summarize -------------------------------------------------------------------------------


def test_medians_over_an_odd_number_of_rounds() -> None:
    values = [
        (100.0, 90.0, 1.0, 3.0, 9.0, 0.3),
        (300.0, 310.0, 3.0, 1.0, 7.0, 0.9),
        (200.0, 205.0, 2.0, 2.0, 8.0, 0.6),
    ]
    lines = [
        line(
            "asgiws",
            "echo",
            stream(ops, cpu, p50=p50, p99=p99, p999=p999, client_share=share),
            round_,
        )
        for round_, (ops, cpu, p50, p99, p999, share) in enumerate(values, 1)
    ]
    (summary,) = report.summarize(lines)
    assert summary.rounds == 3
    assert summary.ops_per_s == 200.0
    assert summary.ops_per_cpu_s == 205.0
    assert (summary.p50, summary.p99, summary.p999) == (2.0, 2.0, 8.0)
    assert summary.client_share == 0.6
    assert summary.server_share == 0.99
    assert summary.bytes_per_conn is None
    assert summary.failures == []


def test_medians_over_an_even_number_of_rounds_average_the_middle_two() -> None:
    lines = [
        line("asgiws", "echo", stream(ops, ops * 2, p99=p99), round_)
        for round_, (ops, p99) in enumerate(
            [(100.0, 4.0), (400.0, 1.0), (200.0, 2.0), (300.0, 8.0)], 1
        )
    ]
    lines += [line("asgiws", "idle", idle(b), r) for r, b in enumerate([6000, 7000], 1)]
    echo, idle_summary = report.summarize(lines)
    assert echo.rounds == 4
    assert echo.ops_per_s == 250.0
    assert echo.ops_per_cpu_s == 500.0
    assert echo.p99 == 3.0
    assert idle_summary.bytes_per_conn == 6500.0
    assert idle_summary.p99 is None and idle_summary.ops_per_s is None


def test_failed_rounds_are_left_out_of_medians_and_listed() -> None:
    lines = [
        line("asgiws", "echo", stream(100.0, p99=1.0), 1),
        # A failed run that still measured a window (wsload's wrong echo): its figures must
        # not count, however far off they are.
        line(
            "asgiws",
            "echo",
            stream(
                1e9,
                p99=1e6,
                client_bound=True,
                saturated=True,
                ok=False,
                error="wrong echo on connection 3",
            ),
            2,
        ),
        line("asgiws", "echo", stream(200.0, p99=2.0), 3),
        line("asgiws", "echo", failed(None), 4),
        line("asgiws", "echo", stream(300.0, p99=3.0), 5),
    ]
    (summary,) = report.summarize(lines)
    assert summary.rounds == 3
    assert summary.ops_per_s == 200.0
    assert summary.p99 == 2.0
    assert summary.failures == ["round 2: wrong echo on connection 3", "round 4: failed"]
    assert summary.client_bound == 0
    assert summary.client_core_saturated == 0


def test_a_pair_whose_every_round_failed_has_no_figures() -> None:
    lines = [line("granian", "echo", failed("granian exited"), r) for r in (1, 2)]
    (summary,) = report.summarize(lines)
    assert summary.rounds == 0
    assert summary.ops_per_s is None and summary.ops_per_cpu_s is None and summary.p99 is None
    assert summary.failures == ["round 1: granian exited", "round 2: granian exited"]


def test_missing_figures_in_good_rounds_are_skipped_not_zero() -> None:
    lines = [
        line("asgiws", "echo", stream(100.0, 50.0), 1),
        line("asgiws", "echo", stream(200.0, 70.0), 2),
        line("asgiws", "echo", stream(300.0, 90.0), 3),
    ]
    lines[1]["result"]["ops_per_server_cpu_s"] = None  # no server CPU measured in round 2
    (summary,) = report.summarize(lines)
    assert summary.ops_per_s == 200.0
    assert summary.ops_per_cpu_s == 70.0  # median of 50 and 90


def test_client_bound_and_saturated_rounds_are_counted() -> None:
    flags = [(True, False), (False, True), (True, False), (False, False)]
    lines = [
        line("asgiws", "pipelined", stream(client_bound=b, saturated=s), r)
        for r, (b, s) in enumerate(flags, 1)
    ]
    (summary,) = report.summarize(lines)
    assert summary.client_bound == 2
    assert summary.client_core_saturated == 1


def test_order_is_scenario_order_then_servers_as_first_seen() -> None:
    lines = [
        line("granian", "idle", idle(1000.0)),
        line("picows-server", "large", stream()),
        line("granian", "echo", stream()),
        line("asgiws", "echo", stream()),
        line("picows-server", "handshakes", stream()),
        line("asgiws", "pipelined", stream()),
        line("picows-server", "echo", stream()),
        line("asgiws", "idle", idle(1000.0)),
        line("granian", "pipelined", stream()),
    ]
    unknown = line("asgiws", "echo", stream())
    unknown["scenario"] = {**unknown["scenario"], "name": "mystery"}
    lines.insert(4, unknown)
    order = [(s.scenario, s.server) for s in report.summarize(lines)]
    # Servers rank by where they first appear in the file, whatever the scenario: asgiws is
    # not put first for being the reference.
    assert order == [
        ("echo", "granian"),
        ("echo", "picows-server"),
        ("echo", "asgiws"),
        ("pipelined", "granian"),
        ("pipelined", "asgiws"),
        ("large", "picows-server"),
        ("handshakes", "picows-server"),
        ("idle", "granian"),
        ("idle", "asgiws"),
        ("mystery", "asgiws"),
    ]
    assert report.WS_SCENARIOS == ("echo", "pipelined", "large", "handshakes", "idle")
    assert (
        *report.WS_SCENARIOS,
        *report.HTTP_SCENARIOS,
        "fanout",
        "idle+active",
        "compressed-32",
        "compressed-4k",
    ) == report.SCENARIO_ORDER


def test_comparable_peer_is_a_raw_asgi_server_other_than_asgiws() -> None:
    names = [
        "asgiws",
        "asgiws+starlette",
        "uvicorn-sansio",
        "uvicorn-sansio+starlette",
        "hypercorn",
        "granian",
        "granian+starlette",
        "websockets-server",
        "picows-server",
    ]
    summaries = report.summarize([line(name, "echo", stream()) for name in names])
    peers = {s.server for s in summaries if s.comparable_peer}
    assert peers == {"uvicorn-sansio", "hypercorn", "granian"}
    assert {s.server: (s.asgi, s.app) for s in summaries}["picows-server"] == (False, "native")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 10**6)), min_size=1, max_size=9))
def test_median_property(rounds: list[tuple[bool, int]]) -> None:
    lines = [
        line("asgiws", "echo", stream(float(v)) if ok else stream(float(v), ok=False, error="x"), r)
        for r, (ok, v) in enumerate(rounds, 1)
    ]
    (summary,) = report.summarize(lines)
    good = [float(v) for ok, v in rounds if ok]
    assert summary.rounds == len(good)
    assert len(summary.failures) == len(rounds) - len(good)
    assert summary.ops_per_s == (statistics.median(good) if good else None)


# --- targets ---------------------------------------------------------------------------------


def test_every_target_is_judged_in_this_order() -> None:
    results = report.targets(report.summarize(full_run(rounds=3)))
    assert [t.name for t in results] == ALL_TARGET_NAMES
    # No http, fanout, idle+active or compressed scenario and no asgiws+metrics in that run:
    # their targets say so.
    assert [t.verdict for t in results] == ["PASS"] * 6 + ["n/a"] * 14


def test_nothing_measured_gives_n_a_everywhere() -> None:
    results = by_name(report.targets([]))
    assert {t.verdict for t in results.values()} == {"n/a"}
    assert results[ECHO].detail == "asgiws not measured in echo"
    assert results[PIPELINED].detail == "asgiws not measured in pipelined"
    assert results[LARGE].detail == "asgiws not measured in large"
    assert results[HANDSHAKES].detail == "asgiws or granian not measured"
    assert results[IDLE].detail == "asgiws not measured in idle"
    assert results[P99].detail == "asgiws not measured in echo"


def per_cpu_run(scenario: str, mine: float) -> list[dict[str, Any]]:
    """asgiws against three raw ASGI peers (uvicorn-sansio the best of them, per CPU-s), and
    ceilings and Starlette variants that are all faster than that."""
    return [
        line("asgiws", scenario, stream(1.0, mine)),
        # msgs/s is not what this target compares: a peer fast per second, slow per CPU-s.
        line("uvicorn-sansio", scenario, stream(99_000.0, 10_000.0)),
        line("hypercorn", scenario, stream(1.0, 8_000.0)),
        line("granian", scenario, stream(1.0, 9_999.0)),
        line("picows-server", scenario, stream(1.0, 50_000.0)),
        line("websockets-server", scenario, stream(1.0, 40_000.0)),
        line("asgiws+starlette", scenario, stream(1.0, 30_000.0)),
        line("uvicorn-sansio+starlette", scenario, stream(1.0, 20_000.0)),
    ]


@pytest.mark.parametrize(("scenario", "name"), [("echo", ECHO), ("pipelined", PIPELINED)])
@pytest.mark.parametrize(
    ("mine", "verdict", "ratio"),
    [(15_100.0, "PASS", "1.51"), (15_000.0, "PASS", "1.50"), (14_900.0, "FAIL", "1.49")],
)
def test_per_cpu_targets_against_the_best_raw_asgi_peer(
    scenario: str, name: str, mine: float, verdict: str, ratio: str
) -> None:
    target = verdicts(per_cpu_run(scenario, mine))[name]
    assert target.verdict == verdict
    assert target.detail == (
        f"asgiws {mine:,.0f} msgs/CPU-s vs uvicorn-sansio 10,000 (ratio {ratio}, needs >= 1.5)"
    )


@pytest.mark.parametrize("mine", [15_100.0, 14_900.0])
def test_faster_ceilings_and_variants_do_not_move_the_echo_verdict(mine: float) -> None:
    lines = per_cpu_run("echo", mine)
    raw_peers_only = [
        ln for ln in lines if ln["server"] in ("asgiws", "uvicorn-sansio", "hypercorn", "granian")
    ]
    with_others = verdicts(lines)
    alone = verdicts(raw_peers_only)
    assert with_others[ECHO] == alone[ECHO]
    assert with_others[P99] == alone[P99]
    # ... and with only those others around, there is no peer at all.
    only_others = [
        ln for ln in lines if ln["server"] not in ("uvicorn-sansio", "hypercorn", "granian")
    ]
    assert verdicts(only_others)[ECHO].verdict == "n/a"
    assert verdicts(only_others)[ECHO].detail == "no peer measured"


def test_a_peer_with_only_failed_rounds_is_not_the_best() -> None:
    lines = per_cpu_run("echo", 15_100.0)
    lines += [line("uvicorn-wsproto", "echo", stream(1.0, 1e9, ok=False, error="died"))]
    assert verdicts(lines)[ECHO].verdict == "PASS"
    failing_peers = [line("asgiws", "echo", stream(1.0, 15_100.0))] + [
        line(name, "echo", failed()) for name in ("uvicorn-sansio", "granian")
    ]
    assert verdicts(failing_peers)[ECHO].verdict == "n/a"
    assert verdicts(failing_peers)[ECHO].detail == "no peer measured"


def test_asgiws_with_only_failed_rounds_is_not_measured() -> None:
    lines = [ln for ln in per_cpu_run("echo", 15_100.0) if ln["server"] != "asgiws"]
    lines.append(line("asgiws", "echo", stream(1.0, 1e9, ok=False, error="wrong echo")))
    target = verdicts(lines)[ECHO]
    assert (target.verdict, target.detail) == ("n/a", "asgiws not measured in echo")


def test_per_cpu_target_uses_the_median_of_rounds() -> None:
    lines = [
        line("asgiws", "echo", stream(1.0, v), r)
        for r, v in enumerate([30_000.0, 14_000.0, 14_500.0], 1)
    ]
    lines += [
        line("granian", "echo", stream(1.0, v), r)
        for r, v in enumerate([10_000.0, 9_000.0, 1_000.0], 1)
    ]
    target = verdicts(lines)[ECHO]
    # medians 14,500 vs 9,000: 1.61
    assert target.verdict == "PASS"
    assert target.detail == "asgiws 14,500 msgs/CPU-s vs granian 9,000 (ratio 1.61, needs >= 1.5)"


def large_run(mine: float, best_server: str, best: float) -> list[dict[str, Any]]:
    lines = [
        line("asgiws", "large", stream(mine, 1.0)),
        line("uvicorn-sansio", "large", stream(500.0, 99_999.0)),
        line("granian", "large", stream(400.0, 1.0)),
    ]
    lines.append(line(best_server, "large", stream(best, 1.0)))
    return lines


@pytest.mark.parametrize(
    "best_server", ["picows-server", "websockets-server", "asgiws+starlette", "granian+starlette"]
)
@pytest.mark.parametrize(
    ("mine", "verdict", "ratio"),
    [(3_000.0, "PASS", "1.50"), (1_920.0, "PASS", "0.96"), (1_880.0, "FAIL", "0.94")],
)
def test_large_target_against_the_best_server_ceilings_and_variants_included(
    best_server: str, mine: float, verdict: str, ratio: str
) -> None:
    target = verdicts(large_run(mine, best_server, 2_000.0))[LARGE]
    assert target.verdict == verdict
    assert target.detail == (
        f"asgiws {mine:,.0f} msgs/s vs {best_server} 2,000 (ratio {ratio}, needs >= 0.95)"
    )


def test_large_target_compares_msgs_per_second_not_per_cpu() -> None:
    # uvicorn-sansio is far ahead per CPU-s but behind per second: it is not the best here.
    target = verdicts(large_run(1_000.0, "picows-server", 100.0))[LARGE]
    assert target.verdict == "PASS"
    assert target.detail.endswith("vs uvicorn-sansio 500 (ratio 2.00, needs >= 0.95)")


def test_large_target_with_figures_under_100_keeps_two_decimals() -> None:
    lines = [line("asgiws", "large", stream(48.0)), line("picows-server", "large", stream(50.0))]
    target = verdicts(lines)[LARGE]
    assert (target.verdict, target.detail) == (
        "PASS",
        "asgiws 48.00 msgs/s vs picows-server 50.00 (ratio 0.96, needs >= 0.95)",
    )


@pytest.mark.parametrize(
    ("mine", "verdict", "ratio"),
    [(10_100.0, "PASS", "1.01"), (10_000.0, "PASS", "1.00"), (9_900.0, "FAIL", "0.99")],
)
def test_handshakes_target_is_against_granian_only(mine: float, verdict: str, ratio: str) -> None:
    lines = [
        line("asgiws", "handshakes", stream(mine, 1.0)),
        line("granian", "handshakes", stream(10_000.0, 1.0)),
        # Faster servers that are not granian change nothing.
        line("picows-server", "handshakes", stream(50_000.0)),
        line("uvicorn-sansio", "handshakes", stream(40_000.0)),
        line("granian+starlette", "handshakes", stream(30_000.0)),
    ]
    target = verdicts(lines)[HANDSHAKES]
    assert target.verdict == verdict
    assert target.detail == f"asgiws {mine:,.0f}/s vs granian 10,000/s (ratio {ratio})"


def test_handshakes_target_needs_both_measured() -> None:
    only_asgiws = [
        line("asgiws", "handshakes", stream(10_000.0)),
        line("granian+starlette", "handshakes", stream(1.0)),
    ]
    only_granian = [
        line("granian", "handshakes", stream(10_000.0)),
        line("asgiws", "handshakes", failed()),
    ]
    for lines in (only_asgiws, only_granian):
        target = verdicts(lines)[HANDSHAKES]
        assert (target.verdict, target.detail) == ("n/a", "asgiws or granian not measured")


@pytest.mark.parametrize(
    ("kib", "verdict", "detail"),
    [(7.9, "PASS", "7.9 KiB/conn"), (8.0, "PASS", "8.0 KiB/conn"), (8.1, "FAIL", "8.1 KiB/conn")],
)
def test_idle_target_at_8_kib_per_connection(kib: float, verdict: str, detail: str) -> None:
    lines = [
        line("asgiws", "idle", idle(kib * 1024)),
        line("picows-server", "idle", idle(1.0)),  # others' memory does not matter
        line("asgiws+starlette", "idle", idle(1.0)),
    ]
    target = verdicts(lines)[IDLE]
    assert (target.verdict, target.detail) == (verdict, detail)


def test_idle_target_on_the_median_and_n_a_without_asgiws() -> None:
    lines = [
        line("asgiws", "idle", idle(kib * 1024), r) for r, kib in enumerate([20.0, 7.0, 7.5], 1)
    ]
    assert verdicts(lines)[IDLE].verdict == "PASS"
    target = verdicts([line("granian", "idle", idle(1.0))])[IDLE]
    assert (target.verdict, target.detail) == ("n/a", "asgiws not measured in idle")


@pytest.mark.parametrize(
    ("mine", "verdict", "ratio"),
    [(1.98, "PASS", "0.99"), (2.0, "PASS", "1.00"), (2.02, "FAIL", "1.01")],
)
def test_echo_p99_target_against_the_lowest_raw_asgi_peer(
    mine: float, verdict: str, ratio: str
) -> None:
    lines = [
        line("asgiws", "echo", stream(p99=mine)),
        line("hypercorn", "echo", stream(p99=3.0)),
        line("uvicorn-sansio", "echo", stream(p99=2.0)),
        line("granian", "echo", stream(p99=2.5)),
        # Lower latency, but not comparable peers: none of them sets the bar.
        line("picows-server", "echo", stream(p99=0.5)),
        line("websockets-server", "echo", stream(p99=0.6)),
        line("asgiws+starlette", "echo", stream(p99=0.7)),
        line("uvicorn-sansio+starlette", "echo", stream(p99=0.8)),
        line("uvicorn-wsproto", "echo", stream(p99=0.1, ok=False, error="died")),
    ]
    target = verdicts(lines)[P99]
    assert target.verdict == verdict
    assert target.detail == (
        f"asgiws {mine:.2f} ms vs uvicorn-sansio 2.00 (ratio {ratio}, needs <= 1)"
    )


def test_p99_target_without_latency_is_n_a() -> None:
    lines = [line("asgiws", "echo", stream()), line("granian", "echo", stream())]
    lines[0]["result"]["latency_ms"] = {"p50": None, "p99": None, "p99.9": None}
    target = verdicts(lines)[P99]
    assert (target.verdict, target.detail) == ("n/a", "asgiws not measured in echo")


# --- tables and the client verdict -------------------------------------------------------------


def test_client_verdict_names_the_client_bound_pairs() -> None:
    lines = [
        line("picows-server", "echo", stream(client_bound=True, client_share=0.97)),
        line("asgiws", "pipelined", stream(client_bound=True, client_share=0.95)),
        line("asgiws", "pipelined", stream(client_bound=True, client_share=0.93), 2),
        line("asgiws", "echo", stream(client_share=0.6)),
        line("asgiws", "idle", idle(6000.0)),
    ]
    text = report.client_verdict(lines)
    assert text.startswith(
        "Load generator (wsload): highest share of its core 97% (bound at >= 90%). "
    )
    assert "It WAS the bottleneck in: asgiws/pipelined, picows-server/echo; " in text
    assert "asgiws/echo" not in text
    assert "never" not in text


def test_client_verdict_when_never_bound() -> None:
    lines = [
        line("asgiws", "echo", stream(client_share=0.42, client="picows")),
        line("granian", "echo", stream(client_share=0.40)),
    ]
    text = report.client_verdict(lines)
    assert text.startswith("Load generator (picows, wsload): highest share of its core 42%")
    assert "It was never the bottleneck." in text
    assert "WAS" not in text and "other load filled" not in text


def test_client_verdict_cost_ratios_and_starved_runs() -> None:
    lines = [
        line("asgiws", "echo", stream(client_per_op=5.0, server_per_op=10.0, sys_share=0.9)),
        line(
            "granian",
            "echo",
            stream(client_per_op=3.0, server_per_op=10.0, sys_share=0.5, saturated=True),
        ),
        line("hypercorn", "echo", stream(client_per_op=None, server_per_op=10.0)),  # not counted
    ]
    text = report.client_verdict(lines)
    # whole: median(0.5, 0.3); user space: median(0.5 * 0.1, 0.3 * 0.5)
    assert "Client CPU per op / server CPU per op, median: 0.40 in all, 0.10 in user space" in text
    assert "In 1 of 3 runs other load filled the client's core" in text


def test_client_verdict_without_windows_or_client_names() -> None:
    assert report.client_verdict([line("asgiws", "idle", idle(6000.0))]) == (
        "Load generator: no windowed measurements."
    )
    old = line("asgiws", "echo", stream(client_share=0.5))
    del old["result"]["client"]  # results from before wsload.c do not say
    assert report.client_verdict([old]).startswith("Load generator: highest share of its core 50%")


def test_client_verdict_ignores_failed_rounds() -> None:
    lines = [
        line("asgiws", "echo", stream(client_share=0.5)),
        line(
            "granian",
            "echo",
            stream(client_bound=True, client_share=0.99, ok=False, error="wrong echo"),
        ),
    ]
    text = report.client_verdict(lines)
    assert "granian/echo" not in text
    assert "It was never the bottleneck." in text


def text_rows(text: str) -> list[list[str]]:
    """The table rows of render_text: lines that start with a scenario name."""
    return [
        row.split()
        for row in text.splitlines()
        if row.split() and row.split()[0] in report.SCENARIO_ORDER
    ]


def test_render_text_one_row_per_scenario_and_server() -> None:
    lines = full_run(rounds=3)
    lines.append(line("granian", "echo", failed("granian exited"), 4))
    text = report.render_text(lines)
    rows = text_rows(text)
    pairs = [(row[0], row[1]) for row in rows]
    expected = [
        (scenario, server)
        for scenario in report.WS_SCENARIOS
        for server in ("asgiws", "uvicorn-sansio", "granian", "picows-server")
    ]
    assert pairs == expected
    assert all(row[2] == "3" for row in rows)  # rounds that measured correctly
    echo_rows = {row[1]: " ".join(row) for row in rows if row[0] == "echo"}
    assert "FAILED 1x: round 4: granian exited" in echo_rows["granian"]
    assert "ceiling, not ASGI" in echo_rows["picows-server"]
    assert "ceiling" not in echo_rows["asgiws"]
    # Ratios to asgiws: uvicorn-sansio 10,000 vs 20,000.
    assert echo_rows["uvicorn-sansio"].startswith("echo uvicorn-sansio 3 10,000 10,000 0.50x 0.50x")
    assert echo_rows["asgiws"].startswith("echo asgiws 3 20,000 20,000 1.00x 1.00x 1.00 1.50 3.00")
    assert " ".join(next(r for r in rows if r[:2] == ["idle", "granian"])) == (
        "idle granian 3 - - - - - - - 148.0 -"
    )
    # A blank line between scenarios, none inside one.
    table = text[: text.index(report.LEGEND)].strip().split("\n\n")
    groups = [
        {row.split()[0] for row in group.splitlines()[2 if i == 0 else 0 :]}
        for i, group in enumerate(table)
    ]
    assert groups == [{scenario} for scenario in report.WS_SCENARIOS]


def test_render_text_has_the_targets_and_the_client_verdict() -> None:
    lines = full_run()
    text = report.render_text(lines)
    assert "Targets (informational; asgiws vs peers, medians of this run):" in text
    for target in report.targets(report.summarize(lines)):
        assert f"  {target.verdict:<4}  {target.name}: {target.detail}" in text.splitlines()
    assert text.splitlines()[-1] == report.client_verdict(lines)
    assert report.LEGEND in text


def test_tables_note_client_bound_rounds_and_name_the_pair() -> None:
    lines = [
        line("asgiws", "pipelined", stream(client_bound=b), r)
        for r, b in enumerate([True, True, False], 1)
    ]
    lines.append(line("granian", "pipelined", stream(client_share=0.5)))
    text = report.render_text(lines)
    rows = {row[1]: " ".join(row) for row in text_rows(text)}
    assert rows["asgiws"].endswith("CLIENT-BOUND in 2 round(s)")
    assert "CLIENT-BOUND" not in rows["granian"]
    bottleneck = "It WAS the bottleneck in: asgiws/pipelined; those figures understate the server."
    assert bottleneck in text
    markdown = report.render_markdown(lines)
    assert bottleneck in markdown
    (row,) = [row for row in markdown_rows(markdown) if row[:2] == ["pipelined", "asgiws"]]
    assert row[-1] == "CLIENT-BOUND in 2 round(s)"


def test_render_text_of_nothing() -> None:
    text = report.render_text([])
    assert "Load generator: no windowed measurements." in text


def markdown_rows(text: str) -> list[list[str]]:
    rows = []
    for row in text.splitlines():
        if row.startswith("| ") and row.endswith(" |"):
            rows.append([cell.strip() for cell in row[2:-2].split(" | ")])
    return rows


def test_render_markdown_rows_targets_and_header() -> None:
    lines = full_run(rounds=2)
    # run.py joins the load generator's stderr tail with " | ": it must not add columns.
    lines.append(line("uvicorn-sansio", "idle", failed("load generator exit 1: a | b | c"), 3))
    text = report.render_markdown(lines)
    first = text.splitlines()[0]
    assert first.startswith(f"Run {RUN_ID} on AMD EPYC (2 cores), Python 3.11.7; ")
    rows = markdown_rows(text)
    header, table, target_rows = rows[0], rows[1:21], rows[22:]
    assert header[:3] == ["scenario", "server", "rounds"] and len(header) == 13
    assert all(len(row) == 13 for row in table)
    assert [(row[0], row[1]) for row in table] == [
        (scenario, server)
        for scenario in report.WS_SCENARIOS
        for server in ("asgiws", "uvicorn-sansio", "granian", "picows-server")
    ]
    failed_row = next(row for row in table if row[:2] == ["idle", "uvicorn-sansio"])
    assert failed_row[-1] == "FAILED 1x: round 3: load generator exit 1: a / b / c"
    assert rows[21] == ["target", "verdict", "detail"]
    expected = report.targets(report.summarize(lines))
    assert target_rows == [[t.name, t.verdict, t.detail] for t in expected]
    assert [row[0] for row in target_rows] == ALL_TARGET_NAMES
    assert "|---|---|---|" in text.splitlines()
    assert "Versions: asgiws 0.1.0, granian 2.8.7, picows 2.3.1, uvloop 0.23.0" in text
    assert text.splitlines()[-1] == report.client_verdict(lines)


def test_render_markdown_of_nothing() -> None:
    text = report.render_markdown([])
    assert text.startswith("Run ? on ? (? cores), Python ?; ")
    assert "| target | verdict | detail |" in text
    assert text.count("| n/a |") == len(ALL_TARGET_NAMES)


def test_ratios_are_dashes_without_asgiws() -> None:
    header, rows = report.table_rows(report.summarize([line("granian", "echo", stream(500.0))]))
    assert header[5:7] == ["ops/s ÷ asgiws", "per-CPU-s ÷ asgiws"]
    assert rows[0][:7] == ["echo", "granian", "1", "500", "500", "-", "-"]


# --- results files -----------------------------------------------------------------------------


def test_append_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "results" / "deeper" / f"{RUN_ID}.jsonl"
    written = [line("asgiws", "echo", stream(123.4)), line("granian", "idle", idle(7000.5), 2)]
    for one_line in written:
        report.append(path, one_line)
    raw = path.read_text().splitlines()
    assert len(raw) == 2
    assert raw[0] == json.dumps(written[0], sort_keys=True)
    with path.open("a") as out:
        out.write("\n   \n")  # blank lines are skipped
    report.append(path, written[0])
    assert report.load(path) == [*written, written[0]]
    assert report.summarize(report.load(path))[0].ops_per_s == 123.4


def test_latest_picks_the_newest_run_id(tmp_path: Path) -> None:
    assert report.latest(tmp_path) is None
    (tmp_path / "notes.txt").write_text("not results")
    assert report.latest(tmp_path) is None
    names = [
        "20261122T050458Z.jsonl",
        "20261122T094818Z.jsonl",
        "20261122T055300Z-quick-quiet.jsonl",
        "20261121T235959Z.jsonl",
    ]
    for index, name in enumerate(names):
        (tmp_path / name).write_text("")
        # Modification times run against the names: the name decides, not the clock.
        os.utime(tmp_path / name, (1_000_000 - index, 1_000_000 - index))
    assert report.latest(tmp_path) == tmp_path / "20261122T094818Z.jsonl"
    (tmp_path / "20261123T000000Z.jsonl").write_text("")
    assert report.latest(tmp_path) == tmp_path / "20261123T000000Z.jsonl"


# --- loadgen helpers ---------------------------------------------------------------------------


def test_percentiles_of_nothing() -> None:
    assert loadgen.percentiles_ms([]) == {"p50": None, "p99": None, "p99.9": None}


def test_percentiles_of_one_sample() -> None:
    assert loadgen.percentiles_ms([1_500_000]) == {"p50": 1.5, "p99": 1.5, "p99.9": 1.5}


def test_percentiles_of_1000_samples() -> None:
    # 1 ms .. 1000 ms, shuffled. The function picks sorted[min(n - 1, int(q * n))].
    samples = [ms * 1_000_000 for ms in range(1, 1001)]
    random.Random(7).shuffle(samples)
    kept = list(samples)
    assert loadgen.percentiles_ms(samples) == {"p50": 501.0, "p99": 991.0, "p99.9": 1000.0}
    assert samples == kept  # the caller's list is not sorted in place


def test_percentiles_of_a_few_samples_and_rounding() -> None:
    assert loadgen.percentiles_ms([2_000_000, 1_000_000]) == {
        "p50": 2.0,
        "p99": 2.0,
        "p99.9": 2.0,
    }
    ten = [ms * 1_000_000 for ms in range(10, 0, -1)]
    assert loadgen.percentiles_ms(ten) == {"p50": 6.0, "p99": 10.0, "p99.9": 10.0}
    assert loadgen.percentiles_ms([1_234_567])["p50"] == 1.2346  # ms, four decimals
    assert loadgen.percentiles_ms([1, 2, 3]) == {"p50": 0.0, "p99": 0.0, "p99.9": 0.0}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**10), min_size=1, max_size=3000))
def test_percentiles_property(samples: list[int]) -> None:
    got = loadgen.percentiles_ms(samples)
    ordered = sorted(samples)
    assert got["p50"] == round(ordered[len(ordered) // 2] / 1e6, 4)
    assert got["p50"] <= got["p99"] <= got["p99.9"] <= round(ordered[-1] / 1e6, 4)
    assert {got["p99"], got["p99.9"]} <= {round(s / 1e6, 4) for s in samples}


def test_window_result_figures_and_client_bound_threshold() -> None:
    request = {"server_core": 0, "client_core": 1}
    # Readings(wall, server CPU, client CPU, client system CPU, cores), in seconds.
    start = loadgen.Readings(10.0, 5.0, 0.0, 0.0, procstat.CoreTimes({0: 0, 1: 0}, {0: 0, 1: 0}))
    end = loadgen.Readings(
        12.0, 6.0, 1.8, 1.6, procstat.CoreTimes({0: 200, 1: 190}, {0: 200, 1: 200})
    )
    result = loadgen.window_result(start, end, 1000, request)
    assert result["window_s"] == 2.0
    assert result["ops"] == 1000
    assert result["ops_per_s"] == 500.0
    assert result["ops_per_server_cpu_s"] == 1000.0
    assert result["server_cpu_share"] == 0.5
    assert result["client_cpu_share"] == 0.9
    assert result["client_sys_share"] == round(1.6 / 1.8, 3)
    assert result["client_cpu_per_op_us"] == 1800.0
    assert result["server_cpu_per_op_us"] == 1000.0
    assert result["client_core_busy"] == 0.95 and result["server_core_busy"] == 1.0
    assert result["client_bound"] is True  # 0.90 of a core is bound
    assert result["client_core_saturated"] is False  # the client filled it itself

    less = loadgen.Readings(12.0, 6.0, 1.78, 1.6, end.cores)
    starved = loadgen.window_result(start, less, 1000, request)
    assert starved["client_bound"] is False  # 0.89
    assert starved["client_core_saturated"] is True  # core 95% busy, not by the client


def test_window_result_without_time_or_cpu() -> None:
    request = {"server_core": 0, "client_core": 1}
    cores = procstat.CoreTimes({0: 0, 1: 0}, {0: 0, 1: 0})
    same = loadgen.Readings(1.0, 2.0, 3.0, 0.0, cores)
    result = loadgen.window_result(same, same, 0, request)
    assert result["ops_per_s"] is None and result["ops_per_server_cpu_s"] is None
    assert result["server_cpu_share"] is None and result["client_sys_share"] is None
    assert result["client_cpu_per_op_us"] is None and result["server_cpu_per_op_us"] is None
    assert result["client_bound"] is False and result["client_core_saturated"] is False


# --- procstat on a fake /proc ------------------------------------------------------------------


def fake_stat(pid: int, name: str, ppid: int, ticks: tuple[int, int, int, int]) -> str:
    utime, stime, cutime, cstime = ticks
    return (
        f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1 4194304 100 0 0 0 "
        f"{utime} {stime} {cutime} {cstime} 20 0 1 0 12345 1000000 500 "
        "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
    )


@pytest.fixture
def fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tree 100 -> (101 -> 103, 102), and 200 beside it; odd names, non-numeric entries."""
    processes = {
        100: ("python3", 1, (10, 5, 100, 50), 1000),
        101: ("a b) (c", 100, (20, 0, 0, 0), 200),  # spaces and parentheses in the name
        102: ("worker", 100, (0, 7, 0, 0), 30),
        103: ("x", 101, (1, 1, 1, 1), 4),
        200: ("other", 1, (9999, 9999, 0, 0), 99999),
    }
    for pid, (name, ppid, ticks, resident) in processes.items():
        directory = tmp_path / str(pid)
        directory.mkdir()
        (directory / "stat").write_text(fake_stat(pid, name, ppid, ticks))
        (directory / "statm").write_text(f"5000 {resident} 300 10 0 900 0\n")
    (tmp_path / "self").mkdir()
    (tmp_path / "sys").mkdir()
    (tmp_path / "stat").write_text(
        "cpu  300 10 100 1000 50 0 20 5 7 0\n"
        "cpu0 100 0 50 500 25 0 10 5 3 0\n"
        "cpu1 200 10 50 500 25 0 10 0 4 0\n"
        "intr 1 2 3\n"
        "ctxt 12345\n"
    )
    monkeypatch.setattr(procstat, "PROC", tmp_path)
    return tmp_path


def test_fake_process_tree(fake_proc: Path) -> None:
    assert sorted(procstat.process_tree(100)) == [100, 101, 102, 103]
    assert procstat.process_tree(100)[0] == 100
    assert sorted(procstat.process_tree(101)) == [101, 103]
    assert procstat.process_tree(200) == [200]
    # A process that is gone still stands for itself, and counts for nothing.
    assert procstat.process_tree(999) == [999]
    assert procstat.tree_cpu_seconds(999) == 0.0
    assert procstat.tree_rss_bytes(999) == 0


def test_fake_tree_cpu_and_rss(fake_proc: Path) -> None:
    # utime + stime + cutime + cstime of 100, 101, 102, 103; never 200's.
    assert procstat.tree_cpu_seconds(100) == pytest.approx(
        (165 + 20 + 7 + 4) / procstat.CLOCK_TICKS
    )
    assert procstat.tree_cpu_seconds(101) == pytest.approx(24 / procstat.CLOCK_TICKS)
    assert procstat.tree_rss_bytes(100) == (1000 + 200 + 30 + 4) * procstat.PAGE_SIZE
    (fake_proc / "102" / "statm").unlink()  # exited between listing and reading
    assert procstat.tree_rss_bytes(100) == (1000 + 200 + 4) * procstat.PAGE_SIZE


def test_fake_core_times(fake_proc: Path) -> None:
    times = procstat.core_times()
    # total: the first eight fields (guest time is already in user); busy: less idle, iowait.
    assert times.total == {0: 690, 1: 795}
    assert times.busy == {0: 165, 1: 270}


def test_core_busy_fraction_arithmetic() -> None:
    before = procstat.CoreTimes(busy={0: 10, 1: 0}, total={0: 100, 1: 100})
    after = procstat.CoreTimes(busy={0: 40, 1: 0}, total={0: 200, 1: 100})
    assert procstat.core_busy_fraction(before, after, 0) == pytest.approx(0.3)
    assert procstat.core_busy_fraction(before, after, 1) == 0.0  # no ticks elapsed
    assert procstat.core_busy_fraction(before, after, 7) == 0.0  # no such core


# --- procstat on real processes ----------------------------------------------------------------

# The child: answers one command per line on stdin, ends at EOF (or after 50 commands).
#   burn S       spin until S seconds of its own CPU time (at most 30 s of wall time); the
#                clock is read every 20,000 turns, since reading it is a system call
#                (a loop of nothing but reads would spend its time in the kernel)
#   alloc MB     allocate and fill MB MiB, and keep them
#   spawn S MB   start a grandchild that burns S seconds, then holds MB MiB until its stdin
#                closes; print the grandchild's pid
#   reap         close the grandchild's stdin and wait for it
CHILD = r'''
import subprocess, sys, time

GRANDCHILD = """
import sys, time
start, deadline = time.process_time(), time.monotonic() + 30
while time.process_time() - start < float(sys.argv[1]) and time.monotonic() < deadline:
    for _ in range(20_000):
        pass
held = b"x" * (int(sys.argv[2]) << 20)
print("ready", flush=True)
sys.stdin.read()
"""


def burn(seconds):
    start, deadline = time.process_time(), time.monotonic() + 30
    while time.process_time() - start < seconds and time.monotonic() < deadline:
        for _ in range(20_000):
            pass


held = []
grandchild = None
print("ready", flush=True)
for _ in range(50):
    command = sys.stdin.readline().split()
    if not command:
        break
    if command[0] == "burn":
        burn(float(command[1]))
        print("ok", flush=True)
    elif command[0] == "alloc":
        held.append(b"x" * (int(command[1]) << 20))
        print("ok", flush=True)
    elif command[0] == "spawn":
        grandchild = subprocess.Popen(
            [sys.executable, "-c", GRANDCHILD, *command[1:]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        grandchild.stdout.readline()
        print(grandchild.pid, flush=True)
    elif command[0] == "reap":
        grandchild.stdin.close()
        grandchild.wait(30)
        grandchild.stdout.close()
        print("ok", flush=True)
'''
ANSWER_TIMEOUT = 40.0  # seconds for any one answer; each command ends itself sooner
MIB = 1024 * 1024


class Child:
    """A Python child in its own process group: killed, with its grandchild, by stop()."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
        )
        self.pending = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            assert left > 0, "the child did not answer in time"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                assert chunk, "the child exited"
                self.pending += chunk
        answer, _, self.pending = self.pending.partition(b"\n")
        return answer.decode()

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        return self.read_line()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def child() -> Iterator[Child]:
    started = Child()
    try:
        assert started.read_line() == "ready"
        yield started
    finally:
        started.stop()


def test_tree_cpu_seconds_grows_with_the_cpu_the_process_burns(child: Child) -> None:
    before = procstat.tree_cpu_seconds(child.pid)
    assert child.ask("burn 0.3") == "ok"
    grown = procstat.tree_cpu_seconds(child.pid) - before
    assert 0.2 <= grown <= 1.5


def test_process_tree_and_cpu_include_a_grandchild_alive_and_reaped(child: Child) -> None:
    assert procstat.process_tree(child.pid) == [child.pid]
    before = procstat.tree_cpu_seconds(child.pid)
    grandchild = int(child.ask("spawn 0.3 0"))
    tree = procstat.process_tree(child.pid)
    assert tree[0] == child.pid
    assert sorted(tree) == sorted([child.pid, grandchild])
    assert procstat.process_tree(grandchild) == [grandchild]
    # From this test process down, the grandchild is two levels below the root.
    assert {os.getpid(), child.pid, grandchild} <= set(procstat.process_tree(os.getpid()))
    # The child itself only waited: the growth is the grandchild's, alive.
    assert procstat.tree_cpu_seconds(grandchild) >= 0.2
    assert procstat.tree_cpu_seconds(child.pid) - before >= 0.2
    # Reaped, its time moves into the child's cutime/cstime and still counts.
    assert child.ask("reap") == "ok"
    assert procstat.process_tree(child.pid) == [child.pid]
    assert procstat.tree_cpu_seconds(child.pid) - before >= 0.2


def test_tree_rss_grows_when_the_tree_allocates(child: Child) -> None:
    start = procstat.tree_rss_bytes(child.pid)
    assert start > 0
    assert child.ask("alloc 50") == "ok"
    allocated = procstat.tree_rss_bytes(child.pid)
    assert allocated - start >= 40 * MIB
    grandchild = int(child.ask("spawn 0 50"))
    assert procstat.tree_rss_bytes(grandchild) >= 40 * MIB
    assert procstat.tree_rss_bytes(child.pid) - allocated >= 40 * MIB


def test_real_core_times_and_busy_fraction() -> None:
    first = procstat.core_times()
    assert first.busy and set(first.busy) == set(first.total)
    assert all(core >= 0 for core in first.total)
    assert all(0 <= first.busy[core] <= first.total[core] for core in first.total)
    # Burn about 0.3 s of CPU here (bounded in wall time too), then wait until every core's
    # counters have moved (at most 5 s).
    cpu_start, deadline = time.process_time(), time.monotonic() + 10
    while time.process_time() - cpu_start < 0.3 and time.monotonic() < deadline:
        pass
    burned = time.process_time() - cpu_start
    later = procstat.core_times()
    for _ in range(250):
        if all(later.total[core] > first.total[core] for core in first.total):
            break
        time.sleep(0.02)
        later = procstat.core_times()
    fractions = [procstat.core_busy_fraction(first, later, core) for core in first.total]
    assert all(0.0 <= fraction <= 1.0 for fraction in fractions)
    busy_seconds = sum(later.busy[c] - first.busy[c] for c in first.busy) / procstat.CLOCK_TICKS
    assert busy_seconds >= burned / 2
