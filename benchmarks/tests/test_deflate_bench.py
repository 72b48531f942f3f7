"""The compressed scenarios' tooling: parameters, wsload's permessage-deflate, the target.

wsload is run against small `websockets` servers on 127.0.0.1 that negotiate deflate with
chosen parameters, corrupt an echo, or decline the offer; then `benchmarks/run.py --quick`
runs both compressed scenarios, briefly, against a real asgiws and a real granian (which
does not negotiate deflate).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import ServerConnection, serve

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # so that `benchmarks` imports from any directory
    sys.path.insert(0, str(REPO))

from benchmarks import report, scenarios, servers, wsload  # noqa: E402

pytestmark = pytest.mark.tooling
needs_gcc = pytest.mark.skipif(wsload.compiler() is None, reason="gcc is not installed")
RAW_SERVERS = ["asgiws", "asgiws-deflate-all", "uvicorn-sansio", "uvicorn-websockets",
               "uvicorn-wsproto", "hypercorn", "granian"]  # fmt: skip
WSLOAD_TIMEOUT = 60.0  # seconds for one short wsload run


def test_the_group_is_two_echo_scenarios_of_json_text_on_the_raw_asgi_servers() -> None:
    assert scenarios.expand(["echo", "compressed", "compressed-4k"]) == [
        "echo", "compressed-32", "compressed-4k"
    ]  # fmt: skip
    small, large = (scenarios.DEFAULTS[name] for name in scenarios.GROUPS["compressed"])
    for scenario, size in ((small, 32), (large, 4096)):
        assert (scenario.kind, scenario.connections, scenario.in_flight) == ("stream", 100, 1)
        assert (scenario.size, scenario.text, scenario.deflate) == (size, True, True)
        ran = [
            n for n, server in servers.SERVERS.items() if scenarios.applies(scenario, server.app)
        ]
        assert ran == RAW_SERVERS
        argv = wsload.command(Path("wsload"), scenario, 8000)
        assert argv[-2:] == ["--json", "--deflate"] and "--text" in argv
    assert "--deflate" not in wsload.command(Path("wsload"), scenarios.DEFAULTS["echo"], 8000)
    # asgiws compressing every message takes part in these two scenarios only.
    every = servers.SERVERS["asgiws-deflate-all"]
    assert every.argv("/py", 1, True)[-2:] == ["--ws-deflate-min-size", "0"]
    assert not [n for n, sc in scenarios.DEFAULTS.items() if not sc.deflate and
                scenarios.applies(sc, every.app)]  # fmt: skip


def test_servers_run_with_deflate_on_only_when_asked() -> None:
    asgiws, uvicorn = servers.SERVERS["asgiws"], servers.SERVERS["uvicorn-wsproto"]
    assert "--no-ws-per-message-deflate" in asgiws.argv("/py", 1)
    assert "--no-ws-per-message-deflate" not in asgiws.argv("/py", 1, True)
    flag = uvicorn.argv("/py", 1).index("--ws-per-message-deflate")
    assert uvicorn.argv("/py", 1)[flag + 1] == "false"
    assert uvicorn.argv("/py", 1, True)[flag + 1] == "true"


@pytest.fixture(scope="module")
def binary() -> Path:
    if wsload.compiler() is None:
        pytest.skip("gcc is not installed")
    built = wsload.build()
    assert built is not None
    return built


@needs_gcc
@pytest.mark.parametrize("size", [32, 33, 100, 255, 256, 1000, 4096])
def test_json_messages_are_json_objects_of_the_exact_size_the_same_every_run(
    binary: Path, size: int
) -> None:
    argv = [str(binary), "--print-json", "--size", str(size)]
    first = subprocess.run(argv, capture_output=True, timeout=30, check=True).stdout
    again = subprocess.run(argv, capture_output=True, timeout=30, check=True).stdout
    assert first == again  # a fixed seed: every server gets the same messages
    messages = first.decode().splitlines()
    assert len(messages) == 256
    for message in messages:
        assert len(message) == size
        decoded = json.loads(message)
        assert decoded["seq"] == "0" * 16  # the placeholder each message's stamp replaces
        assert message.startswith('{"seq":"0000000000000000"')
    if size >= 256:  # realistic: ids, timestamps, words, in an array of items; all differ
        assert len(set(messages)) == 256
        assert {"id", "ts", "user", "text"} <= set(json.loads(messages[0])["items"][0])


@contextlib.contextmanager
def echo_server(
    *, extensions: list[Any] | None, change: Callable[[str], str] = lambda m: m
) -> Iterator[int]:
    """A websockets echo server on 127.0.0.1, in a thread; yields its port."""

    def handler(connection: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            for message in connection:
                connection.send(change(str(message)))

    with serve(handler, "127.0.0.1", 0, compression=None, extensions=extensions) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(server.socket.getsockname()[1])
        finally:
            server.shutdown()
            thread.join(10)


def run_wsload(binary: Path, port: int, size: int) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [str(binary), "--mode", "stream", "--port", str(port), "--connections", "4",
         "--in-flight", "2", "--size", str(size), "--text", "--json", "--deflate",
         "--warmup", "0.1", "--duration", "0.4"],
        capture_output=True, text=True, timeout=WSLOAD_TIMEOUT,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


@needs_gcc
@pytest.mark.parametrize("size", [32, 4096])
def test_wsload_honours_no_context_takeover_and_window_bits(binary: Path, size: int) -> None:
    # Had wsload kept its compression context, or used a larger window than the server
    # allowed, the server could not inflate its messages and would close with 1007.
    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=9,
    )
    with echo_server(extensions=[factory]) as port:
        status, result = run_wsload(binary, port, size)
    assert status == 0 and result["ok"], result
    deflate = result["deflate"]
    assert deflate["negotiated"] and deflate["connections"] == 4
    assert deflate["client_no_context_takeover"] and deflate["server_no_context_takeover"]
    assert (deflate["client_max_window_bits"], deflate["server_max_window_bits"]) == (9, 10)
    assert "client_no_context_takeover" in deflate["extensions"]
    assert deflate["compressed_echoes"] > 0 and deflate["plain_echoes"] == 0
    assert deflate["received_plain_bytes"] == deflate["compressed_echoes"] * size
    assert 0 < deflate["sent_wire_bytes"] < deflate["sent_plain_bytes"]


@needs_gcc
def test_wsload_fails_a_compressed_echo_that_differs_by_one_byte(binary: Path) -> None:
    def change(message: str) -> str:
        return message[:-2] + ("1" if message[-2] != "1" else "2") + message[-1]

    with echo_server(extensions=[ServerPerMessageDeflateFactory()], change=change) as port:
        status, result = run_wsload(binary, port, 4096)
    assert status == 1 and not result["ok"] and result["wrong_echo"]
    assert "byte 4094 of 4096" in result["error"]


@needs_gcc
def test_wsload_goes_on_uncompressed_and_says_so_when_the_server_declines(binary: Path) -> None:
    with echo_server(extensions=None) as port:
        status, result = run_wsload(binary, port, 32)
    assert status == 0 and result["ok"], result
    deflate = result["deflate"]
    assert (deflate["negotiated"], deflate["extensions"], deflate["connections"]) == (
        False, None, 0
    )  # fmt: skip
    assert deflate["plain_echoes"] > 0 and deflate["compressed_echoes"] == 0


def compressed_line(server: str, per_cpu_s: float, negotiated: bool) -> dict[str, Any]:
    known = servers.SERVERS[server]
    deflate = {
        "offered": True, "negotiated": negotiated,
        "extensions": "permessage-deflate; client_max_window_bits=15" if negotiated else None,
        "received_plain_bytes": 4096 * 1000 if negotiated else 0,
        "received_wire_bytes": 1024 * 1000 if negotiated else 0,
        "compressed_echoes": 750 if negotiated else 0, "plain_echoes": 250 if negotiated else 1000,
    }  # fmt: skip
    result = {
        "ok": True, "client": "wsload", "ops": 1000, "ops_per_s": per_cpu_s,
        "ops_per_server_cpu_s": per_cpu_s, "latency_ms": {"p50": 1.0, "p99": 2.0, "p99.9": 3.0},
        "client_cpu_share": 0.3, "deflate": deflate,
    }  # fmt: skip
    return {
        "server": server, "asgi": known.asgi, "app": known.app, "round": 1,
        "scenario": scenarios.DEFAULTS["compressed-4k"].to_json(), "result": result,
    }  # fmt: skip


TARGET_4K = "compressed-4k msgs/CPU-s >= 1.5x best ASGI peer with deflate"


@pytest.mark.parametrize(("mine", "verdict"), [(3000.0, "PASS"), (2999.0, "FAIL")])
def test_target_leaves_out_the_peers_that_did_not_negotiate_and_names_them(
    mine: float, verdict: str
) -> None:
    lines = [
        compressed_line("asgiws", mine, True),
        compressed_line("uvicorn-sansio", 2000.0, True),
        compressed_line("hypercorn", 1000.0, True),
        compressed_line("granian", 20000.0, False),  # the fastest, but uncompressed
    ]
    summaries = report.summarize(lines)
    (target,) = [t for t in report.targets(summaries) if t.name == TARGET_4K]
    assert target.verdict == verdict
    assert target.detail.startswith(f"asgiws {mine:,.0f} msgs/CPU-s vs uvicorn-sansio 2,000")
    assert target.detail.endswith("excluded: granian (did not negotiate permessage-deflate)")
    notes = {row[1]: row[-1] for row in report.table_rows(summaries)[1]}
    assert notes["granian"] == "deflate NOT negotiated: not compared"
    assert notes["asgiws"] == (
        "deflate: permessage-deflate; client_max_window_bits=15, echoes at 25% of their size, "
        "75% of them compressed"
    )


def test_target_fails_when_asgiws_itself_did_not_negotiate() -> None:
    lines = [compressed_line("asgiws", 9000.0, False), compressed_line("hypercorn", 10.0, True)]
    (target,) = [t for t in report.targets(report.summarize(lines)) if t.name == TARGET_4K]
    assert (target.verdict, target.detail) == (
        "FAIL", "asgiws did not negotiate permessage-deflate"
    )  # fmt: skip


@needs_gcc
def test_quick_run_negotiates_deflate_with_asgiws_and_leaves_granian_out(
    tmp_path: Path,
) -> None:
    output = tmp_path / "compressed.jsonl"
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--rounds", "1", "--scenarios",
         "compressed", "--servers", "asgiws,asgiws-deflate-all,granian", "--connections",
         "compressed=10",
         "--duration", "1", "--warmup", "0.5", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [json.loads(raw) for raw in output.read_text().splitlines()]
    assert [(ln["scenario"]["name"], ln["server"]) for ln in lines] == [
        ("compressed-32", "asgiws"), ("compressed-32", "asgiws-deflate-all"),
        ("compressed-32", "granian"), ("compressed-4k", "asgiws"),
        ("compressed-4k", "asgiws-deflate-all"), ("compressed-4k", "granian"),
    ]  # fmt: skip
    for line in lines:
        result, size = line["result"], line["scenario"]["size"]
        assert line["scenario"]["deflate"] and line["scenario"]["connections"] == 10
        assert result["ok"] and result["client"] == "wsload" and result["payload"] == "json"
        assert result["ops"] > 0 and result["ops_per_server_cpu_s"] > 0
        deflate = result["deflate"]
        if line["server"].startswith("asgiws"):
            assert deflate["negotiated"] and deflate["connections"] == 10
            assert deflate["extensions"].startswith("permessage-deflate")
            if line["server"] == "asgiws" and size < 1024:  # under --ws-deflate-min-size
                assert deflate["plain_echoes"] >= result["ops"] and not deflate["compressed_echoes"]
                continue
            # Every echo came back compressed, and checked.
            assert deflate["compressed_echoes"] >= result["ops"] and not deflate["plain_echoes"]
            assert deflate["received_plain_bytes"] == deflate["compressed_echoes"] * size
        else:
            assert not deflate["negotiated"] and deflate["plain_echoes"] >= result["ops"]
    assert "deflate negotiated (permessage-deflate" in done.stdout
    assert "deflate NOT negotiated (the 101 had no Sec-WebSocket-Extensions)" in done.stdout
    assert "excluded: granian (did not negotiate permessage-deflate)" in done.stdout
