"""One live progress line (done/total, in flight, runs/min, ETA, spent) on a terminal; plain lines, at most one
every few seconds, when stderr is not a terminal (logs, CI); nothing with -q."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

PLAIN_EVERY = 5.0  # seconds between plain lines


class Progress:
    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None,
                 in_flight: Callable[[], int] = lambda: 0, spent: Callable[[], float] = lambda: 0.0,
                 clock=time.monotonic):
        self.total, self.quiet = total, quiet
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.in_flight, self.spent, self.clock = in_flight, spent, clock
        self.start = clock()
        self.done = self.failed = self.fresh = 0
        self._last_plain = -1e9
        self._width = 0

    def result(self, ok: bool, fresh: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.fresh += 1 if fresh else 0
        self.show()

    def line(self) -> str:
        elapsed = max(1e-6, self.clock() - self.start)
        rate = self.fresh / elapsed * 60
        left = self.total - self.done
        eta = f"{left / (self.done / elapsed):.0f} s" if self.done and left else ("0 s" if not left else "?")
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.done}/{self.total} done{failed} · {self.in_flight()} in flight · {rate:.0f} runs/min · "
                f"ETA {eta} · spent ${self.spent():.2f}")

    def show(self, force: bool = False) -> None:
        if self.quiet:
            return
        if self.live:
            text = self.line()
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
        elif force or self.done == self.total or self.clock() - self._last_plain >= PLAIN_EVERY:
            self._last_plain = self.clock()
            print(f"[{self.clock() - self.start:6.1f}s] {self.line()}", file=self.stream)

    def say(self, text: str) -> None:
        """A message that must not be overwritten by the live line."""
        if self.live and self._width and not self.quiet:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        print(text, file=self.stream)

    def close(self) -> None:
        if self.live and self._width and not self.quiet:
            self.stream.write("\n")
            self._width = 0
