"""The idle+active scenario's tooling: its parameters, its target, and real quick runs.

The run tests start `benchmarks/run.py --quick` against a real asgiws on 127.0.0.1, with a
few hundred held connections, on the C client and on the Python one.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.tooling
report = importlib.import_module("benchmarks.report")
scenarios = importlib.import_module("benchmarks.scenarios")
servers = importlib.import_module("benchmarks.servers")
wsload = importlib.import_module("benchmarks.wsload")
run = importlib.import_module("benchmarks.run")
TARGET = "idle+active p99 latency <= best ASGI peer"


def test_defaults_hold_10000_and_measure_100_past_a_ping_interval() -> None:
    held = scenarios.DEFAULTS["idle+active"]
    assert (held.kind, held.connections, held.active, held.in_flight) == ("held", 10_000, 100, 1)
    assert (held.size, held.text) == (32, True)  # the echo scenario's messages
    # On the raw-app ASGI servers only (the target's peers), not the ceilings or frameworks.
    ran = [name for name, server in servers.SERVERS.items() if scenarios.applies(held, server.app)]
    assert ran == ["asgiws", "uvicorn-sansio", "uvicorn-websockets", "uvicorn-wsproto",
                   "hypercorn", "granian"]  # fmt: skip
    # Longer than the 20 s keep-alive ping interval of asgiws and uvicorn (their defaults):
    # every held connection is pinged inside the window, whenever it was opened.
    assert held.duration > 20.0
    quick = scenarios.build(["idle+active"], quick=True, duration=None, warmup=None,
                            connections={})  # fmt: skip
    assert (quick[0].connections, quick[0].active, quick[0].duration) == (1_000, 20, 3.0)
    # --connections sets the held count; --duration the window, as for the timed scenarios.
    (chosen,) = scenarios.build(["idle+active"], quick=False, duration=40.0, warmup=None,
                                connections={"idle+active": 19_800})  # fmt: skip
    assert (chosen.connections, chosen.active, chosen.duration) == (19_800, 100, 40.0)


def test_the_active_part_is_an_echo_run_the_c_client_takes() -> None:
    active = scenarios.active_part(scenarios.DEFAULTS["idle+active"])
    assert (active.kind, active.connections, active.in_flight, active.size) == (
        "stream", 100, 1, 32
    )  # fmt: skip
    argv = wsload.command(Path("wsload"), active, 8000)
    assert argv[argv.index("--connections") + 1] == "100"
    assert "--text" in argv
    with pytest.raises(ValueError, match="'echo' holds no idle connections"):
        scenarios.active_part(scenarios.DEFAULTS["echo"])


def held(p99: float, ok: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ok": ok, "client": "wsload", "held": 10_000, "active": 100, "ops": 50_000,
        "ops_per_s": 5_000.0, "ops_per_server_cpu_s": 9_000.0, "bytes_per_conn": 6_000.0,
        "latency_ms": {"p50": p99 / 4, "p99": p99, "p99.9": p99 * 2},
        "client_cpu_share": 0.3, "client_bound": False, "client_core_saturated": False,
    }  # fmt: skip
    if not ok:
        result["error"] = "only 9 of 10000 held connections were still open after the window"
    return result


def held_line(server: str, result: dict[str, Any]) -> dict[str, Any]:
    known = servers.SERVERS[server]
    return {
        "server": server, "asgi": known.asgi, "app": known.app, "round": 1,
        "scenario": scenarios.DEFAULTS["idle+active"].to_json(), "result": result,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("mine", "verdict", "ratio"),
    [(7.6, "PASS", "0.99"), (7.7, "PASS", "1.00"), (23.8, "FAIL", "3.09")],
)
def test_target_is_p99_against_the_lowest_raw_asgi_peer(
    mine: float, verdict: str, ratio: str
) -> None:
    lines = [
        held_line("asgiws", held(mine)),
        held_line("uvicorn-sansio", held(7.7)),
        held_line("hypercorn", held(9.0)),
        # Not comparable peers, or failed: none of them sets the bar.
        held_line("picows-server", held(0.5)),
        held_line("uvicorn-sansio+starlette", held(0.6)),
        held_line("granian", held(0.1, ok=False)),
    ]
    summaries = report.summarize(lines)
    (target,) = [t for t in report.targets(summaries) if t.name == TARGET]
    assert target.verdict == verdict
    assert (
        target.detail == f"asgiws {mine:.2f} ms vs uvicorn-sansio 7.70 (ratio {ratio}, needs <= 1)"
    )
    rows = {row[1]: row for row in report.table_rows(summaries)[1]}
    assert rows["asgiws"][0] == "idle+active" and rows["asgiws"][10] == "5.9"  # KiB/conn
    assert rows["granian"][-1].startswith("FAILED 1x: round 1: only 9 of 10000 held")


def test_target_without_asgiws_is_n_a() -> None:
    summaries = report.summarize([held_line("uvicorn-sansio", held(7.7))])
    (target,) = [t for t in report.targets(summaries) if t.name == TARGET]
    assert (target.verdict, target.detail) == ("n/a", "asgiws not measured in idle+active")


def quick_run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    output = tmp_path / "held.jsonl"
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--rounds", "1", "--scenarios",
         "idle+active", "--servers", "asgiws", "--connections", "idle+active=300",
         "--output", str(output), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (only,) = [json.loads(raw) for raw in output.read_text().splitlines()]
    return done, only


def check_result(only: dict[str, Any], client: str) -> None:
    result = only["result"]
    assert only["scenario"]["connections"] == 300 and only["scenario"]["active"] == 20
    assert result["ok"] and result["client"] == client
    assert result["held"] == 300 and result["active"] == 20
    assert result["ops"] > 0 and result["ops_per_server_cpu_s"] > 0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"]
    # The server grew by its held connections (a few KiB each), measured from a warm start.
    assert result["rss_held_bytes"] > result["rss_before_bytes"] > 0
    assert 0 < result["bytes_per_conn"] < 256 * 1024
    # The held connections answered the server's pings themselves, counting them.
    assert 0 <= result["max_pings_per_slot"] <= result["held_pings"]


@pytest.mark.skipif(wsload.compiler() is None, reason="gcc is not installed")
def test_quick_run_on_the_c_client_holds_every_connection(tmp_path: Path) -> None:
    done, only = quick_run(tmp_path, "--client", "wsload")
    check_result(only, "wsload")
    assert "300 held" in done.stdout
    assert "n/a   idle+active p99 latency <= best ASGI peer: no peer measured" in done.stdout


def test_quick_run_on_the_python_client_holds_every_connection(tmp_path: Path) -> None:
    _done, only = quick_run(tmp_path, "--client", "python")
    check_result(only, "picows")


def test_ping_tally_counts_pings_per_slot_inside_the_window() -> None:
    pytest.importorskip("picows")  # heldload's clients are picows ones (the bench venv has it)
    heldload = importlib.import_module("benchmarks.heldload")
    tally = heldload.PingTally()
    slot = tally.SLOT
    tally.slots = {100: 3, 101: 80, 102: 5, 200: 7}  # slot 200 is after the window
    assert tally.between(100 * slot, 150 * slot) == {"held_pings": 88, "max_pings_per_slot": 80}
    assert tally.between(0.0, 10 * slot) == {"held_pings": 0, "max_pings_per_slot": 0}
    tally.note()
    assert sum(tally.slots.values()) == 96


def test_a_tree_runs_asgiws_from_that_checkout_or_exits_saying_where_it_came_from(
    tmp_path: Path,
) -> None:
    server = servers.from_tree(REPO)
    assert server.name == f"asgiws@{REPO.name}"
    assert (server.asgi, server.app) == (True, "raw")
    argv = server.argv(sys.executable, 8000)
    suite = servers.SERVERS["asgiws"].argv(sys.executable, 8000)
    assert argv[:2] == [sys.executable, "-c"] and argv[3:] == suite[3:]
    version = subprocess.run([*argv[:3], "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("asgiws "), version
    # A folder without asgiws: the asgiws found elsewhere is refused, by name.
    stray = servers.from_tree(tmp_path).argv(sys.executable, 8000)
    refused = subprocess.run([*stray[:3], "--version"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert f"not from {tmp_path.resolve()}" in refused.stderr
    with pytest.raises(SystemExit):
        run.parse_args(["--tree", str(tmp_path)])


def test_quick_run_with_a_tree_measures_both_checkouts(tmp_path: Path) -> None:
    output = tmp_path / "held.jsonl"
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--rounds", "1", "--scenarios",
         "idle+active", "--servers", "asgiws", "--connections", "idle+active=300",
         "--client", "python", "--tree", str(REPO), "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [json.loads(raw) for raw in output.read_text().splitlines()]
    assert [line["server"] for line in lines] == ["asgiws", f"asgiws@{REPO.name}"]
    assert lines[0]["asgiws_source"] == lines[1]["asgiws_source"]
    for line in lines:
        check_result(line, "picows")
