"""The job as windows: a few sources loaded (decoded, encoded, hashed) at a time, each expanded to its poses.

Only the sources of the windows in flight hold pixels, so memory stays flat however many sources there are. The
dry run walks the same windows and asks the runner what each would do (cache hits, runs in flight, new runs).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass

from ..core import sources as core_sources
from ..core.sources import Source
from ..core.spec import JobSpec
from ..core.spend import cost_line, format_usd
from ..runflow.contract import PRICE_PER_RUN_USD
from .review import pose_stem
from .sources import Entry

LOADS_AT_ONCE = 2  # sources decoded + encoded at once: each holds a few copies of its pixels while it works
DEFAULT_RUN_SECONDS = 20.0  # a first guess of one run's time when none was measured yet on this machine


@dataclass
class Window:
    jobs: list[tuple[Source, JobSpec]]
    meta: dict[str, tuple[Entry, tuple[str, str, str]]]  # JobSpec.label -> (entry, pose)


def label(entry: Entry, pose: tuple[str, str, str]) -> str:
    return f"{entry.name}/{pose_stem(*pose)}"


def chunks(entries: list[Entry], size: int) -> Iterator[list[Entry]]:
    for i in range(0, len(entries), max(1, size)):
        yield entries[i:i + size]


def window_size(asked: int, entries: list[Entry], max_concurrent: int) -> int:
    """At least enough sources that two windows keep ``max_concurrent`` runs busy."""
    poses = max(1, min((len(e.poses) for e in entries), default=1))
    return max(1, asked, math.ceil(max_concurrent / poses))


async def load(chunk: list[Entry], fmt: str, base: dict, notes) -> Window:
    """Sources of one window (encoded off the event loop), and one job per pose."""
    gate = asyncio.Semaphore(LOADS_AT_ONCE)

    async def one(entry: Entry) -> Source:
        if entry.url:
            return core_sources.from_url(entry.name, entry.url)
        async with gate:
            return await asyncio.to_thread(core_sources.from_file, entry.path, fmt)

    srcs = await asyncio.gather(*(one(e) for e in chunk))
    jobs, meta = [], {}
    for entry, src in zip(chunk, srcs, strict=True):
        for note in src.notes:
            notes(f"{entry.name}: {note}")
        for pose in entry.poses:
            spec = JobSpec(view=pose[0], angle=pose[1], shot=pose[2], prompt=entry.prompt, label=label(entry, pose),
                           **base)
            jobs.append((src, spec))
            meta[spec.label] = (entry, pose)
    return Window(jobs, meta)


@dataclass
class DryRun:
    renders: int = 0
    cached: int = 0
    pending: int = 0
    new_runs: int = 0

    def lines(self, max_concurrent: int, run_seconds: float | None, max_spend: float | None) -> list[str]:
        runs = self.new_runs
        if max_spend is not None:
            runs = min(runs, int(max_spend / PRICE_PER_RUN_USD + 1e-9))
        out = [f"dry run: {self.renders} renders, {cost_line(runs, self.cached)}; nothing was created"]
        if runs < self.new_runs:
            out.append(f"  --max-spend {format_usd(max_spend)} stops after {runs} of {self.new_runs} new runs; "
                       "run again with a higher cap for the rest")
        if self.pending:
            out.append(f"  {self.pending} runs created earlier are still to collect (polled, not paid again)")
        per = run_seconds or DEFAULT_RUN_SECONDS
        todo = runs + self.pending
        wall = math.ceil(todo / max(1, max_concurrent)) * per if todo else 0.0
        how = "measured on this machine" if run_seconds else "a first guess; measured after the first runs"
        out.append(f"  expected wall time ≈ {_duration(wall)} ({todo} runs, up to {max_concurrent} in flight, "
                   f"≈ {per:.0f} s per run: {how})")
        return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
