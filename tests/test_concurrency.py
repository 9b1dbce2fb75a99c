"""Catalog units: the adaptive limit on runs in flight (slow start, a storm halves it once per cooldown, a stray 429
does not) and the progress line (live on a terminal, sparse plain lines otherwise, silent with -q)."""

import asyncio

from nodes.core.concurrency import AdaptiveLimiter


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_grows_while_clean_backs_off_on_storms_only_and_stays_in_bounds():
    clock = Clock()
    lim = AdaptiveLimiter(16, start=4, clock=clock)
    for _ in range(30):
        lim.succeeded()
    assert lim.limit == 16  # slow start, capped at the ceiling
    for _ in range(40):  # healthy traffic with one stray 429: the transport retries it, no back-off
        lim.observe(200)
    lim.observe(429)
    assert lim.limit == 16 and lim.stats.backoffs == 0
    clock.t = 5.0
    for _ in range(10):  # a storm: every answer is a 429 -> one halving per cooldown
        lim.observe(429)
    assert lim.limit == 8 and lim.stats.backoffs == 1
    clock.t = 7.5
    for _ in range(10):
        lim.observe(503)
    assert lim.limit == 4
    lim.succeeded()
    assert lim.limit == 4  # within the cooldown: no growth yet
    clock.t = 20.0
    for _ in range(4):
        lim.succeeded()
    assert lim.limit == 6  # after a back-off: one per grow_after (2) clean runs
    for _ in range(50):
        clock.t += 3
        for _ in range(10):
            lim.observe(429)
    assert lim.limit == 1  # never below the floor


def test_slots_never_exceed_the_limit():
    async def main():
        lim = AdaptiveLimiter(3, start=3)
        running, peak = 0, 0

        async def job():
            nonlocal running, peak
            async with lim.slot():
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.01)
                running -= 1

        await asyncio.gather(*(job() for _ in range(20)))
        return peak, lim.stats.peak_in_flight

    assert asyncio.run(main()) == (3, 3)


def test_progress_is_one_live_line_on_a_terminal_and_sparse_plain_lines_otherwise():
    import io

    from nodes.cli.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock = Clock()
    live = Tty()
    p = Progress(4, stream=live, in_flight=lambda: 2, spent=lambda: 0.4, clock=clock)
    clock.t = 30.0
    p.result(True, fresh=True)
    p.result(False, fresh=False)
    text = live.getvalue()
    assert "\n" not in text and text.count("\r") == 2  # rewritten in place
    assert "2/4 done, 1 failed · 2 in flight · 2 runs/min · ETA 30 s · spent $0.40" in text
    p.close()
    assert live.getvalue().endswith("\n")

    plain = io.StringIO()
    p = Progress(3, stream=plain, clock=clock)
    for _ in range(3):
        p.result(True, fresh=True)  # same instant: the first line, then only the last one
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in plain.getvalue() and "3/3 done" in lines[-1]
    quiet = io.StringIO()
    Progress(1, quiet=True, stream=quiet).result(True, fresh=True)
    assert quiet.getvalue() == ""
