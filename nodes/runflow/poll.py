"""When to ask for a run's status: aim at the expected finish, poll finely around it, back off when it runs long."""

from __future__ import annotations

import asyncio


class PollSchedule:
    """Delays between status polls.

    With an estimate E of the run's duration, sleep until shortly before E (with a status poll at least every
    ``max_interval``), poll finely around E, then back off geometrically. Without one, back off from ``first``.
    """

    def __init__(self, estimate: float | None = None, *, first: float = 0.5, growth: float = 1.5,
                 max_interval: float = 5.0):
        self.estimate = estimate if estimate and estimate > 0 else None
        self.first, self.growth, self.max_interval = first, growth, max_interval
        self._interval = first

    def next_delay(self, elapsed: float) -> float:
        if self.estimate is not None:
            lead = max(0.25, 0.08 * self.estimate)
            fine = max(0.1, 0.04 * self.estimate)
            if elapsed < self.estimate - lead:
                return min(self.estimate - lead - elapsed, self.max_interval)
            if elapsed < self.estimate + 2 * lead:
                self._interval = fine
                return fine
        delay = self._interval
        self._interval = min(self._interval * self.growth, self.max_interval)
        return delay


async def sleep_or_wake(delay: float, wake: asyncio.Event | None) -> None:
    """Sleep ``delay`` seconds, or less if ``wake`` is set (a verified callback)."""
    if wake is None:
        await asyncio.sleep(delay)
        return
    try:
        await asyncio.wait_for(wake.wait(), timeout=delay)
    except asyncio.TimeoutError:
        return
    wake.clear()  # one callback wakes one poll; a set event left set would poll back to back
