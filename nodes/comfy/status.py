"""The node's status text and progress bar, drawn from the runner's typed events."""

from __future__ import annotations

import asyncio
import time

from ..core.events import Event, ItemEvent, ItemState, Plan
from ..core.session import SpendTotals
from . import adapter


class Status:
    """Status text on the node: plan, per-item progress, elapsed, cost; and ComfyUI's progress bar."""

    STEPS = 100  # progress units per item

    def __init__(self, total: int, title: str, totals: SpendTotals):
        self.total, self.title, self.totals = total, title, totals
        self.start = time.monotonic()
        self.states: dict[int, ItemState] = {}
        self.progress: dict[int, float] = {}
        self.estimate: float | None = None
        self.plan_line = ""
        self.final: str | None = None  # the last word (done / error / cancelled), kept when notes are added
        self.notes: list[str] = []  # input handling worth knowing (downscaled, alpha composited): always shown
        self.receipt = ""  # after a run: what Runflow's run records say it cost (core.receipts.run_receipt)
        self.node_id = adapter.context()[1]
        self.bar = adapter.ProgressBar(total * self.STEPS, self.node_id)

    def event(self, event: Event) -> None:
        if isinstance(event, Plan):
            self.plan_line = "about to spend " + event.line
            self.estimate = event.estimate_s
        elif isinstance(event, ItemEvent):
            i, state = event.index, event.state
            self.states[i] = state
            if state.finished:
                self.progress[i] = 1.0
            elif self.estimate and event.elapsed is not None:  # time-based, never "done" before the result is in
                self.progress[i] = max(self.progress.get(i, 0.0), min(0.95, event.elapsed / self.estimate))
            else:
                self.progress[i] = max(self.progress.get(i, 0.0), 0.05)
            self.bar.update(sum(self.progress.values()) * self.STEPS)
        self.show()

    def show(self, final: str | None = None) -> None:
        self.final = final = final or self.final
        elapsed = time.monotonic() - self.start
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state.value] = counts.get(state.value, 0) + 1
        states = ", ".join(f"{n} {s}" for s, n in counts.items()) or "starting"
        lines = [f"{self.title}: {final or states} · {elapsed:.0f}s"]
        if self.plan_line and not final:
            lines.append(self.plan_line)
        lines.append(f"session total ${self.totals.spent_usd:.2f} ({self.totals.runs} runs)")
        lines += [self.receipt] if self.receipt else []
        lines += [f"note: {n}" for n in self.notes]
        adapter.status_text("\n".join(lines), self.node_id)

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.estimate:  # polls can be seconds apart: move the bar with the clock in between
                guess = min(0.95, (time.monotonic() - self.start) / self.estimate)
                for i, state in self.states.items():
                    if not state.finished:
                        self.progress[i] = max(self.progress.get(i, 0.0), guess)
                self.bar.update(sum(self.progress.values()) * self.STEPS)
            self.show()
