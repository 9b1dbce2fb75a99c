"""Everything that lives as long as the process (one ComfyUI server, one CLI run), in one object.

Every runner in the process shares it: uploads (one per source content), spend totals, per-prompt run counts and the
wake-ups that verified callbacks deliver. ``reset()`` forgets it all (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .prefault import ShapeMemory
from .source_memo import SourceMemo
from .uploads import UploadRegistry

PROMPTS_KEPT = 64  # per-prompt counts kept; older prompts are long finished
SEEN_KEPT = 2048  # callback run ids remembered, to answer redeliveries idempotently


@dataclass
class SpendTotals:
    """What this process created and spent (cache hits cost $0.00)."""

    runs: int = 0
    spent_usd: float = 0.0
    cache_hits: int = 0

    def as_dict(self) -> dict:
        return {"runs": self.runs, "spent_usd": round(self.spent_usd, 2), "cache_hits": self.cache_hits}


class PromptRuns:
    """Runs created per ComfyUI prompt id (for the per-prompt spend guard), bounded."""

    def __init__(self) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()

    def get(self, prompt_id: str) -> int:
        return self._counts.get(prompt_id, 0)

    def add(self, prompt_id: str, runs: int) -> None:
        self._counts[prompt_id] = self.get(prompt_id) + runs
        self._counts.move_to_end(prompt_id)
        while len(self._counts) > PROMPTS_KEPT:
            self._counts.popitem(last=False)


class Wakeups:
    """Waiting runs by id: a verified callback sets the run's event (from any thread) so its wait polls early."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._seen: OrderedDict[str, str] = OrderedDict()

    def register(self, run_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiting[run_id] = (asyncio.get_running_loop(), event)
        return event

    def forget(self, run_id: str) -> None:
        self._waiting.pop(run_id, None)

    def seen(self, run_id: str) -> bool:
        return run_id in self._seen

    def deliver(self, run_id: str, status: str) -> bool:
        """Record a callback for ``run_id``; wake its wait if one is registered. True when something was woken."""
        self._seen[run_id] = status
        while len(self._seen) > SEEN_KEPT:
            self._seen.popitem(last=False)
        entry = self._waiting.get(run_id)
        if entry is None:
            return False
        loop, event = entry
        loop.call_soon_threadsafe(event.set)
        return True


class Reservations:
    """Money admitted by the daily cap but not yet in the ledger (runs in flight), so concurrent jobs of this process
    cannot both squeeze under the cap. ``lock`` makes check-and-reserve one step."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.usd = 0.0
        self.runs = 0


class Session:
    def __init__(self) -> None:
        self.uploads = UploadRegistry()
        self.sources = SourceMemo()  # IMAGE tensors already turned into sources (nodes sharing one input)
        self.totals = SpendTotals()
        self.prompt_runs = PromptRuns()
        self.wakeups = Wakeups()
        self.reserved = Reservations()
        self.result_shapes = ShapeMemory()  # what results of a kind measured: the next batch is allocated ahead

    def reset(self) -> None:
        """Forget everything (uploads, totals, counts, waiters)."""
        self.__init__()


_PROCESS: list[Session] = []  # the one per-process session, created on first use


def process_session() -> Session:
    """The session of this process: the ComfyUI server's (shared by its nodes and routes) or the CLI's."""
    if not _PROCESS:
        _PROCESS.append(Session())
    return _PROCESS[0]
