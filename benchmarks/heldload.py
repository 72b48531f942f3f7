"""The idle+active scenario: echo latency while thousands of idle WebSockets are held.

This process (picows on uvloop) opens the scenario's `connections` idle WebSockets, 64 at a
time, one echo each, and holds them: they answer the server's pings and send nothing else.
Then `active` echo clients run a timed window exactly as in the `echo` scenario: on the C
client wsload (a separate process, so neither process needs a descriptor per connection of
the other's; this one's event loop keeps answering pings meanwhile, since wsload is waited
for in a thread) or, without gcc or with "client": "python", on picows in this process.

The window's figures are the active clients' (msgs/s, msgs per server CPU-second, p50/p99/
p99.9); the server's CPU includes whatever the held connections cost it meanwhile (pings,
timers, GC), which is what the scenario is for. The result also carries the server's RSS
before and after the connections were opened, per held connection, as `idle` measures it.
After the window every held connection must still be open, or the run fails.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import loadgen, procstat, wsload
from benchmarks.scenarios import Scenario, active_part


async def run_held(
    scenario: Scenario, request: dict[str, Any], binary: Path | None
) -> dict[str, Any]:
    """Open and hold the idle connections, run the active window, close everything."""
    idle = loadgen.Window(sending=False)  # the held connections: one echo each, no more
    url, pid = request["url"], request["server_pid"]
    rss_before = await loadgen.rss_baseline(url, pid, idle)
    began = time.perf_counter()
    transports, _clients = await loadgen.open_idle(url, scenario.connections, idle)
    opened_s = time.perf_counter() - began
    try:
        if idle.error is not None:
            raise ConnectionError(f"opening the held connections: {idle.error}")
        await asyncio.sleep(loadgen.IDLE_SETTLE)
        rss_held = procstat.tree_rss_bytes(pid)
        active = active_part(scenario)
        if binary is not None:
            result = await asyncio.to_thread(loadgen.run_wsload, binary, active, request)
        else:
            result = await loadgen.run_stream(active, request)
            result["client"] = loadgen.PICOWS
        held = sum(1 for t in transports if not t.is_disconnected)
    finally:
        await loadgen.close_all(transports)
    result.update(
        held=held,
        active=scenario.active,
        rss_before_bytes=rss_before,
        rss_held_bytes=rss_held,
        bytes_per_conn=round((rss_held - rss_before) / scenario.connections, 1),
        open_s=round(opened_s, 3),
    )
    return result


async def run(scenario: Scenario, request: dict[str, Any], binary: Path | None) -> dict[str, Any]:
    """run_held's result, always with "ok", and with "error" when anything failed."""
    request["_window"] = None  # run_stream (the Python clients) puts its window here
    result: dict[str, Any] = {"ok": False, "client": wsload.NAME if binary else loadgen.PICOWS}
    try:
        result.update(await run_held(scenario, request, binary))
    except Exception as exc:
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        return result
    window: loadgen.Window | None = request["_window"]
    if window is not None:
        result["ok"] = window.error is None
        if window.error is not None:
            result.update(error=window.error, wrong_echo=window.wrong_echo)
    if result["ok"] and result["held"] < scenario.connections:
        result.update(
            ok=False,
            error=f"only {result['held']} of {scenario.connections} held connections "
            "were still open after the window",
        )
    return result


def main() -> None:
    request = json.loads(sys.argv[1])
    loadgen.raise_open_file_limit()
    scenario = Scenario.from_json(request["scenario"])
    try:
        binary = loadgen.choose_client(scenario, request)
    except wsload.BuildFailed as exc:
        result: dict[str, Any] = {"ok": False, "client": wsload.NAME, "error": str(exc)}
    else:
        import uvloop

        result = uvloop.run(run(scenario, request, binary))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
