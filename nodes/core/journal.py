"""The journal of runs in flight, shared by every process using one user dir (ComfyUI and the CLI).

One JSON file per job (cache) key, created atomically (O_CREAT|O_EXCL) BEFORE a create with the Idempotency-Key, the
client_ref and then the exact body sent; the run id is added once known. A per-key lock file (flock / msvcrt lock,
released by the OS if its process dies) is held while a run is being created, so across processes exactly one
creator works and the others wait and adopt its run. Finished entries stay as ``done`` for a while, so a twin that
was waiting when the run finished adopts it instead of paying again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

PENDING_MAX_AGE = 24 * 3600.0  # a journal entry older than this is stale (Runflow keeps runs, but be safe)
LOCK_POLL = 0.05  # seconds between two tries of a lock another process (or task) holds

CREATING, CREATED, UNCERTAIN, DONE = "creating", "created", "uncertain", "done"


class Journal:
    """Runs created but not yet collected, one JSON file per cache key under ``root``."""

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

    def claim(self, key: str, entry: dict) -> dict | None:
        """Create the entry atomically. None when we won; the existing entry when someone else holds one."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                current = self.get(key)
                if current is not None:
                    return current
                path.unlink(missing_ok=True)  # stale or unreadable: replace it
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f)
            return None
        raise OSError(f"could not create the journal entry {path}")

    def put(self, key: str, entry: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self._path(key))

    def update(self, key: str, **fields) -> dict:
        entry = {**(self.get(key) or {}), **fields}
        self.put(key, entry)
        return entry

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def done(self, key: str, run_id: str | None) -> None:
        """The run is collected (or failed for good): later jobs start afresh, twins waiting now adopt it."""
        if self.get(key) is not None:
            self.update(key, state=DONE, run_id=run_id, done_at=time.time())

    def run_id(self, key: str) -> str | None:
        """The run in flight for ``key`` (not a finished one)."""
        entry = self.get(key) or {}
        return None if entry.get("state") == DONE else entry.get("run_id")

    @contextlib.asynccontextmanager
    async def lock(self, key: str, timeout: float) -> AsyncIterator[None]:
        """Exclusive across processes and tasks for ``key``; waits up to ``timeout`` seconds (then TimeoutError)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while not _try_lock(fd):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"journal lock {key} still held after {timeout:.0f}s")
                await asyncio.sleep(LOCK_POLL)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
