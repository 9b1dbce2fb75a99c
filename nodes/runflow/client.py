"""Async client for Runflow's public API: asset upload, run create, status polling, result download.

Knows nothing of ComfyUI, torch or the pack. Every request goes through ``Transport.send`` (one retry loop).
Cancellation is plain asyncio cancellation of the awaiting task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from . import errors as E
from .capabilities import CapabilityStore
from .contract import MAX_UPLOAD_BYTES, MODEL_ID
from .creating import SETTLE_SECONDS, Creator
from .models import Asset, Run, example_durations
from .poll import PollSchedule, sleep_or_wake
from .responses import error_from_response, parse_json
from .retry import RETRY_STATUSES, RetryPolicy
from .transport import API_TIMEOUT, STORAGE_TIMEOUT, Reply, Transport

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 16 * 1024 * 1024  # a run record is a few KB; anything this big is a broken gateway
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024  # one output image; a larger body is refused, not buffered
DEFAULT_RUN_TIMEOUT = 900.0  # overall wait for one run, queue included; RUNFLOW_TIMEOUT overrides in the runner
MAX_POLL_OUTAGE = 180.0  # consecutive seconds of failed status polls before giving up on a run
MIN_POLL_GAP = 0.2  # seconds between two status polls of one run, even when callbacks wake the wait


class RunflowClient:
    """One instance per job; ``async with RunflowClient(...)`` closes both connection pools on every path."""

    def __init__(self, api_key: str, base_url: str, *, retry: RetryPolicy | None = None,
                 timeout: httpx.Timeout = API_TIMEOUT, storage_timeout: httpx.Timeout = STORAGE_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, max_connections: int = 16,
                 capabilities: CapabilityStore | None = None, settle: float | None = None):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise E.ConfigError(f"RUNFLOW_API_URL must be an http(s) URL, got {base_url[:80]!r}")
        self._key = api_key
        self.http = Transport(base_url, api_key, retry=retry, timeout=timeout, storage_timeout=storage_timeout,
                              transport=transport, sleep=sleep, max_connections=max_connections)
        self.base_url = self.http.base_url
        self.retry = self.http.retry
        self.stats = self.http.stats
        self.capabilities = capabilities or CapabilityStore(None)  # what this API does where the docs are silent
        # a create that timed out may still be handled: wait at least a read timeout before calling it absent
        self.settle = settle if settle is not None else max(SETTLE_SECONDS, (timeout.read or 0.0) + 1.0)

    def __repr__(self) -> str:
        return f"RunflowClient(base_url={self.base_url!r}, api_key={E.mask_key(self._key)})"

    async def __aenter__(self) -> RunflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, *, body: Any = None, headers: dict | None = None,
                       params: dict | None = None, once: bool = False, deadline: float | None = None,
                       obj: str | None = None) -> Any:
        """An API call with the key: parsed JSON, or the mapped error. ``obj`` names an answer that must be a JSON
        object: anything else is a ServerError, retried like a 5xx (unless ``once``)."""
        hdrs = dict(headers or {})
        content = json.dumps(body).encode() if body is not None else None
        if content is not None:
            hdrs["Content-Type"] = "application/json"

        def parse(reply: Reply) -> Any:
            if reply.status >= 400:
                raise error_from_response(reply.as_response(method, self.base_url + path), api_key=self._key,
                                          attempts=_attempts_of(reply, self.retry.attempts, once))
            value = parse_json(reply.body, method, path)
            return _object(value, obj) if obj else value

        return await self.http.send(method, path, parse=parse, content=content, headers=hdrs, params=params,
                                    once=once, limit=MAX_JSON_BYTES, deadline=deadline)

    # -- API ---------------------------------------------------------------------------------------------------
    async def check(self) -> dict:
        """Reachability and key check (GET /v1/auth/me)."""
        return await self._request("GET", "/v1/auth/me")

    async def upload(self, data: bytes, mime: str, filename: str) -> Asset:
        """Three-step upload: create → PUT bytes to the presigned URL (no Authorization) → confirm."""
        if not 1 <= len(data) <= MAX_UPLOAD_BYTES:
            raise E.InputError(f"the image is {len(data)} bytes; Runflow accepts 1 byte to 50 MiB")
        for attempt in (1, 2, 3):  # an expired presigned URL or a lost confirmation: start again at step 1 (free)
            created = await self._request("POST", "/v1/asset-uploads", body={
                "filename": filename, "mime_type": mime, "size_bytes": len(data)}, obj="the upload answer")
            asset_id, upload_url = created.get("asset_id"), created.get("upload_url")
            if not asset_id or not upload_url or not isinstance(upload_url, str):
                raise E.ServerError("Runflow's upload answer had no asset_id/upload_url; try again later.")
            status = await self.http.send("PUT", upload_url, api=False, content=data,
                                          headers={"Content-Type": mime}, parse=lambda r: r.status,
                                          limit=MAX_JSON_BYTES, what="storage answer")
            if status == 403 and attempt < 3:
                continue
            if status >= 400:
                raise E.ApiError(f"Runflow storage refused the upload (HTTP {status}); try again later.",
                                 status=status)
            asset = await self._confirm(str(asset_id))
            if asset is None:
                continue
            self.stats.uploads += 1
            return asset
        raise E.ServerError("Runflow did not confirm the image upload after 3 tries (nothing was billed); try again "
                            "in a minute.")

    async def _confirm(self, asset_id: str) -> Asset | None:
        """Confirm an upload. A refusal (409 "already confirmed", 404, 422...) after a confirmation whose answer was
        lost is not a failure: read the asset back; None when it is not usable (the caller uploads again)."""
        try:
            asset = await self._request("POST", f"/v1/asset-uploads/{quote(asset_id)}/confirmations", body={},
                                        obj="the upload confirmation")
        except (E.AuthError, E.CreditError, E.PermissionError_):
            raise
        except E.ApiError as exc:
            if exc.status is None or not 400 <= exc.status < 500:
                raise
            log.info("Runflow: upload confirmation refused (HTTP %s); reading asset %s back", exc.status, asset_id)
            try:
                return await self.get_asset(asset_id)
            except E.RunflowError:
                return None
        url = asset.get("url")
        if not url or not isinstance(url, str):
            raise E.ServerError("Runflow confirmed the upload but returned no URL; try again later.")
        return Asset(id=str(asset.get("id") or asset_id), url=url)

    async def get_asset(self, asset_id: str) -> Asset:
        asset = await self._request("GET", f"/v1/assets/{quote(asset_id)}", obj="the asset record")
        url = asset.get("url")
        if not url or not isinstance(url, str):
            raise E.ServerError(f"Runflow's record of asset {asset_id} has no URL; try again later.")
        return Asset(id=asset_id, url=url)

    @staticmethod
    def run_body(input: dict, *, client_ref: str, callback_url: str | None = None,
                 metadata: dict | None = None) -> dict:
        """The JSON body of a create; journalled and re-sent unchanged for the life of its Idempotency-Key."""
        body: dict[str, Any] = {"input": input, "client_ref": client_ref}
        if callback_url:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = metadata
        return body

    async def create_run(self, input: dict, *, idempotency_key: str, client_ref: str,
                         callback_url: str | None = None, metadata: dict | None = None) -> Run:
        """Create one billable run; never two (see creating.py). Raises RunMaybeCreated when it cannot know."""
        body = self.run_body(input, client_ref=client_ref, callback_url=callback_url, metadata=metadata)
        return await self.creator().create(body, idempotency_key=idempotency_key, client_ref=client_ref)

    def creator(self) -> Creator:
        return Creator(self, self.capabilities, settle=self.settle)

    async def find_run(self, client_ref: str) -> Run | None:
        """The run created with ``client_ref``, if Runflow shows it; None when it does not (or cannot say)."""
        return await self.creator().find(client_ref)

    async def example_duration(self) -> float | None:
        """Median run time of the model's examples (GET /v1/models/{id}/examples, ``duration_ms``): Runflow's own
        measurement, the first poll's aim before this install has timed a run. None when Runflow does not say."""
        try:
            answer = await self._request("GET", f"/v1/models/{MODEL_ID}/examples", once=True,
                                         deadline=time.monotonic() + 5.0)
        except E.RunflowError as exc:
            log.info("Runflow: no example timings (%s); polling by the request budget", type(exc).__name__)
            return None
        found = sorted(example_durations(answer))
        return found[len(found) // 2] if found else None

    async def get_run(self, run_id: str, *, deadline: float | None = None) -> Run:
        self.stats.status_polls += 1
        return Run(await self._request("GET", f"/v1/runs/{quote(run_id)}", deadline=deadline, obj="the run record"))

    async def wait(self, run: Run, *, timeout: float = DEFAULT_RUN_TIMEOUT, estimate: float | None = None,
                   on_status: Callable[[Run, float], None] | None = None,
                   wake: asyncio.Event | None = None, since: float | None = None) -> Run:
        """Poll until terminal; raise RunFailed / RunTimeout. ``wake`` (set by a callback) polls early.

        ``since``: when the run was created (``time.monotonic()``, e.g. ``Run.received`` of the create's answer);
        the poll schedule counts from it, so the work done between the create and this call does not make the
        first poll late. ``timeout`` is a hard bound on the whole wait, every poll's own retries included."""
        now = time.monotonic()
        start = now if since is None else min(since, now)
        deadline = now + timeout
        schedule = PollSchedule(estimate)
        outage_since: float | None = None
        last_poll = now
        while not run.terminal:
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                raise E.RunTimeout(f"Runflow run {run.id} is still '{run.status}' after {timeout:.0f}s; it may still "
                                   "finish and bill. Re-queue later to pick it up, or raise RUNFLOW_TIMEOUT.",
                                   run_id=run.id, status=run.status)
            delay = min(schedule.next_delay(elapsed), max(0.0, timeout - elapsed))
            if await sleep_or_wake(delay, wake):  # a callback cut the sleep short: never poll in a burst
                gap = MIN_POLL_GAP - (time.monotonic() - last_poll)
                if gap > 0:
                    await asyncio.sleep(gap)
            last_poll = time.monotonic()
            try:
                run = await self.get_run(run.id, deadline=deadline)
                outage_since = None
            except E.RunflowError as exc:
                if not exc.retryable:  # auth, not found, a corrupt huge body: waiting will not help
                    raise
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > MAX_POLL_OUTAGE:
                    raise E.TransportError(f"Lost contact with Runflow while waiting for run {run.id} ({exc.message}); "
                                           "the run may still finish: re-queue to pick it up.") from None
                continue
            queued_for = run.queue_seconds
            if queued_for is not None:
                schedule.started_after(queued_for)
            elif not run.started:
                schedule.queued(time.monotonic() - start)
            if on_status:
                on_status(run, time.monotonic() - start)
        if not run.succeeded:
            code, message = run.failure
            what = {"canceled": "was canceled", "cancelled": "was cancelled"}.get(run.status, run.status)
            detail = (message or "no message").rstrip(". ")
            billed = ("Runflow did not report a cost for it" if run.cost is None else "Runflow billed nothing for it"
                      if run.cost == 0 else f"Runflow billed ${run.cost:.2f} for it")
            raise E.RunFailed(f"Runflow run {run.id} {what}: {code or 'no code'}: {detail}. "
                              f"{billed}; fix the input or re-queue.", run_id=run.id,
                              status=run.status, failure_code=code, failure_message=message, cost=run.cost)
        return run

    async def download(self, url: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """GET a presigned result URL (no Authorization). Raises ExpiredURL on 403/404/410 so the caller re-signs."""
        def parse(reply: Reply) -> bytes:
            if reply.status in (403, 404, 410):
                raise E.ExpiredURL(f"result URL answered HTTP {reply.status}")
            if reply.status >= 300:
                raise E.ResultError(f"downloading the result failed (HTTP {reply.status}); re-queue to try again.")
            return reply.body

        return await self.http.send("GET", url, api=False, parse=parse, limit=max_bytes, what="result image")

    async def fetch_result(self, run: Run, *, index: int = 0, resigns: int = 5) -> tuple[bytes, str, Run]:
        """Download output ``index`` of a succeeded run; on an expired URL, GET the run again for a fresh one."""
        for attempt in range(resigns + 1):
            urls = run.output_urls
            if len(urls) <= index:
                raise E.ResultError(f"Runflow run {run.id} succeeded but its output has no image URL "
                                    f"(output keys: {sorted(run.output)}); report this to Runflow support.")
            try:
                return await self.download(urls[index]), urls[index], run
            except E.ExpiredURL:
                if attempt == resigns:
                    raise E.ResultError(f"the result URL of run {run.id} keeps answering 'expired'; re-queue to "
                                        "collect it (the run is not paid again).") from None
                log.info("Runflow: result URL of run %s expired; fetching a fresh one", run.id)
                if attempt:
                    await self.http.sleep(self.retry.delay(attempt - 1))
                run = await self.get_run(run.id)
        raise AssertionError("unreachable")


def _object(value: Any, what: str) -> dict:
    """A JSON answer that must be an object; anything else is a broken server, said plainly."""
    if not isinstance(value, dict):
        raise E.ServerError(f"Runflow sent {what} as a JSON {type(value).__name__}, not an object; try again in a "
                            "minute (report it to Runflow support if it persists).")
    return value


def _attempts_of(reply: Reply, max_attempts: int, once: bool) -> int:
    """How many attempts a final error answer took: retryable statuses were tried up to the policy's limit."""
    return 1 if once or reply.status not in RETRY_STATUSES else max_attempts
