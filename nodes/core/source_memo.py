"""Sources made from one IMAGE tensor, remembered by identity, so the nodes that share an input convert it once.

Eight single-view nodes fed by one LoadImage get the same tensor object: without this each would turn it into uint8
pixels, encode and hash it again (about 11 ms of CPU per 1 MP each, all at the same moment on a 2-core machine). The
memo is keyed on the tensor's identity and a CRC-32 of its bytes (an edit in place changes it; ComfyUI's inference
mode keeps no version counter) and holds only a weak reference to it; a conversion in flight is shared (a
``concurrent.futures.Future``, so it works across the event loops ComfyUI makes per prompt). A failed or
cancelled conversion is forgotten and each waiter converts on its own. Bounded by entries and bytes: it keeps
encoded sources, never pixels.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import weakref
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sources import Source

MAX_ENTRIES = 4
MAX_BYTES = 64 << 20


def identity(image, fmt: str) -> tuple | None:
    """What names this tensor without reading it, or None (not a CPU torch tensor: no memo)."""
    try:
        if getattr(image, "device", None) is None or image.device.type != "cpu":
            return None
        return id(image), image.data_ptr(), tuple(image.shape), str(image.dtype), fmt
    except (AttributeError, TypeError, RuntimeError):
        return None


def fingerprint(image) -> int | None:
    """CRC-32 of the tensor's bytes (~2 ms for 1 MP): an edit in place changes it. ComfyUI runs nodes under
    ``torch.inference_mode()``, where tensors keep no version counter, so the content itself is checked."""
    try:
        data = image if image.is_contiguous() else image.contiguous()
        return zlib.crc32(memoryview(data.numpy()).cast("B"))
    except (AttributeError, TypeError, RuntimeError, ValueError):
        return None


class SourceMemo:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[tuple, tuple[weakref.ref, concurrent.futures.Future]] = \
            collections.OrderedDict()
        self.conversions = 0  # how many times ``make`` ran (tests and benchmarks read it)

    async def get(self, image, fmt: str, make: Callable[[], Awaitable[list[Source]]]) -> list[Source]:
        key = identity(image, fmt)
        crc = fingerprint(image) if key is not None else None
        if crc is None:
            return await self._convert(make)
        key = (*key, crc)
        with self._lock:
            held = self._items.get(key)
            if held is not None and held[0]() is image:
                self._items.move_to_end(key)
                shared = held[1]
            else:
                shared = None
                future: concurrent.futures.Future = concurrent.futures.Future()
                try:
                    ref = weakref.ref(image, lambda _r, k=key: self._drop(k))
                except TypeError:  # not weak-referenceable: no memo
                    return await self._convert(make)
                self._items[key] = (ref, future)
        if shared is not None:
            try:
                return list(await asyncio.wrap_future(shared))
            except Exception:  # noqa: BLE001 - the first converter failed or was cancelled: convert on our own
                return await self._convert(make)
        try:
            result = await self._convert(make)
        except BaseException as exc:
            self._drop(key)
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            raise
        future.set_result(result)
        self._trim()
        return list(result)

    async def _convert(self, make: Callable[[], Awaitable[list[Source]]]) -> list[Source]:
        self.conversions += 1
        return await make()

    def _drop(self, key: tuple) -> None:
        with self._lock:
            self._items.pop(key, None)

    def _trim(self) -> None:
        with self._lock:
            def size() -> int:
                return sum(len(s.data or b"") for _, f in self._items.values() if f.done() and not f.exception()
                           for s in f.result())
            while len(self._items) > self.max_entries or (len(self._items) > 1 and size() > self.max_bytes):
                self._items.popitem(last=False)
            if size() > self.max_bytes:  # one batch alone over the cap: do not keep it
                self._items.clear()
