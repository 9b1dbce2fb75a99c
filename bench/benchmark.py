"""Benchmark: prints figures (Markdown), each next to a simple reference flow measured in the same run.

    python bench/benchmark.py            # about 1-2 minutes; T = 3 s sandbox run time, 1024x1024 image

1. One node run vs a plain flow (PNG upload, poll every 2 s): wall / T and status requests per run-second.
2. Upload encoding: bytes and encode ms per image at 1 and 4 MP against PNG (bench/encode_bench.py).
3. Turnaround of 8 views vs one single-view run; the same 8 views as 8 concurrent single nodes; uploads per source.
4. Re-queue after a restart (fresh process state, same disk cache): runs created and wall time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from nodes.comfy.nodes import RunflowMultiAngles, RunflowMultiAnglesTurnaround  # noqa: E402
from nodes.core.session import process_session  # noqa: E402
from nodes.runflow.contract import VIEWS  # noqa: E402
from nodes.sandbox import Sandbox  # noqa: E402

T = 3.0
KW = dict(angle="eye-level shot", shot="medium shot", prompt="", match_input_aspect=True, aspect_ratio="1:1")


def sample_tensor(size: int = 1024) -> torch.Tensor:
    sys.path.insert(0, str(ROOT / "assets"))
    from make_sample import make_sample

    return torch.from_numpy(make_sample(size, size)).float().div(255)[None]


def fresh_state(user_dir: str | None = None) -> str:
    """A new user dir (cache, journal, timing) unless given, and no in-process upload memory: like a restart."""
    user_dir = user_dir or tempfile.mkdtemp(prefix="rfbench-")
    os.environ["RUNFLOW_USER_DIR"] = user_dir
    os.environ.pop("RUNFLOW_CACHE_DIR", None)
    forget_uploads()
    return user_dir


def forget_uploads() -> None:
    """Forget in-process uploads (keep the cache and the timing estimate), so a measurement includes its upload."""
    process_session().reset()


def reference_flow(sb: Sandbox, png: bytes) -> float:
    """A plain client as most packs write it: PNG upload, create, poll every 2 s, download."""
    h = {"Authorization": f"Bearer {sb.api_key}"}
    t0 = time.monotonic()
    with httpx.Client(base_url=sb.url, timeout=30) as c:
        up = c.post("/v1/asset-uploads", headers=h, json={"filename": "a.png", "mime_type": "image/png",
                                                         "size_bytes": len(png)}).json()
        c.put(up["upload_url"], content=png, headers={"Content-Type": "image/png"})
        url = c.post(f"/v1/asset-uploads/{up['asset_id']}/confirmations", headers=h, json={}).json()["url"]
        run = c.post("/v1/models/runflow/multi-angles/runs", headers=h,
                     json={"input": {"image_url": url, "view": "back view"}}).json()
        while run["status_code"] not in ("succeeded", "failed"):
            time.sleep(2.0)
            run = c.get(f"/v1/runs/{run['id']}", headers=h).json()
        c.get(run["output"]["outputs"][0]["url"]).raise_for_status()
    return time.monotonic() - t0


def node_run(image, view="back view", seed=0) -> float:
    t0 = time.monotonic()
    asyncio.run(RunflowMultiAngles().execute(view=view, seed=seed, image=image, **KW))
    return time.monotonic() - t0


def main() -> None:
    image = sample_tensor(1024)
    png_buf = __import__("io").BytesIO()
    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(png_buf, "PNG")
    png = png_buf.getvalue()
    rows = []
    with Sandbox(run_seconds=T) as sb:
        os.environ["RUNFLOW_API_URL"], os.environ["RUNFLOW_API_KEY"] = sb.url, sb.api_key

        # 1. single run: reference vs node (cold: no duration estimate yet; warm: estimate from earlier runs)
        ref_walls, ref_polls = [], []
        for _ in range(2):
            sb.reset_stats()
            ref_walls.append(reference_flow(sb, png))
            ref_polls.append(sb.count("GET", "/v1/runs/"))
        user = fresh_state()
        sb.reset_stats()
        cold = node_run(image, seed=100)
        cold_polls = sb.count("GET", "/v1/runs/")
        warm, warm_polls = [], []
        for seed in range(3):
            sb.reset_stats()
            warm.append(node_run(image, seed=seed))
            warm_polls.append(sb.count("GET", "/v1/runs/"))
        ref = statistics.median(ref_walls)
        rows += [
            ("single run: reference (PNG, poll every 2 s) wall / T", f"{ref / T:.2f}",
             f"{statistics.median(ref_polls) / T:.2f} status req/run-s"),
            ("single run: node, first run ever (no estimate) wall / T", f"{cold / T:.2f}",
             f"{cold_polls / T:.2f} status req/run-s"),
            ("single run: node, warm (median of 3) wall / T", f"{statistics.median(warm) / T:.2f}",
             f"{statistics.median(warm_polls) / T:.2f} status req/run-s"),
        ]

        # 3. turnaround vs one single-view run (warm estimate in both)
        one = statistics.median(warm)
        forget_uploads()
        sb.reset_stats()
        t0 = time.monotonic()
        asyncio.run(RunflowMultiAnglesTurnaround().execute(views="all", seed=7, max_concurrent=8, image=image, **KW))
        turn = time.monotonic() - t0
        turn_uploads = sb.uploads
        rows.append(("turnaround, 8 views, one node: wall / one single-view run", f"{turn / one:.2f}",
                     f"serial reference: 8.00; uploads for 1 source: {turn_uploads}; runs: {sb.created_runs}"))

        async def eight_nodes():
            await asyncio.gather(*(RunflowMultiAngles().execute(view=v, seed=8, image=image, **KW) for v in VIEWS))

        forget_uploads()
        sb.reset_stats()
        t0 = time.monotonic()
        asyncio.run(eight_nodes())
        eight = time.monotonic() - t0
        rows.append(("8 single nodes run concurrently (as ComfyUI runs async nodes): wall / one run",
                     f"{eight / one:.2f}", f"uploads for 1 source: {sb.uploads}; runs: {sb.created_runs}"))

        # 4. restart + re-queue: fresh process state, same disk cache
        fresh_state(user)
        sb.reset_stats()
        t0 = time.monotonic()
        asyncio.run(RunflowMultiAnglesTurnaround().execute(views="all", seed=7, max_concurrent=8, image=image, **KW))
        again = time.monotonic() - t0
        rows.append(("turnaround re-queued after a restart: runs created / wall s", f"{sb.created_runs} / "
                     f"{again:.2f} s", f"requests to Runflow: {len(sb.request_log)}"))

    print(f"## Runflow Multi Angles benchmark (sandbox, T = {T:.0f} s, 1024×1024 source)\n")
    print("| measure | value | notes |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")

    from encode_bench import markdown
    from encode_bench import run as encode_run  # bench/ is on sys.path as the script's folder

    print("\n### Upload encoding vs PNG (ComfyUI's API nodes send PNG)\n")
    print(markdown(encode_run()))


if __name__ == "__main__":
    main()
