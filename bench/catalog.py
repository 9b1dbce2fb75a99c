"""Catalog bench: the CLI (a real subprocess) against the sandbox with T seconds per run, the organisation's
concurrency cap, random faults on a share of ALL API requests, and a 429 storm in the middle of the job.

    python bench/catalog.py                     # 100 runs, then 1,000 runs (125 sources × 8 views), then kill/rerun
    python bench/catalog.py --sources 5 --small 0   # quick: 40 runs

Prints: wall time ÷ the ideal (runs × T ÷ the org's concurrency), runs/minute, the client's peak/average runs in
flight, peak RSS of the CLI at the small and the full size, duplicate billable runs; then a job killed with SIGKILL at
about half way and run again: total billed (goal: exactly the number of renders) and re-billed (goal 0).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402

from nodes.runflow.contract import VIEWS  # noqa: E402
from nodes.sandbox import Sandbox  # noqa: E402


def make_sources(folder: Path, n: int, size: int = 512) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        im = Image.new("RGB", (size, size), (40 + (i * 37) % 200, 60 + (i * 11) % 150, 200 - (i * 23) % 180))
        d = ImageDraw.Draw(im)
        d.ellipse((size // 4 + i % 40, size // 4, 3 * size // 4, 3 * size // 4 - i % 30), fill=(250, 210, 40))
        d.rectangle((20, size - 120, 20 + (i % 100) + 80, size - 20), fill=(30, 160, 90))
        path = folder / f"product-{i:04d}.png"
        im.save(path)
        paths.append(path)
    return paths


class Chaos:
    """Random faults on ``rate`` of API requests, and a 429 storm of ``storm_s`` seconds once ``storm_at`` of the
    job's runs are created."""

    KINDS = ("status", "drop_before", {"kind": "drop_after", "path": "create"})

    def __init__(self, sb: Sandbox, rate: float, storm_s: float):
        self.sb, self.rate, self.storm_s = sb, rate, storm_s
        self.storm_started: float | None = None

    def arm(self) -> None:
        self.sb.faults.clear()
        if self.rate:
            self.sb.faults.random(rate=self.rate, kinds=self.KINDS, seed=7)

    def storm(self) -> None:
        self.storm_started = time.monotonic()
        self.sb.faults.add("status", path=None, times=None, status=429, retry_after=1)

    def calm(self) -> None:
        self.arm()


def run_job(sb: Sandbox, chaos: Chaos, cmd: list[str], env: dict, total: int, *, storm_at: float | None = 0.5,
            kill_at: float | None = None) -> dict:
    """Run the CLI to the end (or SIGKILL it once ``kill_at`` × total runs exist); its wall time and peak RSS."""
    chaos.arm()
    start_created = sb.created_runs
    me = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    killed = stormed = False
    reaped = None
    marks: dict = {}  # the child's peak RSS (VmHWM) when 100, 250, 500 … runs had been created
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # not poll(): wait4 also gives the child's peak RSS
        if pid:
            reaped = (status, usage)
            break
        made = sb.created_runs - start_created
        hwm = _peak_rss_mib(proc.pid)
        if hwm is not None:
            marks.update({m: hwm for m in MARKS if made >= m and m not in marks})
            marks["last"] = hwm
        if storm_at is not None and not stormed and made >= storm_at * total:
            chaos.storm()
            stormed = True
        if stormed and chaos.storm_started and time.monotonic() - chaos.storm_started >= chaos.storm_s:
            chaos.calm()
            chaos.storm_started = None
        if kill_at is not None and made >= kill_at * total:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    if reaped is None:
        _, status, usage = os.wait4(proc.pid, 0)
    else:
        status, usage = reaped
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    chaos.arm()
    after = resource.getrusage(resource.RUSAGE_SELF)
    sandbox_cpu = after.ru_utime + after.ru_stime - me.ru_utime - me.ru_stime
    return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "cpu": usage.ru_utime + usage.ru_stime,
            "sandbox_cpu": sandbox_cpu,
            "exit": proc.returncode, "killed": killed, "marks": marks,
            "created": sb.created_runs - start_created, "stderr": b"".join(stderr).decode(errors="replace")}


MARKS = (100, 250, 500, 750)


def _peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def billing(sb: Sandbox) -> tuple[int, int]:
    record = sb.billing_record()
    billed = [r for r in record if r["billed"]]
    refs = {r["client_ref"] for r in billed}
    return len(billed), len(billed) - len(refs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=125)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--small", type=int, default=100, help="runs of the small job (peak RSS comparison); 0 = skip")
    ap.add_argument("--run-seconds", type=float, default=1.0)
    ap.add_argument("--org-concurrency", type=int, default=16, help="the sandbox's per-organisation cap")
    ap.add_argument("--max-concurrent", type=int, default=32, help="the CLI's --max-concurrent")
    ap.add_argument("--fault-rate", type=float, default=0.10)
    ap.add_argument("--storm-seconds", type=float, default=3.0)
    ap.add_argument("--result-px", type=int, default=256,
                    help="long side of the sandbox's results (default 256: rendering 1 MP stand-ins costs the bench "
                         "machine's CPU, not the client's)")
    ap.add_argument("--keep", action="store_true", help="keep the output folders (printed)")
    args = ap.parse_args()
    views = ",".join(VIEWS[: args.views])
    total = args.sources * args.views
    tmp = Path(tempfile.mkdtemp(prefix="rfma-catalog-"))
    srcs = make_sources(tmp / "products", args.sources)
    sb = Sandbox(run_seconds=args.run_seconds, max_concurrency=args.org_concurrency).start()
    sb.output_side = args.result_px
    chaos = Chaos(sb, args.fault_rate, args.storm_seconds)
    base_env = {**os.environ, "RUNFLOW_API_URL": sb.url, "RUNFLOW_API_KEY": sb.api_key, "RUNFLOW_SANDBOX": "1",
                "PYTHONPATH": str(ROOT), "RUNFLOW_MAX_SPEND_PER_DAY": "0"}  # $200 of sandbox runs > the $25/day cap

    def cli(out: Path, *extra: str) -> list[str]:  # --views is the default of a manifest's rows
        return [sys.executable, "-m", "nodes.cli", "--out", str(out), "--views", views, "-q",
                "--max-concurrent", str(args.max_concurrent), *extra]

    def env(name: str) -> dict:
        return {**base_env, "RUNFLOW_USER_DIR": str(tmp / f"user-{name}")}

    ideal = total * args.run_seconds / args.org_concurrency
    print(f"sandbox: T = {args.run_seconds:g} s per run, org concurrency {args.org_concurrency}, "
          f"{args.fault_rate:.0%} random faults (5xx/429, dropped connections, created-but-unanswered creates), "
          f"a {args.storm_seconds:g} s 429 storm at half way; results {args.result_px} px; CLI --max-concurrent "
          f"{args.max_concurrent}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    small = None
    try:
        if args.small:
            n_full, rest = divmod(args.small, args.views)
            manifest = tmp / "small.csv"
            lines = ["source,views"] + [f"{p},{views.replace(',', ';')}" for p in srcs[:n_full]]
            if rest:
                lines.append(f"{srcs[n_full]},{';'.join(VIEWS[:rest])}")
            manifest.write_text("\n".join(lines) + "\n")
            sb.reset()
            small = run_job(sb, chaos, cli(tmp / "out-small", "--manifest", str(manifest)), env("small"), args.small)
            print(f"small job: {args.small} runs in {small['wall']:.1f} s, exit {small['exit']}, "
                  f"peak RSS {small['rss_mib']:.1f} MiB, CLI CPU {small['cpu']:.1f} s")

        sb.reset()
        full = run_job(sb, chaos, cli(tmp / "out-full", str(tmp / "products")), env("full"), total)
        billed, dup = billing(sb)
        summary = json.loads((tmp / "out-full" / "summary.json").read_text())["totals"]
        print(f"full job: {total} runs ({args.sources} sources × {args.views} views) in {full['wall']:.1f} s, "
              f"exit {full['exit']}, {summary['done']} done, {summary['failed']} failed")
        print(f"  wall ÷ ideal ({total} × {args.run_seconds:g} s ÷ {args.org_concurrency}) = "
              f"{full['wall']:.1f} ÷ {ideal:.1f} = {full['wall'] / ideal:.2f}")
        ceiling = args.org_concurrency / args.run_seconds * 60
        print(f"  runs/minute: {total / full['wall'] * 60:.0f} (ceiling {ceiling:.0f})")
        print(f"  achieved concurrency: {total * args.run_seconds / full['wall']:.1f} of {args.org_concurrency}; "
              f"client in flight: mean {summary.get('mean_in_flight')}, peak {summary['peak_in_flight']}; "
              f"back-offs {summary['backoffs']}")
        print(f"  CPU: sandbox (this process) {full['sandbox_cpu']:.1f} s, CLI {full['cpu']:.1f} s, over "
              f"{full['wall']:.1f} s of wall on {os.cpu_count()} shared cores (load average {os.getloadavg()[0]:.1f})")
        print(f"  uploads: {summary['uploads']} for {args.sources} sources; CLI CPU {full['cpu']:.1f} s "
              f"({full['cpu'] / total * 1000:.0f} ms per render, decode check + files + sheets included)")
        if small:
            ratio = full["rss_mib"] / small["rss_mib"]
            print(f"  peak RSS: {small['rss_mib']:.1f} MiB at {args.small} runs, {full['rss_mib']:.1f} MiB at {total} "
                  f"runs (× {ratio:.2f}; goal within 20 %)")
        else:
            print(f"  peak RSS: {full['rss_mib']:.1f} MiB")
        marks = full["marks"]
        print("  peak RSS within the full job, by runs created: " + ", ".join(
            f"{m}: {marks[m]:.1f} MiB" for m in MARKS if m in marks) + f", end: {full['rss_mib']:.1f} MiB")
        print(f"  billed: {billed} runs; duplicate billable runs: {dup}")

        sb.reset()
        killed = run_job(sb, chaos, cli(tmp / "out-kill", str(tmp / "products")), env("kill"), total, kill_at=0.5)
        made_before = killed["created"]
        rerun = run_job(sb, chaos, cli(tmp / "out-kill", str(tmp / "products")), env("kill"), total)
        again = run_job(sb, chaos, cli(tmp / "out-kill", str(tmp / "products")), env("kill"), total, storm_at=None)
        billed_k, dup_k = billing(sb)
        t2 = json.loads((tmp / "out-kill" / "summary.json").read_text())["totals"]
        print(f"kill -9 at {made_before} of {total} runs created ({killed['wall']:.1f} s), rerun exit {rerun['exit']} "
              f"in {rerun['wall']:.1f} s, third run exit {again['exit']} in {again['wall']:.1f} s "
              f"({t2['from_cache']} from cache, {t2['created']} created)")
        print(f"  total billed: {billed_k} (goal exactly {total}); re-billed: {max(0, billed_k - total)}"
              f"; duplicate billable runs: {dup_k}")
        for name, res in (("small", small), ("full", full), ("rerun", rerun)):
            if res and res["exit"] not in (0,):
                print(f"--- {name} stderr (exit {res['exit']}) ---\n{res['stderr'][-3000:]}")
    finally:
        sb.stop()
        if args.keep:
            print(f"outputs kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
