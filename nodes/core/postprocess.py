"""After the download: results become pixels, previews and one IMAGE batch, each step done once, in parallel.

Each result is decoded (and its preview written) in the worker thread that handles its download, while the other
runs are still going. When all are in, differently sized results are fitted (their previews redone: the preview shows
what the batch holds) and the float32 batch is filled in place, one item per thread. The time spent per image is
measured, so the node can report it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import batch, codec

PreviewWriter = Callable[[np.ndarray], dict]  # uint8 HxWx3 -> a ComfyUI ui "images" entry
FILL_THREADS = 4


@dataclass
class Decoded:
    """One result as pixels, with its preview (if one was written) and the ms spent on both."""

    pixels: np.ndarray
    preview: dict | None = None
    ms: float = 0.0


@dataclass
class Batch:
    tensor: object  # torch.float32 [N,H,W,3]
    previews: list[dict]
    note: str | None
    ms_per_image: float  # decode + preview + fit + float conversion, per image (thread time; they overlap)


def decoder(preview: PreviewWriter | None = None) -> Callable[[bytes], Decoded]:
    """The runner's per-result step (it calls it in a worker thread): decode, then write the preview."""

    def decode(data: bytes) -> Decoded:
        t0 = time.perf_counter()
        pixels = codec.decode(data)
        entry = preview(pixels) if preview is not None else None
        return Decoded(pixels, entry, (time.perf_counter() - t0) * 1000)

    return decode


def _assemble(items: list[Decoded], preview: PreviewWriter | None, mode: str) -> Batch:
    t0 = time.perf_counter()
    fitted, changed, note = batch.fit_items([d.pixels for d in items], mode)
    previews = [d.preview for d in items]
    with ThreadPoolExecutor(min(FILL_THREADS, len(items))) as pool:
        if preview is not None:  # a preview shows what the batch holds: redo only the fitted ones (and any missing)
            redo = sorted(set(changed) | {i for i, p in enumerate(previews) if p is None})
            for i, entry in zip(redo, pool.map(lambda i: preview(fitted[i]), redo), strict=True):
                previews[i] = entry
        tensor = batch.to_tensor(fitted, pool.map)
    own = (time.perf_counter() - t0) * 1000
    ms = (sum(d.ms for d in items) + own) / len(items)
    return Batch(tensor, [p for p in previews if p is not None], note, ms)


async def assemble(items: list[Decoded], preview: PreviewWriter | None = None, mode: str = "pad") -> Batch:
    """One IMAGE batch (first item's size) plus the previews, off the event loop."""
    if not items:
        raise ValueError("assemble needs at least one result")
    return await asyncio.to_thread(_assemble, items, preview, mode)
