"""Results: one JSON line per server per scenario per round; medians, ratios, targets.

Standard library only, so `benchmarks/render.py` runs with any Python.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REFERENCE = "asgiws"
KIB = 1024
WS_SCENARIOS = ("echo", "pipelined", "large", "handshakes", "idle")
HTTP_SCENARIOS = ("http-get", "http-post", "starlette-http", "fastapi-http")
COMPRESSED_SCENARIOS = ("compressed-32", "compressed-4k")
SCENARIO_ORDER = (*WS_SCENARIOS, *HTTP_SCENARIOS, "fanout", "idle+active", *COMPRESSED_SCENARIOS)
# The asgiws server each HTTP scenario measures, and its app ("raw": the raw ASGI app).
HTTP_REFERENCE = {
    "http-get": ("asgiws", "raw"),
    "http-post": ("asgiws", "raw"),
    "starlette-http": ("asgiws+starlette", "starlette"),
    "fastapi-http": ("asgiws+fastapi", "fastapi"),
}


def append(path: Path, line: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(line, sort_keys=True) + "\n")


def load(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.strip():
            lines.append(json.loads(raw))
    return lines


def latest(directory: Path = RESULTS_DIR) -> Path | None:
    files = sorted(directory.glob("*.jsonl"))
    return files[-1] if files else None


@dataclass
class Summary:
    """Medians over the rounds that measured correctly, for one server in one scenario."""

    server: str
    scenario: str
    asgi: bool
    app: str
    rounds: int
    failures: list[str]
    client_bound: int  # rounds where the client used >= 90% of its core
    client_core_saturated: int  # rounds where other load filled the client's core
    ops_per_s: float | None
    ops_per_cpu_s: float | None
    p50: float | None
    p99: float | None
    p999: float | None
    bytes_per_conn: float | None
    client_share: float | None
    server_share: float | None
    # compressed-*: True when every round's 101 accepted permessage-deflate, False when one
    # did not (then the server is kept out of the target); None in the other scenarios.
    deflate_negotiated: bool | None = None
    deflate_extensions: str | None = None  # the first round's Sec-WebSocket-Extensions
    deflate_ratio: float | None = None  # the server's messages: wire bytes / plain bytes
    # The share of the server's messages sent compressed (RSV1 set): a server may send any
    # message uncompressed (RFC 7692 §6), and asgiws does below --ws-deflate-min-size.
    deflate_compressed_share: float | None = None

    @property
    def comparable_peer(self) -> bool:
        """An ASGI server other than asgiws running the raw echo app."""
        return self.asgi and self.app == "raw" and not self.server.startswith(REFERENCE)


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def deflate_note(deflate: dict[str, Any]) -> str:
    """What a run's upgrade responses answered to the permessage-deflate offer."""
    if not deflate.get("negotiated"):
        return "deflate NOT negotiated (the 101 had no Sec-WebSocket-Extensions)"
    return f"deflate negotiated ({deflate.get('extensions')})"


def _deflate_fields(good: list[dict[str, Any]]) -> dict[str, Any]:
    offers = [r["deflate"] for r in good if "deflate" in r]
    if not offers:
        return {}
    negotiated = all(d.get("negotiated") for d in offers)
    ratios = [
        d["received_wire_bytes"] / d["received_plain_bytes"]
        for d in offers
        if d.get("received_plain_bytes")
    ]
    shares = [
        d["compressed_echoes"] / (d["compressed_echoes"] + d["plain_echoes"])
        for d in offers
        if d.get("compressed_echoes", 0) + d.get("plain_echoes", 0)
    ]
    return {
        "deflate_negotiated": negotiated,
        "deflate_extensions": offers[0].get("extensions") if negotiated else None,
        "deflate_ratio": _median(ratios),
        "deflate_compressed_share": _median(shares),
    }


def summarize(lines: list[dict[str, Any]]) -> list[Summary]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    order: list[str] = []
    for line in lines:
        groups.setdefault((line["scenario"]["name"], line["server"]), []).append(line)
        if line["server"] not in order:
            order.append(line["server"])
    summaries = []
    for (scenario, server), group in groups.items():
        good = [line["result"] for line in group if line["result"].get("ok")]
        failures = [
            f"round {line['round']}: {line['result'].get('error', 'failed')}"
            for line in group
            if not line["result"].get("ok")
        ]
        summaries.append(
            Summary(
                server=server,
                scenario=scenario,
                asgi=group[0]["asgi"],
                app=group[0]["app"],
                rounds=len(good),
                failures=failures,
                client_bound=sum(1 for r in good if r.get("client_bound")),
                client_core_saturated=sum(1 for r in good if r.get("client_core_saturated")),
                ops_per_s=_median(r.get("ops_per_s") for r in good),
                ops_per_cpu_s=_median(r.get("ops_per_server_cpu_s") for r in good),
                p50=_median(r.get("latency_ms", {}).get("p50") for r in good),
                p99=_median(r.get("latency_ms", {}).get("p99") for r in good),
                p999=_median(r.get("latency_ms", {}).get("p99.9") for r in good),
                bytes_per_conn=_median(r.get("bytes_per_conn") for r in good),
                client_share=_median(r.get("client_cpu_share") for r in good),
                server_share=_median(r.get("server_cpu_share") for r in good),
                **_deflate_fields(good),
            )
        )

    def key(summary: Summary) -> tuple[int, int]:
        rank = SCENARIO_ORDER.index(summary.scenario) if summary.scenario in SCENARIO_ORDER else 99
        return rank, order.index(summary.server)

    return sorted(summaries, key=key)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


LEGEND = (
    "ops = messages echoed (handshakes: whole connect/upgrade/echo/close loops; http-*: "
    "requests answered, on wrk; fanout: deliveries, one message to one subscriber); "
    "ops/server-CPU-s = ops / (utime+stime of the server's process tree over the window); "
    "ratios are server ÷ asgiws (the framework rows: ÷ asgiws with the same framework); "
    "latency is per message (handshakes: per loop; http-*: per request; fanout: from publish "
    "to the last subscriber); compressed-*: JSON-like text echoed with permessage-deflate "
    "where the server negotiated it."
)


def _reference_name(scenario: str) -> str:
    return HTTP_REFERENCE.get(scenario, (REFERENCE, "raw"))[0]


def table_rows(summaries: list[Summary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: medians per server and scenario, ratios to asgiws."""
    header = [
        "scenario", "server", "rounds", "ops/s", "ops/server-CPU-s", "ops/s ÷ asgiws",
        "per-CPU-s ÷ asgiws", "p50 ms", "p99 ms", "p99.9 ms", "KiB/conn", "client CPU",
        "notes",
    ]  # fmt: skip
    reference = {s.scenario: s for s in summaries if s.server == _reference_name(s.scenario)}
    rows = []
    for s in summaries:
        ref = reference.get(s.scenario)
        notes = []
        if s.failures:
            notes.append(f"FAILED {len(s.failures)}x: {s.failures[0][:90]}")
        if s.client_bound:
            notes.append(f"CLIENT-BOUND in {s.client_bound} round(s)")
        if s.client_core_saturated:
            notes.append(f"client core full of other load in {s.client_core_saturated} round(s)")
        if not s.asgi:
            notes.append("ceiling, not ASGI")
        if s.deflate_negotiated is False:
            notes.append("deflate NOT negotiated: not compared")
        elif s.deflate_negotiated:
            ratio = f", echoes at {s.deflate_ratio:.0%} of their size" if s.deflate_ratio else ""
            share = s.deflate_compressed_share
            if share is not None:
                ratio += f", {share:.0%} of them compressed"
            notes.append(f"deflate: {s.deflate_extensions}{ratio}")
        idle = s.scenario == "idle"
        rows.append(
            [
                s.scenario,
                s.server,
                str(s.rounds),
                "-" if idle else _fmt(s.ops_per_s),
                "-" if idle else _fmt(s.ops_per_cpu_s),
                "-" if idle else _ratio(s.ops_per_s, ref.ops_per_s if ref else None),
                "-" if idle else _ratio(s.ops_per_cpu_s, ref.ops_per_cpu_s if ref else None),
                _fmt(s.p50, 2),
                _fmt(s.p99, 2),
                _fmt(s.p999, 2),
                _fmt(s.bytes_per_conn / KIB if s.bytes_per_conn is not None else None, 1),
                "-" if s.client_share is None else f"{s.client_share:.0%}",
                "; ".join(notes),
            ]
        )
    return header, rows


@dataclass
class Target:
    name: str
    verdict: str  # PASS, FAIL or "n/a"
    detail: str


def _get(summaries: list[Summary], scenario: str, server: str) -> Summary | None:
    for s in summaries:
        if s.scenario == scenario and s.server == server and s.rounds:
            return s
    return None


def _best(
    summaries: list[Summary], scenario: str, metric: str, *, peers_only: bool, lowest: bool
) -> Summary | None:
    candidates = [
        s
        for s in summaries
        if s.scenario == scenario
        and s.rounds
        and getattr(s, metric) is not None
        and (s.comparable_peer if peers_only else s.server != REFERENCE)
    ]
    if not candidates:
        return None
    pick = min if lowest else max
    return pick(candidates, key=lambda s: float(getattr(s, metric)))


def targets(summaries: list[Summary]) -> list[Target]:
    """The project's targets, each judged on medians from this one run."""
    results = []

    def versus(name: str, scenario: str, metric: str, factor: float, *, peers_only: bool,
               lowest: bool, label: str) -> None:  # fmt: skip
        mine = _get(summaries, scenario, REFERENCE)
        best = _best(summaries, scenario, metric, peers_only=peers_only, lowest=lowest)
        if mine is None or getattr(mine, metric) is None:
            results.append(Target(name, "n/a", f"{REFERENCE} not measured in {scenario}"))
            return
        if best is None:
            results.append(Target(name, "n/a", "no peer measured"))
            return
        value, other = float(getattr(mine, metric)), float(getattr(best, metric))
        digits = 0 if other >= 100 else 2
        passed = value <= other * factor if lowest else value >= other * factor
        results.append(
            Target(
                name,
                "PASS" if passed else "FAIL",
                f"{REFERENCE} {value:,.{digits}f} {label} vs {best.server} {other:,.{digits}f} "
                f"(ratio {value / other:.2f}, needs {'<=' if lowest else '>='} {factor:g})",
            )
        )

    versus("echo msgs/CPU-s >= 1.5x best ASGI peer", "echo", "ops_per_cpu_s", 1.5,
           peers_only=True, lowest=False, label="msgs/CPU-s")  # fmt: skip
    versus("pipelined msgs/CPU-s >= 1.5x best ASGI peer", "pipelined", "ops_per_cpu_s", 1.5,
           peers_only=True, lowest=False, label="msgs/CPU-s")  # fmt: skip
    versus("1 MiB echo msgs/s >= 95% of best server", "large", "ops_per_s", 0.95,
           peers_only=False, lowest=False, label="msgs/s")  # fmt: skip
    granian = _get(summaries, "handshakes", "granian")
    mine = _get(summaries, "handshakes", REFERENCE)
    if mine is None or mine.ops_per_s is None or granian is None or granian.ops_per_s is None:
        results.append(Target("handshakes/s >= granian", "n/a", "asgiws or granian not measured"))
    else:
        passed = mine.ops_per_s >= granian.ops_per_s
        results.append(
            Target(
                "handshakes/s >= granian",
                "PASS" if passed else "FAIL",
                f"{REFERENCE} {mine.ops_per_s:,.0f}/s vs granian {granian.ops_per_s:,.0f}/s "
                f"(ratio {mine.ops_per_s / granian.ops_per_s:.2f})",
            )
        )
    idle = _get(summaries, "idle", REFERENCE)
    if idle is None or idle.bytes_per_conn is None:
        results.append(Target("idle <= 8 KiB/conn", "n/a", f"{REFERENCE} not measured in idle"))
    else:
        kib = idle.bytes_per_conn / KIB
        results.append(
            Target("idle <= 8 KiB/conn", "PASS" if kib <= 8 else "FAIL", f"{kib:.1f} KiB/conn")
        )
    versus("echo p99 latency <= best ASGI peer", "echo", "p99", 1.0,
           peers_only=True, lowest=True, label="ms")  # fmt: skip
    for scenario in HTTP_SCENARIOS:
        factor = 1.2 if HTTP_REFERENCE[scenario][1] == "raw" else 1.1
        results.append(_versus_uvicorn(summaries, scenario, "ops_per_cpu_s", factor))
    for scenario in HTTP_SCENARIOS:
        results.append(_versus_uvicorn(summaries, scenario, "p99", 1.0))
    versus("fanout deliveries/CPU-s >= 1.5x best ASGI peer", "fanout", "ops_per_cpu_s", 1.5,
           peers_only=True, lowest=False, label="deliveries/CPU-s")  # fmt: skip
    # idle+active: the active echo clients' p99 with 10,000 idle connections held.
    versus("idle+active p99 latency <= best ASGI peer", "idle+active", "p99", 1.0,
           peers_only=True, lowest=True, label="ms")  # fmt: skip
    results += [_compressed_target(summaries, scenario) for scenario in COMPRESSED_SCENARIOS]
    results += [_metrics_cost(summaries, scenario) for scenario in ("echo", "pipelined")]
    return results


METERED = "asgiws+metrics"


def _metrics_cost(summaries: list[Summary], scenario: str) -> Target:
    """asgiws with --metrics-port against asgiws without: within 3 % per server CPU-second."""
    name = f"{scenario} with metrics on >= 0.97x metrics off (msgs/CPU-s)"
    off, on = _get(summaries, scenario, REFERENCE), _get(summaries, scenario, METERED)
    if off is None or on is None or not off.ops_per_cpu_s or not on.ops_per_cpu_s:
        return Target(name, "n/a", f"{REFERENCE} and {METERED} not both measured in {scenario}")
    ratio = on.ops_per_cpu_s / off.ops_per_cpu_s
    return Target(
        name,
        "PASS" if ratio >= 0.97 else "FAIL",
        f"{METERED} {on.ops_per_cpu_s:,.0f} msgs/CPU-s vs {REFERENCE} {off.ops_per_cpu_s:,.0f} "
        f"(ratio {ratio:.3f}, needs >= 0.97)",
    )


def _compressed_target(summaries: list[Summary], scenario: str) -> Target:
    """asgiws against the best ASGI peer that negotiated permessage-deflate; the others are
    named, with the reason, and left out."""
    factor = 1.5
    name = f"{scenario} msgs/CPU-s >= {factor:g}x best ASGI peer with deflate"
    mine = _get(summaries, scenario, REFERENCE)
    if mine is None or mine.ops_per_cpu_s is None:
        return Target(name, "n/a", f"{REFERENCE} not measured in {scenario}")
    if not mine.deflate_negotiated:
        return Target(name, "FAIL", f"{REFERENCE} did not negotiate permessage-deflate")
    peers = [
        s for s in summaries
        if s.scenario == scenario and s.rounds and s.comparable_peer and s.ops_per_cpu_s
    ]  # fmt: skip
    left_out = [s.server for s in peers if not s.deflate_negotiated]
    excluded = (
        f"; excluded: {', '.join(left_out)} (did not negotiate permessage-deflate)"
        if left_out
        else ""
    )
    compared = [s for s in peers if s.deflate_negotiated]
    if not compared:
        return Target(name, "n/a", "no peer measured that negotiated deflate" + excluded)
    best = max(compared, key=lambda s: float(s.ops_per_cpu_s or 0))
    value, other = mine.ops_per_cpu_s, float(best.ops_per_cpu_s or 0)
    return Target(
        name,
        "PASS" if value >= other * factor else "FAIL",
        f"{REFERENCE} {value:,.0f} msgs/CPU-s vs {best.server} {other:,.0f} "
        f"(ratio {value / other:.2f}, needs >= {factor:g}){excluded}",
    )


def _versus_uvicorn(summaries: list[Summary], scenario: str, metric: str, factor: float) -> Target:
    """asgiws (with the scenario's framework) against uvicorn (httptools) serving the same app.

    Every uvicorn variant parses HTTP with httptools; the best one measured is the peer.
    """
    mine_name, app = HTTP_REFERENCE[scenario]
    latency = metric == "p99"
    if latency:
        name = f"{scenario} p99 latency <= uvicorn"
    else:
        name = f"{scenario} req/CPU-s >= {factor:g}x uvicorn"
    mine = _get(summaries, scenario, mine_name)
    if mine is None or getattr(mine, metric) is None:
        return Target(name, "n/a", f"{mine_name} not measured in {scenario}")
    peers = [
        s for s in summaries
        if s.scenario == scenario and s.rounds and s.app == app
        and s.server.startswith("uvicorn") and getattr(s, metric) is not None
    ]  # fmt: skip
    if not peers:
        return Target(name, "n/a", f"no uvicorn server measured in {scenario}")
    pick = min if latency else max
    best = pick(peers, key=lambda s: float(getattr(s, metric)))
    value, other = float(getattr(mine, metric)), float(getattr(best, metric))
    passed = value <= other * factor if latency else value >= other * factor
    digits, label = (2, "ms") if latency else (0, "req/CPU-s")
    return Target(
        name,
        "PASS" if passed else "FAIL",
        f"{mine_name} {value:,.{digits}f} {label} vs {best.server} {other:,.{digits}f} "
        f"(ratio {value / other:.2f}, needs {'<=' if latency else '>='} {factor:g})",
    )


def render_text(lines: list[dict[str, Any]]) -> str:
    summaries = summarize(lines)
    header, rows = table_rows(summaries)
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)).rstrip(),
        "  ".join("-" * width for width in widths),
    ]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            out.append("")
        previous = row[0]
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    out.append("")
    out.append(LEGEND)
    out.append("")
    out.append("Targets (informational; asgiws vs peers, medians of this run):")
    for target in targets(summaries):
        out.append(f"  {target.verdict:<4}  {target.name}: {target.detail}")
    out.append("")
    out.append(client_verdict(lines))
    return "\n".join(out)


def _cost_ratios(measured: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Median client/server CPU per operation: all of it, and the client's user space only."""
    whole, user = [], []
    for line in measured:
        r = line["result"]
        client, server = r.get("client_cpu_per_op_us"), r.get("server_cpu_per_op_us")
        if client and server:
            whole.append(client / server)
            user.append(client * (1 - (r.get("client_sys_share") or 0)) / server)
    if not whole:
        return None
    return statistics.median(whole), statistics.median(user)


def client_verdict(lines: list[dict[str, Any]]) -> str:
    # Rounds that measured correctly only, as in the table (summarize): a failed round's
    # figures are not shown, so it is not named here either.
    measured = [
        line
        for line in lines
        if line["result"].get("ok") and line["result"].get("client_cpu_share") is not None
    ]
    if not measured:
        return "Load generator: no windowed measurements."
    top = max(line["result"]["client_cpu_share"] for line in measured)
    bound = sorted(
        {
            f"{ln['server']}/{ln['scenario']['name']}"
            for ln in measured
            if ln["result"].get("client_bound")
        }
    )
    starved = sum(1 for line in measured if line["result"].get("client_core_saturated"))
    # Which client measured the windows (results from before wsload.c do not say).
    clients = sorted({str(line["result"]["client"]) for line in measured
                      if line["result"].get("client")})  # fmt: skip
    named = f" ({', '.join(clients)})" if clients else ""
    text = f"Load generator{named}: highest share of its core {top:.0%} (bound at >= 90%). "
    if bound:
        text += (
            f"It WAS the bottleneck in: {', '.join(bound)}; those figures understate the server."
        )
    else:
        text += "It was never the bottleneck."
    ratios = _cost_ratios(measured)
    if ratios is not None:
        text += (
            f" Client CPU per op / server CPU per op, median: {ratios[0]:.2f} in all, "
            f"{ratios[1]:.2f} in user space (the rest is loopback TCP work in the kernel, "
            "which the sender of each segment pays)."
        )
    if starved:
        text += (
            f" In {starved} of {len(measured)} runs other load filled the client's core "
            "(>= 95% busy): msgs/s there may be understated; per-CPU-second figures hold better."
        )
    return text


def render_markdown(lines: list[dict[str, Any]]) -> str:
    summaries = summarize(lines)
    header, rows = table_rows(summaries)
    first = lines[0] if lines else {}
    machine = first.get("machine", {})
    out = [
        f"Run {first.get('run_id', '?')} on {machine.get('cpu_model', '?')} "
        f"({machine.get('cores', '?')} cores), Python {first.get('python', '?')}; "
        "medians over alternating rounds; server pinned to one core, client to the other.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    out += ["", LEGEND, "", "| target | verdict | detail |", "|---|---|---|"]
    out += [f"| {t.name} | {t.verdict} | {t.detail} |" for t in targets(summaries)]
    versions = first.get("versions", {})
    if versions:
        out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    out += ["", client_verdict(lines)]
    return "\n".join(out)
