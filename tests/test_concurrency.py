"""The adaptive limit on runs in flight: slow start, a storm halves it once per cooldown, a stray 429 does not."""

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
