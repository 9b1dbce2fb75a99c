"""The IMAGE batch made ready while the runs are in flight (issue 12): its pages are faulted in without touching its
contents, a right guess is the batch the results go into, a wrong guess costs nothing, and the node learns the
result size from its first run (real HTTP to the sandbox)."""

from __future__ import annotations

import asyncio
import sys
import threading

import numpy as np
import pytest
import torch

from nodes.comfy.nodes import RunflowMultiAngles
from nodes.core import batch, prefault
from nodes.core.postprocess import BatchFiller, Decoded
from nodes.core.session import process_session

KW = dict(view="back view", angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True,
          aspect_ratio="1:1", seed=0)


def _rss_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _pixels(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE is Linux-only")
def test_populate_faults_the_pages_in_and_keeps_what_is_there():
    t = batch.empty_images((4, 1024, 1024, 3))  # 48 MiB, a fresh mapping: nothing resident yet
    t[0, 0, 0, 0] = 0.25  # one page touched, with something in it
    before = _rss_kb()
    if not prefault.populate_tensor(t):
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)")
    assert _rss_kb() - before >= 40 * 1024  # the pages are in
    assert t[0, 0, 0, 0].item() == 0.25 and t[3, 1023, 1023, 2].item() == 0.0  # contents untouched


def test_populate_stops_when_told():
    t = batch.empty_images((2, 512, 512, 3))
    assert prefault.populate_tensor(t, stop=lambda: True) is False


def test_a_right_guess_is_the_batch_the_results_go_into():
    f = BatchFiller(2)
    f.warm((32, 48, 3))
    ptr = f.tensor.data_ptr()
    items = [_pixels(32, 48, i) for i in range(2)]
    threads = [threading.Thread(target=f.put, args=([i], Decoded(items[i]))) for i in (1, 0)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert f.complete and f.ahead and f.tensor.data_ptr() == ptr
    want = torch.from_numpy(np.stack(items)).float() / 255
    assert torch.equal(f.tensor, want)


def test_a_wrong_guess_costs_nothing_but_the_guess():
    f = BatchFiller(2)
    f.warm((64, 64, 3))
    items = [_pixels(16, 24, i) for i in range(2)]
    f.put([0], Decoded(items[0]))
    f.put([1], Decoded(items[1]))
    assert f.complete and not f.ahead and tuple(f.tensor.shape) == (2, 16, 24, 3)
    assert torch.equal(f.tensor, torch.from_numpy(np.stack(items)).float() / 255)


def test_warming_after_a_result_is_in_changes_nothing():
    f = BatchFiller(1)
    f.put([0], Decoded(_pixels(8, 8, 0)))
    tensor = f.tensor
    assert f.warm((8, 8, 3)) is False and f.tensor is tensor
    f2 = BatchFiller(1)
    f2.stop()
    assert f2.warm((8, 8, 3)) is False and f2.tensor is None  # stopped (done or cancelled): nothing allocated


def test_shape_memory_guesses_what_a_kind_had_last_time():
    m = prefault.ShapeMemory(kept=2)
    assert m.guess([("a", (10, 20, 3)), ("a", (10, 20, 3))]) == (10, 20, 3)  # nothing known: the fallback
    assert m.guess([("a", None)]) is None
    m.record("a", (30, 40, 3))
    assert m.guess([("a", (10, 20, 3))]) == (30, 40, 3)
    assert m.guess([("a", None), ("b", (10, 20, 3))]) is None  # they would differ: no single batch shape
    m.record("b", (1, 1, 3))
    m.record("c", (2, 2, 3))
    assert m.guess([("a", None)]) is None  # bounded: the oldest kind is forgotten


def test_a_guess_from_the_source_alone_stays_small():
    m = prefault.ShapeMemory()
    big = [("k", (4096, 4096, 3))] * 8  # 8 x 192 MiB: the model may answer far smaller than such a source
    assert m.guess(big) is None
    assert m.guess(big[:1], cap=1 << 30) == (4096, 4096, 3)
    m.record("k", (4096, 4096, 3))
    assert m.guess(big) == (4096, 4096, 3)  # learnt: that is the size the results will need anyway


def test_the_node_allocates_its_batch_ahead_once_it_knows_the_result_size(sandbox_env):
    """First run: the guess is the source's size (40x56), the sandbox answers 1024 px wide: re-allocated at the real
    size. Second run of the same kind: the batch was ready before the result came, and holds the right pixels."""
    node = RunflowMultiAngles()
    outs = []
    for seed in (1, 2):
        image = torch.rand(1, 40, 56, 3, generator=torch.Generator().manual_seed(seed))
        out = asyncio.run(node.execute(**KW, image=image))
        outs.append(out)
    first, second = (o["ui"]["runflow"][0] for o in outs)
    assert first["batch_ahead"] is False and second["batch_ahead"] is True
    tensors = [o["result"][0] for o in outs]
    assert tensors[0].shape == tensors[1].shape and tensors[1].shape[0] == 1 and tensors[1].shape[2] > 56
    assert 0.0 <= float(tensors[1].min()) and float(tensors[1].max()) <= 1.0 and float(tensors[1].std()) > 0.01
    assert process_session().result_shapes.guess([(((40, 56), True, None), None)]) == tuple(tensors[1].shape[1:])
