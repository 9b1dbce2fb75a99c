"""Receipts read out of the ledger (spend.Ledger): today / this month summaries, CSV export, the one-line receipt a
node shows after a run. Read-only: the ledger stays the one store (the runner appends, everyone else reads).

"Billed" is what Runflow's run record says (``cost``). A failed run counts as not billed only when Runflow reported
a cost of 0; a run whose record carried no cost is counted apart ("cost not reported"), never silently as free.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass

from .spend import Ledger, Receipt, format_usd

CSV_COLUMNS = ("time_utc", "label", "pose", "status", "billed_usd", "cost_reported_usd", "from_cache", "adopted",
               "run_id", "client_ref", "source", "api")


def default_ledger() -> Ledger:
    """The ledger the runner writes: <pack user dir>/ledger.jsonl (ComfyUI's user dir, or $RUNFLOW_USER_DIR)."""
    from .config import user_dir

    return Ledger(user_dir() / "ledger.jsonl")


@dataclass(frozen=True)
class Period:
    """One period's figures (today, this month, all time)."""

    runs: int = 0  # runs created or adopted (not cache hits)
    billed_usd: float = 0.0  # what Runflow's run records say (runs without a reported cost: at the list price)
    cache_hits: int = 0
    failed: int = 0  # runs that ended failed/cancelled
    unreported: int = 0  # runs whose record carried no cost
    not_runflow: int = 0  # runs on the sandbox or another API URL: not real money (still listed, per their records)

    def as_dict(self) -> dict:
        return {**asdict(self), "billed_usd": round(self.billed_usd, 4), "billed": format_usd(self.billed_usd)}


def _period(receipts: list[Receipt]) -> Period:
    made = [r for r in receipts if not r.from_cache]
    return Period(runs=len(made), billed_usd=sum(r.billed_usd for r in made),
                  cache_hits=len(receipts) - len(made),
                  failed=sum(1 for r in made if r.status not in ("succeeded", "partial_succeeded", "unknown")),
                  unreported=sum(1 for r in made if r.cost_usd is None),
                  not_runflow=sum(1 for r in made if r.api != "runflow"))


def day_start(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def month_start(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))


def summary(ledger: Ledger, now: float | None = None) -> dict:
    """{today, month, all} figures (local calendar), plus how many receipts there are. No filesystem paths."""
    now = time.time() if now is None else now
    receipts = ledger.read()
    today, month = day_start(now), month_start(now)
    return {"today": _period([r for r in receipts if r.time >= today]).as_dict(),
            "month": _period([r for r in receipts if r.time >= month]).as_dict(),
            "all": _period(receipts).as_dict(), "receipts": len(receipts)}


SLACK_S = 3600.0  # receipts are appended about in time order; concurrent writers may interleave by seconds
_BLOCK = 1 << 16


def read_since(ledger: Ledger, since: float) -> list[Receipt]:
    """The receipts with ``time >= since``, reading the ledger backwards from its end and stopping one SLACK_S past
    ``since``: the node's after-run line costs the same with a years-long ledger as with a fresh one."""
    try:
        with open(ledger.path, "rb") as f:
            f.seek(0, 2)
            pos, tail, lines = f.tell(), b"", []
            while pos > 0:
                step = min(_BLOCK, pos)
                pos -= step
                f.seek(pos)
                chunk = f.read(step) + tail
                parts = chunk.split(b"\n")
                tail = parts.pop(0) if pos > 0 else b""  # maybe a partial line: finish it with the next block
                lines = parts + lines
                if pos > 0 and _oldest(parts) < since - SLACK_S:
                    break
    except FileNotFoundError:
        return []
    return [r for r in _parse(lines) if r.time >= since]


def _parse(lines: list[bytes]) -> list[Receipt]:
    out = []
    for line in lines:
        try:
            out.append(Receipt(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # blank, or a torn line of a crashed writer (as Ledger.read)
    return out


def _oldest(lines: list[bytes]) -> float:
    times = [r.time for r in _parse(lines)]
    return min(times) if times else float("inf")


def today(ledger: Ledger, now: float | None = None) -> dict:
    """Today's figures only (what the node shows after a run), from the end of the ledger."""
    start = day_start(time.time() if now is None else now)
    return _period(read_since(ledger, start)).as_dict()


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def to_csv(receipts: list[Receipt]) -> str:
    """Every receipt as one CSV row (UTC times), oldest first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in receipts:
        w.writerow([_utc(r.time), r.label, r.pose, r.status, f"{r.billed_usd:.4f}".rstrip("0").rstrip("."),
                    "" if r.cost_usd is None else r.cost_usd, r.from_cache, r.adopted, r.run_id or "",
                    r.client_ref or "", r.source, r.api])
    return buf.getvalue()


def summary_text(data: dict) -> str:
    """The CLI's --ledger summary."""
    lines = []
    for name, key in (("today", "today"), ("this month", "month"), ("all time", "all")):
        p = data[key]
        extra = [f"{p['failed']} failed" if p["failed"] else "",
                 f"{p['unreported']} without a reported cost" if p["unreported"] else "",
                 f"{p['not_runflow']} on a sandbox or other API (not real money)" if p["not_runflow"] else ""]
        lines.append(f"{name:>10}: {p['billed']} billed by Runflow · {p['runs']} run{'s' if p['runs'] != 1 else ''}"
                     f" · {p['cache_hits']} from cache ($0.00)" + "".join(f" · {x}" for x in extra if x))
    return "\n".join(lines)


def run_receipt(results, today: dict | None = None) -> str:
    """The line a node shows after a run: what Runflow's run records say this run cost, and today's total.

    ``results``: the runner's ItemResults (``info`` carries the run record's cost as Runflow sent it)."""
    made = [r for r in results if not r.from_cache and r.error is None]
    hits = sum(1 for r in results if r.from_cache)
    costs = [r.info.get("cost") for r in made]
    reported = [float(c) for c in costs if c not in (None, "")]
    plural = "s" if len(reported) != 1 else ""
    text = f"receipt: Runflow billed {format_usd(sum(reported))} for {len(reported)} run{plural}"
    if len(reported) < len(made):
        text += f" (+{len(made) - len(reported)} without a reported cost)"
    if hits:
        text += f" · {hits} from cache $0.00"
    if today is not None:
        text += f" · today {today['billed']}"
    return text



def cli_ledger(as_csv: bool = False) -> str:
    """What ``python -m nodes.cli --ledger [--csv]`` prints: the summary, or every receipt as CSV."""
    ledger = default_ledger()
    return to_csv(ledger.read()) if as_csv else summary_text(summary(ledger))
