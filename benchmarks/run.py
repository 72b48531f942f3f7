"""Run every scenario against asgiws and its peers, alternating servers round by round.

Usage: python benchmarks/run.py [--quick] [--rounds N] [--servers a,b] [--scenarios x,y] ...

Each (round, scenario, server) starts a fresh server pinned to one core, runs the load
generator pinned to the other, appends one JSON line to benchmarks/results/, and stops the
server. The table at the end shows medians over rounds and ratios to asgiws. Exit status:
0 when everything was measured and every echo was right; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_venv, procstat, report, scenarios, wsload
from benchmarks.servers import SERVERS, Running, Server, ServerFailed, from_tree

REPO = bench_venv.REPO
LOG_DIR = REPO / ".cache" / "bench-logs"
LOADGEN_MARGIN = 60.0  # seconds a load generator may run past its scenario's length
PAUSE = 0.5  # seconds between two measurements, for sockets to settle
PACKAGES = (
    "asgiws", "uvicorn", "uvloop", "httptools", "websockets", "wsproto", "hypercorn",
    "granian", "picows", "starlette", "fastapi",
)  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: a few s per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated, from: " + ", ".join(SERVERS)
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(scenarios.DEFAULTS),
        help="comma-separated, from: "
        + ", ".join([*scenarios.DEFAULTS, *scenarios.GROUPS])
        + " ("
        + "; ".join(f"{g} = {' + '.join(m)}" for g, m in scenarios.GROUPS.items())
        + ")",
    )
    parser.add_argument("--duration", type=float, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, help="seconds of traffic before measuring")
    parser.add_argument(
        "--connections",
        action="append",
        default=[],
        metavar="SCENARIO=N",
        help="override a scenario's connection count, e.g. idle=5000 (repeatable)",
    )
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--output", type=Path, help="results file (default: a new one)")
    parser.add_argument(
        "--client",
        choices=("auto", "wsload", "python"),
        default="auto",
        help="load generator for echo/pipelined/large/handshakes: the C client wsload.c "
        "(built with gcc on first use), the Python clients (picows; raw asyncio for "
        "handshakes), or auto: wsload when gcc is there (the http scenarios always run wrk)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="use the bench venv as it is, do not pip"
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="also run asgiws from the checkout DIR, as server asgiws@NAME (its folder's "
        "name), with the suite's command line, app and venv (repeatable): before/after runs",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")
    for name in args.servers.split(","):
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    known = [*scenarios.DEFAULTS, *scenarios.GROUPS]
    for name in args.scenarios.split(","):
        if name not in known:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(known)}")
    args.scenario_names = scenarios.expand(args.scenarios.split(","))
    counts: dict[str, int] = {}
    for item in args.connections:
        name, _, value = item.partition("=")
        if name not in known or not value.isdigit() or int(value) < 1:
            parser.error(f"--connections takes SCENARIO=N, got {item!r}")
        counts.update(dict.fromkeys(scenarios.expand([name]), int(value)))
    args.connection_counts = counts
    for tree in args.tree:
        if not (tree / "asgiws" / "__init__.py").is_file():
            parser.error(f"--tree {str(tree)!r} is not an asgiws checkout (no asgiws/__init__.py)")
    return args


def reexec_in_venv(argv: list[str], install: bool) -> NoReturn:
    python = bench_venv.python() if not install else bench_venv.ensure()
    if not python.exists():
        sys.exit(f"no bench venv at {bench_venv.VENV}; run without --no-install first")
    os.chdir(REPO)
    os.execv(str(python), [str(python), "-m", "benchmarks.run", *argv])


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def asgiws_source(tree: Path = REPO) -> str:
    """The commit asgiws runs from, "+dirty" when asgiws/ has uncommitted changes.

    asgiws is installed editable, so each server start runs the tree as it is at that moment.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "asgiws"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        print(f"warning: open-file limit {soft} is below the {needed} the largest scenario needs")


def measure(
    server: Server, scenario: scenarios.Scenario, args: argparse.Namespace
) -> dict[str, Any]:
    """One fresh server, one load generator run; never raises for a server's failure."""
    running: Running | None = None
    loadgen: subprocess.Popen[str] | None = None
    try:
        running = Running(
            server, sys.executable, args.server_core, REPO, LOG_DIR, deflate=scenario.deflate
        )
        running.wait_ready()
        request = {
            "scenario": scenario.to_json(),
            "url": running.url,
            "host": "127.0.0.1",
            "port": running.port,
            "server_pid": running.pid,
            "server_core": args.server_core,
            "client_core": args.client_core,
            "client": args.client,
        }
        # idle+active holds its connections in its own program (benchmarks/heldload.py).
        module = "benchmarks.heldload" if scenario.kind == "held" else "benchmarks.loadgen"
        command = ["taskset", "-c", str(args.client_core), sys.executable, "-m", module,
                   json.dumps(request)]  # fmt: skip
        budget = scenario.warmup + scenario.duration + LOADGEN_MARGIN + scenario.connections / 200
        loadgen = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = loadgen.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"load generator still running after {budget:.0f} s"}
        lines = out.strip().splitlines()
        try:
            result: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            tail = " | ".join(err.strip().splitlines()[-5:])
            return {"ok": False, "error": f"load generator exit {loadgen.returncode}: {tail}"}
        if result.get("ok") and running.process.poll() is not None:
            result["ok"] = False
            result["error"] = f"server exited during the run:\n{running.log_tail()}"
        if not result.get("ok") and running.log_tail(3):
            result["server_log_tail"] = running.log_tail(5)
        return result
    except ServerFailed as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait()
        if running is not None:
            running.stop()


def progress(round_: int, rounds: int, server: str, scenario: str, r: dict[str, Any]) -> str:
    prefix = f"[round {round_}/{rounds}] {scenario:<14} {server:<25}"
    if not r.get("ok"):
        first = str(r.get("error", "failed")).splitlines()[0]
        return f"{prefix} FAILED: {first}"
    if scenario == "idle":
        kib = (r.get("bytes_per_conn") or 0) / 1024
        return f"{prefix} {r['ops']:>6} held, {kib:.1f} KiB/conn, opened in {r['open_s']:.1f} s"
    lat = r.get("latency_ms", {})
    flag = "  CLIENT-BOUND" if r.get("client_bound") else ""
    flag += "  client-core-full" if r.get("client_core_saturated") else ""
    if "held" in r:  # idle+active: the idle connections held meanwhile
        flag += f"  {r['held']:,} held, {(r.get('bytes_per_conn') or 0) / 1024:.1f} KiB/conn"
    if "deflate" in r:  # compressed-*: what the server's 101 answered to the offer
        flag += "  " + report.deflate_note(r["deflate"])
    return (
        f"{prefix} {r['ops_per_s'] or 0:>10,.0f}/s {r['ops_per_server_cpu_s'] or 0:>10,.0f}"
        f"/CPU-s  p99 {lat.get('p99') or 0:7.2f} ms  server CPU {r['server_cpu_share']:.0%}"
        f"  client CPU {r['client_cpu_share']:.0%}{flag}"
    )


def prepare_client(choice: str) -> str:
    """Build wsload now if it will be used (not inside each measurement); describe the choice."""
    if choice == "python":
        return "Python clients (picows; raw asyncio for handshakes), as asked"
    try:
        binary = wsload.build()
    except wsload.BuildFailed as exc:
        sys.exit(f"benchmarks: {exc}")
    if binary is None:
        if choice == "wsload":
            sys.exit("benchmarks: --client wsload needs gcc, which is not on PATH")
        return "Python clients (picows; raw asyncio for handshakes): no gcc to build wsload.c"
    shown = binary.relative_to(REPO) if binary.is_relative_to(REPO) else binary
    return f"wsload, the C client ({shown}); idle and idle+active's held connections on picows"


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not bench_venv.inside():
        reexec_in_venv(argv, install=not args.no_install)
    signal.signal(signal.SIGTERM, _interrupt)
    chosen = scenarios.build(
        args.scenario_names,
        quick=args.quick,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connection_counts,
    )
    servers = [SERVERS[name] for name in args.servers.split(",")]
    trees = {from_tree(tree).name: tree for tree in args.tree}
    servers += [from_tree(tree) for tree in args.tree]
    client = prepare_client(args.client)
    if any(s.kind == "http" for s in chosen):
        client += "; the http scenarios on wrk"
    # Server and load generator are separate processes: each holds one end of every connection,
    # and a few dozen descriptors of its own (idle+active: its active ones are in wsload).
    raise_fd_limit(max(s.connections + s.active for s in chosen) + 64)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {args.client_core})
    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or report.RESULTS_DIR / f"{run_id}.jsonl"
    common = {
        "run_id": run_id,
        "machine": procstat.machine(),
        "python": platform.python_version(),
        "versions": versions(),
        "quick": args.quick,
    }
    print(f"results: {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    print(f"machine: {common['machine']}; python {common['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in common["versions"].items()))
    print(f"load generator: {client}")
    print(f"server on core {args.server_core}, load generator on core {args.client_core}\n")
    written: list[dict[str, Any]] = []
    interrupted = False
    try:
        for round_ in range(1, args.rounds + 1):
            for scenario in chosen:
                for server in servers:
                    if not scenarios.applies(scenario, server.app):
                        continue
                    result = measure(server, scenario, args)
                    line = {
                        **common,
                        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                        "round": round_,
                        "asgiws_source": asgiws_source(trees.get(server.name, REPO)),
                        "server": server.name,
                        "asgi": server.asgi,
                        "app": server.app,
                        "packages": {p: common["versions"].get(p) for p in server.packages},
                        "scenario": scenario.to_json(),
                        "result": result,
                    }
                    report.append(output, line)
                    written.append(line)
                    print(progress(round_, args.rounds, server.name, scenario.name, result),
                          flush=True)  # fmt: skip
                    time.sleep(PAUSE)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: every server and load generator was stopped")
    if written:
        print()
        print(report.render_text(written))
    if interrupted:
        return 130
    failed = [line for line in written if not line["result"].get("ok")]
    if failed:
        wrong = sum(1 for line in failed if line["result"].get("wrong_echo"))
        print(f"\n{len(failed)} measurement(s) failed ({wrong} with a wrong echo): exit status 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
