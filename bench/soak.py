"""Soak: many runs through the pack's client and runner against the sandbox while a fraction of ALL requests fail
at random (every fault kind), then a table: succeeded, clear errors, duplicate billable runs, lost results, latency.

    python bench/soak.py [--runs 200] [--rate 0.2] [--concurrency 16] [--seed 7]

"Lost" = a run Runflow finished (billable) whose image never reached the caller. Goal: 0 duplicates, 0 lost, and
every run succeeds because all injected faults are transient.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodes.core.config import load_settings  # noqa: E402
from nodes.core.runner import Runner, Source  # noqa: E402
from nodes.core.spec import JobSpec  # noqa: E402
from nodes.runflow.client import RunflowClient  # noqa: E402
from nodes.runflow.contract import VIEWS  # noqa: E402
from nodes.runflow.retry import RetryPolicy  # noqa: E402
from nodes.sandbox import Sandbox  # noqa: E402

# every transient fault kind, as the sandbox injects them; weights are equal
KINDS = [
    {"kind": "status", "status": 429, "retry_after": "0"},
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 502, "html": True},
    {"kind": "status", "status": 503},
    {"kind": "drop_after"},  # handled (e.g. the run IS created), then the connection drops: the double-billing trap
    {"kind": "drop_before"},
    {"kind": "delay", "seconds": 1.2},  # past the soak client's 1 s read timeout
    {"kind": "malformed_json"},
    # presigned storage: the upload PUT and the result download
    {"kind": "expire_output", "path": "download"},
    {"kind": "status", "status": 503, "path": "download"},
    {"kind": "drop_before", "path": "download"},
    {"kind": "status", "status": 500, "path": "upload_put"},
    {"kind": "drop_before", "path": "upload_put"},
]


def sample_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT / "assets"))
    from make_sample import make_sample

    buf = io.BytesIO()
    Image.fromarray(make_sample(256, 256).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


async def soak(sb: Sandbox, runs: int, concurrency: int) -> dict:
    import httpx

    settings = load_settings()
    # fast retries so the soak takes seconds, same code paths; 1 s read timeout so "delay" faults bite
    factory = lambda: RunflowClient(settings.api_key, settings.api_url,  # noqa: E731
                                    retry=RetryPolicy(attempts=8, base=0.05, cap=0.5, jitter=0.05),
                                    timeout=httpx.Timeout(5.0, read=1.0))
    png = sample_png()
    sem = asyncio.Semaphore(concurrency)
    walls, outcomes = [], []

    async def one(i: int) -> None:
        # each job is a distinct logical run (its own seed = its own cache key); the source is shared
        spec = JobSpec(view=VIEWS[i % 8], seed=i, label=f"job{i}")
        src = Source(data=png, mime="image/png", pixel_sha256=hashlib.sha256(png).hexdigest(),
                     upload_sha256=hashlib.sha256(png).hexdigest())
        runner = Runner(settings, client_factory=factory, use_cache=False, guard_limit=0)
        async with sem:
            t0 = time.monotonic()
            try:
                (res,) = await runner.run([(src, spec)])
            except Exception as exc:  # noqa: BLE001 - count it, with its message
                outcomes.append(("error", f"{type(exc).__name__}: {exc}"))
                return
            walls.append(time.monotonic() - t0)
            if res.error is not None:
                outcomes.append(("error", f"{type(res.error).__name__}: {res.error}"))
            elif res.data and res.data[8:12] == b"WEBP":
                outcomes.append(("ok", res.info.get("run_id")))
            else:
                outcomes.append(("bad", "no image"))

    await asyncio.gather(*(one(i) for i in range(runs)))
    ok_ids = [v for k, v in outcomes if k == "ok"]
    errors = [v for k, v in outcomes if k == "error"]
    billable = sb.billable_runs()
    by_ref: dict[str, int] = {}
    for run in sb.runs.values():
        by_ref[run.get("client_ref")] = by_ref.get(run.get("client_ref"), 0) + 1
    duplicates = sum(n - 1 for n in by_ref.values() if n > 1)
    lost = len({rid for rid, run in sb.runs.items() if run.get("status_code") == "succeeded"} - set(ok_ids))
    walls.sort()
    return {"runs": runs, "succeeded": len(ok_ids), "clear_errors": len(errors), "bad": outcomes.count(("bad",
            "no image")), "billable_runs": billable, "duplicate_runs": duplicates, "lost_results": lost,
            "p50": statistics.median(walls) if walls else float("nan"),
            "p95": walls[int(0.95 * (len(walls) - 1))] if walls else float("nan"),
            "requests": len(sb.request_log), "error_samples": errors[:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--run-seconds", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ["RUNFLOW_USER_DIR"] = tempfile.mkdtemp(prefix="rfsoak-")
    os.environ["RUNFLOW_MAX_SPEND_PER_DAY"] = "0"  # 200 sandbox runs are a deliberate "day": no daily cap here
    with Sandbox(run_seconds=args.run_seconds) as sb:
        os.environ["RUNFLOW_API_URL"], os.environ["RUNFLOW_API_KEY"] = sb.url, sb.api_key
        sb.faults.random(rate=args.rate, kinds=KINDS, seed=args.seed)
        t0 = time.monotonic()
        r = asyncio.run(soak(sb, args.runs, args.concurrency))
        total = time.monotonic() - t0
    print(f"## Soak: {r['runs']} runs, {args.rate:.0%} of requests faulted at random "
          f"({len(KINDS)} fault kinds, API and storage), concurrency {args.concurrency}, "
          f"sandbox run time {args.run_seconds} s\n")
    print("| succeeded | failed with a clear error | duplicate billable runs | lost results | p50 wall | p95 wall |"
          " requests | total |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {r['succeeded']} / {r['runs']} | {r['clear_errors']} | {r['duplicate_runs']} | {r['lost_results']} | "
          f"{r['p50']:.2f} s | {r['p95']:.2f} s | {r['requests']} | {total:.0f} s |")
    for sample in r["error_samples"]:
        print(f"\nerror: {sample}")
    ok = r["duplicate_runs"] == 0 and r["lost_results"] == 0 and r["succeeded"] == r["runs"]
    print("\nresult:", "PASS (0 duplicates, 0 lost, all succeeded)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
