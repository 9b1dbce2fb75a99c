"""A turntable: a turnaround's views as one looping animation, in orbit order.

The 8 views are 45 degrees apart on the orbit (contract.VIEW_AZIMUTH, clockwise from the front seen from above), so
playing them by azimuth walks the camera once around the subject and the loop closes (front-left quarter -> front).
A missing view just makes a bigger step. 8 frames at FRAME_MS = one turn in 3.2 s: slow enough to read each view.
The template "Multi Angles - turntable" does the same inside ComfyUI (SaveAnimatedWEBP, fps 2.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..runflow.contract import ANGLES, SHOTS, VIEW_AZIMUTH

FRAME_MS = 400  # = SaveAnimatedWEBP fps 2.5 in the template
NAME = "turntable.webp"


def orbit_order(poses: Sequence[tuple[str, str, str]]) -> list[int]:
    """Indexes of (view, angle, shot) poses in turntable order: by angle and shot (one orbit each), then azimuth."""
    return sorted(range(len(poses)), key=lambda i: (ANGLES.index(poses[i][1]), SHOTS.index(poses[i][2]),
                                                    VIEW_AZIMUTH[poses[i][0]]))


def write_turntable(frames: Sequence[np.ndarray], path: Path, *, frame_ms: int = FRAME_MS) -> Path:
    """Save RGB uint8 frames (already in order) as a looping animated WebP; frames of another size are fitted
    (letterboxed) to the first one's size."""
    from PIL import Image, ImageOps

    if len(frames) < 2:
        raise ValueError("a turntable needs at least 2 frames")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)).convert("RGB") for f in frames]
    size = images[0].size
    images = [im if im.size == size else ImageOps.pad(im, size, color=(0, 0, 0)) for im in images]
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   quality=90, method=4)
    return path


def write_turntables(results, out: Path, decode, group) -> list[Path]:
    """The CLI's turntables, next to its contact sheet: one per source with 2+ distinct views.

    ``results``: the runner's ItemResults with data; ``decode``: bytes -> RGB array; ``group``: result -> source name.
    One source writes ``turntable.webp``, several write ``<name>_turntable.webp``."""
    by_source: dict[str, list] = {}
    for r in results:
        if r.data is not None:
            by_source.setdefault(group(r), []).append(r)
    written = []
    for name, items in by_source.items():
        if len({r.spec.view for r in items}) < 2:
            continue
        order = orbit_order([(r.spec.view, r.spec.angle, r.spec.shot) for r in items])
        path = out / (NAME if len(by_source) == 1 else f"{name}_{NAME}")
        written.append(write_turntable([decode(items[i].data) for i in order], path))
    return written
