"""Retry policy: which failures repeat, and how long to wait (Retry-After, else capped backoff with jitter)."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass
class RetryPolicy:
    """Up to ``attempts`` tries; waits ``base * 2**n`` capped at ``cap`` with jitter, or what the server asks."""

    attempts: int = 5  # Runflow's documented policy: max 5 attempts
    base: float = 1.0  # seconds; Runflow's pseudo-code starts at 1 s and doubles
    cap: float = 32.0  # ... capped at 32 s
    jitter: float = 1.0  # plus 0..1 s, so concurrent runs don't retry in lockstep
    max_retry_after: float = 120.0  # a longer Retry-After is capped: ask again after this long
    rng: random.Random = field(default_factory=random.Random)

    def should_retry_status(self, status: int) -> bool:
        return status in RETRY_STATUSES

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return min(self.base * (2**attempt), self.cap) + self.rng.uniform(0, self.jitter)


NO_RETRY = RetryPolicy(attempts=1)
