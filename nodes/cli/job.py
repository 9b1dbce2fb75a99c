"""The job: sources → windows → the shared runner (adaptive concurrency, spend cap, journal) → review files.

    python -m nodes.cli assets/sample.png --sandbox            # all 8 views against the built-in sandbox, free
    python -m nodes.cli products/ --views all --angles "eye-level, elevated" --max-spend 50 --out catalog
    python -m nodes.cli --manifest shoes.csv --dry-run

Same result cache and journal as the nodes (set RUNFLOW_USER_DIR=<ComfyUI>/user to share ComfyUI's): running the
same command again bills 0 for finished renders, and adopts runs created before a crash. Exit codes: 0 all done,
2 some failed (running it again retries only those), 1 nothing could run, 64 bad input (nothing was created).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from ..core.concurrency import AdaptiveLimiter
from ..core.runner import ItemResult, Runner
from ..core.spend import Budget, cost_line
from ..runflow import errors as E
from . import plan as P
from . import sources as S
from .args import SAMPLE, build_parser, pose_grid
from .progress import Progress
from .review import Review

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2, 64
WINDOWS_IN_FLIGHT = 2  # windows of sources loaded at once: one running, the next filling the gaps of its tail
RETRY_PASSES, RETRY_PAUSE = 2, 5.0  # renders that failed on a transient error (a long 429/5xx storm) get 2 more tries


def transient(error: E.RunflowError | None) -> bool:
    """Worth another try in this job: the network or the API was unwell. Not a failed run, bad input or the cap."""
    return error is not None and error.retryable and not isinstance(error, E.RunFailed | E.SpendLimitError)


def entries_of(args: argparse.Namespace, warn) -> list[S.Entry]:
    defaults = {"views": args.views, "angles": args.angles, "shots": args.shots, "angle": args.angle,
                "shot": args.shot, "prompt": args.prompt}
    if args.manifest:
        if args.images or args.image_url:
            raise E.InputError("give a --manifest, or images/folders/--image-url, not both")
        return S.from_manifest(args.manifest, defaults, skip_bad=args.skip_bad_rows, warn=warn)
    if args.image_url and args.images:
        raise E.InputError("give local images or --image-url, not both")
    poses = pose_grid(args.views, args.angles, args.shots, default_angle=args.angle, default_shot=args.shot)
    if args.prompt and len(args.prompt) > 0:
        from ..core.spec import JobSpec

        JobSpec(view=poses[0][0], prompt=args.prompt)  # the prompt's checks, before anything is loaded
    return S.from_args(list(args.images or ([] if args.image_url else [SAMPLE])), args.image_url, poses,
                       args.prompt)


def _validator():
    from ..core import codec

    return codec.decode


async def run(args: argparse.Namespace) -> int:
    from ..core.config import load_settings

    def warn(text: str) -> None:
        print(text, file=sys.stderr)

    entries = entries_of(args, warn)
    total = sum(len(e.poses) for e in entries)
    base = dict(seed=args.seed, match_input_aspect=args.aspect_ratio is None, aspect_ratio=args.aspect_ratio or "1:1")
    max_concurrent = max(1, args.max_concurrent)
    limiter = AdaptiveLimiter(max_concurrent)
    budget = Budget(args.max_spend)
    runner = Runner(load_settings(), use_cache=not args.no_cache, max_concurrent=max_concurrent, guard_limit=0,
                    validate=_validator(), limiter=limiter, before_create=lambda spec: budget.reserve(spec.label))
    size = P.window_size(args.window, entries, max_concurrent)
    notes = warn if not args.quiet else (lambda text: None)
    if args.dry_run:
        dry = P.DryRun(renders=total)
        for chunk in P.chunks(entries, size):
            window = await P.load(chunk, args.format, base, notes)
            plan = runner.plan(window.jobs)
            dry.cached += plan.cached
            dry.pending += plan.pending
            dry.new_runs += plan.new_runs
        print("\n".join(dry.lines(max_concurrent, runner.estimate.value, args.max_spend)))
        return EXIT_OK

    progress = Progress(total, quiet=args.quiet, in_flight=lambda: limiter.in_flight,
                        spent=lambda: runner.stats.spent_usd)
    review = Review(args.out, echo=(lambda path: None) if args.quiet else (lambda path: print(path)))
    review.expect(entries)
    windows: dict[str, tuple[S.Entry, tuple[str, str, str]]] = {}

    retry: set[str] = set()
    tries: dict[str, int] = {}

    def on_result(_index: int, res: ItemResult) -> None:
        label = res.spec.label
        if transient(res.error) and tries.get(label, 0) < RETRY_PASSES:
            retry.add(label)  # a storm outlasted the transport's retries: once more after a pause (journal: no dup)
            return
        entry, pose = windows.pop(label)
        tries.pop(label, None)
        review.add(entry, pose, res)
        progress.result(res.error is None, fresh=res.error is None and not res.from_cache)

    runner.on_result = on_result
    gate = asyncio.Semaphore(WINDOWS_IN_FLIGHT)

    async def one(chunk: list[S.Entry]) -> None:
        async with gate:
            window = await P.load(chunk, args.format, base, notes)
            windows.update(window.meta)
            jobs = window.jobs
            while jobs:
                await runner.run(jobs)
                jobs = [job for job in jobs if job[1].label in retry]
                for _, spec in jobs:
                    retry.discard(spec.label)
                    tries[spec.label] = tries.get(spec.label, 0) + 1
                if jobs:
                    await asyncio.sleep(RETRY_PAUSE)

    if not args.quiet:
        progress.say(f"plan: {len(entries)} sources × poses = {total} renders; up to {max_concurrent} runs in flight"
                     + (f"; spend capped at ${args.max_spend:.2f}" if args.max_spend is not None else ""))
    ticker = asyncio.create_task(_tick(progress))
    try:
        await asyncio.gather(*(one(chunk) for chunk in P.chunks(entries, size)))
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])
        progress.close()
    return report(review, runner, limiter, budget, args)


async def _tick(progress: Progress) -> None:
    while True:
        await asyncio.sleep(1.0)
        if progress.live:
            progress.show()


def report(review: Review, runner: Runner, limiter: AdaptiveLimiter, budget: Budget, args) -> int:
    rows = review.rows()
    ok = [r for r in rows if r.file]
    failed = [r for r in rows if not r.file]
    stats = runner.stats
    totals = {"renders": len(rows), "done": len(ok), "failed": len(failed), "created": stats.created,
              "adopted": stats.resumed, "from_cache": stats.cache_hits, "uploads": stats.uploads,
              "spent_usd": round(stats.spent_usd, 2), "not_created_max_spend": budget.refused,
              "peak_in_flight": limiter.stats.peak_in_flight,
              "mean_in_flight": round(limiter.stats.average_in_flight, 1), "backoffs": limiter.stats.backoffs}
    index = review.finish(rows, totals)
    if not args.quiet:
        print(index)
    simulated = " (sandbox: simulated, nothing billed)" if os.environ.get("RUNFLOW_SANDBOX") else ""
    adopted = f" · {stats.resumed} adopted from an earlier run (not paid again)" if stats.resumed else ""
    billed = sum(1 for r in rows if r.status == "done")  # failed runs are not billed
    print(f"{len(ok)} of {len(rows)} renders in {args.out}/ · {cost_line(billed, stats.cache_hits)}{adopted} · "
          f"spent ${stats.spent_usd:.2f}{simulated}", file=sys.stderr)
    for r in failed[:20]:
        print(f"error: {r.source} {r.pose}: {r.error}", file=sys.stderr)
    if len(failed) > 20:
        print(f"… and {len(failed) - 20} more failures: see {args.out}/summary.csv", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(rows)} failed; the others are cached, so running the same command again "
              "re-runs only the failed ones.", file=sys.stderr)
        return EXIT_PARTIAL if ok else EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.ledger:
        from ..core.receipts import cli_ledger

        sys.stdout.write(cli_ledger(args.csv).rstrip("\n") + "\n")
        return EXIT_OK
    if args.cache_info or args.clear_cache:
        from ..core.cache import ResultCache

        cache = ResultCache()
        if args.clear_cache:
            print(f"removed {cache.clear()} cached results from {cache.root}")
        st = cache.stats()
        print(f"result cache: {st['root']} · {st['entries']} results · {st['bytes'] / 2**20:.1f} MiB of "
              f"{st['max_bytes'] / 2**20:.0f} MiB (RUNFLOW_CACHE_MAX_MB)")
        return EXIT_OK
    sandbox = None
    try:
        if args.sandbox:
            from ..sandbox import Sandbox

            sandbox = Sandbox(run_seconds=args.sandbox_seconds).start()
            os.environ["RUNFLOW_API_URL"] = sandbox.url
            os.environ["RUNFLOW_API_KEY"] = sandbox.api_key
            os.environ["RUNFLOW_SANDBOX"] = "1"
            if not args.quiet:
                print(f"sandbox: {sandbox.url} (offline emulator; results are marked SANDBOX, nothing is billed)",
                      file=sys.stderr)
        if args.doctor:
            from .doctor import doctor

            return asyncio.run(doctor(args))
        if args.spend_one:
            raise E.InputError("--spend-one goes with --doctor")
        return asyncio.run(run(args))
    except E.InputError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except E.RunflowError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: runs already sent may still finish and bill; run the same command again to collect "
              "them (they are polled, not paid again)", file=sys.stderr)
        return 130
    finally:
        if sandbox is not None:
            sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
