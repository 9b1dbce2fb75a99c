"""Orchestration shared by the nodes and the CLI: cache lookups, one upload per source content, concurrent runs,
a journal of runs in flight (a re-queue resumes polling instead of paying again), and session spend figures."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..runflow import errors as E
from ..comfy import push
from .cache import ResultCache, cache_key, default_cache_dir
from ..runflow.client import DEFAULT_RUN_TIMEOUT, RunflowClient
from ..runflow.models import Asset, Run
from .config import Settings, user_dir
from ..runflow.contract import DEFAULT_API_URL, MODEL_ID, PRICE_PER_RUN_USD
from .spec import JobSpec

log = logging.getLogger(__name__)

ENV_MAX_RUNS = "RUNFLOW_MAX_RUNS_PER_PROMPT"
DEFAULT_MAX_RUNS = 32  # $6.40: above this a prompt is far more likely a mistake (a huge batch) than intended
ENV_TIMEOUT = "RUNFLOW_TIMEOUT"
ASSET_URL_MAX_AGE = 300.0  # seconds; Runflow's signed asset URLs are "short-TTL": re-sign older ones before use
PENDING_MAX_AGE = 24 * 3600.0  # a journal entry older than this is stale (Runflow keeps runs, but be safe)

# Per ComfyUI server process: what this session spent, and uploads shared by every node in it.
SESSION = {"runs": 0, "spent_usd": 0.0, "cache_hits": 0}
_UPLOADS: dict[tuple[str, str], tuple[Asset, float]] = {}
# ComfyUI runs each prompt in a new event loop: an asyncio.Lock is bound to one loop, so keep them per loop
_UPLOAD_LOCKS: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
_PROMPT_RUNS: dict[str, int] = {}  # runs created per ComfyUI prompt id, for the per-prompt spend guard


@dataclass
class Source:
    """One source image: encoded bytes to upload (with the hash of its pixels for cache keys), or a URL."""

    data: bytes | None = None
    mime: str = "image/png"
    pixel_sha256: str | None = None
    upload_sha256: str | None = None
    url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(self.mime, "png")
        return f"source-{(self.upload_sha256 or 'x')[:16]}.{ext}"


@dataclass
class ItemResult:
    spec: JobSpec
    data: bytes | None = None
    url: str | None = None
    info: dict = field(default_factory=dict)
    from_cache: bool = False
    error: E.RunflowError | None = None
    decoded: object = None  # what ``validate`` returned (the decoded pixels), so callers need not decode twice


def max_runs_per_prompt() -> int:
    raw = os.environ.get(ENV_MAX_RUNS, "").strip()
    if not raw:
        return DEFAULT_MAX_RUNS
    try:
        return int(raw)
    except ValueError:
        raise E.ConfigError(f"{ENV_MAX_RUNS} must be a whole number (0 = no limit), got {raw!r}") from None


def run_timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    try:
        return float(raw) if raw else DEFAULT_RUN_TIMEOUT
    except ValueError:
        raise E.ConfigError(f"{ENV_TIMEOUT} must be seconds, got {raw!r}") from None


def cost_line(runs: int, cached: int = 0, price: float = PRICE_PER_RUN_USD) -> str:
    """'8 runs × $0.20 = $1.60', with cache hits named: '5 runs × $0.20 = $1.00 (3 from cache: $0.00)'."""
    text = f"{runs} run{'s' if runs != 1 else ''} × ${price:.2f} = ${runs * price:.2f}"
    return text + (f" ({cached} from cache: $0.00)" if cached else "")


class DurationEstimate:
    """Moving average of how long runs take, kept across restarts so polls can aim at the expected finish."""

    ALPHA = 0.3

    def __init__(self, path: Path | None = None):
        self.path = path if path is not None else user_dir() / "timing.json"
        self._value: float | None = None
        try:
            value = json.loads(self.path.read_text()).get(MODEL_ID)
            self._value = float(value) if value else None
        except (OSError, ValueError, TypeError, AttributeError):
            self._value = None

    @property
    def value(self) -> float | None:
        return self._value

    def record(self, seconds: float) -> None:
        if not 0 < seconds < 3600:
            return
        self._value = seconds if self._value is None else self.ALPHA * seconds + (1 - self.ALPHA) * self._value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({MODEL_ID: round(self._value, 3)}))
            os.replace(tmp, self.path)
        except OSError:
            pass


class Journal:
    """Runs created but not yet collected, by cache key: a re-queue polls them instead of creating new ones."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            entry = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or time.time() - entry.get("created", 0) > PENDING_MAX_AGE:
            return None
        return entry

    def put(self, key: str, entry: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self._path(key))

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


Event = Callable[[dict], None]


class Runner:
    """Runs a list of (source, spec) jobs. Results come back in input order; failures are per item."""

    def __init__(self, settings: Settings, *, cache: ResultCache | None = None, use_cache: bool = True,
                 max_concurrent: int = 4, on_event: Event | None = None, client_factory=None,
                 validate: Callable[[bytes], object] | None = None, guard_limit: int | None = None,
                 prompt_id: str | None = None):
        self.settings = settings
        self.cache = (cache or ResultCache(default_cache_dir())) if use_cache else None
        self.journal = Journal((self.cache.root if self.cache else default_cache_dir()) / "pending")
        self.max_concurrent = max(1, int(max_concurrent))
        self.on_event = on_event or (lambda event: None)
        self.client_factory = client_factory or (lambda: RunflowClient(settings.require_key(), settings.api_url))
        self.validate = validate
        self.guard_limit = max_runs_per_prompt() if guard_limit is None else guard_limit
        self.prompt_id = prompt_id
        self.estimate = DurationEstimate()
        self.timeout = run_timeout()
        self.stats = {"created": 0, "resumed": 0, "cache_hits": 0, "uploads": 0, "spent_usd": 0.0}

    def keys(self, jobs: list[tuple[Source, JobSpec]]) -> list[str]:
        # results from another endpoint (the sandbox, a staging API) must never be served as the real model's;
        # the built-in sandbox is deterministic, so all its instances (a new port each CLI run) share one identity
        if self.settings.api_url == DEFAULT_API_URL:
            model = MODEL_ID
        elif os.environ.get("RUNFLOW_SANDBOX"):
            model = f"{MODEL_ID}@sandbox"
        else:
            model = f"{MODEL_ID}@{self.settings.api_url}"
        return [cache_key(image_sha256=src.pixel_sha256 if src.data is not None else None,
                          image_url=src.url if src.data is None else None, model=model,
                          api_input=spec.api_input(), seed=spec.seed) for src, spec in jobs]

    def plan(self, jobs: list[tuple[Source, JobSpec]]) -> dict:
        """How many runs would be created (not cached, not already in flight) and what that costs."""
        keys = self.keys(jobs)
        unique = dict.fromkeys(keys)
        cached = {k for k in unique if self.cache is not None and k in self.cache}
        # in flight = created earlier (a run id is journalled) and not collected yet: polled, never re-created
        pending = {k for k in unique if k not in cached and (self.journal.get(k) or {}).get("run_id")}
        new = len(unique) - len(cached) - len(pending)
        hits = sum(1 for k in keys if k in cached)
        return {"items": len(jobs), "cached": hits, "pending": len(pending), "new_runs": new,
                "cost_usd": round(new * PRICE_PER_RUN_USD, 2), "line": cost_line(new, hits)}

    async def run(self, jobs: list[tuple[Source, JobSpec]]) -> list[ItemResult]:
        keys = self.keys(jobs)
        plan = self.plan(jobs)
        earlier = _PROMPT_RUNS.get(self.prompt_id, 0) if self.prompt_id else 0
        if self.guard_limit and earlier + plan["new_runs"] > self.guard_limit:
            also = f" (plus {earlier} already created by other nodes of this prompt)" if earlier else ""
            raise E.SpendLimitError(
                f"this would create {plan['line']}{also}, over the limit of {self.guard_limit} runs per prompt "
                f"({ENV_MAX_RUNS}); nothing was sent. Raise {ENV_MAX_RUNS} (0 = no limit) or queue fewer "
                "images/views.")
        if self.prompt_id:
            if len(_PROMPT_RUNS) > 64:
                _PROMPT_RUNS.clear()
            _PROMPT_RUNS[self.prompt_id] = earlier + plan["new_runs"]
        self.on_event({"kind": "plan", **plan, "estimate_s": self.estimate.value})
        results = [ItemResult(spec) for _, spec in jobs]
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = ItemResult(jobs[i][1], data=hit.data, url=hit.meta.get("url"),
                                        info={**hit.meta.get("info", {}), "from_cache": True}, from_cache=True)
                self.stats["cache_hits"] += 1
                SESSION["cache_hits"] += 1
                self.on_event({"kind": "item", "index": i, "label": jobs[i][1].label, "status": "from cache"})
            else:
                todo.setdefault(key, []).append(i)  # identical jobs in one call share one run
        if not todo:
            return results
        self.settings.require_key()
        sem = asyncio.Semaphore(self.max_concurrent)
        async with self.client_factory() as client:
            async def one(key: str, idxs: list[int]) -> None:
                src, spec = jobs[idxs[0]]
                async with sem:
                    try:
                        res = await self._run_one(client, key, src, spec, idxs[0])
                    except E.RunflowError as exc:
                        res = ItemResult(spec, error=exc)
                for i in idxs:
                    results[i] = dataclasses.replace(res, spec=jobs[i][1])

            await asyncio.gather(*(one(k, v) for k, v in todo.items()))
            self.stats["uploads"] += client.stats["uploads"]
        return results

    async def _source_url(self, client: RunflowClient, src: Source) -> str:
        if src.data is None:
            return src.url or ""
        key = (client.base_url, src.upload_sha256 or "")
        loop = asyncio.get_running_loop()
        held = _UPLOAD_LOCKS.get(key)
        if held is None or held[0] is not loop:
            if len(_UPLOAD_LOCKS) > 256:  # one entry per source ever uploaded; drop the stale ones
                for k in [k for k, (lp, _) in _UPLOAD_LOCKS.items() if lp is not loop]:
                    del _UPLOAD_LOCKS[k]
            held = _UPLOAD_LOCKS[key] = (loop, asyncio.Lock())
        async with held[1]:
            known = _UPLOADS.get(key)
            if known and time.monotonic() - known[1] < ASSET_URL_MAX_AGE:
                return known[0].url
            if known:  # same content uploaded earlier: re-sign instead of uploading again
                try:
                    asset = await client.get_asset(known[0].id)
                    _UPLOADS[key] = (asset, time.monotonic())
                    return asset.url
                except E.RunflowError:
                    pass
            asset = await client.upload(src.data, src.mime, src.filename)
            _UPLOADS[key] = (asset, time.monotonic())
            return asset.url

    async def _run_one(self, client: RunflowClient, key: str, src: Source, spec: JobSpec, index: int) -> ItemResult:
        def status(run: Run, elapsed: float) -> None:
            self.on_event({"kind": "item", "index": index, "label": spec.label, "status": run.status,
                           "elapsed": elapsed, "run_id": run.id})

        entry = self.journal.get(key)
        run: Run | None = None
        if entry and entry.get("run_id"):
            try:  # created earlier (before a cancel, crash or restart): poll it, never pay for it again
                run = await client.get_run(entry["run_id"])
                self.stats["resumed"] += 1
                self.on_event({"kind": "item", "index": index, "label": spec.label, "status": "resuming",
                               "run_id": run.id})
            except E.NotFoundError:  # Runflow does not know it (or another sandbox made it): start afresh
                self.journal.drop(key)
                entry, run = None, None
        if run is None:
            if entry is None:
                entry = {"idempotency_key": str(uuid.uuid4()), "created": time.time()}
                entry["client_ref"] = "comfyui-rfma-" + entry["idempotency_key"]
                self.journal.put(key, entry)
            self.on_event({"kind": "item", "index": index, "label": spec.label, "status": "uploading"
                           if src.data is not None else "creating"})
            image_url = await self._source_url(client, src)
            callback = spec.callback_url or push.callback_url(self.settings.public_url, self.settings.webhook_secret)
            run = await client.create_run(spec.api_input(image_url), idempotency_key=entry["idempotency_key"],
                                          client_ref=entry["client_ref"], callback_url=callback,
                                          metadata=spec.metadata)
            self.journal.put(key, {**entry, "run_id": run.id})
            self.stats["created"] += 1
            status(run, 0.0)
        started = time.monotonic()
        try:
            run = await client.wait(run, timeout=self.timeout, estimate=self.estimate.value, on_status=status,
                                    wake=push.waiter(run.id))
        except E.RunFailed:
            self.journal.drop(key)  # a failed run is final and not billed; a re-queue may try again
            raise
        finally:
            push.forget(run.id)
        self.estimate.record(run.server_duration or (time.monotonic() - started))
        data, url, run = await client.fetch_result(run)
        decoded = await asyncio.to_thread(self.validate, data) if self.validate is not None else None
        info = run.info()
        cost = run.cost if run.cost is not None else PRICE_PER_RUN_USD
        self.stats["spent_usd"] += cost
        SESSION["runs"] += 1
        SESSION["spent_usd"] += cost
        if self.cache is not None:
            self.cache.put(key, data, {"url": url, "info": info, "pose": spec.pose, "label": spec.label,
                                       "created_at": time.time()})
        self.journal.drop(key)
        self.on_event({"kind": "item", "index": index, "label": spec.label, "status": "done", "cost": cost,
                       "run_id": run.id})
        return ItemResult(spec, data=data, url=url, info={**info, "from_cache": False}, decoded=decoded)
