"""How long runs take, remembered across restarts so status polls can aim at the expected finish.

Before this install has timed a run, Runflow's own timing of the model's examples (``duration_ms``) is the prior;
the first measured run replaces it (it is not blended in).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..runflow.contract import MODEL_ID

PRIOR_KEY = "examples:" + MODEL_ID


class DurationEstimate:
    """Moving average of Runflow's measured run time (``duration_ms``), kept in ``timing.json``; until there is one,
    the prior from the model's examples (also kept there, so it is asked for once)."""

    ALPHA = 0.3

    def __init__(self, path: Path):
        self.path = path
        self._value: float | None = None
        self._prior: float | None = None
        try:
            saved = json.loads(self.path.read_text())
            self._value = float(saved[MODEL_ID]) if saved.get(MODEL_ID) else None
            self._prior = float(saved[PRIOR_KEY]) if saved.get(PRIOR_KEY) else None
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            self._value = self._prior = None

    @property
    def value(self) -> float | None:
        """The measured estimate, else the examples' prior, else None."""
        return self._value if self._value is not None else self._prior

    @property
    def measured(self) -> bool:
        return self._value is not None

    async def ask_prior(self, client) -> float | None:
        """Ask Runflow for the examples' timing when nothing is known yet; keep the answer. Never raises."""
        if self.value is not None:
            return self.value
        seconds = await client.example_duration()
        if seconds is not None and 0 < seconds < 3600:
            self._prior = seconds
            self._save()
        return self.value

    def record(self, seconds: float) -> None:
        if not 0 < seconds < 3600:
            return
        self._value = seconds if self._value is None else self.ALPHA * seconds + (1 - self.ALPHA) * self._value
        self._save()

    def _save(self) -> None:
        saved = {key: round(v, 3) for key, v in ((MODEL_ID, self._value), (PRIOR_KEY, self._prior)) if v is not None}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(saved))
            os.replace(tmp, self.path)
        except OSError:
            pass  # an estimate that is not saved only makes the next first poll less precise
