"""How long runs take, remembered across restarts so status polls can aim at the expected finish."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..runflow.contract import MODEL_ID


class DurationEstimate:
    """Moving average of Runflow's measured run time (``duration_ms``), kept in ``timing.json``."""

    ALPHA = 0.3

    def __init__(self, path: Path):
        self.path = path
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
            pass  # an estimate that is not saved only makes the next first poll less precise
