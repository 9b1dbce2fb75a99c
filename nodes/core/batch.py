"""uint8 result items -> one ComfyUI IMAGE batch: fitting differently sized results, filling the float32 batch."""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np
from PIL import Image

from .codec import _resize

FIT_MODES = ("pad", "resize")


def to_tensor(items: list[np.ndarray], fill: Callable | None = None):
    """Stack same-size uint8 HxWx3 items into a ComfyUI IMAGE: torch.float32 [N,H,W,3] in 0..1.

    The batch is allocated once and each item divided into its slot (no uint8 stack, no second float copy); ``fill``
    maps a function over the item indices (e.g. a thread pool's ``map``; numpy releases the GIL while dividing).
    The values are exactly ``uint8 -> float32 / 255`` (tests/test_postprocess.py checks all 256 against torch).
    """
    if not items:
        raise ValueError("to_tensor needs at least one image")
    if len({it.shape for it in items}) != 1:
        raise ValueError("items differ in size; use fit_batch to make one batch")
    out = empty_images((len(items), *items[0].shape))
    slots = out.numpy()  # shares memory with the tensor

    def one(i: int) -> None:
        np.divide(items[i], np.float32(255.0), out=slots[i], dtype=np.float32)

    list((fill or map)(one, range(len(items))))
    return out


HUGE_PAGES_FROM = 4 << 20  # bytes: batches from this size up are backed by transparent huge pages where possible


def empty_images(shape: tuple[int, ...]):
    """An uninitialised float32 tensor of ``shape`` for an IMAGE batch.

    On Linux a large one is an anonymous mapping advised to use transparent huge pages (``MADV_HUGEPAGE``): the
    batch is written once, right away, and first-touch page faults on fresh memory dominate that write (measured on
    this project's VM: filling a fresh 96 MiB batch took 230-320 ms with 4 KiB pages, about 50 ms with huge pages,
    16 ms into memory already touched). The tensor keeps the mapping alive; it is unmapped when the tensor goes.
    Elsewhere (no madvise, or the kernel refuses) it is plain ``torch.empty``."""
    import torch  # lazily: the CLI and the sandbox encode/decode without paying torch's import time

    nbytes = int(np.prod(shape)) * 4
    if nbytes >= HUGE_PAGES_FROM and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mapping = mmap.mmap(-1, nbytes)
            mapping.madvise(mmap.MADV_HUGEPAGE)
            return torch.frombuffer(mapping, dtype=torch.float32).view(shape)
        except (OSError, ValueError):
            pass
    return torch.empty(shape, dtype=torch.float32)


def _letterbox(a: np.ndarray, w: int, h: int) -> np.ndarray:
    ih, iw = a.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = min(w, max(1, round(iw * s))), min(h, max(1, round(ih * s)))
    out = np.full((h, w, 3), 255, np.uint8)  # white, like the alpha policy
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y:y + nh, x:x + nw] = np.asarray(_resize(Image.fromarray(a), nw, nh)) if (nw, nh) != (iw, ih) else a
    return out


def fit_items(items: list[np.ndarray], mode: str = "pad") -> tuple[list[np.ndarray], list[int], str | None]:
    """Make differently sized results one size (the first item's): (items, indices changed, note | None).

    mode "pad" (default): scale to fit and pad with white, so nothing is distorted or cropped, which is what a
    ComfyUI user expects from a preview/save chain. mode "resize": stretch to the size.
    """
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    if not items:
        raise ValueError("fit_batch needs at least one image")
    h, w = items[0].shape[:2]
    out, changed = [], []
    for i, it in enumerate(items):
        if it.shape[:2] != (h, w):
            changed.append(i)
            it = _letterbox(it, w, h) if mode == "pad" else np.asarray(_resize(Image.fromarray(it), w, h))
        out.append(it)
    note = None
    if changed:
        how = "resized" if mode == "resize" else "fitted (scaled, white padding)"
        note = f"{how} {len(changed)} of {len(items)} results to {w}\u00d7{h} to form one batch"
    return out, changed, note


def fit_batch(items: list[np.ndarray], mode: str = "pad", fill: Callable | None = None):
    """``fit_items`` then ``to_tensor``: one IMAGE batch at the first item's size; returns (tensor, note | None)."""
    fitted, _, note = fit_items(items, mode)
    return to_tensor(fitted, fill), note
