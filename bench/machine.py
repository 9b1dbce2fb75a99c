"""Machine and process probes for the benchmarks (Linux /proc): busy cores, a process's CPU and peak RSS."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def busy_cores(seconds: float = 0.5) -> float:
    """Cores' worth of CPU in use over ``seconds`` (the whole machine: other people's work included)."""
    t0, i0 = _cpu_times()
    time.sleep(seconds)
    t1, i1 = _cpu_times()
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_quiet(limit: float, patience: float) -> float:
    """Wait (up to ``patience`` s) until the machine uses less than ``limit`` cores; returns the last reading."""
    deadline = time.monotonic() + patience
    while True:
        busy = busy_cores()
        if busy < limit or time.monotonic() > deadline:
            return busy


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_comfy_idle(pid: int, patience: float = 15.0) -> float:
    """Wait until ComfyUI itself is idle (< 5 % of a core over 0.3 s): after a prompt it may run gc.collect() (every
    10 s: ~0.3 s here, holding the GIL), which would delay the next prompt whatever node it runs. Returns the wait."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < patience:
        c0 = process_cpu(pid)
        time.sleep(0.3)
        if process_cpu(pid) - c0 < 0.015:
            break
    return time.monotonic() - t0


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
