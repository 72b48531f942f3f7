"""The HTTP scenarios' tooling: wrk's output, its script, the first check, the targets, a run.

The parsing tests read wrk outputs captured from real runs (fixtures/wrk-*.txt); the others
drive the real wrk against a real asgiws on 127.0.0.1, and `benchmarks/run.py --quick`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.tooling
httpload = importlib.import_module("benchmarks.httpload")
report = importlib.import_module("benchmarks.report")
scenarios = importlib.import_module("benchmarks.scenarios")
servers = importlib.import_module("benchmarks.servers")
processes = importlib.import_module("benchmarks.tests.processes")
FIXTURES = Path(__file__).parent / "fixtures"
needs_wrk = pytest.mark.skipif(httpload.available() is None, reason="wrk is not installed")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- wrk's output ----------------------------------------------------------------------------


def test_parse_a_keep_alive_get() -> None:
    result = httpload.parse(fixture("wrk-get.txt"))
    assert result.requests == 1550
    assert result.duration_s == pytest.approx(2.04)
    assert result.requests_per_s == 760.21
    assert result.latency_ms == {
        "p50": 55.85, "p75": 81.64, "p90": 123.66, "p99": 692.31, "p99.9": 909.281,
    }  # fmt: skip
    assert result.summary is not None and result.summary["requests"] == 1550
    assert result.errors == []


def test_parse_a_post() -> None:
    result = httpload.parse(fixture("wrk-post.txt"))
    assert (result.requests, result.requests_per_s) == (1311, 629.8)
    assert result.latency_ms["p99"] == 651.53 and result.latency_ms["p99.9"] == 811.703
    assert result.errors == []


def test_statuses_of_400_and_over_are_errors() -> None:
    result = httpload.parse(fixture("wrk-404.txt"))
    assert result.non_2xx == 823
    assert result.errors == ["823 responses with status >= 400"]


def test_socket_errors_are_errors_and_units_convert() -> None:
    text = fixture("wrk-get.txt").replace(
        "  1550 requests in 2.04s, 180.13KB read\n",
        "  1550 requests in 2.04s, 180.13KB read\n"
        "  Socket errors: connect 0, read 3, write 0, timeout 7\n",
    )
    text = text.replace("     50%   55.85ms", "     50%  800.00us").replace(
        "     99%  692.31ms", "     99%    1.50s"
    )
    result = httpload.parse(text)
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 7}
    assert result.errors == ["3 socket read errors", "7 socket timeout errors"]
    assert result.latency_ms["p50"] == 0.8 and result.latency_ms["p99"] == 1500.0


def test_the_scripts_exact_counts_catch_what_the_text_omits() -> None:
    text = fixture("wrk-get.txt").replace('"status": 0', '"status": 4')
    assert httpload.parse(text).errors == ["4 responses with status >= 400"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "unable to connect to 127.0.0.1:9 Connection refused\n",
        # No --latency: no distribution.
        "\n".join(line for line in fixture("wrk-get.txt").splitlines() if "%" not in line[:12]),
    ],
)
def test_output_without_the_figures_is_an_error(text: str) -> None:
    with pytest.raises(httpload.WrkOutputError):
        httpload.parse(text)


def test_command_is_one_thread_whole_seconds_with_latency(tmp_path: Path) -> None:
    script = tmp_path / "s.lua"
    argv = httpload.command("wrk", "http://127.0.0.1:1/", 50, 2.6, script)
    assert argv == ["wrk", "-t1", "-c50", "-d3s", "--latency", "--timeout", "10s",
                    "-s", str(script), "http://127.0.0.1:1/"]  # fmt: skip
    assert httpload.command("wrk", "u", 1, 0.2, script)[3] == "-d1s"


def test_post_script_sends_the_body_get_script_does_not() -> None:
    post = httpload.lua_script("POST", 1024)
    assert 'wrk.method = "POST"' in post
    assert f'wrk.body = "{httpload.body_for(1024).decode()}"' in post
    assert len(httpload.body_for(1024)) == 1024
    get = httpload.lua_script("GET", 0)
    assert "wrk.body" not in get and "wrk.method" not in get
    assert httpload.SUMMARY_MARK in get and "percentile(99.9)" in get


# --- which servers run which scenario --------------------------------------------------------


def test_http_scenarios_run_on_the_servers_with_their_app() -> None:
    def taking_part(scenario: str) -> list[str]:
        chosen = scenarios.DEFAULTS[scenario]
        return [s.name for s in servers.SERVERS.values() if scenarios.applies(chosen, s.app)]

    raw = ["asgiws", "uvicorn-sansio", "uvicorn-websockets", "uvicorn-wsproto", "hypercorn",
           "granian"]  # fmt: skip
    assert taking_part("http-get") == raw and taking_part("http-post") == raw
    assert taking_part("starlette-http") == [
        "asgiws+starlette", "uvicorn-sansio+starlette", "granian+starlette",
    ]  # fmt: skip
    assert taking_part("fastapi-http") == [
        "asgiws+fastapi", "uvicorn-sansio+fastapi", "granian+fastapi",
    ]  # fmt: skip
    echo = taking_part("echo")
    assert "picows-server" in echo and not any("fastapi" in name for name in echo)
    assert taking_part("fanout") == raw


# --- the HTTP targets ------------------------------------------------------------------------


def result_line(server: str, scenario: str, per_cpu: float, p99: float) -> dict[str, Any]:
    known = servers.SERVERS[server]
    return {
        "server": server, "asgi": known.asgi, "app": known.app, "round": 1,
        "scenario": scenarios.DEFAULTS[scenario].to_json(),
        "result": {"ok": True, "ops_per_s": per_cpu, "ops_per_server_cpu_s": per_cpu,
                   "latency_ms": {"p50": p99 / 2, "p99": p99, "p99.9": p99 * 2}},
    }  # fmt: skip


def http_targets(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {t.name: t for t in report.targets(report.summarize(lines))}


def test_http_targets_compare_with_uvicorn_serving_the_same_app() -> None:
    lines = [
        result_line("asgiws", "http-get", 12_000, 2.0),
        result_line("uvicorn-sansio", "http-get", 10_000, 2.5),
        result_line("granian", "http-get", 30_000, 1.0),  # not uvicorn: not the peer
        result_line("asgiws", "http-post", 11_000, 3.0),
        result_line("uvicorn-sansio", "http-post", 10_000, 2.0),
        # The raw uvicorn rows are not the peers of the framework rows.
        result_line("asgiws+starlette", "starlette-http", 5_400, 4.0),
        result_line("uvicorn-sansio+starlette", "starlette-http", 5_000, 4.0),
        result_line("asgiws+fastapi", "fastapi-http", 4_000, 5.0),
        result_line("uvicorn-sansio+fastapi", "fastapi-http", 3_500, 6.0),
    ]
    got = http_targets(lines)
    verdicts = {
        name: t.verdict for name, t in got.items() if name.split()[0] in report.HTTP_SCENARIOS
    }
    assert verdicts == {
        "http-get req/CPU-s >= 1.2x uvicorn": "PASS",  # 1.20
        "http-post req/CPU-s >= 1.2x uvicorn": "FAIL",  # 1.10
        "starlette-http req/CPU-s >= 1.1x uvicorn": "FAIL",  # 1.08
        "fastapi-http req/CPU-s >= 1.1x uvicorn": "PASS",  # 1.14
        "http-get p99 latency <= uvicorn": "PASS",
        "http-post p99 latency <= uvicorn": "FAIL",
        "starlette-http p99 latency <= uvicorn": "PASS",  # equal
        "fastapi-http p99 latency <= uvicorn": "PASS",
    }
    assert got["starlette-http req/CPU-s >= 1.1x uvicorn"].detail == (
        "asgiws+starlette 5,400 req/CPU-s vs uvicorn-sansio+starlette 5,000 "
        "(ratio 1.08, needs >= 1.1)"
    )


def test_framework_rows_take_their_ratios_from_asgiws_with_the_framework() -> None:
    lines = [
        result_line("asgiws+fastapi", "fastapi-http", 4_000, 5.0),
        result_line("uvicorn-sansio+fastapi", "fastapi-http", 2_000, 6.0),
    ]
    _header, rows = report.table_rows(report.summarize(lines))
    assert [row[:2] + row[5:7] for row in rows] == [
        ["fastapi-http", "asgiws+fastapi", "1.00x", "1.00x"],
        ["fastapi-http", "uvicorn-sansio+fastapi", "0.50x", "0.50x"],
    ]
    missing = http_targets(lines[1:])["fastapi-http req/CPU-s >= 1.1x uvicorn"]
    assert (missing.verdict, missing.detail) == (
        "n/a",
        "asgiws+fastapi not measured in fastapi-http",
    )


# --- against a real server -------------------------------------------------------------------


@contextlib.contextmanager
def asgiws_serving(app: str) -> Iterator[int]:
    port = servers.free_port()
    argv = [sys.executable, "-m", "asgiws", app, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with processes.listening(argv, port):
        yield port


def test_probe_checks_status_and_exact_body() -> None:
    with asgiws_serving(servers.RAW_APP) as port:
        assert httpload.probe("127.0.0.1", port, "GET", 0, b"ok") is None
        assert httpload.probe("127.0.0.1", port, "POST", 1024, b"ok") is None
        # What the framework apps answer is not what the raw app answers.
        wrong = httpload.probe("127.0.0.1", port, "GET", 0, httpload.expected_body("fastapi"))
        assert wrong is not None and wrong.startswith("first request: expected body")
    closed = httpload.probe("127.0.0.1", port, "GET", 0, b"ok")
    assert closed is not None and closed.startswith("first request failed: ConnectionRefused")


@needs_wrk
def test_real_wrk_counts_error_statuses(tmp_path: Path) -> None:
    script = tmp_path / "get.lua"
    script.write_text(httpload.lua_script("GET", 0))
    wrk = httpload.available()
    assert wrk is not None
    with asgiws_serving(servers.RAW_APP) as port:
        for path, failing in (("/", False), ("/missing", True)):
            argv = httpload.command(wrk, f"http://127.0.0.1:{port}{path}", 4, 1, script)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
            result = httpload.parse(done.stdout)
            assert result.requests > 0
            assert bool(result.errors) == failing, result.errors
            if failing:
                assert result.errors == [f"{result.requests} responses with status >= 400"]


@needs_wrk
def test_quick_run_of_the_http_scenarios_against_asgiws(tmp_path: Path) -> None:
    output = tmp_path / "quick.jsonl"
    names = ",".join(report.HTTP_SCENARIOS)
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--rounds", "1", "--scenarios", names,
         "--servers", "asgiws,asgiws+starlette,asgiws+fastapi", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [json.loads(raw) for raw in output.read_text().splitlines()]
    assert [(ln["scenario"]["name"], ln["server"]) for ln in lines] == [
        ("http-get", "asgiws"), ("http-post", "asgiws"),
        ("starlette-http", "asgiws+starlette"), ("fastapi-http", "asgiws+fastapi"),
    ]  # fmt: skip
    for ln in lines:
        result = ln["result"]
        assert result["ok"] and result["client"] == "wrk" and result["wrk_errors"] == []
        assert result["ops"] == result["wrk_requests"] > 0
        assert result["server_cpu_s"] > 0 and result["ops_per_server_cpu_s"] > 0
        assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert "n/a   http-get req/CPU-s >= 1.2x uvicorn: no uvicorn server measured" in done.stdout


def test_quick_fanout_against_asgiws_delivers_every_message(tmp_path: Path) -> None:
    output = tmp_path / "fanout.jsonl"
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--rounds", "1", "--scenarios",
         "fanout", "--servers", "asgiws", "--connections", "fanout=50", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (only,) = [json.loads(raw) for raw in output.read_text().splitlines()]
    result = only["result"]
    assert result["ok"] and result["subscribers"] == 50 and only["scenario"]["connections"] == 50
    # Every delivery in the window is counted; a message counts once per subscriber.
    assert result["ops"] > 0 and result["ops_per_server_cpu_s"] > 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
