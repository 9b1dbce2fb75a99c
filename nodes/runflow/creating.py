"""Creating a billable run without ever paying twice, whatever Runflow does where its docs are silent.

A create that got no usable answer (dropped connection, timeout, 5xx, a garbled 2xx) may or may not have made a
run. It is re-sent only when that is KNOWN to be safe:

- the run is found by its ``client_ref`` (search, or a scan of the newest runs) -> that run is used;
- the API is known to honour Idempotency-Key on the run route -> the same key and the same body are re-sent
  (Runflow replays the first answer);
- client_ref search is known to filter and finds nothing, twice, a settle delay apart -> nothing was created;
- a FENCE proves it: when neither of the above is known, the newest run id is read before the POST; afterwards (and
  after the settle delay) the newest runs, sorted by created_at, are listed back to that fence: ours is there, or
  it was never created.

Otherwise it raises ``RunMaybeCreated`` ("stopped safely"). What the API does is learned for free and remembered per
API URL (``capabilities.py``): after a clean create the same key is re-sent with an invalid body (409 = honoured, a
422 = ignored; neither can bill), and a search for a random client_ref shows whether the filter works.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from . import errors as E
from .capabilities import FILTERS, HONOURED, IGNORED, REFUSED, Capabilities, CapabilityStore
from .contract import RUNS_PATH
from .models import Run
from .transport import MAX_CONNECT_ATTEMPTS

if TYPE_CHECKING:
    from .client import RunflowClient

log = logging.getLogger(__name__)

SETTLE_SECONDS = 5.0  # a create that timed out may still be handled server-side: search again after this long
IN_PROGRESS_WAIT = 60.0  # seconds of 409 "in progress" answers before stopping safely
MIN_CONFLICT_GAP = 0.25  # seconds between two asks for the replay of a create in progress
SCAN_LIMIT = 100  # newest runs scanned for our client_ref when the search cannot filter
FENCE_SCAN = 500  # runs listed (newest first, Runflow's max page) back to the fence
EMPTY = ""  # the fence when the organisation had no runs at all
PROBE_INPUT = {"view": "__runflow_multi_angles_idempotency_probe__"}  # no image_url, no valid view: always a 422


class Outcome(Enum):
    FOUND = "found"  # the run exists (``run`` set)
    ABSENT = "absent"  # proven: no run was created under this key/client_ref
    REPLAY_SAFE = "replay safe"  # existence unknown, but the same key + body cannot make a second run
    UNKNOWN = "unknown"  # no safe way to know: stop


@dataclass
class Reconciled:
    outcome: Outcome
    run: Run | None = None
    why: str = ""


class Creator:
    """Create / reconcile for one client. ``store`` remembers capabilities per API URL."""

    def __init__(self, client: RunflowClient, store: CapabilityStore, *, settle: float = SETTLE_SECONDS):
        self.client = client
        self.store = store
        self.settle = settle

    @property
    def caps(self) -> Capabilities:
        return self.store.get(self.client.base_url)

    def learn(self, **facts: str) -> None:
        before = self.caps
        if any(getattr(before, k) != v for k, v in facts.items()):
            log.info("Runflow at %s: learned %s", self.client.base_url, facts)
        self.store.learn(self.client.base_url, **facts)

    async def _post(self, body: dict, key: str) -> Run:
        raw = await self.client._request("POST", RUNS_PATH, body=body, headers={"Idempotency-Key": key}, once=True)
        if not isinstance(raw, dict):
            raise E.ServerError(f"Runflow sent the created run as a JSON {type(raw).__name__}, not an object")
        run = Run(raw)
        if not run.id:
            raise E.ServerError("Runflow accepted the run but sent no run id")
        return run

    async def create(self, body: dict, *, idempotency_key: str, client_ref: str) -> Run:
        """POST ``body`` (sent byte-for-byte the same on every retry) and return the run; never two runs."""
        attempts = self.client.retry.attempts
        caps = self.caps
        fence = None if caps.replay_safe or caps.absence_provable else await self.fence()
        attempt, conflict_since = 0, None
        while attempt < attempts:
            attempt += 1
            self.client.stats.creates += 1
            try:
                run = await self._post(body, idempotency_key)
            except (E.RateLimitError, E.ConnectError) as exc:  # never reached the handler: plain retry
                limit = MAX_CONNECT_ATTEMPTS if isinstance(exc, E.ConnectError) else attempts
                if attempt >= min(limit, attempts):
                    raise
                delay = self.client.retry.delay(attempt - 1, getattr(exc, "retry_after", None))
            except E.ConflictError as exc:  # the key is known to Runflow: in progress, or reused with another body
                self.learn(idempotency=HONOURED)
                found = await self.find(client_ref)
                if found is not None:
                    return found
                conflict_since = conflict_since or time.monotonic()
                if time.monotonic() - conflict_since > IN_PROGRESS_WAIT:
                    raise E.RunMaybeCreated(E.maybe_created_message(client_ref, f"Runflow kept answering 409: "
                                            f"{exc.message}"), client_ref=client_ref,
                                            idempotency_key=idempotency_key) from None
                # "in progress": ask again for the replay (time-bounded, not attempt-bounded)
                delay = max(MIN_CONFLICT_GAP, self.client.retry.delay(min(attempt, 4) - 1, exc.retry_after))
                attempt -= 1
            except (E.ServerError, E.TransportError, E.ApiError) as exc:  # may have been created
                if isinstance(exc, E.ApiError) and not isinstance(exc, E.ServerError) and exc.status != 408:
                    raise  # a refusal (400/401/402/403/404/422...): nothing was created
                rec = await self.reconcile(body, idempotency_key, client_ref, fence=fence)
                if rec.outcome is Outcome.FOUND:
                    log.info("Runflow: create was ambiguous (%s); found run %s", type(exc).__name__, rec.run.id)
                    return rec.run
                if rec.outcome is Outcome.UNKNOWN:
                    raise E.RunMaybeCreated(E.maybe_created_message(client_ref, f"{exc.message}; {rec.why}"),
                                            client_ref=client_ref, idempotency_key=idempotency_key) from None
                if attempt >= attempts:
                    raise
                delay = self.client.retry.delay(attempt - 1, getattr(exc, "retry_after", None))
            else:
                await self.learn_after_create(idempotency_key, client_ref)
                return run
            self.client.stats.retries += 1
            await self.client.http.sleep(delay)
        raise AssertionError("unreachable")

    # -- finding out -----------------------------------------------------------------------------------------------
    async def search(self, client_ref: str | None, limit: int = 20) -> list[dict] | None:
        """Items of GET /v1/runs (filtered by client_ref when given); None when the search was refused/failed."""
        params: dict = {"limit": limit, "sort_by": "created_at:desc"}
        if client_ref is not None:
            params["q"] = f"client_ref:{client_ref}"
        try:
            page = await self.client._request("GET", "/v1/runs", params=params)
        except (E.ValidationError, E.NotFoundError) as exc:
            if client_ref is not None and exc.status in (400, 422):
                self.learn(search=REFUSED)
            return None
        except E.RunflowError as exc:
            log.info("Runflow: run search failed (%s)", type(exc).__name__)
            return None
        items = page.get("items") if isinstance(page, dict) else None
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else None

    async def find(self, client_ref: str) -> Run | None:
        """The run created with ``client_ref``, if Runflow shows it (search, then a scan of the newest runs)."""
        items = await self.search(client_ref)
        if items is not None:
            if any(i.get("client_ref") != client_ref for i in items):
                self.learn(search=IGNORED)
            for item in items:
                if item.get("client_ref") == client_ref and item.get("id"):
                    return Run(item)
        if self.caps.search in (IGNORED, REFUSED):
            for item in await self.search(None, SCAN_LIMIT) or []:
                if item.get("client_ref") == client_ref and item.get("id"):
                    return Run(item)
        return None

    async def reconcile(self, body: dict | None, idempotency_key: str, client_ref: str, *,
                        probe_key: bool = True, fence: str | None = None) -> Reconciled:
        """Whether a run exists for this key/client_ref, or whether re-sending is safe."""
        found = await self.find(client_ref)
        if found is not None:
            return Reconciled(Outcome.FOUND, found)
        # the same key with an invalid body: 409 = Runflow holds this key (honoured; the run exists or is in progress)
        if probe_key and self.caps.idempotency != IGNORED:
            verdict = await self.probe_key(idempotency_key, client_ref)
            if verdict == HONOURED:
                return Reconciled(Outcome.REPLAY_SAFE)
            if verdict == "absent":
                return Reconciled(Outcome.ABSENT)
        if self.caps.replay_safe:
            return Reconciled(Outcome.REPLAY_SAFE)
        if fence is not None:
            await self.client.http.sleep(self.settle)  # a create still being handled shows up by then
            fenced = await self.behind_fence(client_ref, fence)
            if fenced is not None:
                return fenced
        if await self.search(None, 1) == []:  # the org has no runs at all, so not this one either
            await self.client.http.sleep(self.settle)
            if await self.search(None, 1) == []:
                return Reconciled(Outcome.ABSENT)
        if self.caps.search is None:
            await self.learn_search()
        if self.caps.absence_provable:
            await self.client.http.sleep(self.settle)  # a create still being handled shows up by then
            found = await self.find(client_ref)
            if found is not None:
                return Reconciled(Outcome.FOUND, found)
            if self.caps.absence_provable:
                return Reconciled(Outcome.ABSENT)
        why = {REFUSED: "its run search refuses client_ref", IGNORED: "its run search ignores client_ref"}.get(
            self.caps.search or "", "its run search could not be checked")
        idem = {IGNORED: "it does not honour Idempotency-Key on runs"}.get(
            self.caps.idempotency or "", "Idempotency-Key on runs is not known to be honoured")
        return Reconciled(Outcome.UNKNOWN, why=f"{why} and {idem}")

    async def fence(self) -> str | None:
        """The newest run's id before a create (EMPTY: the org has none); None when the list cannot be read."""
        items = await self.search(None, 1)
        if items is None:
            return None
        return str(items[0].get("id") or "") or None if items else EMPTY

    async def behind_fence(self, client_ref: str, fence: str) -> Reconciled | None:
        """List runs newest first back to ``fence``: ours among them -> FOUND; the fence reached -> ABSENT (every run
        created after it is listed before it). None when the list is unsorted, unreadable or too long to tell."""
        items = await self.search(None, FENCE_SCAN)
        if items is None:
            return None
        stamps = [i.get("created_at") for i in items]
        if not all(isinstance(t, str) for t in stamps) or stamps != sorted(stamps, reverse=True):
            return None  # not sorted newest first: the list proves nothing
        for item in items:
            if item.get("client_ref") == client_ref and item.get("id"):
                return Reconciled(Outcome.FOUND, Run(item))
            if fence and item.get("id") == fence:
                return Reconciled(Outcome.ABSENT)
        if fence == EMPTY and len(items) < FENCE_SCAN:
            return Reconciled(Outcome.ABSENT)  # the whole org is listed and ours is not in it
        return None

    async def probe_key(self, idempotency_key: str, client_ref: str) -> str | None:
        """Re-send ``idempotency_key`` with a body Runflow must refuse. 409 -> "honoured" (learned); 400/422 -> the
        request was processed as new: "ignored" is learned only if the key surely was stored before (the caller
        says so via ``learn_after_create``), else "absent" when honouring is already known. Never bills."""
        try:
            await self.client._request("POST", RUNS_PATH, body={"input": PROBE_INPUT, "client_ref": client_ref},
                                       headers={"Idempotency-Key": idempotency_key}, once=True)
        except E.ConflictError:
            self.learn(idempotency=HONOURED)
            return HONOURED
        except E.ValidationError:
            return "absent" if self.caps.replay_safe else None
        except E.RunflowError:
            return None
        log.warning("Runflow accepted the idempotency probe body; treating idempotency as unknown")
        return None

    async def learn_after_create(self, idempotency_key: str, client_ref: str) -> None:
        """Right after a clean create (the key surely stored if honoured): learn what is not yet known. Free."""
        caps = self.caps
        if caps.idempotency is None:
            try:
                await self.client._request("POST", RUNS_PATH, body={"input": PROBE_INPUT, "client_ref": client_ref},
                                           headers={"Idempotency-Key": idempotency_key}, once=True)
            except E.ConflictError:
                self.learn(idempotency=HONOURED)
            except E.ValidationError:
                self.learn(idempotency=IGNORED)
            except E.RunflowError:
                pass
        if caps.search is None:
            await self.learn_search()

    async def learn_search(self) -> str | None:
        """Search a random client_ref: no items while the org has runs = filters; other runs = ignored; 4xx =
        refused. An org without runs proves nothing."""
        probe = f"rfma-probe-{uuid.uuid4()}"
        items = await self.search(probe, 5)
        if items is None:
            return self.caps.search
        if items:
            if all(i.get("client_ref") == probe for i in items):
                return None
            self.learn(search=IGNORED)
            return IGNORED
        newest = await self.search(None, 1)
        if newest:
            self.learn(search=FILTERS)
            return FILTERS
        return None
