"""Async client for Runflow's public API: asset upload, run create, status polling, result download.

Knows nothing of ComfyUI or torch. Cancellation is plain asyncio cancellation of the awaiting task.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from . import errors as E
from .contract import MAX_UPLOAD_BYTES, RUNS_PATH, TERMINAL_FAILED, TERMINAL_OK
from .retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

# Timeouts (seconds). connect: a dead host fails fast; read: Runflow answers API calls in well under a second,
# so 30 s means something is wrong; write: uploads of up to 50 MiB on a slow uplink need minutes.
API_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=60.0, pool=30.0)
STORAGE_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=300.0, pool=30.0)
MAX_JSON_BYTES = 16 * 1024 * 1024  # a run record is a few KB; anything this big is a broken gateway
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024  # one output image; a larger body is refused, not buffered
DEFAULT_RUN_TIMEOUT = 900.0  # overall wait for one run, queue included; RUNFLOW_TIMEOUT overrides in the runner
MAX_CONNECT_ATTEMPTS = 3  # connection refused / DNS failure: ~3 s of retries, then a clear error
MAX_POLL_OUTAGE = 180.0  # consecutive seconds of failed status polls before giving up on a run
USER_AGENT = "runflow-multi-angles-comfyui/0.1"


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one costs ~23 ms of blocked event loop, per client."""
    return httpx.create_ssl_context(trust_env=True)


@dataclass(frozen=True)
class Asset:
    id: str
    url: str


@dataclass
class Run:
    """A run record; ``raw`` keeps every field Runflow sent."""

    raw: dict = field(repr=False)

    @property
    def id(self) -> str:
        return str(self.raw.get("id") or "")

    @property
    def status(self) -> str:
        return str(self.raw.get("status_code") or self.raw.get("status") or "unknown").lower()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_OK or self.status in TERMINAL_FAILED

    @property
    def succeeded(self) -> bool:
        return self.status in TERMINAL_OK

    @property
    def output(self) -> dict:
        out = self.raw.get("output")
        return out if isinstance(out, dict) else {}

    @property
    def output_urls(self) -> list[str]:
        return extract_output_urls(self.raw.get("output"))

    @property
    def cost(self) -> float | None:
        try:
            return float(self.raw["cost"]) if self.raw.get("cost") is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def failure(self) -> tuple[str | None, str | None]:
        err = self.raw.get("error") if isinstance(self.raw.get("error"), dict) else {}
        code = self.raw.get("failure_code") or err.get("code")
        message = self.raw.get("failure_message") or err.get("message")
        out = self.output.get("error") if isinstance(self.output.get("error"), dict) else {}
        return code or out.get("code"), message or out.get("message")

    @property
    def server_duration(self) -> float | None:
        """Seconds from creation to completion as Runflow measured it."""
        ms = self.raw.get("duration_ms")
        if isinstance(ms, (int, float)) and ms > 0:
            return ms / 1000.0
        return None

    def info(self) -> dict:
        """The per-item run info the nodes output (output schema fields + billing)."""
        out = self.output
        return {
            "run_id": self.id,
            "status": self.status,
            "seed": out.get("seed"),
            "timing": out.get("timing"),
            "nsfw_detected": out.get("nsfw_detected"),
            "duration_ms": self.raw.get("duration_ms"),
            "cost": self.raw.get("cost"),
            "client_ref": self.raw.get("client_ref"),
        }


def extract_output_urls(output: Any) -> list[str]:
    """Result URLs from every output shape Runflow is known to use (runflow-api.md §3), in order."""
    urls: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            if value not in urls:
                urls.append(value)
        elif isinstance(value, dict):
            add(value.get("url"))
        elif isinstance(value, list):
            for item in value:
                add(item)

    if not isinstance(output, dict):
        add(output)
        return urls
    add(output.get("outputs"))
    add(output.get("image_urls"))
    add(output.get("image"))
    add(output.get("images"))
    add(output.get("url"))
    add(output.get("output_url"))
    if not urls:  # ComfyUI-deployed workflows key outputs by their output id
        for value in output.values():
            add(value)
    return urls


def parse_error_body(response: httpx.Response) -> tuple[str | None, str, list]:
    """(code, message, errors) from a flat or nested JSON envelope, or a readable excerpt of a non-JSON body."""
    text = response.text if len(response.content) < 65536 else response.content[:65536].decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        code = inner.get("code")
        message = inner.get("message") or inner.get("detail") or body.get("detail")
        errs = inner.get("errors") or body.get("errors") or []
        if isinstance(message, list):  # FastAPI-style detail list
            errs, message = message, None
        return (str(code) if code else None, str(message or "").strip(), errs if isinstance(errs, list) else [])
    plain = re.sub(r"<[^>]+>", " ", text)
    plain = re.sub(r"\s+", " ", plain).strip()
    return None, plain[:160], []


def _field_messages(errs: list) -> str:
    parts = []
    for item in errs[:6]:
        if isinstance(item, dict):
            where = item.get("field") or item.get("loc") or item.get("path") or ""
            if isinstance(where, list):
                where = ".".join(str(p) for p in where)
            msg = item.get("message") or item.get("msg") or ""
            parts.append(f"{where}: {msg}" if where else str(msg))
        else:
            parts.append(str(item))
    return "; ".join(p for p in parts if p)


def error_from_response(response: httpx.Response, *, api_key: str | None = None, attempts: int = 1) -> E.ApiError:
    """Map an HTTP error response to the error tree, with a one-line message that says what to do."""
    status = response.status_code
    code, message, errs = parse_error_body(response)
    detail = message or response.reason_phrase or "no details"
    kw = dict(status=status, code=code, errors=errs, request_id=response.headers.get("x-request-id")
              or response.headers.get("runflow-request-id"),
              retry_after=parse_retry_after(response.headers.get("retry-after")))
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if status == 401:
        return E.AuthError(f"Runflow rejected the API key {E.mask_key(api_key)} ({detail}): {E.KEY_HELP}.", **kw)
    if status == 402:
        return E.CreditError(f"Runflow says the account is out of credit ({detail}): top up at "
                             "app.runflow.io/settings/billing, then re-queue.", **kw)
    if status == 403:
        return E.PermissionError_(f"Runflow refused the request ({code or 'forbidden'}: {detail}): check that the "
                                  "key has inference scope (rf_live_…) and the account email is verified.", **kw)
    if status in (404, 405):
        return E.NotFoundError(f"Runflow: not found ({code or status}: {detail}); check RUNFLOW_API_URL "
                               "points at https://api.runflow.io.", **kw)
    if status == 409:
        return E.ConflictError(f"Runflow reported a conflict ({detail}); re-queue to try again.", **kw)
    if status in (400, 413, 422):
        fields = _field_messages(errs)
        return E.ValidationError(f"Runflow refused the input: {fields or detail}. Fix the node's inputs.", **kw)
    if status == 429:
        return E.RateLimitError(f"Runflow is rate-limiting this account{tried}; wait a minute, or lower "
                                "max_concurrent, then re-queue.", **kw)
    if status >= 500:
        return E.ServerError(f"Runflow's server failed (HTTP {status}{tried}: {detail}); try again in a few "
                             "minutes.", **kw)
    return E.ApiError(f"Runflow answered HTTP {status} ({detail}).", **kw)


class PollSchedule:
    """Delays between status polls: aim at the expected finish, then tighten; back off when it runs long.

    With an estimate E of the run's duration, sleep until shortly before E (with a status poll at least every
    ``max_interval``), poll finely around E, then back off geometrically. Without one, back off from ``first``.
    """

    def __init__(self, estimate: float | None = None, *, first: float = 0.5, growth: float = 1.5,
                 max_interval: float = 5.0):
        self.estimate = estimate if estimate and estimate > 0 else None
        self.first, self.growth, self.max_interval = first, growth, max_interval
        self._interval = first

    def next_delay(self, elapsed: float) -> float:
        if self.estimate is not None:
            lead = max(0.25, 0.08 * self.estimate)
            fine = max(0.1, 0.04 * self.estimate)
            if elapsed < self.estimate - lead:
                return min(self.estimate - lead - elapsed, self.max_interval)
            if elapsed < self.estimate + 2 * lead:
                self._interval = fine
                return fine
        delay = self._interval
        self._interval = min(self._interval * self.growth, self.max_interval)
        return delay


class RunflowClient:
    """One instance per job; ``async with RunflowClient(...)`` closes both connection pools on every path."""

    def __init__(self, api_key: str, base_url: str, *, retry: RetryPolicy | None = None,
                 timeout: httpx.Timeout = API_TIMEOUT, storage_timeout: httpx.Timeout = STORAGE_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, max_connections: int = 16):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise E.ConfigError(f"RUNFLOW_API_URL must be an http(s) URL, got {base_url[:80]!r}")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        # trust_env: HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured (httpx's default, stated for clarity).
        self._api = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport, limits=limits,
                                      headers=headers, trust_env=True, verify=_ssl_context())
        # Presigned storage URLs carry their own credentials: a separate client that never has our key.
        self._storage = httpx.AsyncClient(timeout=storage_timeout, transport=transport, limits=limits,
                                          headers={"User-Agent": USER_AGENT}, trust_env=True, verify=_ssl_context())
        self.stats = {"requests": 0, "status_polls": 0, "uploads": 0, "creates": 0, "retries": 0}

    def __repr__(self) -> str:
        return f"RunflowClient(base_url={self.base_url!r}, api_key={E.mask_key(self._key)})"

    async def __aenter__(self) -> RunflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(self._api.aclose(), self._storage.aclose(), return_exceptions=True)

    # -- the one place that talks to the API ------------------------------------------------------------------
    async def _request(self, method: str, path: str, *, body: Any = None, headers: dict | None = None,
                       params: dict | None = None, once: bool = False) -> Any:
        """Send with retries (none when ``once``: the caller owns the retry loop); return parsed JSON."""
        hdrs = {"Authorization": f"Bearer {self._key}", **(headers or {})}
        content = json.dumps(body).encode() if body is not None else None
        if content is not None:
            hdrs["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            self.stats["requests"] += 1
            try:
                async with self._api.stream(method, path, content=content, headers=hdrs, params=params) as resp:
                    raw = await _read_capped(resp, MAX_JSON_BYTES, "response")
            except httpx.TransportError as exc:
                err = _transport_error(exc, self.base_url, attempt)
                # refused/unresolvable: a typo or an outage, not a blip; say so in seconds, not after 5 backoffs
                limit = min(self.retry.attempts, MAX_CONNECT_ATTEMPTS) if isinstance(err, E.ConnectError) \
                    else self.retry.attempts
                if once or attempt >= limit:
                    raise err from None
                delay = self.retry.delay(attempt - 1)
                log.info("Runflow %s %s: %s; retry %d in %.1fs", method, path, type(exc).__name__, attempt, delay)
            else:
                if resp.status_code < 400:
                    try:
                        return _parse_json(raw, method, path)
                    except E.ServerError:  # a garbled 2xx body: a broken gateway, transient like a 5xx
                        if once or attempt >= self.retry.attempts:
                            raise
                        self.stats["retries"] += 1
                        await self._sleep(self.retry.delay(attempt - 1))
                        continue
                resp._content = raw  # let error parsing read the capped body
                retryable = self.retry.should_retry_status(resp.status_code)
                if once or not retryable or attempt >= self.retry.attempts:
                    raise error_from_response(resp, api_key=self._key, attempts=attempt)
                delay = self.retry.delay(attempt - 1, parse_retry_after(resp.headers.get("retry-after")))
                log.info("Runflow %s %s: HTTP %d; retry %d in %.1fs", method, path, resp.status_code, attempt, delay)
            self.stats["retries"] += 1
            await self._sleep(delay)

    # -- API ---------------------------------------------------------------------------------------------------
    async def check(self) -> dict:
        """Reachability and key check (GET /v1/auth/me)."""
        return await self._request("GET", "/v1/auth/me")

    async def upload(self, data: bytes, mime: str, filename: str) -> Asset:
        """Three-step upload: create → PUT bytes to the presigned URL (no Authorization) → confirm."""
        if not 1 <= len(data) <= MAX_UPLOAD_BYTES:
            raise E.InputError(f"the image is {len(data)} bytes; Runflow accepts 1 byte to 50 MiB")
        for attempt in (1, 2):  # an expired presigned URL means: start again at step 1
            created = await self._request("POST", "/v1/asset-uploads",
                                          body={"filename": filename, "mime_type": mime, "size_bytes": len(data)})
            asset_id, upload_url = created.get("asset_id"), created.get("upload_url")
            if not asset_id or not upload_url:
                raise E.ApiError("Runflow's upload answer had no asset_id/upload_url; try again later.")
            status = await self._put(upload_url, data, mime)
            if status == 403 and attempt == 1:
                continue
            if status >= 400:
                raise E.ApiError(f"Runflow storage refused the upload (HTTP {status}); try again later.",
                                 status=status)
            asset = await self._request("POST", f"/v1/asset-uploads/{quote(str(asset_id))}/confirmations", body={})
            url = asset.get("url")
            if not url:
                raise E.ApiError("Runflow confirmed the upload but returned no URL; try again later.")
            self.stats["uploads"] += 1
            return Asset(id=str(asset.get("id") or asset_id), url=url)
        raise AssertionError("unreachable")

    async def _put(self, url: str, data: bytes, mime: str) -> int:
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._storage.put(url, content=data, headers={"Content-Type": mime})
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    raise _transport_error(exc, _origin(url), attempt) from None
            else:
                if not self.retry.should_retry_status(resp.status_code) or attempt >= self.retry.attempts:
                    return resp.status_code
            self.stats["retries"] += 1
            await self._sleep(self.retry.delay(attempt - 1))

    async def get_asset(self, asset_id: str) -> Asset:
        asset = await self._request("GET", f"/v1/assets/{quote(asset_id)}")
        return Asset(id=asset_id, url=asset["url"])

    async def create_run(self, input: dict, *, idempotency_key: str, client_ref: str,
                         callback_url: str | None = None, metadata: dict | None = None) -> Run:
        """Create one billable run. Retries reuse ``idempotency_key``; after an ambiguous failure (request sent, no
        answer) the run is first looked up by ``client_ref`` so it is never created twice."""
        body: dict[str, Any] = {"input": input, "client_ref": client_ref}
        if callback_url:
            body["callback_url"] = callback_url
        if metadata:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key}
        for attempt in range(1, self.retry.attempts + 1):
            self.stats["creates"] += 1
            try:
                run = Run(await self._request("POST", RUNS_PATH, body=body, headers=headers, once=True))
            except (E.RateLimitError, E.ConnectError) as exc:  # definitely not created: plain retry
                limit = MAX_CONNECT_ATTEMPTS if isinstance(exc, E.ConnectError) else self.retry.attempts
                if attempt >= min(limit, self.retry.attempts):
                    raise
                delay = self.retry.delay(attempt - 1, getattr(exc, "retry_after", None))
            except (E.ServerError, E.TransportError, E.ConflictError) as exc:  # may have been created
                found = await self.find_run(client_ref)
                if found is not None:
                    log.info("Runflow: create was ambiguous (%s); found run %s by client_ref", type(exc).__name__,
                             found.id)
                    return found
                if isinstance(exc, E.ConflictError) or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt - 1, getattr(exc, "retry_after", None))
            else:
                if not run.id:
                    raise E.ApiError("Runflow accepted the run but sent no run id; check app.runflow.io → Runs.")
                return run
            self.stats["retries"] += 1
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def find_run(self, client_ref: str) -> Run | None:
        """The run created with ``client_ref``, if Runflow lists it; None when it does not (or cannot say)."""
        try:
            page = await self._request("GET", "/v1/runs", params={"q": f"client_ref:{client_ref}", "limit": 5,
                                                                  "sort_by": "created_at:desc"})
        except E.RunflowError as exc:
            log.info("Runflow: run lookup by client_ref failed (%s)", type(exc).__name__)
            return None
        for item in (page or {}).get("items") or []:
            if isinstance(item, dict) and item.get("client_ref") == client_ref:
                return Run(item)
        return None

    async def get_run(self, run_id: str) -> Run:
        self.stats["status_polls"] += 1
        return Run(await self._request("GET", f"/v1/runs/{quote(run_id)}"))

    async def wait(self, run: Run, *, timeout: float = DEFAULT_RUN_TIMEOUT, estimate: float | None = None,
                   on_status: Callable[[Run, float], None] | None = None,
                   wake: asyncio.Event | None = None) -> Run:
        """Poll until terminal; raise RunFailed / RunTimeout. ``wake`` (set by a callback) polls at once."""
        start = time.monotonic()
        schedule = PollSchedule(estimate)
        outage_since: float | None = None
        while not run.terminal:
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                raise E.RunTimeout(f"Runflow run {run.id} is still '{run.status}' after {timeout:.0f}s; it may still "
                                   "finish and bill. Re-queue later to pick it up, or raise RUNFLOW_TIMEOUT.",
                                   run_id=run.id, status=run.status)
            delay = min(schedule.next_delay(elapsed), max(0.0, timeout - elapsed))
            await _sleep_or_wake(delay, wake)
            try:
                run = await self.get_run(run.id)
                outage_since = None
            except E.RunflowError as exc:
                if not exc.retryable:  # auth, not found, a corrupt huge body: waiting will not help
                    raise
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > MAX_POLL_OUTAGE:
                    raise E.TransportError(f"Lost contact with Runflow while waiting for run {run.id} ({exc.message}); "
                                           "the run may still finish: re-queue to pick it up.") from None
                continue
            if on_status:
                on_status(run, time.monotonic() - start)
        if not run.succeeded:
            code, message = run.failure
            what = {"canceled": "was canceled", "cancelled": "was cancelled"}.get(run.status, run.status)
            raise E.RunFailed(f"Runflow run {run.id} {what}: {code or 'no code'}: {message or 'no message'}. "
                              "Failed runs are not billed; fix the input or re-queue.", run_id=run.id,
                              status=run.status, failure_code=code, failure_message=message)
        return run

    async def download(self, url: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """GET a presigned result URL (no Authorization). Raises ExpiredURL on 403/404 so the caller re-signs."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._storage.stream("GET", url) as resp:
                    if resp.status_code in (403, 404, 410):
                        raise ExpiredURL(f"result URL answered HTTP {resp.status_code}")
                    if resp.status_code < 400:
                        return await _read_capped(resp, max_bytes, "result image")
                    status = resp.status_code
            except httpx.TransportError as exc:
                if attempt >= self.retry.attempts:
                    raise _transport_error(exc, _origin(url), attempt) from None
            else:
                if not self.retry.should_retry_status(status) or attempt >= self.retry.attempts:
                    raise E.ResultError(f"downloading the result failed (HTTP {status}); re-queue to try again.")
            self.stats["retries"] += 1
            await self._sleep(self.retry.delay(attempt - 1))

    async def fetch_result(self, run: Run, *, index: int = 0, resigns: int = 5) -> tuple[bytes, str, Run]:
        """Download output ``index`` of a succeeded run; on an expired URL, GET the run again for a fresh one."""
        for attempt in range(resigns + 1):
            urls = run.output_urls
            if len(urls) <= index:
                raise E.ResultError(f"Runflow run {run.id} succeeded but its output has no image URL "
                                    f"(output keys: {sorted(run.output)}); report this to Runflow support.")
            try:
                return await self.download(urls[index]), urls[index], run
            except ExpiredURL:
                if attempt == resigns:
                    raise E.ResultError(f"the result URL of run {run.id} keeps answering 'expired'; re-queue to "
                                        "collect it (the run is not paid again).") from None
                log.info("Runflow: result URL of run %s expired; fetching a fresh one", run.id)
                if attempt:
                    await self._sleep(self.retry.delay(attempt - 1))
                run = await self.get_run(run.id)
        raise AssertionError("unreachable")


class ExpiredURL(Exception):
    """A presigned URL answered 403/404 (expired or revoked)."""


async def _sleep_or_wake(delay: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(delay)
        return
    try:
        await asyncio.wait_for(wake.wait(), timeout=delay)
    except asyncio.TimeoutError:
        return


async def _read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise E.ResultError(f"Runflow sent a {what} of {int(declared) // 1048576} MB, over the {limit // 1048576} MB "
                            "limit; refusing to read it. Try again later.")
    chunks, total = [], 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise E.ResultError(f"Runflow sent a {what} over the {limit // 1048576} MB limit; refusing to read it. "
                                "Try again later.")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes, method: str, path: str) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        excerpt = re.sub(r"\s+", " ", raw[:80].decode("utf-8", "replace"))
        raise E.ServerError(f"Runflow sent a response that is not valid JSON for {method} {path} "
                            f"(starts {excerpt!r}); try again in a minute.") from None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _transport_error(exc: httpx.TransportError, where: str, attempts: int) -> E.TransportError:
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return E.ConnectError(f"Cannot reach Runflow at {where}{tried} ({type(exc).__name__}): check the network, "
                              "HTTPS_PROXY, or RUNFLOW_API_URL.")
    if isinstance(exc, httpx.TimeoutException):
        return E.TimeoutError_(f"Runflow at {where} did not answer in time{tried}; try again in a minute.")
    return E.TransportError(f"The connection to Runflow at {where} broke{tried} ({type(exc).__name__}); "
                            "try again in a minute.")
