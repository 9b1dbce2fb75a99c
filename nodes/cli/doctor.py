"""python -m nodes.cli --doctor [--spend-one]: check the real API against the pack, print a pasteable report."""

from __future__ import annotations

import argparse
import sys

from ..core import sources
from .args import SAMPLE

EXIT_OK, EXIT_PROBLEM = 0, 1


async def doctor(args: argparse.Namespace) -> int:
    """Print the doctor's report; exit 1 when it found a problem. Spends nothing unless --spend-one."""
    from ..core.config import load_settings, user_dir
    from ..core.doctor import run_doctor
    from ..runflow.capabilities import CAPABILITIES_FILE, CapabilityStore
    from ..runflow.client import RunflowClient

    settings = load_settings()
    image = None
    if args.spend_one:
        src = sources.from_file(args.images[0] if args.images else SAMPLE, "png")
        image = (src.data, src.mime)
    async with RunflowClient(settings.require_key(), settings.api_url,
                             capabilities=CapabilityStore(user_dir() / CAPABILITIES_FILE)) as client:
        report = await run_doctor(client, spend_one=args.spend_one, image=image)
    sys.stdout.write(report.text().rstrip("\n") + "\n")
    return EXIT_PROBLEM if report.problems else EXIT_OK
