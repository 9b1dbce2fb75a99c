"""What the runner tells its caller while it works: typed events instead of dicts."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ..runflow.models import RunStatus


class ItemState(str, enum.Enum):
    """Where one item of a job is. The values are what a person reads in the node's status and the CLI."""

    CACHED = "from cache"
    UPLOADING = "uploading"
    CREATING = "creating"
    RESUMING = "resuming"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"

    @classmethod
    def of_run(cls, status: RunStatus) -> ItemState:
        # a succeeded run is still RUNNING here: DONE only once the result is in hand
        return cls.QUEUED if status is RunStatus.QUEUED else cls.RUNNING

    @property
    def finished(self) -> bool:
        return self in (ItemState.CACHED, ItemState.DONE)


@dataclass(frozen=True)
class Plan:
    """What a job will do before it does it: how many runs it creates and what that costs."""

    items: int
    cached: int
    pending: int
    new_runs: int
    cost_usd: float
    line: str
    estimate_s: float | None = None


@dataclass(frozen=True)
class ItemEvent:
    """One item changed state."""

    index: int
    label: str
    state: ItemState
    elapsed: float | None = None
    run_id: str | None = None
    run_status: RunStatus | None = None
    cost: float | None = None


Event = Plan | ItemEvent
Listener = Callable[[Event], None]
