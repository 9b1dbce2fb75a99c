"""Per-organisation concurrency: at most ``max_concurrency`` runs past ``queued`` at once; the rest wait, FIFO.

Exact, not planned: a slot frees at the moment its run actually ended (``completed_at``, late renders and early
input failures included), and the next waiting run starts then (or when its own queue time is up, if later).
Admission is evaluated lazily, whenever a run is looked at, from recorded times, so what clients see does not
depend on when they look. Only runs with a finite plan take a slot (a scripted never-ending status does not).
"""

from __future__ import annotations

from .config import TERMINAL


class SlotsMixin:
    """Sandbox methods for the concurrency cap (state lives on the Sandbox: _waiting, _holding, _free_at)."""

    def _takes_slot(self, plan: list) -> bool:
        return plan[0][0] == "queued" and plan[-1][0] in TERMINAL and all(d is not None for _, d in plan[:-1])

    def _admit(self, now: float) -> None:
        """Release the slots of runs that ended and start waiting runs in their place (call with the lock held)."""
        for run_id in list(self._holding):
            rs = self._state[run_id]
            self._refresh(rs, now)
            if rs.frozen:
                self._holding.discard(run_id)
                self._free_at.append(rs.end_t)
        cap = max(1, int(self.max_concurrency))
        free = cap - len(self._holding)
        self._free_at.sort()
        del self._free_at[max(0, free):]  # a lowered cap: fewer free slots
        self._free_at += [0.0] * (free - len(self._free_at))  # a raised cap: slots free since ever
        while self._waiting and self._free_at:
            rs = self._state[self._waiting.popleft()]
            start = max(rs.t0 + rs.plan[0][1], self._free_at.pop(0))
            rs.plan[0] = ("queued", start - rs.t0)
            rs.slot_wait = False
            self._holding.add(rs.id)

    def _enqueue(self, rs, now: float) -> None:
        """Register a new run with the cap (call with the lock held, after it is in ``_state``)."""
        if self._takes_slot(rs.plan):
            rs.slot_wait = True
            self._waiting.append(rs.id)
            self._admit(now)
