"""Headless main job: render local images (or a URL) from one or more camera poses and write the files.

    python -m nodes.cli assets/sample.png --sandbox            # all 8 views against the built-in sandbox, free
    RUNFLOW_API_KEY=rf_live_… python -m nodes.cli photo.jpg --views "front view, back view" --shot "wide shot"

Same result cache as the nodes (set RUNFLOW_USER_DIR=<ComfyUI>/user to share ComfyUI's); --no-cache bypasses it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import time
from pathlib import Path

from .core import sources
from .core.events import Event, Plan
from .core.runner import ItemResult, Runner
from .core.sources import Source
from .core.spec import JobSpec, parse_views
from .core.spend import cost_line
from .runflow import errors as E
from .runflow.contract import ANGLES, ASPECT_RATIOS, DEFAULT_ANGLE, DEFAULT_SHOT, SHOTS

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "sample.png"
EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE = 1, 2, 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.cli", description="Runflow Multi Angles: render camera poses "
                                "of local images (default: all 8 views) and write image files.")
    p.add_argument("images", nargs="*", type=Path, help=f"source images (default: the bundled {SAMPLE.name})")
    p.add_argument("--image-url", help="an https:// URL to use instead of local images")
    p.add_argument("--views", default="all", help='comma-separated view names, or "all" (default)')
    p.add_argument("--angle", default=DEFAULT_ANGLE, choices=ANGLES)
    p.add_argument("--shot", default=DEFAULT_SHOT, choices=SHOTS)
    p.add_argument("--prompt", default="", help="optional phrase appended to the camera pose")
    p.add_argument("--aspect-ratio", choices=ASPECT_RATIOS, help="force an output aspect (default: match the input)")
    p.add_argument("--seed", type=int, default=0, help="cache slot (not sent to Runflow); change it to re-roll")
    p.add_argument("--format", default="auto", help="upload encoding: auto, jpeg, webp or png")
    p.add_argument("--out", type=Path, default=Path("runflow_out"), help="output folder (default: ./runflow_out)")
    p.add_argument("--max-concurrent", type=int, default=8)
    p.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")
    p.add_argument("--cache-info", action="store_true", help="print where the result cache is and its size, then exit")
    p.add_argument("--clear-cache", action="store_true", help="delete every cached result, then exit")
    p.add_argument("--ledger", action="store_true", help="print what Runflow billed (today, this month), then exit")
    p.add_argument("--csv", action="store_true", help="with --ledger: every receipt as CSV")
    p.add_argument("--sandbox", action="store_true", help="use the built-in Runflow sandbox (offline, free)")
    p.add_argument("--sandbox-seconds", type=float, default=2.0, help="sandbox run time per render (default 2)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan and cost; create nothing")
    p.add_argument("--doctor", action="store_true", help="check the real API against the pack without spending "
                   "(key, balance, model schema, upload types, client_ref search, rate-limit headers), then exit")
    p.add_argument("--spend-one", action="store_true", help="with --doctor: make ONE real run ($0.20) to find out "
                   "whether Runflow honours Idempotency-Key on runs (never a second charge)")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _extension(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def load_sources(paths: list[Path], fmt: str) -> list[tuple[str, Source]]:
    """(name, Source) per local image: decoded with EXIF orientation, then encoded like the nodes do."""
    return [(path.stem, sources.from_file(path, fmt)) for path in paths]


class Printer:
    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.start = total, quiet, time.monotonic()
        self.last: dict[int, str] = {}

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, Plan):
            print(f"plan: {event.items} renders, {event.line}"
                  + (f", {event.pending} already running" if event.pending else ""), file=sys.stderr)
            return
        state = event.state
        if self.last.get(event.index) == state:
            return
        self.last[event.index] = state
        done = sum(1 for s in self.last.values() if s.finished)
        print(f"[{done}/{self.total} {time.monotonic() - self.start:5.1f}s] {event.label}: {state.value}",
              file=sys.stderr)


async def run(args: argparse.Namespace) -> int:
    from .core.config import load_settings

    views = parse_views(args.views)
    base = dict(angle=args.angle, shot=args.shot, prompt=args.prompt, seed=args.seed,
                match_input_aspect=args.aspect_ratio is None, aspect_ratio=args.aspect_ratio or "1:1")
    if args.image_url:
        if args.images:
            raise E.InputError("give local images or --image-url, not both")
        named = [("url", sources.from_url("--image-url", args.image_url,
                                          instead="give the file as the image argument instead"))]
    else:
        named = load_sources(args.images or [SAMPLE], args.format)
    for name, src in named:
        for note in src.notes:
            print(f"{name}: {note}", file=sys.stderr)
    jobs = [(src, JobSpec(view=v, label=f"{name}_{slug(v)}", **base)) for name, src in named for v in views]
    printer = Printer(len(jobs), args.quiet)
    runner = Runner(load_settings(), use_cache=not args.no_cache, max_concurrent=args.max_concurrent,
                    on_event=printer, validate=_validator())
    if args.dry_run:
        plan = runner.plan(jobs)
        print(f"dry run: {plan.items} renders, {plan.line}; nothing was created")
        return 0
    results = await runner.run(jobs)
    return write_results(results, args.out, runner)


async def doctor(args: argparse.Namespace) -> int:
    """Print the doctor's pasteable report; exit 1 when it found a problem."""
    from .core.config import load_settings, user_dir
    from .core.doctor import run_doctor
    from .runflow.capabilities import CAPABILITIES_FILE, CapabilityStore
    from .runflow.client import RunflowClient

    settings = load_settings()
    image = None
    if args.spend_one:
        src = sources.from_file(args.images[0] if args.images else SAMPLE, "png")
        image = (src.data, src.mime)
    async with RunflowClient(settings.require_key(), settings.api_url,
                             capabilities=CapabilityStore(user_dir() / CAPABILITIES_FILE)) as client:
        report = await run_doctor(client, spend_one=args.spend_one, image=image)
    print(report.text())
    return EXIT_ERROR if report.problems else 0


def _validator():
    from .core import codec

    return codec.decode


def write_results(results: list[ItemResult], out: Path, runner: Runner) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failed = [r for r in results if r.error is not None]
    written = []
    for r in results:
        if r.data is None:
            continue
        suffix = f"_{slug(r.spec.angle)}_{slug(r.spec.shot)}"
        path = out / f"{r.spec.label}{suffix}.{_extension(r.data)}"
        path.write_bytes(r.data)
        written.append(path)
        print(path)
    if len(written) > 1:
        sheet = write_sheet([r for r in results if r.data is not None], out / "contact_sheet.png")
        print(sheet)
        for path in write_turntables(results, out):
            print(path)
    made, hits = runner.stats["created"], runner.stats["cache_hits"]
    simulated = " (sandbox: simulated, nothing billed)" if os.environ.get("RUNFLOW_SANDBOX") else ""
    print(f"{len(written)} images in {out}/ · {cost_line(made, hits)} · spent ${runner.stats['spent_usd']:.2f}"
          f"{simulated}", file=sys.stderr)
    for r in failed:
        print(f"error: {r.spec.label}: {r.error.message}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} failed; the others are cached, so running the same command again "
              "re-runs only the failed ones.", file=sys.stderr)
        return EXIT_PARTIAL if written else EXIT_ERROR
    return 0


def write_sheet(results: list[ItemResult], path: Path) -> Path:
    """One labelled grid of every result, for a quick look."""
    from PIL import Image

    from .core import codec
    from .core.sheet import contact_sheet

    grid = contact_sheet([codec.decode(r.data) for r in results], [r.spec.view for r in results], cell=320)
    Image.fromarray(grid).save(path)
    return path


def write_turntables(results: list[ItemResult], out: Path) -> list[Path]:
    """turntable.webp next to the contact sheet (core.turntable): the views in orbit order, looping."""
    from .core import codec, turntable

    return turntable.write_turntables(results, out, codec.decode, lambda r: r.spec.label.rsplit("_", 1)[0])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.ledger:
        from .core.receipts import cli_ledger

        sys.stdout.write(cli_ledger(args.csv).rstrip("\n") + "\n")
        return 0
    if args.cache_info or args.clear_cache:
        from .core.cache import ResultCache

        cache = ResultCache()
        if args.clear_cache:
            print(f"removed {cache.clear()} cached results from {cache.root}")
        st = cache.stats()
        print(f"result cache: {st['root']} · {st['entries']} results · {st['bytes'] / 2**20:.1f} MiB of "
              f"{st['max_bytes'] / 2**20:.0f} MiB (RUNFLOW_CACHE_MAX_MB)")
        return 0
    sandbox = None
    try:
        if args.sandbox:
            from .sandbox import Sandbox

            sandbox = Sandbox(run_seconds=args.sandbox_seconds).start()
            os.environ["RUNFLOW_API_URL"] = sandbox.url
            os.environ["RUNFLOW_API_KEY"] = sandbox.api_key
            os.environ["RUNFLOW_SANDBOX"] = "1"
            if not args.quiet:
                print(f"sandbox: {sandbox.url} (offline emulator; results are marked SANDBOX, nothing is billed)",
                      file=sys.stderr)
        if args.doctor:
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
