"""python -m nodes.sandbox: serve the emulator from the command line (options: --help)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from .config import OUTPUT_SHAPES, VARIANT_CHOICES, parse_variant
from .server import Sandbox
from .storage import is_loopback


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nodes.sandbox", description="Run the Runflow API emulator "
                                 "(free, offline; results are marked SANDBOX).")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks a free one)")
    ap.add_argument("--key", default="rf_sandbox_key", help="the API key clients must send (default rf_sandbox_key)")
    ap.add_argument("--run-seconds", type=float, default=3.0, help="how long each run takes (default 3)")
    ap.add_argument("--queue-seconds", type=float, default=0.0, help="how long each run sits queued (default 0)")
    ap.add_argument("--output-shape", choices=OUTPUT_SHAPES, default="outputs", help="shape of a run's output")
    ap.add_argument("--public-url", help="base URL to put in signed storage URLs (default: the listen address)")
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (no TLS, test keys only)")
    ap.add_argument("--max-concurrency", type=int, default=8, help="runs per organisation running at once; the rest "
                    "wait in queued (default 8)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=VALUE",
                    help="a contract variant, repeatable: " + "; ".join(
                        f"{k}={'|'.join(map(str, v))}" for k, v in VARIANT_CHOICES.items()))
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        ap.error(f"refusing to listen on non-loopback host {args.host!r}: the sandbox has no TLS and unauthenticated "
                 "control endpoints; pass --allow-remote if you really mean it")
    try:
        variants = dict(parse_variant(v) for v in args.variant)
    except ValueError as exc:
        ap.error(str(exc))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    sb = Sandbox(api_key=args.key, run_seconds=args.run_seconds, queue_seconds=args.queue_seconds, port=args.port,
                 host=args.host, output_shape=variants.pop("output_shape", args.output_shape),
                 public_url=args.public_url,
                 max_concurrency=args.max_concurrency, allow_remote=args.allow_remote, variants=variants)
    try:
        sb.start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}: {exc}\n")
        return 2
    sys.stdout.write(f"Runflow sandbox on {sb.url} (key: {sb.api_key})\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    return 0
