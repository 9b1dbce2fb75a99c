"""Post-processing (decode, preview, batch) gives exactly the pixels the old path gave, and does each step once."""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from nodes.core import batch, codec, postprocess


def old_to_tensor(items):
    """The batch as the node built it before issue 12: uint8 stack -> float32 -> / 255."""
    return torch.from_numpy(np.stack(items)).to(torch.float32).div_(255.0)


def old_preview_pixels(batch, i):
    """The pixels the old PNG preview held (float batch -> uint8)."""
    return (batch[i].cpu().numpy().clip(0, 1) * 255).round().astype(np.uint8)


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


class Recorder:
    """A preview writer that keeps what it was given (the real one writes JPEGs into ComfyUI's temp folder)."""

    def __init__(self):
        self.calls: list[np.ndarray] = []
        self.lock = threading.Lock()

    def __call__(self, pixels):
        with self.lock:
            self.calls.append(pixels.copy())
            return {"filename": f"p{len(self.calls)}.jpg", "subfolder": "", "type": "temp"}


def test_every_uint8_value_converts_exactly_as_before():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert torch.equal(batch.to_tensor([values]), old_to_tensor([values]))


def test_batches_identical_to_before_with_threads_and_mixed_sizes():
    rng = np.random.default_rng(7)
    same = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    with ThreadPoolExecutor(3) as pool:
        assert torch.equal(batch.to_tensor(same, pool.map), old_to_tensor(same))
    mixed = [same[0], rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), same[1]]
    fitted, changed, note = batch.fit_items(mixed)
    assert changed == [1] and "1 of 3" in note
    tensor, note2 = batch.fit_batch(mixed)
    assert note2 == note and torch.equal(tensor, old_to_tensor(fitted))


def test_assemble_decodes_and_previews_each_result_once_with_the_batch_pixels():
    rng = np.random.default_rng(1)
    items = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(4)]
    rec = Recorder()
    decode = postprocess.decoder(rec)
    decoded = [decode(png(a)) for a in items]  # what the runner does in each download's worker thread
    out = asyncio.run(postprocess.assemble(decoded, rec))
    assert len(rec.calls) == 4 and len(out.previews) == 4  # one preview per image, none redone
    assert torch.equal(out.tensor, old_to_tensor(items))
    for i, a in enumerate(items):
        assert np.array_equal(rec.calls[i], a)
        assert np.array_equal(old_preview_pixels(out.tensor, i), a)  # the preview shows the batch's pixels
    assert out.note is None and out.ms_per_image > 0


def test_a_fitted_result_gets_its_preview_redone_from_the_fitted_pixels():
    rng = np.random.default_rng(2)
    items = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)]
    rec = Recorder()
    decoded = [postprocess.decoder(rec)(png(a)) for a in items]
    out = asyncio.run(postprocess.assemble(decoded, rec))
    assert len(rec.calls) == 3 and len(out.previews) == 2
    assert out.previews[1]["filename"] == "p3.jpg"  # the second preview is the refitted one
    assert np.array_equal(rec.calls[2], old_preview_pixels(out.tensor, 1))
    assert "fitted" in out.note


def test_outside_comfyui_there_is_no_preview_and_the_batch_is_the_same():
    a = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    decoded = [postprocess.decoder(None)(png(a))]
    out = asyncio.run(postprocess.assemble(decoded))
    assert out.previews == [] and torch.equal(out.tensor, old_to_tensor([a]))


def test_float_inputs_take_the_fast_path_to_the_same_uint8_as_before():
    """ComfyUI's float32 IMAGE -> uint8 for upload: the in-range fast path equals clip-then-round for every value."""
    tol = 0.5 / 255
    edge = np.array([-tol, -1e-7, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 254.5 / 255, 1.0, 1.0 + 1e-7, 1.0 + tol],
                    np.float32)
    values = np.concatenate([edge, np.arange(256, dtype=np.float32) / 255,
                             np.random.default_rng(4).random(3000, dtype=np.float32)])
    a = np.resize(values, (values.size // 3 * 3,)).reshape(1, -1, 3)[:, : values.size // 3]
    expected = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)  # the old path
    notes: list[str] = []
    (got,) = codec.image_items(torch.from_numpy(a.copy()), notes)
    assert np.array_equal(got, expected) and notes == []
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    notes = []
    (got,) = codec.image_items(torch.from_numpy(bad), notes)  # the slow path still counts what it fixes
    assert got[0, 0, 0] == 0 and notes == ["1 NaN/inf values clipped"]
