"""Receipts: what reading the ledger costs as it grows (the node reads today's part after every run).

    python bench/ledger_bench.py [--receipts 1000,10000,100000]

Writes a synthetic ledger (one receipt every 50 s, ending now) per size into a temp dir and prints a Markdown table:
file size, ``receipts.today()`` (the node's after-run line; reads the ledger backwards) and ``receipts.summary()``
(Settings, CLI --ledger; reads it all). Goal: today() stays far below the 0.5 s a cached re-queue may take.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.core import receipts  # noqa: E402
from nodes.core.spend import Ledger, Receipt  # noqa: E402


def ms(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--receipts", default="1000,10000,100000")
    sizes = [int(x) for x in ap.parse_args().receipts.split(",")]
    print("| receipts | ledger | today() | summary() |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            ledger = Ledger(Path(tmp) / f"ledger-{n}.jsonl")
            now = time.time()
            with open(ledger.path, "w") as f:
                for i in range(n):
                    r = Receipt(pose="back view · eye-level shot · medium shot", source="f" * 64, status="succeeded",
                                run_id=f"run-{i}", client_ref=f"comfyui-rfma-{i}", cost_usd=0.2, label="back view",
                                time=now - (n - i) * 50)
                    f.write(json.dumps(asdict(r)) + "\n")
            size = ledger.path.stat().st_size / 2**20
            print(f"| {n:,} | {size:.1f} MiB | {ms(receipts.today, ledger):.1f} ms "
                  f"| {ms(receipts.summary, ledger):.0f} ms |")


if __name__ == "__main__":
    main()
