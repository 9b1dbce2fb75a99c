"""One upload per source content per API: later runs reuse the asset (re-signed when its URL may have expired)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..runflow import errors as E
from ..runflow.client import RunflowClient
from ..runflow.models import Asset

ASSET_URL_MAX_AGE = 300.0  # seconds; Runflow's signed asset URLs are "short-TTL": re-sign older ones before use
LOCKS_KEPT = 256


@dataclass
class _Known:
    asset: Asset
    at: float


class UploadRegistry:
    """Assets by (API URL, content hash). ComfyUI runs each prompt in a new event loop and an asyncio.Lock is bound
    to one loop, so the per-content locks are kept per loop."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], _Known] = {}
        self._locks: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        held = self._locks.get(key)
        if held is None or held[0] is not loop:
            if len(self._locks) > LOCKS_KEPT:  # drop the locks of finished loops
                for k in [k for k, (lp, _) in self._locks.items() if lp is not loop]:
                    del self._locks[k]
            held = self._locks[key] = (loop, asyncio.Lock())
        return held[1]

    async def url(self, client: RunflowClient, content_sha256: str, data: bytes, mime: str, filename: str) -> str:
        """A usable signed URL for these bytes: fresh from this process, re-signed, or uploaded now."""
        key = (client.base_url, content_sha256)
        async with self._lock(key):
            known = self._known.get(key)
            if known and time.monotonic() - known.at < ASSET_URL_MAX_AGE:
                return known.asset.url
            if known:  # same content uploaded earlier: re-sign instead of uploading again
                try:
                    asset = await client.get_asset(known.asset.id)
                    self._known[key] = _Known(asset, time.monotonic())
                    return asset.url
                except E.RunflowError:
                    pass
            asset = await client.upload(data, mime, filename)
            self._known[key] = _Known(asset, time.monotonic())
            return asset.url
