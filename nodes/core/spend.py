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
from .config import ENV_DAILY_RUNS, ENV_DAILY_USD
from .session import PromptRuns, Reservations

log = logging.getLogger(__name__)

ENV_MAX_RUNS = "RUNFLOW_MAX_RUNS_PER_PROMPT"
DEFAULT_MAX_RUNS = 32  # $6.40: above this a prompt is far more likely a mistake (a huge batch) than intended
# $25 (125 runs) per rolling 24 h: a heavy day of work (a dozen 8-view turnarounds at $1.60, plus re-rolls) stays
# well under it; an unattended loop or a stranger queueing prompts hits it within minutes of starting.
DEFAULT_DAILY_USD = 25.0
DEFAULT_DAILY_RUNS = 0  # 0 = no run-count cap; the dollar cap is the one on by default
DAY = 86400.0


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
    """Refuses a job whose new runs would take one prompt over ``limit`` runs (0 = no limit).

    ``require_prompt`` (inside ComfyUI): with no prompt id the per-prompt count cannot work, so new runs are refused
    (fail closed) rather than counted per node."""

    def __init__(self, counts: PromptRuns, limit: int, *, require_prompt: bool = False):
        self.counts, self.limit, self.require_prompt = counts, limit, require_prompt

    def admit(self, prompt_id: str | None, new_runs: int, line: str) -> None:
        if self.require_prompt and not prompt_id and new_runs > 0:
            raise E.SpendLimitError(
                f"this would create {line}, but ComfyUI did not say which prompt is running, so the per-prompt "
                f"spend limit ({ENV_MAX_RUNS}) cannot be applied; nothing was sent. Update ComfyUI (the pack needs "
                "its executing context), or run the job with the CLI.")
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


class DailyCap:
    """The persistent rolling cap: what the ledger says was spent in the last 24 h on this API (every process sharing
    the user dir: ComfyUI and the CLI; adopted runs included), plus runs in flight in this process, plus the new runs,
    must stay within ``max_usd`` dollars and ``max_runs`` runs (0 = that cap is off). Each API identity (Runflow, the
    sandbox, another URL) has its own day, so free sandbox runs never use up the real budget."""

    def __init__(self, ledger: Ledger, reserved: Reservations, *, max_usd: float | None, max_runs: int | None,
                 price: float = PRICE_PER_RUN_USD, api: str = "runflow"):
        self.ledger, self.reserved, self.price, self.api = ledger, reserved, price, api
        self.max_usd = DEFAULT_DAILY_USD if max_usd is None else float(max_usd)
        self.max_runs = DEFAULT_DAILY_RUNS if max_runs is None else int(max_runs)

    def spent(self, now: float | None = None) -> tuple[float, int]:
        """(dollars, billed runs) in the ledger over the last 24 hours."""
        since = (now or time.time()) - DAY
        billed = [r.billed_usd for r in self.ledger.read(since=since) if not r.from_cache and r.api == self.api]
        return round(sum(billed), 4), sum(1 for usd in billed if usd > 0)

    def admit(self, new_runs: int, line: str) -> _Reservation:
        """Reserve ``new_runs`` or raise SpendLimitError; release the reservation when the job is done."""
        if new_runs <= 0 or (not self.max_usd and not self.max_runs):
            return _Reservation(self.reserved, 0.0, 0)
        cost = new_runs * self.price
        with self.reserved.lock:
            usd, runs = self.spent()
            usd, runs = usd + self.reserved.usd, runs + self.reserved.runs
            over_usd = self.max_usd and usd + cost > self.max_usd + 1e-9
            over_runs = self.max_runs and runs + new_runs > self.max_runs
            if over_usd or over_runs:
                limit = (f"{format_usd(self.max_usd)} per 24 hours ({ENV_DAILY_USD})" if over_usd
                         else f"{self.max_runs} runs per 24 hours ({ENV_DAILY_RUNS})")
                raise E.SpendLimitError(
                    f"this would create {line}, but {format_usd(usd)} ({runs} runs) was already spent in the last 24 "
                    f"hours, and the daily limit is {limit}; nothing was sent. If this spending is yours, raise the "
                    f"limit: set {ENV_DAILY_USD} (dollars) or {ENV_DAILY_RUNS} in the environment of ComfyUI / the "
                    "CLI (0 = no limit). Receipts: <user dir>/runflow/ledger.jsonl.")
            self.reserved.usd += cost
            self.reserved.runs += new_runs
        return _Reservation(self.reserved, cost, new_runs)


class _Reservation:
    def __init__(self, reserved: Reservations, usd: float, runs: int):
        self.reserved, self.usd, self.runs = reserved, usd, runs

    def __enter__(self) -> _Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.runs:
            with self.reserved.lock:
                self.reserved.usd -= self.usd
                self.reserved.runs -= self.runs
            self.usd, self.runs = 0.0, 0
