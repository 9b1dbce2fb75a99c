"""Have the IMAGE batch's memory ready before the results arrive: guess its shape, map it, fault its pages in.

Writing a fresh float32 batch is dominated by first-touch page faults on fresh memory (on this project's VM, a
1024x1024 result's 12 MiB took ~30 ms to write inside ComfyUI, ~3 ms once its pages were in). The runs take seconds,
so the batch is mapped and its pages populated in a worker thread while they are in flight, and the result is
written into memory that is ready. The guess is the shape the last results of the same kind had in this process
(``ShapeMemory``), else the source's own size when the output keeps its aspect; a wrong guess costs nothing but the
background work: the batch is then allocated at the real size, as without a guess.

Populating uses ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+) through ctypes, which releases the GIL and never
changes the memory's contents, so it may race with the result being written into it. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

MADV_POPULATE_WRITE = 23  # linux/mman.h (5.14+); Python's mmap module does not name it before 3.13 on every build
CHUNK = 8 << 20  # bytes per madvise call: a stop request is seen within one chunk (a few ms)
SHAPES_KEPT = 64
UNLEARNED_CAP = 128 << 20  # bytes: a batch guessed from the source alone (no result of its kind yet) is made ready
# only up to this size; a model may well answer smaller than a large source, and the guess must not hog RAM meanwhile


@functools.cache
def _madvise() -> Callable | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise  # the process's own symbols: libc is loaded already
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def populate(address: int, nbytes: int, stop: Callable[[], bool] = lambda: False) -> bool:
    """Fault in the pages of ``nbytes`` of writable memory at ``address`` (page-aligned start rounded down), without
    changing them. Returns True when all are in; False when stopped, or where the kernel cannot do it (the memory
    then faults in as it is written, as usual)."""
    fn = _madvise()
    if fn is None or nbytes <= 0:
        return False
    page = mmap.PAGESIZE
    start = address - address % page
    end = address + nbytes
    while start < end:
        if stop():
            return False
        length = min(CHUNK, end - start)
        if fn(start, length, MADV_POPULATE_WRITE) != 0:
            log.debug("Runflow: cannot pre-fault the batch (errno %d); it faults in as it is written",
                      ctypes.get_errno())
            return False
        start += length
    return True


def populate_tensor(tensor, stop: Callable[[], bool] = lambda: False) -> bool:
    """``populate`` for a torch tensor's storage."""
    return populate(tensor.data_ptr(), tensor.numel() * tensor.element_size(), stop)


class ShapeMemory:
    """The shape (H, W, 3) results of a kind had, per kind (e.g. source size and aspect settings), bounded."""

    def __init__(self, kept: int = SHAPES_KEPT) -> None:
        self._shapes: OrderedDict[Hashable, tuple[int, ...]] = OrderedDict()
        self._kept = kept

    def record(self, kind: Hashable, shape: tuple[int, ...]) -> None:
        self._shapes[kind] = tuple(shape)
        self._shapes.move_to_end(kind)
        while len(self._shapes) > self._kept:
            self._shapes.popitem(last=False)

    def guess(self, kinds: list[tuple[Hashable, tuple[int, ...] | None]],
              cap: int = UNLEARNED_CAP) -> tuple[int, ...] | None:
        """One item shape for a float32 batch of results of ``kinds`` (each: kind, fallback shape or None): what they
        all had last time, else their fallback (only while the batch stays within ``cap`` bytes); None when they
        would differ or nothing is known."""
        shapes = {self._shapes.get(kind, fallback) for kind, fallback in kinds}
        if len(shapes) != 1 or None in shapes:
            return None
        shape = shapes.pop()
        learned = all(kind in self._shapes for kind, _ in kinds)
        if not learned and len(kinds) * 4 * _count(shape) > cap:
            return None
        return shape


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
