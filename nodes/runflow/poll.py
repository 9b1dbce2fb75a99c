"""When to ask for a run's status: aim at the expected finish, poll finely around it, back off when it runs long.

Without an estimate the polls follow a request budget instead. A run found done by poll k lasted longer than the
time of poll k-1; sending poll k-1 no earlier than k / BUDGET s keeps the polls per run-second under ``BUDGET``:
poll k goes at (k + 1) / BUDGET s (1.33, 2.0, 2.67, ... s for 1.5 requests per run-second), or, for long runs,
``LATE_FRACTION`` of the elapsed time after the previous poll, whichever is later.
"""

from __future__ import annotations

import asyncio

BUDGET = 1.5  # status requests per run-second, at most
LATE_FRACTION = 0.1  # without an estimate, a long run is found at most this fraction of its run time late
FINE_FLOOR = 0.05  # seconds: the finest gap between two polls right after the expected finish


class PollSchedule:
    """Delays between status polls.

    With an estimate E of the run's duration (run time, from ``started_at``), sleep until just after the expected
    finish (with a status poll at least every ``max_interval``), poll finely after it, then back off geometrically.
    A poll that shows the run still queued moves the expected finish (``queued``); one that shows when it started
    anchors it (``started_after``). Without an estimate: the budget schedule (module docstring). No poll is ever
    sent earlier than the budget allows, whatever the estimate says.
    """

    def __init__(self, estimate: float | None = None, *, first: float = 0.5, growth: float = 1.5,
                 max_interval: float = 5.0, budget: float = BUDGET, min_gap: float = 0.2):
        self.estimate = estimate if estimate and estimate > 0 else None
        self.first, self.growth, self.max_interval = first, growth, max_interval
        self.budget, self.min_gap = budget, min_gap
        self._interval = first
        self._target = self._expected(0.0)  # when the run should be done, in seconds since the wait began
        self._polls = 0
        self._last = 0.0

    def _expected(self, start: float) -> float | None:
        if self.estimate is None:
            return None
        return start + self.estimate + self.margin

    @property
    def margin(self) -> float:
        """How long after the expected finish the first poll goes: a little (3 ms + 0.1 %), so a run on time is
        found at once; the wait is timed from the create's answer, so this only covers clock granularity."""
        return 0.003 + 0.001 * (self.estimate or 0.0)

    @property
    def fine(self) -> float:
        """The gap between the polls right after the expected finish (three of them, then geometric back-off):
        2 % of the estimate, at least 50 ms. The request budget still caps them (``next_delay``)."""
        return max(FINE_FLOOR, 0.02 * (self.estimate or 0.0))

    def queued(self, elapsed: float) -> None:
        """A poll at ``elapsed`` saw the run not started yet: it cannot finish before elapsed + E."""
        if self.estimate is not None:
            self._target = max(self._target or 0.0, self._expected(elapsed))

    def started_after(self, queue_seconds: float) -> None:
        """Runflow says compute started ``queue_seconds`` after the run was created: finish = that + E."""
        if self.estimate is not None and 0 <= queue_seconds < 3600:
            self._target = self._expected(queue_seconds)

    def next_delay(self, elapsed: float) -> float:
        # the budget holds in every phase (a wrong, too short estimate must not turn into a burst of polls); only the
        # first poll aimed at an estimate may come earlier: it bets on finding the run done
        aimed = self.estimate is not None and self._polls == 0
        floor = 0.0 if aimed else (self._polls + 2) / self.budget - elapsed
        delay = max(self._next(elapsed), floor)
        self._polls += 1
        self._last = elapsed + delay
        return delay

    def _next(self, elapsed: float) -> float:
        if self._target is not None:
            if elapsed < self._target - 1e-3:
                return min(self._target - elapsed, self.max_interval)
            if elapsed < self._target + 3 * self.fine:
                self._interval = self.fine
                return self.fine
            delay = self._interval
            self._interval = min(self._interval * self.growth, self.max_interval)
            return delay
        # no estimate: the budget floor (next_delay), or LATE_FRACTION of the elapsed time for long runs
        at = max((1 + LATE_FRACTION) * self._last, elapsed + self.min_gap)
        return min(at - elapsed, self.max_interval)


async def sleep_or_wake(delay: float, wake: asyncio.Event | None) -> bool:
    """Sleep ``delay`` seconds, or less if ``wake`` is set (a verified callback); True if woken early."""
    if wake is None:
        await asyncio.sleep(delay)
        return False
    try:
        await asyncio.wait_for(wake.wait(), timeout=delay)
    except asyncio.TimeoutError:
        return False
    wake.clear()  # one callback wakes one poll; a set event left set would poll back to back
    return True
