"""Adaptive concurrency: how many runs to keep in flight without tripping Runflow's rate limits.

Additive increase, multiplicative decrease (the way TCP finds a link's capacity): the limit grows by one per clean
completion until the first back-off (slow start), then by one per ``grow_after`` clean completions in a row; it
halves on a 429/503 storm (at most once per ``cooldown`` seconds, so one storm is one back-off, not fifty), and never
leaves [``floor``, ``ceiling``]. The runner holds a ``slot()`` for each
run from create to collected; the transport reports every HTTP status it sees through ``observe``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

THROTTLE_STATUSES = frozenset({429, 503})


@dataclass
class LimiterStats:
    peak_in_flight: int = 0
    backoffs: int = 0
    throttled: int = 0  # 429/503 answers seen
    limit_seconds: float = 0.0  # integral of in-flight runs over time (for the achieved average)
    busy_seconds: float = 0.0

    @property
    def average_in_flight(self) -> float:
        return self.limit_seconds / self.busy_seconds if self.busy_seconds else 0.0


class AdaptiveLimiter:
    """An asyncio semaphore whose size adapts. Use one per event loop."""

    def __init__(self, ceiling: int, *, start: int | None = None, floor: int = 1, grow_after: int = 2,
                 cooldown: float = 2.0, window: float = 2.0, storm_min: int = 4, storm_share: float = 0.25,
                 clock=time.monotonic):
        self.ceiling = max(1, int(ceiling))
        self.floor = max(1, min(int(floor), self.ceiling))
        self.limit = max(self.floor, min(self.ceiling, start if start is not None else max(4, self.ceiling // 2)))
        self.grow_after, self.cooldown, self.clock = grow_after, cooldown, clock
        self.window, self.storm_min, self.storm_share = window, storm_min, storm_share
        self._recent: deque[tuple[float, bool]] = deque()
        self.in_flight = 0
        self.stats = LimiterStats()
        self._clean = 0
        self._last_backoff = -1e9
        self._last_tick: float | None = None
        self._changed = asyncio.Condition()

    def _tick(self) -> None:
        now = self.clock()
        if self._last_tick is not None and self.in_flight:
            self.stats.limit_seconds += self.in_flight * (now - self._last_tick)
            self.stats.busy_seconds += now - self._last_tick
        self._last_tick = now

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self._tick()
            self.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            async with self._changed:
                self._tick()
                self.in_flight -= 1
                self._changed.notify_all()

    def observe(self, status: int) -> None:
        """Every HTTP status the transport sees (0 = a network error). A storm (at least ``storm_min`` throttles
        that are ``storm_share`` or more of the answers of the last ``window`` seconds) shrinks the limit; a stray
        429 among healthy answers does not (the transport's retry handles it)."""
        now = self.clock()
        throttled = status in THROTTLE_STATUSES
        self._recent.append((now, throttled))
        while self._recent and now - self._recent[0][0] > self.window:
            self._recent.popleft()
        if not throttled:
            return
        self.stats.throttled += 1
        self._clean = 0
        hits = sum(1 for _, t in self._recent if t)
        if hits >= self.storm_min and hits >= self.storm_share * len(self._recent) \
                and now - self._last_backoff >= self.cooldown:
            self._last_backoff = now
            self.stats.backoffs += 1
            self.limit = max(self.floor, self.limit // 2)

    def succeeded(self) -> None:
        """One run collected cleanly (call it inside its slot). Until the first back-off every clean run adds one
        (slow start); after it, one per ``grow_after`` clean runs in a row, never within ``cooldown`` of a back-off."""
        self._clean += 1
        needed = 1 if not self.stats.backoffs else self.grow_after
        if self._clean >= needed and self.clock() - self._last_backoff >= self.cooldown:
            self._clean = 0
            self.limit = min(self.ceiling, self.limit + 1)  # waiters see it when the caller's slot is released
