"""Receipts read out of a real ledger file: periods, failed runs (not billed only when Runflow said so), CSV."""

import csv
import io
import json
import time

import pytest

from nodes.core import receipts
from nodes.core.spend import Ledger, Receipt


def r(**kw) -> Receipt:
    return Receipt(**{"pose": "back view · eye-level shot · medium shot", "source": "abc", "status": "succeeded",
                      "run_id": "run-1", "cost_usd": 0.2, "api": "runflow", "label": "back view", **kw})


def test_periods_failed_and_unreported_runs(tmp_path):
    now = time.mktime((2026, 12, 4, 15, 0, 0, 0, 0, -1))
    ledger = Ledger(tmp_path / "ledger.jsonl")
    for item in (r(time=now - 86400 * 2),  # this month, not today
                 r(time=now - 86400 * 40),  # last month
                 r(time=now - 60),
                 r(time=now - 50, status="failed", cost_usd=0.0),  # Runflow said: not billed
                 r(time=now - 40, status="failed", cost_usd=None),  # Runflow did not say
                 r(time=now - 30, status="from cache", from_cache=True, cost_usd=0.0),
                 r(time=now - 20, api="sandbox")):
        ledger.append(item)
    data = receipts.summary(Ledger(tmp_path / "ledger.jsonl"), now=now)  # a fresh reader: survives a restart
    assert data["today"] == {"runs": 4, "billed_usd": 0.4, "billed": "$0.40", "cache_hits": 1, "failed": 2,
                             "unreported": 1, "not_runflow": 1}
    assert (data["month"]["runs"], data["month"]["billed"]) == (5, "$0.60")
    assert (data["all"]["runs"], data["all"]["billed"], data["receipts"]) == (6, "$0.80", 7)
    text = receipts.summary_text(data)
    assert "     today: $0.40 billed by Runflow · 4 runs · 1 from cache ($0.00) · 2 failed · 1 without a reported " \
           "cost · 1 on a sandbox or other API (not real money)" in text


def test_csv_has_one_row_per_receipt_and_the_reported_cost_apart(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(r(time=0))
    ledger.append(r(time=1, status="failed", cost_usd=None, run_id="run-2"))
    rows = list(csv.DictReader(io.StringIO(receipts.to_csv(ledger.read()))))
    assert [(x["time_utc"], x["status"], x["billed_usd"], x["cost_reported_usd"]) for x in rows] == [
        ("1970-01-01T00:00:00Z", "succeeded", "0.2", "0.2"), ("1970-01-01T00:00:01Z", "failed", "0", "")]


class Item:  # the runner's ItemResult fields run_receipt reads
    def __init__(self, cost=None, from_cache=False, error=None):
        self.info, self.from_cache, self.error = {"cost": cost}, from_cache, error


@pytest.mark.parametrize("items, today, line", [
    ([Item("0.20"), Item("0.20")], None, "receipt: Runflow billed $0.40 for 2 runs"),
    ([Item("0.20"), Item(from_cache=True)], {"billed": "$1.00"},
     "receipt: Runflow billed $0.20 for 1 run · 1 from cache $0.00 · today $1.00"),
    ([Item(None)], None, "receipt: Runflow billed $0.00 for 0 runs (+1 without a reported cost)"),
])
def test_run_receipt_line(items, today, line):
    assert receipts.run_receipt(items, today) == line


def test_read_since_reads_the_end_of_a_long_ledger_and_agrees_with_a_full_read(tmp_path):
    now = time.mktime((2026, 12, 4, 15, 0, 0, 0, 0, -1))
    ledger = Ledger(tmp_path / "ledger.jsonl")
    lines = [r(time=now - 86400 * 30 + i * 60, run_id=f"run-{i}").__dict__ for i in range(30 * 24 * 60)]
    with open(ledger.path, "w") as f:  # a month of one receipt a minute, then a torn last line
        f.writelines(json.dumps(x) + "\n" for x in lines)
        f.write('{"pose": "torn')
    start = receipts.day_start(now)
    assert receipts.read_since(ledger, start) == [x for x in ledger.read() if x.time >= start]
    assert receipts.today(ledger, now)["runs"] == 15 * 60  # 00:00 .. 14:59
    assert receipts.read_since(Ledger(tmp_path / "none.jsonl"), 0) == []
