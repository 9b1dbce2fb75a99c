"""The one place that talks HTTP: a retrying ``send()`` that every request goes through (API calls with the key,
presigned storage PUTs and result downloads without it).

Retries transport errors and retryable statuses (429/5xx/408) with the policy's backoff or the server's Retry-After,
never sleeps past a caller's deadline, and reads bodies with a size cap.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from . import errors as E
from .responses import transport_error
from .retry import RetryPolicy, parse_retry_after
from .urlsafety import StoragePolicy, check_api_url

log = logging.getLogger(__name__)
T = TypeVar("T")

# connect: a dead host fails fast; read: Runflow answers API calls in well under a second, so 30 s means something
# is wrong; write: uploads of up to 50 MiB on a slow uplink need minutes.
API_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=60.0, pool=30.0)
STORAGE_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=300.0, pool=30.0)
MAX_CONNECT_ATTEMPTS = 3  # connection refused / DNS failure: ~3 s of retries, then a clear error
USER_AGENT = "runflow-multi-angles-comfyui/0.1"


@functools.lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one costs ~23 ms of blocked event loop, per client."""
    return httpx.create_ssl_context(trust_env=True)


@dataclass(frozen=True)
class Reply:
    """A whole (capped) HTTP answer."""

    status: int
    body: bytes
    headers: httpx.Headers
    reason: str = ""

    def as_response(self, method: str, url: str) -> httpx.Response:
        """An httpx.Response for error parsing (status, headers, the capped body)."""
        return httpx.Response(self.status, headers=self.headers, content=self.body,
                              request=httpx.Request(method, url))


@dataclass
class Stats:
    requests: int = 0
    status_polls: int = 0
    uploads: int = 0
    creates: int = 0
    retries: int = 0

    def __getitem__(self, name: str) -> int:  # stats["uploads"] reads as before
        return getattr(self, name)


class Transport:
    """Two connection pools: ``api`` (base URL, key added per request) and ``storage`` (presigned URLs, never the key).

    ``async with`` closes both on every path.
    """

    def __init__(self, base_url: str, api_key: str, *, retry: RetryPolicy | None = None,
                 timeout: httpx.Timeout = API_TIMEOUT, storage_timeout: httpx.Timeout = STORAGE_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, max_connections: int = 16):
        self.base_url = check_api_url(base_url.rstrip("/"))
        self.storage_policy = StoragePolicy(self.base_url)  # where presigned storage URLs may point
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.stats = Stats()
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # trust_env: HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured (httpx's default, stated for clarity).
        self._api = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport, limits=limits,
                                      headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                                      trust_env=True, verify=ssl_context(), follow_redirects=False)
        self._storage = httpx.AsyncClient(timeout=storage_timeout, transport=transport, limits=limits,
                                          headers={"User-Agent": USER_AGENT}, trust_env=True, verify=ssl_context(),
                                          follow_redirects=False)

    async def aclose(self) -> None:
        await asyncio.gather(self._api.aclose(), self._storage.aclose(), return_exceptions=True)

    async def send(self, method: str, url: str, *, parse: Callable[[Reply], T], api: bool = True,
                   content: bytes | None = None, headers: dict | None = None, params: dict | None = None,
                   once: bool = False, limit: int, what: str = "response", deadline: float | None = None) -> T:
        """Send one request (retrying unless ``once``) and return ``parse(reply)``.

        ``parse`` sees every non-retryable answer (any 2xx/3xx/4xx) and decides; raising a retryable RunflowError
        from it (a garbled 2xx body) retries like a 5xx. ``api`` picks the pool: only API requests carry the key.
        ``deadline`` (time.monotonic()) bounds the whole call, retries and waits included.
        """
        hdrs = dict(headers or {})
        if api:
            hdrs["Authorization"] = f"Bearer {self._key}"
        client = self._api if api else self._storage
        where = self.base_url if api else _origin(url)
        if api and urlsplit(url).scheme:
            raise E.ConfigError("an API request must use a path on the configured API URL, not an absolute URL")
        if not api:
            await self.storage_policy.check(url)  # before any byte goes out: https + public addresses only
        attempt = 0
        while True:
            attempt += 1
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                async with client.stream(method, url, content=content, headers=hdrs, params=params,
                                         timeout=_bounded(client.timeout, deadline)) as resp:
                    reply = Reply(resp.status_code, await read_capped(resp, limit, what), resp.headers,
                                  resp.reason_phrase)
            except httpx.TransportError as exc:
                err = transport_error(exc, where, attempt)
                # refused/unresolvable: a typo or an outage, not a blip; say so in seconds, not after 5 backoffs
                tries = min(self.retry.attempts, MAX_CONNECT_ATTEMPTS) if isinstance(err, E.ConnectError) \
                    else self.retry.attempts
                if once or attempt >= tries:
                    raise err from None
                log.info("Runflow %s %s: %s; retry %d", method, _path(url), type(exc).__name__, attempt)
            else:
                if 300 <= reply.status < 400:
                    raise _redirect_error(reply, where, api)
                if self.retry.should_retry_status(reply.status) and not once and attempt < self.retry.attempts:
                    retry_after = parse_retry_after(reply.headers.get("retry-after"))
                    log.info("Runflow %s %s: HTTP %d; retry %d", method, _path(url), reply.status, attempt)
                else:
                    try:
                        return parse(reply)
                    except E.RunflowError as exc:
                        if once or not exc.retryable or attempt >= self.retry.attempts:
                            raise
            delay = self.retry.delay(attempt - 1, retry_after)
            left = _remaining(deadline)
            if left is not None and delay >= left:
                raise E.TimeoutError_(f"Runflow at {where} did not give a usable answer before the deadline "
                                      f"({attempt} attempts); try again in a minute.")
            self.stats.retries += 1
            await self.sleep(delay)


async def read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    """The body, refused (not buffered) past ``limit`` bytes, by Content-Length and while reading."""
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


def _redirect_error(reply: Reply, where: str, api: bool) -> E.RunflowError:
    """A 3xx is never followed (it could lead the key or a request anywhere): say so plainly."""
    target = _origin(reply.headers.get("location", "")) if "://" in reply.headers.get("location", "") else "a path"
    target = "".join(c for c in target[:80] if c.isprintable())
    text = (f"{where} answered with a redirect (HTTP {reply.status} to {target}); redirects are never followed, "
            "so nothing was sent there.")
    if api:
        return E.ApiError(text + " Check RUNFLOW_API_URL (use the exact https://api.runflow.io).", status=reply.status)
    return E.ResultError(text + " Re-queue to try again; report the run id to Runflow if it repeats.")


def _bounded(timeout: httpx.Timeout, deadline: float | None) -> httpx.Timeout:
    """The pool's timeouts, none longer than what is left before ``deadline``."""
    left = _remaining(deadline)
    if left is None:
        return timeout

    def cap(value: float | None) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(connect=cap(timeout.connect), read=cap(timeout.read), write=cap(timeout.write),
                         pool=cap(timeout.pool))


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.05, deadline - time.monotonic())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _path(url: str) -> str:
    return urlsplit(url).path or url
