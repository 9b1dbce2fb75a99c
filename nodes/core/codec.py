"""ComfyUI IMAGE tensors <-> image bytes: input validation, upload encoding, result decoding, batching.

Pure local (numpy/Pillow; torch only where a tensor is built). Transparency policy, everywhere: alpha is
composited over white, as product shots expect.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..runflow.contract import MAX_SIDE, MAX_UPLOAD_BYTES
from ..runflow.errors import InputError, ResultError

# Default upload encoding: JPEG q95 with 4:4:4 chroma, picked with bench/encode_bench.py on the photo-like sample
# (it prints bytes, encode time and PSNR of every candidate against a plain PNG; README -> Figures has the numbers).
# WebP is smaller but slower and always 4:2:0; JPEG 4:2:0 smears the coloured edges a re-render should keep.
DEFAULT_FORMAT = "jpeg"
JPEG_QUALITY = 95  # Pillow's documented practical maximum; 97 doubles bytes for +0.5 dB
JPEG_SUBSAMPLING = 0  # 4:4:4
WEBP_QUALITY = 95
WEBP_METHOD = 0  # method 4 (Pillow's default) is ~3.7x slower for ~11% fewer bytes
PNG_COMPRESS_LEVEL = 1  # lossless option: 6x faster than level 6 for ~18% more bytes
UPLOAD_FORMATS = ("auto", "jpeg", "webp", "png")  # a combo widget: frozen, append only
MAX_DECODE_PIXELS = MAX_SIDE * MAX_SIDE  # the API's own limit (4096x4096); larger results are refused unread
DECODE_CONCURRENCY = 2  # result decodes at once per process: a turnaround's peak memory is 2 x one decode
COMPOSITE_ROWS = 256  # alpha is composited in strips of this many rows (bounded uint32 scratch)

_MIME = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
_EXT = {"jpeg": "jpg", "webp": "webp", "png": "png"}
_FALLBACK_QUALITIES = (85, 75, 60)  # tried in order when an encoding exceeds max_bytes, before shrinking
_RANGE_TOLERANCE = 0.5 / 255  # overshoot that rounds to the same uint8 anyway is not worth a note
# private to decode(): at most DECODE_CONCURRENCY decodes at once, always on the same few threads (so the C
# allocator's per-thread arenas, which keep freed memory, stay few too: peak memory is DECODE_CONCURRENCY x one)
_DECODE_POOL = ThreadPoolExecutor(max_workers=DECODE_CONCURRENCY, thread_name_prefix="runflow-decode")


@dataclass
class EncodedImage:
    """One upload-ready image: encoded bytes plus what happened to the pixels on the way."""

    data: bytes
    mime: str
    width: int
    height: int
    sha256: str
    notes: list[str] = field(default_factory=list)

    @property
    def extension(self) -> str:
        """File name extension matching ``mime`` ("jpg", "webp", "png")."""
        return {v: _EXT[k] for k, v in _MIME.items()}[self.mime]


# ---- IMAGE tensor -> uint8 items ---------------------------------------------------------------------------------


def _as_numpy(image) -> np.ndarray:
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch.Tensor, without importing torch here
        t = image.detach().cpu()
        if not t.dtype.is_floating_point or t.dtype.itemsize >= 4:
            return t.numpy()
        return t.float().numpy()  # float16/bfloat16: numpy has no bfloat16
    if isinstance(image, np.ndarray):
        return image
    raise InputError(f"expected an IMAGE tensor, got {type(image).__name__}; connect an IMAGE output")


def _to_unit(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """float32 copy in 0..1 plus counts of non-finite and out-of-range values (never mutates the input)."""
    if a.dtype == np.bool_:
        return a.astype(np.float32), 0, 0
    if np.issubdtype(a.dtype, np.integer):
        top = 255.0 if a.dtype == np.uint8 or a.max() <= 255 else 65535.0  # 8-bit, else treat as 16-bit
        bad = int(np.count_nonzero((a < 0) | (a > top)))
        return np.clip(a.astype(np.float32) / top, 0, 1), 0, bad
    f = a.astype(np.float32)  # always a copy, so the caller's tensor stays untouched
    finite = np.isfinite(f)
    nonfinite = int(f.size - np.count_nonzero(finite))
    if nonfinite:
        np.nan_to_num(f, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    oor = int(np.count_nonzero(finite & ((f < -_RANGE_TOLERANCE) | (f > 1 + _RANGE_TOLERANCE))))
    return np.clip(f, 0, 1, out=f), nonfinite, oor


def _item_rgb8(a: np.ndarray) -> tuple[np.ndarray, int, int, bool]:
    """One HxWxC item -> uint8 HxWx3, non-finite count, out-of-range count, whether alpha was composited."""
    c = a.shape[-1]
    if a.dtype == np.uint8 and c == 3:  # the fast path: nothing to fix
        return np.ascontiguousarray(a), 0, 0, False
    if a.dtype == np.float32 and c == 3:  # ComfyUI's own IMAGE: half the passes when all values are fine
        lo, hi = float(a.min()), float(a.max())  # NaN makes both comparisons below false
        if -_RANGE_TOLERANCE <= lo and hi <= 1 + _RANGE_TOLERANCE:
            return _unit_to_rgb8(a), 0, 0, False
    if a.dtype == np.uint8 and c in (2, 4):  # 8-bit with alpha (every decoded result): integer math, no float copy
        rgb, composited = composite_over_white(a)
        return rgb, 0, 0, composited
    f, nonfinite, oor = _to_unit(a)
    alpha = f[..., -1:] if c in (2, 4) else None
    colour = f[..., :3] if c >= 3 else np.repeat(f[..., :1], 3, axis=-1)
    composited = alpha is not None and bool(np.any(alpha < 1))
    if composited:
        colour = colour * alpha + (1 - alpha)  # over white
    # round, not truncate: uint8 -> float -> uint8 must be exact (v/255*255 can be 254.9999)
    return np.rint(colour * 255).astype(np.uint8), nonfinite, oor, composited


STRIP_BYTES = 256 << 10  # float32 scratch per strip: stays in cache, and no fresh full-size float copy to fault in


def _unit_to_rgb8(a: np.ndarray) -> np.ndarray:
    """float32 HxWx3 within 0..1 (give or take the tolerance) -> uint8, strip by strip through one small scratch.

    Same float32 products as clip-then-scale for in-range values, rounded, clipped, then cast: the values of
    ``np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)`` without its two full-size temporaries."""
    h = a.shape[0]
    rows = max(1, min(h, STRIP_BYTES // max(1, a[0].nbytes)))
    out = np.empty(a.shape, np.uint8)
    scratch = np.empty((rows, *a.shape[1:]), np.float32)
    for r0 in range(0, h, rows):
        s = scratch[: min(rows, h - r0)]
        np.multiply(a[r0:r0 + len(s)], np.float32(255.0), out=s)
        np.clip(np.rint(s, out=s), 0, 255, out=s)
        out[r0:r0 + len(s)] = s  # exact integers in 0..255: the cast is exact
    return out


def composite_over_white(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """uint8 HxWx4 (or HxWx2 grey+alpha) -> uint8 HxWx3 over white, in integer math, strip by strip.

    Same values as the float path: round((c*a + 255*(255-a)) / 255) (an exact .5 cannot occur). Scratch memory is
    a few uint32 strips of COMPOSITE_ROWS rows, not a float32 copy of the image."""
    h, w, c = a.shape
    out = np.empty((h, w, 3), np.uint8)
    composited = False
    for y in range(0, h, COMPOSITE_ROWS):
        strip = a[y:y + COMPOSITE_ROWS]
        alpha = strip[..., -1:].astype(np.uint32)
        colour = strip[..., :3] if c == 4 else np.repeat(strip[..., :1], 3, axis=-1)
        if not composited and bool((alpha < 255).any()):
            composited = True
        out[y:y + COMPOSITE_ROWS] = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return out, composited


def image_items(image, notes: list[str] | None = None) -> list[np.ndarray]:
    """Validate a ComfyUI IMAGE ([B,H,W,C] or [H,W,C], torch or numpy) and split it into uint8 RGB HxWx3 arrays.

    C=3 RGB; C=4 RGBA and C=2 grey+alpha are composited over white; C=1 grey is replicated. Floats are 0..1
    (NaN -> 0, +inf -> 1, -inf -> 0, then clipped); uint8 is 0..255, wider integers 0..65535. Batch-level notes
    ("RGBA composited over white", "3 NaN/inf values clipped") are appended to ``notes`` if given.
    """
    a = _as_numpy(image)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise InputError(f"expected an IMAGE shaped [batch, height, width, channels], got shape {tuple(a.shape)}")
    b, h, w, c = a.shape
    if b == 0:
        raise InputError("the image batch is empty; connect a node that outputs at least one image")
    if h == 0 or w == 0:
        raise InputError(f"the image has no pixels ({w}\u00d7{h}); check the node that produced it")
    if c not in (1, 2, 3, 4):
        raise InputError(f"expected 1-4 colour channels last ([B,H,W,C]), got shape {tuple(a.shape)}; "
                         "a channels-first [B,C,H,W] tensor must be permuted first")
    items, nonfinite, oor, composited = [], 0, 0, False
    for i in range(b):
        rgb, nf, bad, comp = _item_rgb8(a[i])
        items.append(rgb)
        nonfinite, oor, composited = nonfinite + nf, oor + bad, composited or comp
    if notes is not None:
        if composited:
            notes.append(("RGBA" if c == 4 else "grey+alpha") + " composited over white")
        if nonfinite:
            notes.append(f"{nonfinite} NaN/inf values clipped")
        if oor:
            notes.append(f"{oor} values outside 0..1 clipped")
    return items


# ---- encode (upload) ---------------------------------------------------------------------------------------------


def _resize(im: Image.Image, w: int, h: int) -> Image.Image:
    # reducing_gap: a cheap box reduce first for big reductions, then LANCZOS; visually identical, much faster
    return im.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)


def prepare(item, *, max_side: int = MAX_SIDE) -> tuple[np.ndarray, list[str]]:
    """Make one item upload-ready: uint8 RGB HxWx3, downscaled to fit max_side (aspect kept); returns notes."""
    notes: list[str] = []
    items = image_items(item, notes)  # same validation and notes as a batch (a uint8 RGB item is not copied)
    if len(items) != 1:
        raise InputError(f"expected one image, got a batch of {len(items)}; encode each item of image_items()")
    a = items[0]
    h, w = a.shape[:2]
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        nw, nh = (max_side, max(1, round(h * s))) if w >= h else (max(1, round(w * s)), max_side)
        a = np.asarray(_resize(Image.fromarray(a), nw, nh))
        notes.append(f"downscaled {w}\u00d7{h} \u2192 {nw}\u00d7{nh} (Runflow's limit is {max_side} px per side)")
    return a, notes


def _save(im: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        # 4:4:4 at the default quality; fallback qualities use 4:2:0 because they are about size
        sub = JPEG_SUBSAMPLING if quality >= JPEG_QUALITY else 2
        im.save(buf, "JPEG", quality=quality, subsampling=sub, optimize=False)
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=quality, method=WEBP_METHOD)
    else:
        im.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def encode(item, *, fmt: str = "auto", max_side: int = MAX_SIDE, max_bytes: int = MAX_UPLOAD_BYTES) -> EncodedImage:
    """Encode one item for upload (downscaled to max_side, re-encoded smaller until it fits max_bytes)."""
    if fmt not in UPLOAD_FORMATS:
        raise InputError(f"unknown upload format {fmt!r}; choose one of {', '.join(UPLOAD_FORMATS)}")
    fmt = DEFAULT_FORMAT if fmt == "auto" else fmt
    a, notes = prepare(item, max_side=max_side)
    im = Image.fromarray(a)
    quality = first = {"jpeg": JPEG_QUALITY, "webp": WEBP_QUALITY}.get(fmt, 0)  # 0: png has no quality
    data = _save(im, fmt, quality)
    fallbacks = [q for q in _FALLBACK_QUALITIES if q < quality]
    shrunk = False
    while len(data) > max_bytes:  # never hand the API something it would reject
        if fallbacks:
            quality = fallbacks.pop(0)
        elif min(im.size) > 16:
            im, shrunk = _resize(im, max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), True
        else:
            raise InputError(f"the image cannot be encoded under {max_bytes:,} bytes; use a smaller image")
        data = _save(im, fmt, quality)
    if quality != first or shrunk:
        how = fmt.upper() + (f" quality {quality}" if quality else "") + f" at {im.width}\u00d7{im.height}"
        limit = f"{max_bytes / 2**20:.0f} MiB" if max_bytes >= 2**20 else f"{max_bytes:,}-byte"
        notes.append(f"re-encoded as {how} to fit the {limit} upload limit")
    return EncodedImage(data, _MIME[fmt], im.width, im.height, hashlib.sha256(data).hexdigest(), notes)


# ---- decode (results) --------------------------------------------------------------------------------------------


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    return None


_CORRUPT = "the result image is truncated or corrupt; run it again (the download was probably cut off)"


def _pil_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float greyscale: scale, don't clip
        g = np.asarray(im, dtype=np.float64)
        g = np.rint(np.clip(g / (65535.0 if g.max() > 255 else 255.0), 0, 1) * 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if "A" in im.mode or "a" in im.mode or "transparency" in im.info:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        w, h = rgba.size
        out = np.empty((h, w, 3), np.uint8)
        for y in range(0, h, COMPOSITE_ROWS):  # over white (same policy as inputs), integer math, strip by strip
            strip = np.asarray(rgba.crop((0, y, w, min(h, y + COMPOSITE_ROWS))))
            out[y:y + strip.shape[0]] = composite_over_white(strip)[0]
        return out
    return np.asarray(im.convert("RGB"))


def decode(data: bytes, *, max_pixels: int = MAX_DECODE_PIXELS) -> np.ndarray:
    """Decode result bytes (PNG/JPEG/WebP/GIF/BMP, sniffed by content) to uint8 RGB HxWx3, EXIF-rotated."""
    data = bytes(data)
    if not data:
        raise ResultError("Runflow returned an empty result image; run it again, and report the run id if it repeats")
    fmt = _sniff(data)
    if fmt is None:
        raise ResultError(f"Runflow returned something that is not an image (starts with {data[:4]!r}); "
                          "run it again, and report the run id if it repeats")
    return _DECODE_POOL.submit(_decode, data, fmt, max_pixels).result()


def _decode(data: bytes, fmt: str, max_pixels: int) -> np.ndarray:
    bomb = f"over the {max_pixels:,}-pixel safety limit; refusing to decode it (report the run id)"
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])  # lazy: reads only the header
        if im.width * im.height > max_pixels:  # checked BEFORE decoding; Pillow's global limit is left alone
            raise ResultError(f"the result image declares {im.width}\u00d7{im.height} pixels, {bomb}")
        # ComfyUI users often have a node pack that sets this global; then Pillow pads truncated files silently
        if ImageFile.LOAD_TRUNCATED_IMAGES and (
            (fmt == "PNG" and b"IEND" not in data[-16:]) or (fmt == "JPEG" and b"\xff\xd9" not in data[-64:])
        ):
            raise ResultError(_CORRUPT)
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF must not lose a paid result: keep it unrotated
            pass
        return _pil_rgb8(im)
    except Image.DecompressionBombError as e:  # Pillow's own hard limit (over 2x its global) at open
        raise ResultError(f"the result image declares far too many pixels, {bomb}") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:  # Pillow's ways of saying "broken"
        raise ResultError(_CORRUPT) from e
