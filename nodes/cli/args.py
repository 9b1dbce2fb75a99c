"""The command line: flags, and the pose grid they describe (views × angles × shots)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..core.spec import parse_views
from ..runflow import errors as E
from ..runflow.contract import ANGLES, ASPECT_RATIOS, DEFAULT_ANGLE, DEFAULT_SHOT, SHOTS

SAMPLE = Path(__file__).resolve().parent.parent.parent / "assets" / "sample.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodes.cli", description="Runflow Multi Angles: render camera poses "
                                "of local images, folders or a CSV manifest (default: all 8 views) and write image "
                                "files, a contact sheet and a turntable per source, index.html and a summary.")
    p.add_argument("images", nargs="*", type=Path,
                   help=f"source images or folders (recursive; default: the bundled {SAMPLE.name})")
    p.add_argument("--image-url", help="an https:// URL to use instead of local images")
    p.add_argument("--manifest", type=Path, help="a CSV with a column source (path or https URL) and optional "
                   "views, angles, shots (';' or ',' separated, or all), prompt, name")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="render the good rows of a manifest that has bad ones (default: refuse, nothing is spent)")
    p.add_argument("--views", default="all", help='comma-separated view names, or "all" (default)')
    p.add_argument("--angles", help='comma-separated angles, or "all" (default: --angle)')
    p.add_argument("--shots", help='comma-separated shots, or "all" (default: --shot)')
    p.add_argument("--angle", default=DEFAULT_ANGLE, choices=ANGLES)
    p.add_argument("--shot", default=DEFAULT_SHOT, choices=SHOTS)
    p.add_argument("--prompt", default="", help="optional phrase appended to the camera pose")
    p.add_argument("--aspect-ratio", choices=ASPECT_RATIOS, help="force an output aspect (default: match the input)")
    p.add_argument("--seed", type=int, default=0, help="cache slot (not sent to Runflow); change it to re-roll")
    p.add_argument("--format", default="auto", help="upload encoding: auto, jpeg, webp or png")
    p.add_argument("--out", type=Path, default=Path("runflow_out"), help="output folder (default: ./runflow_out)")
    p.add_argument("--max-concurrent", type=int, default=8,
                   help="most runs in flight at once (default 8); the job adapts below it on 429/503")
    p.add_argument("--max-spend", type=float, metavar="USD",
                   help="stop creating runs before this job's spend would cross USD (in-flight runs are collected)")
    p.add_argument("--window", type=int, default=8, help="sources loaded at once (memory bound; default 8)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")
    p.add_argument("--cache-info", action="store_true", help="print where the result cache is and its size, then exit")
    p.add_argument("--clear-cache", action="store_true", help="delete every cached result, then exit")
    p.add_argument("--ledger", action="store_true", help="print what Runflow billed (today, this month), then exit")
    p.add_argument("--csv", action="store_true", help="with --ledger: every receipt as CSV")
    p.add_argument("--doctor", action="store_true", help="check the real API against the pack without spending "
                   "(key, balance, model schema, upload types, client_ref search, rate-limit headers), then exit")
    p.add_argument("--spend-one", action="store_true", help="with --doctor: make ONE real run ($0.20) to find out "
                   "whether Runflow honours Idempotency-Key on runs (never a second charge)")
    p.add_argument("--sandbox", action="store_true", help="use the built-in Runflow sandbox (offline, free)")
    p.add_argument("--sandbox-seconds", type=float, default=2.0, help="sandbox run time per render (default 2)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print runs, cache hits, cost and expected wall time; create nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress; errors and the final line only")
    return p


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def parse_choices(name: str, text: str | None, allowed: tuple[str, ...]) -> list[str]:
    """A comma/semicolon-separated selection of ``allowed`` values (case-insensitive) or "all", in ``allowed``'s
    order; unknown names are an error listing the valid ones."""
    lookup = {a.lower(): a for a in allowed}
    wanted, unknown = set(), []
    for raw in re.split(r"[,;\n]", text or ""):
        token = " ".join(raw.strip().lower().split())
        if not token:
            continue
        if token == "all":
            wanted.update(allowed)
        elif token in lookup:
            wanted.add(lookup[token])
        elif token + " shot" in lookup:  # "wide" -> "wide shot", "low-angle" -> "low-angle shot"
            wanted.add(lookup[token + " shot"])
        else:
            unknown.append(raw.strip())
    if unknown:
        raise E.InputError(f"{name}: unknown {', '.join(repr(u) for u in unknown)}; use any of {', '.join(allowed)} "
                           "(comma-separated) or all")
    if not wanted:
        raise E.InputError(f"{name} is empty; pick at least one (or write all)")
    return [a for a in allowed if a in wanted]


def pose_grid(views: str | None, angles: str | None, shots: str | None, *, default_angle: str = DEFAULT_ANGLE,
              default_shot: str = DEFAULT_SHOT) -> list[tuple[str, str, str]]:
    """(view, angle, shot) for every combination asked for; a missing list falls back to the default."""
    vs = parse_views((views or "all").replace(";", ","))
    ans = parse_choices("angles", angles, ANGLES) if angles else [default_angle]
    shs = parse_choices("shots", shots, SHOTS) if shots else [default_shot]
    return [(v, a, s) for v in vs for a in ans for s in shs]
