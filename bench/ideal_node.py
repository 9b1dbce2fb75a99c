"""A bench-only ComfyUI node: the floor for "LoadImage -> a remote-render node -> SaveImage" (bench/comfy_bench.py).

``RunflowBenchIdeal`` waits ``seconds`` (the run time T) without touching the network, then decodes a result file the
way any node must (bytes -> RGB float tensor). What is left of a prompt's wall time beyond T is ComfyUI's own work
(queueing, LoadImage, SaveImage, history) plus one decode: what no node pack can go under. The bench links this file
into ComfyUI's custom_nodes for its rounds and removes it afterwards; it is never part of the pack.
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
                             "seconds": ("FLOAT", {"default": 3.0}), "seed": ("INT", {"default": 0})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "runflow/bench"

    async def run(self, image, result, seconds, seed):
        await asyncio.sleep(seconds)
        with Image.open(result) as im:
            pixels = np.asarray(im.convert("RGB"))
        return (torch.from_numpy(pixels).unsqueeze(0).float().div_(255.0),)


NODE_CLASS_MAPPINGS = {"RunflowBenchIdeal": RunflowBenchIdeal}
