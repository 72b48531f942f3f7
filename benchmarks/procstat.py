"""Readings from /proc: CPU time and memory of a process tree, and how busy each core is."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces), or None."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: list[int] = []
    pending = [root]
    while pending and len(tree) < 10_000:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of every process in the tree, plus what its reaped children used."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def tree_rss_bytes(root: int) -> int:
    """Resident memory of every process in the tree (threads share their process's)."""
    total = 0
    for pid in process_tree(root):
        try:
            statm = (PROC / str(pid) / "statm").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(statm[1]) * PAGE_SIZE
    return total


@dataclass(frozen=True)
class CoreTimes:
    busy: dict[int, int]
    total: dict[int, int]


def core_times() -> CoreTimes:
    """Busy and total ticks per core, from /proc/stat."""
    busy: dict[int, int] = {}
    total: dict[int, int] = {}
    for line in (PROC / "stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(value) for value in values[:8]]
        core = int(name[3:])
        total[core] = sum(ticks)
        busy[core] = total[core] - ticks[3] - ticks[4]  # less idle and iowait
    return CoreTimes(busy, total)


def core_busy_fraction(before: CoreTimes, after: CoreTimes, core: int) -> float:
    elapsed = after.total.get(core, 0) - before.total.get(core, 0)
    if elapsed <= 0:
        return 0.0
    return (after.busy[core] - before.busy[core]) / elapsed


def machine() -> dict[str, object]:
    """CPU model, core count, kernel: what a results line needs to be compared with another."""
    model = platform.processor() or "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2**30, 1),
    }
