"""Orchestration shared by the nodes and the CLI: cache lookups, one upload per source content, concurrent runs,
the journal of runs in flight (a re-queue resumes polling instead of paying again), receipts and spend figures."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..runflow import errors as E
from ..runflow.capabilities import CAPABILITIES_FILE, CapabilityStore
from ..runflow.client import DEFAULT_RUN_TIMEOUT, RunflowClient
from ..runflow.contract import DEFAULT_API_URL, MODEL_ID, PRICE_PER_RUN_USD
from ..runflow.models import Run
from .cache import ResultCache, cache_key, default_cache_dir
from .callbacks import callback_url, check_workflow_callback
from .concurrency import AdaptiveLimiter
from .config import Settings, user_dir
from .events import ItemEvent, ItemState, Listener, Plan
from .flight import obtain_run
from .journal import Journal
from .session import Session, process_session
from .sources import Source
from .spec import JobSpec
from .spend import DailyCap, Ledger, Receipt, SpendGuard, cost_line, max_runs_per_prompt
from .timing import DurationEstimate

ResultListener = Callable[[int, "ItemResult"], None]

log = logging.getLogger(__name__)

ENV_TIMEOUT = "RUNFLOW_TIMEOUT"
PRIOR_WAIT = 0.5  # seconds a first run's polls wait for the examples' timing (asked while uploading)


@dataclass
class ItemResult:
    spec: JobSpec
    data: bytes | None = None
    url: str | None = None
    info: dict = field(default_factory=dict)
    from_cache: bool = False
    error: E.RunflowError | None = None
    decoded: object = None  # what ``decode`` returned (the pixels), for fresh results and cache hits alike


@dataclass
class RunnerStats:
    created: int = 0
    resumed: int = 0
    cache_hits: int = 0
    uploads: int = 0
    spent_usd: float = 0.0

    def __getitem__(self, name: str):  # stats["created"] reads as before
        return getattr(self, name)


def run_timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    try:
        return float(raw) if raw else DEFAULT_RUN_TIMEOUT
    except ValueError:
        raise E.ConfigError(f"{ENV_TIMEOUT} must be seconds, got {raw!r}") from None


def api_identity(settings: Settings) -> str:
    """Which API results come from: the real model, the built-in sandbox (deterministic, so every instance shares
    one identity), or another base URL. Results of one are never served as another's."""
    if settings.api_url == DEFAULT_API_URL:
        return "runflow"
    if os.environ.get("RUNFLOW_SANDBOX"):
        return "sandbox"
    return settings.api_url


class Runner:
    """Runs a list of (source, spec) jobs. Results come back in input order; failures are per item."""

    def __init__(self, settings: Settings, *, cache: ResultCache | None = None, use_cache: bool = True,
                 max_concurrent: int = 4, on_event: Listener | None = None, client_factory=None,
                 validate: Callable[[bytes], object] | None = None, guard_limit: int | None = None,
                 prompt_id: str | None = None, session: Session | None = None, ledger: Ledger | None = None,
                 require_prompt: bool = False, limiter: AdaptiveLimiter | None = None,
                 on_result: ResultListener | None = None,
                 before_create: Callable[[JobSpec], None] | None = None,
                 place: Callable[[list[int], object], None] | None = None):
        self.settings = settings
        self.session = session or process_session()
        self.cache = (cache or ResultCache(default_cache_dir())) if use_cache else None
        self.journal = Journal((self.cache.root if self.cache else default_cache_dir()) / "pending")
        self.ledger = ledger or Ledger(user_dir() / "ledger.jsonl")
        self.max_concurrent = max(1, int(max_concurrent))
        self.on_event: Listener = on_event or (lambda event: None)
        self.capabilities = CapabilityStore(user_dir() / CAPABILITIES_FILE)
        self.client_factory = client_factory or (lambda: RunflowClient(settings.require_key(), settings.api_url,
                                                                       capabilities=self.capabilities))
        self.decode = validate
        self.place = place  # called in the decoding thread with (item indices, decoded): e.g. fill the batch now
        self.guard = SpendGuard(self.session.prompt_runs, max_runs_per_prompt() if guard_limit is None
                                else guard_limit, require_prompt=require_prompt)
        self.daily = DailyCap(self.ledger, self.session.reserved, max_usd=settings.max_spend_per_day,
                              max_runs=settings.max_runs_per_day, api=api_identity(settings))
        self.prompt_id = prompt_id
        self.estimate = DurationEstimate(user_dir() / "timing.json")
        self.timeout = run_timeout()
        self.stats = RunnerStats()
        self.started_at = time.time()
        self.api = api_identity(settings)
        # catalog hooks: an adaptive limit on runs in flight instead of the fixed max_concurrent; each result handed
        # over as it arrives (then only its metadata is kept, so memory stays flat); a check before every new create
        self.limiter = limiter
        self.on_result = on_result
        self.before_create = before_create

    def _deliver(self, results: list[ItemResult], index: int, result: ItemResult) -> None:
        if self.on_result is None:
            results[index] = result
            return
        self.on_result(index, result)
        results[index] = dataclasses.replace(result, data=None, decoded=None)

    def keys(self, jobs: list[tuple[Source, JobSpec]]) -> list[str]:
        model = MODEL_ID if self.api == "runflow" else f"{MODEL_ID}@{self.api}"
        return [cache_key(image_sha256=src.pixel_sha256 if src.data is not None else None,
                          image_url=src.url if src.data is None else None, model=model,
                          api_input=spec.api_input(), seed=spec.seed, take=spec.take) for src, spec in jobs]

    def plan(self, jobs: list[tuple[Source, JobSpec]], keys: list[str] | None = None) -> Plan:
        """How many runs would be created (not cached, not already in flight) and what that costs."""
        keys = keys or self.keys(jobs)
        unique = dict.fromkeys(keys)
        cached = {k for k in unique if self.cache is not None and k in self.cache}
        # in flight = created earlier (a run id is journalled) and not collected yet: polled, never re-created
        pending = {k for k in unique if k not in cached and self.journal.run_id(k)}
        new = len(unique) - len(cached) - len(pending)
        hits = sum(1 for k in keys if k in cached)
        return Plan(items=len(jobs), cached=hits, pending=len(pending), new_runs=new,
                    cost_usd=round(new * PRICE_PER_RUN_USD, 2), line=cost_line(new, hits),
                    estimate_s=self.estimate.value)

    async def run(self, jobs: list[tuple[Source, JobSpec]]) -> list[ItemResult]:
        self.started_at = time.time()
        for _, spec in jobs:  # a workflow's callback_url: only to a host the user allowed, checked before any send
            if spec.callback_url:
                check_workflow_callback(spec.callback_url, self.settings.callback_hosts, self.settings.public_url)
        keys = self.keys(jobs)
        plan = self.plan(jobs, keys)
        self.guard.admit(self.prompt_id, plan.new_runs, plan.line)
        with self.daily.admit(plan.new_runs, plan.line):  # the rolling 24 h cap, shared with the CLI via the ledger
            return await self._run(jobs, keys, plan)

    async def _run(self, jobs: list[tuple[Source, JobSpec]], keys: list[str], plan: Plan) -> list[ItemResult]:
        self.on_event(plan)
        results = [ItemResult(spec) for _, spec in jobs]
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is None:
                todo.setdefault(key, []).append(i)  # identical jobs in one call share one run
                continue
            src, spec = jobs[i]
            self._deliver(results, i, await self._from_cache(hit, src, spec, [i]))
            self.on_event(ItemEvent(i, spec.label, ItemState.CACHED))
        if not todo:
            return results
        self.settings.require_key()
        sem = asyncio.Semaphore(self.max_concurrent)
        async with self.client_factory() as client:
            if self.limiter is not None:
                client.http.on_status = self.limiter.observe
            if client.capabilities.path is None:  # a test/bench factory: still remember what the API does
                client.capabilities = self.capabilities
            # no timing yet (a fresh install): Runflow's timing of the model's examples, asked while uploading
            prior = None if self.estimate.value is not None else asyncio.ensure_future(self.estimate.ask_prior(client))

            async def one(key: str, idxs: list[int]) -> None:
                src, spec = jobs[idxs[0]]
                async with self.limiter.slot() if self.limiter is not None else sem:
                    try:
                        res = await self._run_one(client, key, src, spec, idxs, prior)
                        if self.limiter is not None:
                            self.limiter.succeeded()
                    except E.RunflowError as exc:
                        res = ItemResult(spec, error=exc)
                    except Exception as exc:  # noqa: BLE001 - one item's surprise must not tear down its siblings
                        log.exception("Runflow: unexpected error in %s", spec.label)
                        res = ItemResult(spec, error=E.ServerError(
                            f"unexpected answer while running {spec.label} ({type(exc).__name__}: {exc}); "
                            "re-queue to try again (a run already created is polled, not paid again)"))
                for i in idxs:
                    self._deliver(results, i, dataclasses.replace(res, spec=jobs[i][1]))

            try:
                await asyncio.gather(*(one(k, v) for k, v in todo.items()))
            finally:
                if prior is not None and not prior.done():
                    prior.cancel()
            self.stats.uploads += client.stats.uploads
        return results

    async def _from_cache(self, hit, src: Source, spec: JobSpec, indices: list[int]) -> ItemResult:
        self.stats.cache_hits += 1
        self.session.totals.cache_hits += 1
        self.ledger.append(Receipt(pose=spec.pose, source=src.identity, status="from cache", from_cache=True,
                                   run_id=hit.meta.get("info", {}).get("run_id"), cost_usd=0.0, api=self.api,
                                   label=spec.label))
        decoded = await asyncio.to_thread(self._decode, hit.data, indices)
        return ItemResult(spec, data=hit.data, url=hit.meta.get("url"),
                          info={**hit.meta.get("info", {}), "from_cache": True}, from_cache=True, decoded=decoded)

    async def _source_url(self, client: RunflowClient, src: Source) -> str:
        if src.data is None:
            return src.url or ""
        return await self.session.uploads.url(client, src.upload_sha256 or "", src.data, src.mime, src.filename)

    def _decode(self, data: bytes, indices: list[int]):
        """Decode (and check) one result, then ``place`` it, in the caller's worker thread; None without a decoder."""
        if self.decode is None:
            return None
        decoded = self.decode(data)
        if self.place is not None:
            self.place(indices, decoded)
        return decoded

    async def _run_one(self, client: RunflowClient, key: str, src: Source, spec: JobSpec, indices: list[int],
                       prior: asyncio.Future | None = None) -> ItemResult:
        index = indices[0]  # identical jobs share one run: events name the first, the result goes to all

        def status(run: Run, elapsed: float) -> None:
            self.on_event(ItemEvent(index, spec.label, ItemState.of_run(run.state), elapsed=elapsed, run_id=run.id,
                                    run_status=run.state))

        async def make_body(client_ref: str) -> dict:
            if self.before_create is not None:
                self.before_create(spec)  # may refuse (a spend cap): raises before anything is sent
            self.on_event(ItemEvent(index, spec.label,
                                    ItemState.UPLOADING if src.data is not None else ItemState.CREATING))
            image_url = await self._source_url(client, src)
            callback = spec.callback_url or callback_url(self.settings.public_url, self.settings.webhook_secret)
            return client.run_body({**spec.api_input(), "image_url": image_url}, client_ref=client_ref,
                                   callback_url=callback, metadata=spec.metadata)

        def resumed(run: Run) -> None:
            self.stats.resumed += 1
            self.on_event(ItemEvent(index, spec.label, ItemState.RESUMING, run_id=run.id))

        got = await obtain_run(client, self.journal, key, started_at=self.started_at, make_body=make_body,
                               lock_timeout=self.timeout, on_resume=resumed)
        run, entry, adopted = got.run, got.entry, got.adopted
        if got.created:
            self.stats.created += 1
        status(run, 0.0)
        started = time.monotonic()
        if prior is not None:
            await asyncio.wait({prior}, timeout=PRIOR_WAIT)  # a slow answer must not hold the polls back
        wakeups = self.session.wakeups
        try:
            run = await client.wait(run, timeout=self.timeout, estimate=self.estimate.value, on_status=status,
                                    wake=wakeups.register(run.id), since=run.received if got.created else None)
        except E.RunFailed as exc:
            self.journal.done(key, run.id)  # a failed run is final and not billed; a re-queue may try again
            self._receipt(spec, src, run.id, entry, exc.status or "failed", exc.cost, adopted)
            raise
        finally:
            wakeups.forget(run.id)
        self.estimate.record(run.server_duration or (time.monotonic() - started))
        data, url, run = await client.fetch_result(run)
        decoded = await asyncio.to_thread(self._decode, data, indices)
        info = run.info()
        cost = run.cost if run.cost is not None else PRICE_PER_RUN_USD
        self.stats.spent_usd += cost
        self.session.totals.runs += 1
        self.session.totals.spent_usd += cost
        self._receipt(spec, src, run.id, entry, run.status, run.cost, adopted)
        if self.cache is not None:
            self.cache.put(key, data, {"url": url, "info": info, "pose": spec.pose, "label": spec.label,
                                       "created_at": time.time()})
        self.journal.done(key, run.id)  # a twin waiting on this job adopts it; a later job starts afresh
        self.on_event(ItemEvent(index, spec.label, ItemState.DONE, run_id=run.id, cost=cost))
        return ItemResult(spec, data=data, url=url, info={**info, "from_cache": False}, decoded=decoded)

    def _receipt(self, spec: JobSpec, src: Source, run_id: str, entry: dict | None, status: str,
                 cost: float | None, adopted: bool) -> None:
        self.ledger.append(Receipt(pose=spec.pose, source=src.identity, status=status, run_id=run_id,
                                   client_ref=(entry or {}).get("client_ref"), cost_usd=cost, adopted=adopted,
                                   api=self.api, label=spec.label))
