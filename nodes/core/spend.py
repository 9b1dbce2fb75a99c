"""Money: the cost line people read, the per-prompt spend guard, and the persistent ledger of receipts.

The ledger (``<user dir>/ledger.jsonl``, one JSON object per line, appended by every process that shares the user
dir: ComfyUI and the CLI) records every run the pack created or adopted and every cache hit, with what Runflow
reported it cost. It is the one store that receipts, Settings and spend caps read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..runflow import errors as E
from ..runflow.contract import PRICE_PER_RUN_USD
from .session import PromptRuns

log = logging.getLogger(__name__)

ENV_MAX_RUNS = "RUNFLOW_MAX_RUNS_PER_PROMPT"
DEFAULT_MAX_RUNS = 32  # $6.40: above this a prompt is far more likely a mistake (a huge batch) than intended


def format_usd(usd: float) -> str:
    """'$0.20', '$1.60', '$0.035': two decimals, more (up to four) only when the amount needs them."""
    units = round(usd * 10000)  # hundredths of a cent, so 8 x 0.20 is exactly 1.60
    text = re.sub(r"0{1,2}$", "", f"{abs(units) / 10000:.4f}")  # keep at least two decimals
    return f"{'-' if units < 0 else ''}${text}"


def cost_line(runs: int, cached: int = 0, price: float = PRICE_PER_RUN_USD) -> str:
    """What ``runs`` new runs cost, with cache hits named (web/pose_math.js costLine says the same).

    ``runs`` counts billable runs only; ``cached`` counts results served from the cache. Examples:
    '1 run × $0.20 = $0.20', '5 runs × $0.20 = $1.00 (3 from cache: $0.00)'.
    """
    text = f"{runs} run{'s' if runs != 1 else ''} × {format_usd(price)} = {format_usd(runs * price)}"
    return text + (f" ({cached} from cache: {format_usd(0)})" if cached else "")


def max_runs_per_prompt() -> int:
    raw = os.environ.get(ENV_MAX_RUNS, "").strip()
    if not raw:
        return DEFAULT_MAX_RUNS
    try:
        return int(raw)
    except ValueError:
        raise E.ConfigError(f"{ENV_MAX_RUNS} must be a whole number (0 = no limit), got {raw!r}") from None


class SpendGuard:
    """Refuses a job whose new runs would take one prompt over ``limit`` runs (0 = no limit)."""

    def __init__(self, counts: PromptRuns, limit: int):
        self.counts, self.limit = counts, limit

    def admit(self, prompt_id: str | None, new_runs: int, line: str) -> None:
        earlier = self.counts.get(prompt_id) if prompt_id else 0
        if self.limit and earlier + new_runs > self.limit:
            also = f" (plus {earlier} already created by other nodes of this prompt)" if earlier else ""
            raise E.SpendLimitError(
                f"this would create {line}{also}, over the limit of {self.limit} runs per prompt "
                f"({ENV_MAX_RUNS}); nothing was sent. Raise {ENV_MAX_RUNS} (0 = no limit) or queue fewer "
                "images/views.")
        if prompt_id:
            self.counts.add(prompt_id, new_runs)


@dataclass(frozen=True)
class Receipt:
    """One line of the ledger: a run created or adopted (``from_cache`` False), or a cache hit ($0.00)."""

    pose: str
    source: str  # the source's pixel sha256, or its URL
    status: str  # Runflow's final status, "from cache", or "unknown" when the pack could not find out
    run_id: str | None = None
    client_ref: str | None = None
    cost_usd: float | None = None  # what Runflow reported on the run record; None when it did not say
    from_cache: bool = False
    adopted: bool = False  # polled from the journal (created by an earlier prompt or process)
    api: str = "runflow"  # "runflow" (the real API), "sandbox", or another base URL
    label: str = ""
    time: float = field(default_factory=time.time)

    @property
    def billed_usd(self) -> float:
        """What this receipt costs the user: 0 for cache hits and runs Runflow did not bill."""
        if self.from_cache:
            return 0.0
        if self.cost_usd is not None:
            return self.cost_usd
        return PRICE_PER_RUN_USD if self.status in ("succeeded", "partial_succeeded", "unknown") else 0.0


class Ledger:
    """Append-only JSON lines; each receipt is one ``write`` on an O_APPEND descriptor, so processes can share it."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, receipt: Receipt) -> None:
        line = (json.dumps(asdict(receipt), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:  # a lost receipt must be visible, but must not lose the result the user paid for
            log.warning("Runflow: could not write the spend ledger %s (%s)", self.path, exc.strerror)

    def read(self, since: float | None = None) -> list[Receipt]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                item = Receipt(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a torn last line of a crashed writer
            if since is None or item.time >= since:
                out.append(item)
        return out
