"""The status-poll schedule, simulated on a virtual clock (no sleeping, no timing): how many status requests a run of
T seconds costs and how long after its finish the result is seen, with and without an estimate."""

from __future__ import annotations

import asyncio

import pytest

from nodes.core.timing import DurationEstimate
from nodes.runflow.client import RunflowClient
from nodes.runflow.models import Run, example_durations
from nodes.runflow.poll import BUDGET, LATE_FRACTION, PollSchedule


def found(schedule: PollSchedule, finish: float, horizon: float = 4000.0) -> tuple[float, int]:
    """(time the first poll at or after ``finish`` goes, polls sent until then)."""
    t, polls = 0.0, 0
    while t < finish:
        t += schedule.next_delay(t)
        polls += 1
        assert t < horizon
    return t, polls


RUN_TIMES = [1.5, 2.0, 2.5, 3.0, 3.3, 4.0, 5.0, 7.0, 10.0, 15.0, 30.0, 45.0, 60.0, 120.0, 300.0, 900.0]


@pytest.mark.parametrize("T", RUN_TIMES)
def test_without_an_estimate_the_polls_keep_the_budget_and_land_close(T):
    at, polls = found(PollSchedule(), T)
    assert polls / T <= BUDGET, f"{polls} status requests for a {T} s run"
    # at most one budget interval late for short runs, LATE_FRACTION of the run time for long ones (5 s cap)
    assert at - T <= min(max(1 / BUDGET + 1e-9, LATE_FRACTION * T * 1.01), 5.0 + 1e-9), (T, at)


def test_without_an_estimate_a_3s_run_is_seen_within_a_third_of_a_second():
    at, polls = found(PollSchedule(), 3.0)
    assert at - 3.0 <= 0.34 and polls == 4  # polls at 1.33, 2.0, 2.67, 3.33 s: 1.33 per run-second


@pytest.mark.parametrize("T", RUN_TIMES)
def test_with_a_right_estimate_one_poll_finds_the_run(T):
    at, polls = found(PollSchedule(estimate=T), T)
    assert polls <= 1 + T // 5  # one, plus the keep-alive polls every max_interval (5 s)
    assert 0 <= at - T <= 0.02 + 0.011 * T


@pytest.mark.parametrize("factor", [0.5, 0.9, 1.1, 1.5, 3.0])
@pytest.mark.parametrize("T", [3.0, 10.0, 60.0])
def test_with_a_wrong_estimate_the_budget_still_holds(T, factor):
    at, polls = found(PollSchedule(estimate=T * factor), T)
    assert polls / T <= BUDGET, (T, factor, polls)
    # found late by at most the estimate's own overshoot plus a third of the run time (or 1 s)
    assert at - T <= max(T * factor - T, 0) + max(0.35 * T, 1.0), (T, factor, at)


def test_a_queued_run_moves_the_aim_and_started_at_anchors_it():
    s = PollSchedule(estimate=3.0)
    assert s.next_delay(0.0) == pytest.approx(3.0 + s.margin)
    s.queued(3.05)  # still queued at the first poll: it cannot end before 3.05 + 3 s
    assert s.next_delay(3.05) == pytest.approx(3.0 + s.margin)
    s.started_after(4.0)  # Runflow: compute began 4 s after creation
    assert s.next_delay(6.1) == pytest.approx(4.0 + 3.0 + s.margin - 6.1)


def test_run_queue_seconds_from_runflow_timestamps():
    run = Run({"created_at": "2026-12-04T10:00:00+00:00", "started_at": "2026-12-04T10:00:02.500000+00:00"})
    assert run.queue_seconds == pytest.approx(2.5)
    assert Run({"created_at": "2026-12-04T10:00:00Z", "started_at": None}).queue_seconds is None
    assert Run({"created_at": "garbage", "started_at": "2026-12-04T10:00:00Z"}).queue_seconds is None


def test_example_durations_at_any_depth():
    assert example_durations({"items": [{"duration_ms": 3000}, {"run": {"duration_ms": 5000}}, {"x": 1}]}) == [3.0,
                                                                                                              5.0]
    assert example_durations([{"duration_ms": True}, {"duration_ms": -1}, {"duration_ms": "3"}]) == []


def test_fresh_install_takes_the_prior_from_runflow_examples_then_its_own_timing(sandbox, tmp_path):
    """Against the sandbox (run time 0.2 s): the examples' duration_ms becomes the estimate until a run is timed."""
    est = DurationEstimate(tmp_path / "timing.json")
    assert est.value is None

    async def ask():
        async with RunflowClient(sandbox.api_key, sandbox.url) as client:
            return await est.ask_prior(client)

    assert asyncio.run(ask()) == pytest.approx(sandbox.run_seconds)
    assert sandbox.count("GET", "/v1/models/runflow/multi-angles/examples") == 1
    again = DurationEstimate(tmp_path / "timing.json")  # kept: a restart does not ask again
    assert again.value == pytest.approx(sandbox.run_seconds) and not again.measured
    again.record(5.0)  # the first measured run replaces the prior (not blended with it)
    assert DurationEstimate(tmp_path / "timing.json").value == 5.0


def test_no_examples_means_no_prior(sandbox, tmp_path):
    sandbox.faults.add("status", path="/v1/models/runflow/multi-angles/examples", status=404, times=None)
    est = DurationEstimate(tmp_path / "timing.json")

    async def ask():
        async with RunflowClient(sandbox.api_key, sandbox.url) as client:
            return await est.ask_prior(client)

    assert asyncio.run(ask()) is None and est.value is None
