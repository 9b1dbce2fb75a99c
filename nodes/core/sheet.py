"""A labelled contact sheet (grid) of images: for turnarounds, in ComfyUI and in the CLI. Free and local."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_HEIGHT = 30
GAP = 8


def contact_sheet(images: list[np.ndarray], labels: list[str], *, columns: int = 4, cell: int = 384,
                  background=(255, 255, 255), text=(20, 20, 20)) -> np.ndarray:
    """uint8 RGB images → one uint8 RGB grid, each image fitted into a ``cell`` square with its label below."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    width = columns * cell + (columns + 1) * GAP
    height = rows * (cell + LABEL_HEIGHT) + (rows + 1) * GAP
    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(12, cell // 22))
    for i, pixels in enumerate(images):
        im = Image.fromarray(pixels)
        im.thumbnail((cell, cell), Image.Resampling.LANCZOS)
        col, row = i % columns, i // columns
        x = GAP + col * (cell + GAP)
        y = GAP + row * (cell + LABEL_HEIGHT + GAP)
        sheet.paste(im, (x + (cell - im.width) // 2, y + (cell - im.height) // 2))
        label = labels[i] if i < len(labels) else ""
        if label:
            box = draw.textbbox((0, 0), label, font=font)
            draw.text((x + (cell - (box[2] - box[0])) // 2, y + cell + 6), label, fill=text, font=font)
    return np.asarray(sheet)
