"""The journal of runs in flight: written BEFORE a create (idempotency key, client_ref) and after it (run id), so a
re-queue, a crash or a restart polls the run that exists instead of paying for a new one."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

PENDING_MAX_AGE = 24 * 3600.0  # a journal entry older than this is stale (Runflow keeps runs, but be safe)


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

    def put(self, key: str, entry: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self._path(key))

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def run_id(self, key: str) -> str | None:
        return (self.get(key) or {}).get("run_id")
