"""Getting the one run of a job: adopt the run a journal entry names, reconcile an earlier attempt whose outcome is
unknown, or create it, while holding the job's journal lock so that across processes and tasks only one creates.

A re-queue after "stopped safely" looks the run up again first; only then does it send (the journalled body under the
journalled key when re-sending is safe or the user re-queued anyway; a new key and fresh body when the old one is
proven to have created nothing).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..runflow import errors as E
from ..runflow.client import RunflowClient
from ..runflow.creating import Outcome
from ..runflow.models import Run
from .journal import CREATED, CREATING, DONE, UNCERTAIN, Journal

log = logging.getLogger(__name__)

CLIENT_REF_PREFIX = "comfyui-rfma-"
# refusals that prove nothing was created: the journal entry goes, a re-queue starts afresh
NOT_CREATED = (E.ValidationError, E.CreditError, E.AuthError, E.PermissionError_, E.NotFoundError, E.InputError,
               E.ConfigError, E.SpendLimitError)


@dataclass
class Obtained:
    run: Run
    entry: dict
    adopted: bool  # an existing run (journal, twin, or found by client_ref): nothing was paid for now
    created: bool  # this call created it


def new_entry() -> dict:
    key = str(uuid.uuid4())
    return {"idempotency_key": key, "client_ref": CLIENT_REF_PREFIX + key, "created": time.time(),
            "state": CREATING, "body": None, "run_id": None, "pid": _pid()}


async def obtain_run(client: RunflowClient, journal: Journal, key: str, *, started_at: float,
                     make_body: Callable[[str], Awaitable[dict]], lock_timeout: float,
                     on_resume: Callable[[Run], None] | None = None) -> Obtained:
    """The run for job ``key``: never a second one. ``make_body(client_ref)`` uploads and builds a fresh body."""
    async with journal.lock(key, lock_timeout):
        entry = journal.get(key)
        if entry and entry.get("state") == DONE:
            if entry.get("run_id") and float(entry.get("done_at") or 0) >= started_at:
                run = await client.get_run(entry["run_id"])  # a twin finished it while we waited: no new run
                return Obtained(run, entry, adopted=True, created=False)
            entry = None  # an earlier, finished job: this one is a new request
        if entry and entry.get("run_id"):
            try:  # created earlier (cancel, crash, restart, or a twin process): poll it, never pay for it again
                run = await client.get_run(entry["run_id"])
                if on_resume:
                    on_resume(run)
                return Obtained(run, entry, adopted=True, created=False)
            except E.NotFoundError:  # Runflow does not know it (another sandbox made it): start afresh
                entry = None
        if entry is None:
            entry = new_entry()
            if journal.claim(key, entry) is not None:  # a stale/finished entry: we hold the lock, replace it
                journal.put(key, entry)
            return await _create(client, journal, key, entry, await _body(journal, key, make_body, entry))
        return await _resume(client, journal, key, entry, make_body)


async def _resume(client: RunflowClient, journal: Journal, key: str, entry: dict,
                  make_body: Callable[[str], Awaitable[dict]]) -> Obtained:
    """An earlier attempt sent (or may have sent) a create and never learned its run: look it up before anything."""
    body = entry.get("body")
    if body is None:  # it never sent anything: same key, fresh body
        return await _create(client, journal, key, entry, await _body(journal, key, make_body, entry))
    rec = await client.creator().reconcile(body, entry["idempotency_key"], entry["client_ref"])
    if rec.outcome is Outcome.FOUND:
        entry = journal.update(key, run_id=rec.run.id, state=CREATED)
        log.info("Runflow: found the run of an earlier attempt (%s) by client_ref", rec.run.id)
        return Obtained(rec.run, entry, adopted=True, created=False)
    if rec.outcome is Outcome.ABSENT:  # proven: the old key made nothing; a new key may carry a fresh body
        fresh = new_entry()
        journal.put(key, fresh)
        return await _create(client, journal, key, fresh, await _body(journal, key, make_body, fresh))
    if rec.outcome is Outcome.UNKNOWN:
        log.warning("Runflow: re-queued after 'stopped safely' and still cannot tell whether %s exists (%s); "
                    "sending the journalled request again as the user asked", entry["client_ref"], rec.why)
    return await _create(client, journal, key, entry, body)  # the exact body sent with this key before


async def _create(client: RunflowClient, journal: Journal, key: str, entry: dict, body: dict) -> Obtained:
    entry = journal.update(key, **{**entry, "body": body, "state": CREATING})  # written BEFORE the POST
    try:
        run = await client.creator().create(body, idempotency_key=entry["idempotency_key"],
                                            client_ref=entry["client_ref"])
    except NOT_CREATED:
        journal.drop(key)
        raise
    except BaseException:  # stopped safely, retries exhausted, cancelled: unknown outcome, a re-queue reconciles
        journal.update(key, state=UNCERTAIN, stopped_at=time.time())
        raise
    entry = journal.update(key, run_id=run.id, state=CREATED)
    return Obtained(run, entry, adopted=False, created=True)


async def _body(journal: Journal, key: str, make_body: Callable[[str], Awaitable[dict]], entry: dict) -> dict:
    try:
        return await make_body(entry["client_ref"])
    except BaseException:  # nothing was sent under this key: forget it
        journal.drop(key)
        raise


def _pid() -> int:
    import os

    return os.getpid()
