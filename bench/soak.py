"""Soak: many runs through the pack's client and runner against the sandbox while a fraction of ALL requests fail
at random (every fault kind), once per contract variant (how Runflow may answer where its docs are silent), then a
table: succeeded, stopped safely, failed, duplicate billable runs, lost results.

    python bench/soak.py [--runs 200] [--rate 0.2] [--concurrency 16] [--seed 7] [--variants defaults,...]

"Stopped safely" = the pack could not know whether a create reached Runflow and the API gave no safe way to find out,
so it stopped that item and named its client_ref (RunMaybeCreated) instead of risking a second run. "Lost" = a run
Runflow finished (billable) whose image never reached the caller and that no stop message named. Goal everywhere:
0 duplicates, 0 lost; stopped safely only where the API gives no way to know.
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


# variant name -> sandbox switches (nodes/sandbox/config.py VARIANT_CHOICES); each runs on a fresh sandbox and a fresh
# user dir, so the pack learns the API's capabilities from scratch every time
VARIANTS = {
    "defaults": {},
    "idempotency ignored": {"idempotency": "ignored"},
    "search refused": {"client_ref_search": "refused"},
    "search ignored": {"client_ref_search": "ignored"},
    "idempotency ignored + search refused": {"idempotency": "ignored", "client_ref_search": "refused"},
    "idempotency ignored + search ignored": {"idempotency": "ignored", "client_ref_search": "ignored"},
    "confirm 409": {"second_confirm": "conflict"},
    "no Retry-After": {"retry_after": "without"},
    "create 200": {"create_status": 200},
    "create 202 + cancelled + error{}": {"create_status": 202, "cancel_spelling": "cancelled",
                                          "failure_fields": "error_object"},
}


async def soak(sb: Sandbox, runs: int, concurrency: int, settle: float = 1.5) -> dict:
    import httpx

    from nodes.runflow import errors as E

    settings = load_settings()
    # fast retries so the soak takes seconds, same code paths; 1 s read timeout so "delay" faults bite
    factory = lambda: RunflowClient(settings.api_key, settings.api_url,  # noqa: E731
                                    retry=RetryPolicy(attempts=8, base=0.05, cap=0.5, jitter=0.05),
                                    timeout=httpx.Timeout(5.0, read=1.0), settle=settle)
    png = sample_png()
    sem = asyncio.Semaphore(concurrency)
    walls, outcomes = [], []

    async def one(i: int) -> None:
        # each job is a distinct logical run (its own seed = its own cache key); the source is shared
        spec = JobSpec(view=VIEWS[i % 8], seed=i, label=f"job{i}", metadata={"soak_job": i})
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
            if isinstance(res.error, E.RunMaybeCreated):
                outcomes.append(("stopped", res.error.client_ref))
            elif res.error is not None:
                outcomes.append(("error", f"{type(res.error).__name__}: {res.error}"))
            elif res.data and res.data[8:12] == b"WEBP":
                outcomes.append(("ok", res.info.get("run_id")))
            else:
                outcomes.append(("bad", "no image"))

    await asyncio.gather(*(one(i) for i in range(runs)))
    ok_ids = {v for k, v in outcomes if k == "ok"}
    stopped_refs = {v for k, v in outcomes if k == "stopped"}
    errors = [v for k, v in outcomes if k == "error"]
    billed = {r["run_id"] for r in sb.billing_record() if r["billed"]}
    records = sb.runs
    per_job: dict[object, int] = {}
    for rid in billed:
        job = (records[rid].get("metadata") or {}).get("soak_job")
        per_job[job] = per_job.get(job, 0) + 1
    duplicates = sum(n - 1 for n in per_job.values() if n > 1)
    succeeded_runs = {rid for rid, run in records.items() if run.get("status_code") == "succeeded"}
    named = {rid for rid in succeeded_runs if records[rid].get("client_ref") in stopped_refs}
    lost = len(succeeded_runs - ok_ids - named)
    walls.sort()
    return {"runs": runs, "succeeded": len(ok_ids), "stopped": len(stopped_refs), "stopped_with_run": len(named),
            "clear_errors": len(errors), "bad": sum(1 for k, _ in outcomes if k == "bad"),
            "billable_runs": len(billed), "duplicate_runs": duplicates, "lost_results": lost,
            "p50": statistics.median(walls) if walls else float("nan"),
            "p95": walls[int(0.95 * (len(walls) - 1))] if walls else float("nan"),
            "requests": len(sb.request_log), "error_samples": errors[:3]}


def soak_variant(name: str, runs: int, rate: float, concurrency: int, seed: int, run_seconds: float = 0.5,
                 settle: float = 1.5) -> dict:
    """One soak on a fresh sandbox playing variant ``name`` with a fresh user dir (nothing learned yet)."""
    os.environ["RUNFLOW_USER_DIR"] = tempfile.mkdtemp(prefix="rfsoak-")
    os.environ["RUNFLOW_MAX_SPEND_PER_DAY"] = "0"  # 200 sandbox runs are a deliberate "day": no daily cap here
    with Sandbox(run_seconds=run_seconds, variants=VARIANTS[name]) as sb:
        os.environ["RUNFLOW_API_URL"], os.environ["RUNFLOW_API_KEY"] = sb.url, sb.api_key
        sb.faults.random(rate=rate, kinds=KINDS, seed=seed)
        t0 = time.monotonic()
        r = asyncio.run(soak(sb, runs, concurrency, settle))
        r["seconds"] = time.monotonic() - t0
    return r


def row(name: str, r: dict) -> str:
    stopped = f"{r['stopped']}" + (f" ({r['stopped_with_run']} with a run)" if r["stopped"] else "")
    return (f"| {name} | {r['succeeded']} / {r['runs']} | {stopped} | {r['clear_errors']} | {r['duplicate_runs']} | "
            f"{r['lost_results']} | {r['p50']:.2f} s | {r['seconds']:.0f} s |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--run-seconds", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--variants", default="all", help=f"comma-separated, or all: {', '.join(VARIANTS)}")
    args = ap.parse_args()
    names = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",")]
    print(f"## Soak: {args.runs} runs per variant, {args.rate:.0%} of requests faulted at random "
          f"({len(KINDS)} fault kinds, API and storage), concurrency {args.concurrency}, "
          f"sandbox run time {args.run_seconds} s\n")
    print("| variant | succeeded | stopped safely | failed | duplicate billable runs | lost | p50 wall | total |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    samples = []
    for name in names:
        r = soak_variant(name, args.runs, args.rate, args.concurrency, args.seed, args.run_seconds)
        print(row(name, r), flush=True)
        ok = ok and r["duplicate_runs"] == 0 and r["lost_results"] == 0 and r["bad"] == 0
        samples += [f"{name}: {e}" for e in r["error_samples"]]
    for sample in samples:
        print(f"\nerror: {sample}")
    print("\nresult:", "PASS (0 duplicates, 0 lost in every variant)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
