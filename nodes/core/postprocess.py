"""After the download: results become pixels, previews and one IMAGE batch, each step done once, in parallel.

Each result is decoded (and its preview written) in the worker thread that handles its download, while the other
runs are still going, and goes straight into its slot of the float32 batch (``BatchFiller``: the batch is allocated
when the first result is in, at its size). When all are in, the batch is ready; only if results differ in size are
they fitted (their previews redone: the preview shows what the batch holds) and a batch filled from them, one item
per thread. The time spent per image is measured, so the node can report it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import batch, codec, prefault

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


class BatchFiller:
    """The IMAGE batch of ``count`` items, filled as results are decoded (``put``, from any thread).

    The batch is allocated ahead at a guessed size (``warm``) or when the first result is in, at its size; a first
    result of another size than guessed re-allocates it. An item of another size than the first is left out
    (``complete`` stays False and ``assemble`` fits and fills from the pixels instead)."""

    def __init__(self, count: int):
        self.count = count
        self.tensor = None
        self.ms = 0.0  # thread time spent filling
        self._shape: tuple | None = None
        self._filled: set[int] = set()
        self._mismatch = False
        self._guessed = False  # the batch was allocated ahead, at a guessed size (``warm``)
        self._stopped = False
        self._lock = threading.Lock()

    def warm(self, shape: tuple[int, ...]) -> bool:
        """Allocate the batch ahead for items of ``shape`` and fault its pages in (call it in a worker thread while
        the runs are in flight; see ``prefault``). A first result of another size re-allocates it. True when the
        pages are in."""
        with self._lock:
            if self.tensor is not None or self._mismatch or self._stopped:
                return False
            self._shape, self._guessed = tuple(shape), True
            self.tensor = tensor = batch.empty_images((self.count, *shape))
        return prefault.populate_tensor(tensor, stop=lambda: self._stopped or self.tensor is not tensor)

    def stop(self) -> None:
        """Stop warming (the node is done, failed or cancelled)."""
        self._stopped = True

    def put(self, indices: list[int], decoded: Decoded) -> None:
        t0 = time.perf_counter()
        pixels = decoded.pixels
        with self._lock:
            if self._guessed and not self._filled and pixels.shape != self._shape:
                self.tensor, self._guessed = None, False  # guessed wrong: nothing placed yet, allocate at this size
            if self.tensor is None and not self._mismatch:
                self._shape = pixels.shape
                self.tensor = batch.empty_images((self.count, *pixels.shape))
            if pixels.shape != self._shape:
                self._mismatch, self.tensor = True, None  # assemble fits and fills instead: free this batch
            slots = None if self._mismatch else self.tensor.numpy()
        if slots is not None:
            for i in indices:
                np.divide(pixels, np.float32(255.0), out=slots[i], dtype=np.float32)
            with self._lock:
                self._filled.update(indices)
        with self._lock:
            self.ms += (time.perf_counter() - t0) * 1000

    @property
    def ahead(self) -> bool:
        """True when the batch in use was allocated ahead by ``warm`` (its guess was right)."""
        with self._lock:
            return self._guessed and self.tensor is not None

    @property
    def complete(self) -> bool:
        with self._lock:
            return not self._mismatch and len(self._filled) == self.count


def _assemble(items: list[Decoded], preview: PreviewWriter | None, mode: str,
              filler: BatchFiller | None = None) -> Batch:
    t0 = time.perf_counter()
    if filler is not None and filler.complete and filler.count == len(items):  # filled while the runs came in
        own = (time.perf_counter() - t0) * 1000 + filler.ms
        return Batch(filler.tensor, [d.preview for d in items if d.preview is not None], None,
                     (sum(d.ms for d in items) + own) / len(items))
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


async def assemble(items: list[Decoded], preview: PreviewWriter | None = None, mode: str = "pad",
                   filler: BatchFiller | None = None) -> Batch:
    """One IMAGE batch (first item's size) plus the previews: the ``filler``'s if it holds every item, else built
    off the event loop."""
    if not items:
        raise ValueError("assemble needs at least one result")
    if filler is not None and filler.complete and filler.count == len(items):
        return _assemble(items, preview, mode, filler)
    return await asyncio.to_thread(_assemble, items, preview, mode)
