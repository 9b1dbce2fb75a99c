"""What one Runflow API URL is known to do where the docs are silent (runflow-api.md §6, §10.5), learned at run time
or by the doctor, remembered per API URL in a small JSON file.

Only PROOF is recorded: ``idempotency`` is ``honoured`` after a reused Idempotency-Key came back as a 409 (or a
replay), ``ignored`` after a reused key with another body was processed as a new request (422). ``search`` is
``filters`` after a search for a random client_ref returned nothing while the org has runs, ``ignored`` when it
returned other runs, ``refused`` on a 4xx. Unknown stays ``None``: the pack then assumes the worst.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path

HONOURED, IGNORED = "honoured", "ignored"
FILTERS, REFUSED = "filters", "refused"
CAPABILITIES_FILE = "runflow_capabilities.json"  # in the user dir
MAX_AGE = 30 * 24 * 3600.0  # re-learn after a month: an API may change its answers


@dataclass
class Capabilities:
    idempotency: str | None = None  # honoured | ignored | None (unknown)
    search: str | None = None  # filters | refused | ignored | None (unknown)
    learned_at: float = 0.0
    source: str = ""  # "run time" | "doctor"

    @property
    def replay_safe(self) -> bool:
        """A create re-sent with the same key and body cannot make a second run."""
        return self.idempotency == HONOURED

    @property
    def absence_provable(self) -> bool:
        """An empty client_ref search means: no such run."""
        return self.search == FILTERS


class CapabilityStore:
    """Capabilities per API URL in ``path`` (JSON object keyed by URL). Thread- and process-safe enough: every write
    re-reads the file and replaces it atomically; a lost update only costs re-learning."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._mem: dict[str, Capabilities] = {}

    def _read(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, api_url: str) -> Capabilities:
        with self._lock:
            raw = self._read().get(api_url)
            if isinstance(raw, dict) and time.time() - float(raw.get("learned_at") or 0) < MAX_AGE:
                names = {f.name for f in fields(Capabilities)}
                caps = Capabilities(**{k: v for k, v in raw.items() if k in names})
            else:
                caps = self._mem.get(api_url, Capabilities())
            return Capabilities(**asdict(caps))

    def learn(self, api_url: str, *, source: str = "run time", **facts: str | None) -> Capabilities:
        """Record proven facts (``idempotency=...``, ``search=...``); None values are left as they were."""
        with self._lock:
            data = self._read()
            raw = data.get(api_url) if isinstance(data.get(api_url), dict) else {}
            caps = Capabilities(**{k: v for k, v in raw.items() if k in {f.name for f in fields(Capabilities)}})
            for name, value in facts.items():
                if value is not None:
                    setattr(caps, name, value)
            caps.learned_at, caps.source = time.time(), source
            self._mem[api_url] = caps
            data[api_url] = asdict(caps)
            if self.path is not None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = self.path.with_suffix(f".{uuid.uuid4().hex}.tmp")
                    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)
                except OSError:
                    pass  # memory still knows; the file is an optimisation
            return Capabilities(**asdict(caps))
