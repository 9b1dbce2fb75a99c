"""The sandbox's stand-in for the Multi Angles model: a cheap, deterministic, clearly-labelled "re-render".

It is not a 3D model. It warps the source like a card seen from the requested pose so that every one of the 96
poses looks different and the pose is readable at a glance:

- view: the card turns about its vertical axis (perspective, shift, side shading), back views are mirrored, and the
  hue rotates by the view's azimuth in degrees, so the 8 views differ visibly;
- angle: vertical squash, shift and keystone (low angle: narrow top; high angle: narrow bottom);
- shot: close-up zooms in x1.6, wide shot pulls out to x0.55 over a neutral backdrop;
- a band with the pose text (and the prompt, truncated), a small top-down compass and a "SANDBOX" mark.

Same bytes + same input fields -> byte-identical WebP. stdlib + Pillow + numpy only.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from ..runflow.contract import (
    ANGLE_ELEVATION,
    DEFAULT_ANGLE,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_SHOT,
    MAX_SIDE,
    VIEW_AZIMUTH,
)

LONG_SIDE = 1024  # output long side; 1024x1024 is ~1 MP
SHOT_ZOOM = {"close-up": 1.6, "medium shot": 1.0, "wide shot": 0.55}
POSE_FIELDS = ("view", "angle", "shot", "prompt", "match_input_aspect", "aspect_ratio")
WEBP_QUALITY = 90


class InputImageError(Exception):
    """The run's input image cannot be used; ``code`` becomes the run's failure_code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RenderResult:
    data: bytes
    width: int
    height: int
    seed: int
    mime_type: str = "image/webp"


def seed_for(data: bytes, fields: dict) -> int:
    """A stable 31-bit seed from the image bytes and the pose fields (reproducible across processes)."""
    pose = {k: fields.get(k) for k in POSE_FIELDS}
    digest = hashlib.sha256(data + json.dumps(pose, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def load_input_image(data: bytes) -> Image.Image:
    """Decode and check an input image like the model's preprocess stage does."""
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InputImageError("INPUT_VALIDATION_FAILED", f"image dimensions exceed {MAX_SIDE}x{MAX_SIDE}") from exc
    except Exception as exc:
        raise InputImageError("INPUT_VALIDATION_FAILED", "input is not a decodable image") from exc
    if im.width > MAX_SIDE or im.height > MAX_SIDE:
        raise InputImageError("INPUT_VALIDATION_FAILED", f"image dimensions exceed {MAX_SIDE}x{MAX_SIDE}")
    try:
        im.load()
    except Exception as exc:
        raise InputImageError("INPUT_VALIDATION_FAILED", "input is not a decodable image") from exc
    return im


def output_size(input_size: tuple[int, int], match_input_aspect: str | None, aspect_ratio: str | None,
                long_side: int = LONG_SIDE):
    """(w, h): long side ``long_side`` (1024: about 1 MP), multiples of 8; input aspect unless match_input_aspect ==
    "false"."""
    if match_input_aspect == "false":
        a, b = (aspect_ratio or DEFAULT_ASPECT_RATIO).split(":")
        aspect = int(a) / int(b)
    else:
        aspect = input_size[0] / max(1, input_size[1])
    aspect = min(4.0, max(0.25, aspect))
    if aspect >= 1:
        return long_side, max(8, round(long_side / aspect / 8) * 8)
    return max(8, round(long_side * aspect / 8) * 8), long_side


def render_pose(data: bytes, fields: dict, long_side: int = LONG_SIDE) -> RenderResult:
    """Render the stand-in result for one run. Raises InputImageError for unusable input."""
    src = _flatten(load_input_image(data))
    view = fields.get("view") or "front view"
    angle = fields.get("angle") or DEFAULT_ANGLE
    shot = fields.get("shot") or DEFAULT_SHOT
    azimuth = VIEW_AZIMUTH.get(view, 0)
    elevation = ANGLE_ELEVATION.get(angle, 0)
    w, h = output_size(src.size, fields.get("match_input_aspect"), fields.get("aspect_ratio"), long_side)

    card = ImageOps.fit(src, (w, h), method=Image.Resampling.BICUBIC)
    if 90 < azimuth < 270:
        card = ImageOps.mirror(card)
    card = _shade_sides(_rotate_hue(card, azimuth), azimuth)

    quad = _pose_quad(azimuth, elevation, SHOT_ZOOM.get(shot, 1.0))
    dst = [((x + 1) / 2 * w, (y + 1) / 2 * h) for x, y in quad]
    coeffs = _perspective_coeffs(dst, [(0, 0), (w, 0), (w, h), (0, h)])
    warped = card.convert("RGBA").transform((w, h), Image.Transform.PERSPECTIVE, coeffs,
                                            Image.Resampling.BICUBIC, fillcolor=(0, 0, 0, 0))

    canvas = _backdrop(w, h)
    shadow_alpha = warped.getchannel("A").filter(ImageFilter.GaussianBlur(max(2, w // 80)))
    shadow = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    shadow.putalpha(shadow_alpha.point(lambda v: v * 45 // 100))
    canvas.alpha_composite(shadow, (0, max(2, h // 60)))
    canvas.alpha_composite(warped)

    _annotate(canvas, view, angle, shot, fields.get("prompt") or "", azimuth)
    buf = io.BytesIO()
    canvas.convert("RGB").save(buf, "WEBP", quality=WEBP_QUALITY, method=4)
    return RenderResult(buf.getvalue(), w, h, seed_for(data, fields))


# -- geometry ----------------------------------------------------------------------------------------------------


def _pose_quad(azimuth: float, elevation: float, zoom: float):
    """Corners (TL, TR, BR, BL) of the card in [-1, 1] output coordinates for a pose."""
    sa, ca = math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))
    el = elevation / 60.0
    wx, dx = 0.62 + 0.38 * abs(ca), -0.18 * sa  # turn: narrower and shifted toward the far side
    hl, hr = 1 + 0.22 * sa, 1 - 0.22 * sa  # near edge taller
    hy, dy = 1 - 0.25 * abs(el), 0.10 * el  # tilt: squash, and look down -> subject sits lower
    tw, bw = 1 + 0.2 * el, 1 - 0.2 * el  # keystone: the edge nearer the camera is wider
    fit = min(1.0, 1 / (abs(dx) + wx * max(tw, bw)), 1 / (abs(dy) + hy * max(hl, hr)))
    s = fit * zoom
    corners = [(dx - wx * tw, dy - hy * hl), (dx + wx * tw, dy - hy * hr),
               (dx + wx * bw, dy + hy * hr), (dx - wx * bw, dy + hy * hl)]
    return [(x * s, y * s) for x, y in corners]


def _perspective_coeffs(dst, src):
    """PIL PERSPECTIVE data mapping output points ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


# -- pixels ------------------------------------------------------------------------------------------------------


def _flatten(im: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over neutral grey."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return im.convert("RGB")


def _rotate_hue(im: Image.Image, degrees: float) -> Image.Image:
    shift = round(degrees / 360 * 256) % 256
    if not shift:
        return im
    hsv = np.array(im.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.uint16) + shift) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _shade_sides(im: Image.Image, azimuth: float) -> Image.Image:
    """Darken the far side of a turned card."""
    sa = math.sin(math.radians(azimuth))
    if abs(sa) < 1e-6:
        return im
    w = im.width
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)
    if sa < 0:
        ramp = ramp[::-1]
    factor = 1.0 - 0.35 * abs(sa) * ramp
    arr = np.asarray(im, dtype=np.float32) * factor[None, :, None]
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _backdrop(w: int, h: int) -> Image.Image:
    top, bottom = np.array([64, 68, 76], np.float32), np.array([28, 30, 35], np.float32)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    col = top * (1 - t) + bottom * t
    arr = np.repeat(col[:, None, :], w, axis=1)
    rgb = Image.fromarray((arr + 0.5).astype(np.uint8), "RGB")
    return rgb.convert("RGBA")


@functools.lru_cache(maxsize=16)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, max_width: float) -> str:
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > max_width:
        text = text[:-1]
    return text.rstrip() + "\u2026"


def _annotate(canvas: Image.Image, view: str, angle: str, shot: str, prompt: str, azimuth: float) -> None:
    w, h = canvas.size
    unit = max(10, min(w, h) // 30)
    big, small = _font(unit), _font(max(9, unit * 3 // 4))
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    pad = unit // 2

    # Bottom band: pose text, then the prompt.
    lines = [(f"{view} \u00b7 {angle} \u00b7 {shot}", big, (255, 255, 255, 255))]
    if prompt:
        lines.append((f"\u201c{prompt}\u201d", small, (215, 220, 228, 255)))
    band_h = pad * 2 + sum(int(f.size * 1.35) for _, f, _ in lines)
    draw.rectangle((0, h - band_h, w, h), fill=(0, 0, 0, 150))
    y = h - band_h + pad
    for text, font, fill in lines:
        draw.text((pad * 2, y), _fit_text(draw, text, font, w - pad * 4), font=font, fill=fill)
        y += int(font.size * 1.35)

    # Corner badge.
    label = "SANDBOX"
    tw = draw.textlength(label, font=big)
    draw.rounded_rectangle((pad, pad, pad * 3 + tw, pad * 2 + int(unit * 1.3)), radius=pad,
                           fill=(255, 140, 0, 235))
    draw.text((pad * 2, pad + pad // 2), label, font=big, fill=(25, 25, 25, 255))

    # Top-down compass: subject in the middle, camera dot on the ring (front = bottom, clockwise from above).
    r = max(8, min(w, h) // 16)
    cx, cy = w - pad - r - 2, pad + r + 2
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(255, 255, 255, 170), width=max(1, unit // 10))
    draw.ellipse((cx - r // 5, cy - r // 5, cx + r // 5, cy + r // 5), fill=(255, 255, 255, 200))
    ax, ay = cx - r * math.sin(math.radians(azimuth)), cy + r * math.cos(math.radians(azimuth))
    draw.line((ax, ay, cx, cy), fill=(255, 140, 0, 220), width=max(1, unit // 8))
    dot = max(3, r // 4)
    draw.ellipse((ax - dot, ay - dot, ax + dot, ay + dot), fill=(255, 140, 0, 255))
    canvas.alpha_composite(overlay)

    # Faint diagonal watermark so a sandbox image is never mistaken for a real render.
    mark = Image.new("RGBA", (int(w * 0.9), unit * 5), (0, 0, 0, 0))
    mdraw = ImageDraw.Draw(mark)
    mfont = _font(unit * 4)
    mw = mdraw.textlength(label, font=mfont)
    mdraw.text(((mark.width - mw) / 2, unit // 2), label, font=mfont, fill=(255, 255, 255, 34))
    mark = mark.rotate(math.degrees(math.atan2(h, w)), resample=Image.Resampling.BICUBIC, expand=True)
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    layer.paste(mark, ((w - mark.width) // 2, (h - mark.height) // 2))  # paste clips what overflows
    canvas.alpha_composite(layer)


# -- hostile payloads for fault injection ------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG declaring width x height pixels that is small on the wire (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts, block = [], row * 512
    for start in range(0, height, 512):
        parts.append(comp.compress(block if height - start >= 512 else row * (height - start)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
