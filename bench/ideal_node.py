"""A bench-only ComfyUI node: the floor for "LoadImage -> a remote-render node -> SaveImage" (bench/comfy_bench.py).

``RunflowBenchIdeal`` waits ``seconds`` (the run time T) without touching the network, then decodes a result file
``count`` times the way any node must (bytes -> RGB float tensor batch). What is left of a prompt's wall time beyond
T is ComfyUI's own work (queueing, LoadImage, SaveImage, history) plus the decodes: what no node pack can go under.
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
        items = []
        for _ in range(count):  # each result is its own download: decode each (as a batch node must)
            with Image.open(result) as im:
                items.append(torch.from_numpy(np.asarray(im.convert("RGB"))))
        return (torch.stack(items).float().div_(255.0),)


NODE_CLASS_MAPPINGS = {"RunflowBenchIdeal": RunflowBenchIdeal}
