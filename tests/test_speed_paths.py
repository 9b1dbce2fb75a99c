"""The speed paths of issue 12, each proven on real HTTP to the sandbox or on real tensors: the poll schedule counts
from the create's answer, polls finely right after the expected finish, the nodes sharing one IMAGE convert it once,
and the output batch is a normal float32 tensor (huge-page backed where the OS allows)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from nodes.core import batch, sources
from nodes.core.source_memo import SourceMemo
from nodes.runflow.client import RunflowClient
from nodes.runflow.poll import FINE_FLOOR, PollSchedule

POSE = {"view": "back view", "angle": "eye-level shot", "shot": "medium shot", "match_input_aspect": "true"}
SRC = sources.from_pixels(np.full((24, 24, 3), 128, np.uint8), "png")


def _create_then_wait(sandbox, *, late: float, since: bool, estimate: float) -> tuple[float, int]:
    """Create a run, do ``late`` s of other work, wait for it; (seconds from the create's arrival at the sandbox to
    the poll that found it done, status polls)."""

    async def go():
        async with RunflowClient(sandbox.api_key, sandbox.url) as client:
            asset = await client.upload(SRC.data, SRC.mime, SRC.filename)
            run = await client.create_run({**POSE, "image_url": asset.url}, idempotency_key="k-" + str(time.time()),
                                          client_ref="c-" + str(time.time()))
            await asyncio.sleep(late)  # journal, events, a slow disk: work between the create and the wait
            await client.wait(run, estimate=estimate, since=run.received if since else None, timeout=30)
            return client.stats.status_polls

    sandbox.prerender(SRC.data, POSE)  # the emulator's rendering (cold: imports, fonts) must not make the run late
    sandbox.reset_stats()
    polls = asyncio.run(go())
    create = next(a for a, _b, m, p, _s in sandbox.request_times if m == "POST" and p.endswith("/runs"))
    last_poll = [a for a, _b, m, p, _s in sandbox.request_times if m == "GET" and p.startswith("/v1/runs/")][-1]
    return last_poll - create, polls


def test_the_first_poll_counts_from_the_create_not_from_the_wait(sandbox):
    sandbox.run_seconds = 0.6
    anchored, polls = _create_then_wait(sandbox, late=0.3, since=True, estimate=0.6)
    assert polls == 1 and 0.6 <= anchored < 0.6 + 0.1, anchored  # found at once, not 0.3 s late
    unanchored, _ = _create_then_wait(sandbox, late=0.3, since=False, estimate=0.6)
    assert unanchored >= 0.6 + 0.29  # the old way: the other work's 0.3 s lands on the user


def test_a_run_a_little_over_its_estimate_is_found_within_the_fine_gap():
    for estimate in (3.0, 10.0):
        s = PollSchedule(estimate=estimate)
        finish, t, polls = estimate * 1.01, 0.0, 0
        while t < finish:
            t += s.next_delay(t)
            polls += 1
        fine = max(FINE_FLOOR, 0.02 * estimate)
        assert t - finish <= fine + 1e-9 and polls <= 2 + estimate // 5, (estimate, t, polls)  # + keep-alive polls


def test_fine_polls_never_beat_the_budget():
    s = PollSchedule(estimate=1.0)  # short run, estimate far too short: the budget, not the fine gap, rules
    t, polls = 0.0, 0
    while t < 6.0:
        t += s.next_delay(t)
        polls += 1
    assert polls / 6.0 <= 1.5


def _image(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)).float().div(255)


def test_nodes_sharing_one_image_convert_it_once():
    memo, image = SourceMemo(), _image()

    async def eight():
        return await asyncio.gather(*(sources.from_inputs(image, "", "auto", memo=memo) for _ in range(8)))

    got = asyncio.run(eight())
    assert memo.conversions == 1
    assert len({s[0].upload_sha256 for s in got}) == 1 and got[0][0].data == got[7][0].data
    assert asyncio.run(sources.from_inputs(image, "", "png", memo=memo))[0].mime == "image/png"  # format is in the key
    assert memo.conversions == 2


def test_an_edited_or_other_tensor_is_converted_again():
    memo = SourceMemo()
    with torch.inference_mode():  # as ComfyUI runs nodes: no version counter, the content is what tells
        image = _image()
        first = asyncio.run(sources.from_inputs(image, "", "auto", memo=memo))[0]
        assert asyncio.run(sources.from_inputs(image, "", "auto", memo=memo))[0] is first
        image.mul_(0.5)  # in place
        second = asyncio.run(sources.from_inputs(image, "", "auto", memo=memo))[0]
    assert memo.conversions == 2 and first.pixel_sha256 != second.pixel_sha256
    other = asyncio.run(sources.from_inputs(_image(1), "", "auto", memo=memo))[0]
    assert memo.conversions == 3 and other.pixel_sha256 not in (first.pixel_sha256, second.pixel_sha256)


def test_a_failed_conversion_is_not_remembered():
    memo, image = SourceMemo(), _image()
    calls = []

    async def bad():
        calls.append(1)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        asyncio.run(memo.get(image, "auto", bad))
    with pytest.raises(ValueError):
        asyncio.run(memo.get(image, "auto", bad))
    assert len(calls) == 2  # tried again, not served a remembered failure
    assert asyncio.run(sources.from_inputs(image, "", "auto", memo=memo))[0].data


def test_the_memo_lets_tensors_go_and_stays_bounded():
    import gc

    memo = SourceMemo(max_entries=2)
    for seed in range(5):
        asyncio.run(sources.from_inputs(_image(seed), "", "auto", memo=memo))
    gc.collect()
    assert len(memo._items) == 0  # weak references: freed tensors leave the memo
    kept = [_image(seed) for seed in range(5)]
    for image in kept:
        asyncio.run(sources.from_inputs(image, "", "auto", memo=memo))
    assert len(memo._items) == 2


@pytest.mark.parametrize("shape", [(1, 8, 8, 3), (2, 1024, 1024, 3)])
def test_the_output_batch_is_a_plain_float32_tensor(shape):
    items = [np.full(shape[1:], 51 * (i + 1), np.uint8) for i in range(shape[0])]
    out = batch.to_tensor(items)
    assert out.dtype == torch.float32 and tuple(out.shape) == shape and out.is_contiguous()
    for i in range(shape[0]):
        assert float(out[i].min()) == float(out[i].max()) == pytest.approx(51 * (i + 1) / 255)
    out[0, 0, 0, 0] = 2.0  # writable, and slices/copies behave
    assert float(out[0:1].clone()[0, 0, 0, 0]) == 2.0 and torch.cat([out, out]).shape[0] == 2 * shape[0]


def _decoded(value: int, shape=(32, 48, 3)):
    from nodes.core.postprocess import Decoded

    return Decoded(np.full(shape, value, np.uint8), None, 1.0)


def test_the_batch_is_filled_as_results_come_in_in_any_order_and_from_any_thread():
    from concurrent.futures import ThreadPoolExecutor

    from nodes.core.postprocess import BatchFiller, assemble

    filler = BatchFiller(5)
    items = {0: _decoded(10), 1: _decoded(20), 2: _decoded(30), 4: _decoded(50)}
    with ThreadPoolExecutor(3) as pool:  # item 3 shares item 1's run (identical jobs): one put, two slots
        list(pool.map(lambda kv: filler.put([1, 3] if kv[0] == 1 else [kv[0]], kv[1]), items.items()))
    assert filler.complete
    ordered = [items[0], items[1], items[2], items[1], items[4]]
    out = asyncio.run(assemble(ordered, filler=filler))
    assert out.tensor is filler.tensor and out.note is None
    assert [round(float(out.tensor[i].mean()) * 255) for i in range(5)] == [10, 20, 30, 20, 50]


def test_results_of_another_size_fall_back_to_fitting():
    from nodes.core.postprocess import BatchFiller, assemble

    filler = BatchFiller(2)
    a, b = _decoded(10), _decoded(200, (16, 16, 3))
    filler.put([0], a)
    filler.put([1], b)
    assert not filler.complete and filler.tensor is None  # the half-filled batch is let go at once
    out = asyncio.run(assemble([a, b], filler=filler))
    assert tuple(out.tensor.shape) == (2, 32, 48, 3) and "fitted" in out.note
