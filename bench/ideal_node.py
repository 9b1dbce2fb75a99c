"""A bench-only ComfyUI node: the floor for "LoadImage -> a remote-render node -> SaveImage" (bench/comfy_bench.py).

``RunflowBenchIdeal`` waits ``seconds`` (the run time T) without touching the network, then returns a batch of
``count`` copies of a result it decoded once, ahead (no download, no decode, no allocation in the timed prompt).
What is left of a prompt's wall time beyond T is ComfyUI's own work (queueing, LoadImage, SaveImage, history): a
floor no node that fetches a remote result can go under.
The bench links this file into ComfyUI's custom_nodes for its rounds and removes it afterwards; it is never part of
the pack.
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch
from PIL import Image


class RunflowBenchIdeal:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "result": ("STRING", {"default": ""}),
                             "seconds": ("FLOAT", {"default": 3.0}), "seed": ("INT", {"default": 0}),
                             "count": ("INT", {"default": 1, "min": 1, "max": 64})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "runflow/bench"

    async def run(self, image, result, seconds, seed, count=1):
        await asyncio.sleep(seconds)
        return (_READY[(result, count)],)

    @classmethod
    def VALIDATE_INPUTS(cls, result, count, **_):
        if (result, count) not in _READY:  # decoded when the prompt is queued, not while it is timed
            with Image.open(result) as im:
                one = torch.from_numpy(np.asarray(im.convert("RGB"))).float().div_(255.0)
            _READY[(result, count)] = one.unsqueeze(0).repeat(count, 1, 1, 1)
        return True


_READY: dict = {}  # bench-only node, one process: the decoded results it hands out


NODE_CLASS_MAPPINGS = {"RunflowBenchIdeal": RunflowBenchIdeal}
