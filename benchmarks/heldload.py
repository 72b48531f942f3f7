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
before and after the connections were opened, per held connection, as `idle` measures it,
and the pings the held connections got during the active run: how many, and the most in one
50-ms slot (`PingTally`; this process answers them itself to count them).
After the window every held connection must still be open, or the run fails.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from picows import WSFrame, WSMsgType, WSTransport

from benchmarks import loadgen, procstat, wsload
from benchmarks.scenarios import Scenario, active_part


class PingTally:
    """The pings held connections got, counted per SLOT seconds of this process's clock.

    A server that sends keep-alive pings in bursts writes them one after another while its
    active connections wait; the most pings in one slot shows how bursty they are (SLOT is
    asgiws's timer-wheel tick; slots are not aligned with the server's ticks, so a burst may
    be split between two).
    """

    SLOT = 0.05  # seconds

    def __init__(self) -> None:
        self.slots: dict[int, int] = {}

    def note(self) -> None:
        slot = int(time.perf_counter() / self.SLOT)
        self.slots[slot] = self.slots.get(slot, 0) + 1

    def between(self, start: float, end: float) -> dict[str, int]:
        """Pings from `start` to `end` (perf_counter seconds): their count, most in a slot."""
        first, last = int(start / self.SLOT), int(end / self.SLOT)  # as note() numbers them
        counts = [n for slot, n in self.slots.items() if first <= slot <= last]
        return {"held_pings": sum(counts), "max_pings_per_slot": max(counts, default=0)}


class HeldClient(loadgen.StreamClient):
    """A held connection's client: it answers the server's pings itself, to count them."""

    def __init__(self, tally: PingTally, window: loadgen.Window, payloads: list[bytes]) -> None:
        super().__init__(window, payloads, True, 1)
        self.tally = tally

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.PING:
            self.tally.note()
            transport.send_pong(frame.get_payload_as_bytes())
            return
        super().on_ws_frame(transport, frame)


async def run_held(
    scenario: Scenario, request: dict[str, Any], binary: Path | None
) -> dict[str, Any]:
    """Open and hold the idle connections, run the active window, close everything."""
    idle = loadgen.Window(sending=False)  # the held connections: one echo each, no more
    url, pid = request["url"], request["server_pid"]
    rss_before = await loadgen.rss_baseline(url, pid, idle)
    began = time.perf_counter()
    pings = PingTally()
    transports, _clients = await loadgen.open_idle(
        url, scenario.connections, idle, lambda window, load: HeldClient(pings, window, load)
    )
    opened_s = time.perf_counter() - began
    try:
        if idle.error is not None:
            raise ConnectionError(f"opening the held connections: {idle.error}")
        await asyncio.sleep(loadgen.IDLE_SETTLE)
        rss_held = procstat.tree_rss_bytes(pid)
        active = active_part(scenario)
        active_began = time.perf_counter()
        if binary is not None:
            result = await asyncio.to_thread(loadgen.run_wsload, binary, active, request)
        else:
            result = await loadgen.run_stream(active, request)
            result["client"] = loadgen.PICOWS
        result.update(pings.between(active_began, time.perf_counter()))
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
