"""The node's status text and progress bar, drawn from the runner's typed events.

The text is at most two short sentences (what is happening; what it costs), then notes. Each line is a full sentence
ending with a period, so it still reads well where a frontend drops the line breaks (Vue nodes).
"""

from __future__ import annotations

import asyncio
import time

from ..core.events import Event, ItemEvent, ItemState, Plan
from ..core.session import SpendTotals
from ..core.spend import format_usd
from ..runflow.contract import PRICE_PER_RUN_USD
from . import adapter

# States in which a run may exist at Runflow (created, or being created): it may finish and bill after a Cancel.
SENT = (ItemState.CREATING, ItemState.RESUMING, ItemState.QUEUED, ItemState.RUNNING)
ORDER = (ItemState.DONE, ItemState.CACHED, ItemState.RUNNING, ItemState.QUEUED, ItemState.RESUMING,
         ItemState.CREATING, ItemState.UPLOADING)
# Where one item's bar stands in each state before it runs (fractions of its share of the bar).
BEFORE_RUNNING = {ItemState.UPLOADING: 0.03, ItemState.CREATING: 0.05, ItemState.RESUMING: 0.06,
                  ItemState.QUEUED: 0.08}
DEFAULT_ESTIMATE_S = 20.0


def runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def running_fraction(seconds: float, estimate: float | None) -> float:
    """0..1 for a running item: linear up to the estimate (to 0.75), then ever slower towards 1, never reaching it."""
    est = estimate if estimate and estimate > 0 else DEFAULT_ESTIMATE_S
    if seconds <= est:
        return 0.75 * seconds / est
    extra = seconds - est
    return 0.75 + 0.25 * extra / (extra + max(est, 10.0))


class Status:
    """Status text on the node: what is happening, what it costs, notes; and ComfyUI's progress bar."""

    STEPS = 100  # progress units per item

    def __init__(self, total: int, title: str, totals: SpendTotals, *, clock=time.monotonic):
        self.total, self.title, self.totals, self.clock = total, title, totals, clock
        self.start = clock()
        self.states: dict[int, ItemState] = {}
        self.running_since: dict[int, float] = {}
        self.plan: Plan | None = None
        self.final: tuple[str, str] | None = None  # (what happened, money line), kept when notes are added
        self.notes: list[str] = []  # input handling worth knowing (downscaled, alpha composited): always shown
        self.receipt = ""  # after a run: what Runflow's run records say it cost (core.receipts.run_receipt)
        self.node_id = adapter.context()[1]
        self.bar = adapter.ProgressBar(total * self.STEPS, self.node_id)

    # -- events ----------------------------------------------------------------------------------------------------
    def event(self, event: Event) -> None:
        if isinstance(event, Plan):
            self.plan = event
        elif isinstance(event, ItemEvent):
            self.states[event.index] = event.state
            if event.state is ItemState.RUNNING:
                self.running_since.setdefault(event.index, self.clock())
            self.update_bar()
        self.show()

    @property
    def estimate(self) -> float | None:
        return self.plan.estimate_s if self.plan else None

    def sent(self) -> int:
        """How many runs may exist at Runflow and are not collected yet (they can still finish and bill)."""
        return sum(1 for s in self.states.values() if s in SENT)

    def fraction(self, i: int) -> float:
        state = self.states.get(i)
        if state is None:
            return 0.0
        if state.finished:
            return 1.0
        if state is ItemState.RUNNING:
            seconds = self.clock() - self.running_since.get(i, self.clock())
            return 0.1 + 0.88 * running_fraction(seconds, self.estimate)
        return BEFORE_RUNNING.get(state, 0.0)

    def update_bar(self) -> None:
        self.bar.update(sum(self.fraction(i) for i in self.states) * self.STEPS)

    # -- text ------------------------------------------------------------------------------------------------------
    def remaining(self) -> str:
        running = [self.clock() - since for i, since in self.running_since.items() if not self.states[i].finished]
        if not self.estimate or not running:
            return ""
        left = self.estimate - min(running)  # the job ends with the run that started last
        if left >= 1:
            return f", about {left:.0f}s left"
        return ", taking longer than usual" if left < -5 else ""

    def activity(self) -> str:
        counts = {s: 0 for s in ORDER}
        for state in self.states.values():
            counts[state] += 1
        parts = [f"{n} {s.value}" for s, n in counts.items() if n]
        return ", ".join(parts) or "starting"

    def money(self) -> str:
        p = self.plan
        if p is None:
            return ""
        collect = (f"collecting {runs(p.pending)} sent earlier (no new charge)" if p.pending else "")
        if not p.new_runs:
            if collect:
                return collect[0].upper() + collect[1:] + "."
            return f"All {p.items} from the cache: $0.00." if p.cached == p.items else ""
        verb = "Spending" if self.sent() else "About to spend"
        text = f"{verb} {format_usd(p.cost_usd)} ({runs(p.new_runs)} × {format_usd(PRICE_PER_RUN_USD)})"
        if p.cached:
            text += f", {p.cached} from cache"
        return text + (f"; {collect}." if collect else ".")

    def session_line(self) -> str:
        return f"session total {format_usd(self.totals.spent_usd)} ({runs(self.totals.runs)})"

    def text(self) -> str:
        elapsed = self.clock() - self.start
        if self.final:
            what, money = self.final
            lines = [f"{self.title}: {what} · {elapsed:.0f}s.", money]
        else:
            lines = [f"{self.title}: {self.activity()} · {elapsed:.0f}s{self.remaining()}.", self.money()]
        if self.receipt and len(lines) > 1:  # two lines at most (frontend 1.58 shows two): the receipt joins line 2
            lines[1] = f"{lines[1]} {self.receipt[0].upper()}{self.receipt[1:]}."
        lines += [f"Note: {n.rstrip('.')}." for n in self.notes]
        return "\n".join(line for line in lines if line)

    def show(self, final: tuple[str, str] | None = None) -> None:
        if final is not None:
            self.final = final
        adapter.status_text(self.text(), self.node_id)

    # -- the last word -------------------------------------------------------------------------------------------
    def done(self, spent: float, hits: int, n: int) -> None:
        if hits == n:
            self.show(("from cache", f"$0.00; {self.session_line()}."))
        else:
            cache = f", {hits} from cache" if hits else ""
            self.show(("done", f"Spent {format_usd(spent)}{cache}; {self.session_line()}."))

    def failed(self, failed: int, n: int, spent: float, message: str) -> None:
        if n == 1:
            self.show(("failed", message))
        else:
            self.show((f"{failed} of {n} failed", f"{n - failed} done, spent {format_usd(spent)}; re-queue to "
                                                  "re-run only the failed ones."))

    def cancelled(self) -> str:
        """Show the cancel and return the notice (also the error the user sees when runs may still bill)."""
        n = self.sent()
        if n:
            notice = (f"Cancelled. {runs(n)} already sent to Runflow may still finish and bill (up to "
                      f"{format_usd(n * PRICE_PER_RUN_USD)}); re-queue the same inputs to collect "
                      f"{'it' if n == 1 else 'them'} (picked up, not paid again).")
        else:
            notice = "Cancelled before anything was sent to Runflow: nothing was billed."
        self.show(("cancelled", notice))
        return notice

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.update_bar()  # polls can be seconds apart: move the bar with the clock in between
            self.show()
