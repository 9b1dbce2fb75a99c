"""Turn what the user gave (an IMAGE batch, image files, a URL) into sources to upload: one way for nodes and CLI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runflow import errors as E
from . import codec
from .cache import pixels_sha256
from .source_memo import SourceMemo
from .spec import check_image_url


@dataclass
class Source:
    """One source image: encoded bytes to upload (with the hash of its pixels for cache keys), or a URL."""

    data: bytes | None = None
    mime: str = "image/png"
    pixel_sha256: str | None = None
    upload_sha256: str | None = None
    url: str | None = None
    notes: list[str] = field(default_factory=list)
    name: str = ""
    size: tuple[int, int] | None = None  # (height, width) of what is uploaded; None for a URL

    @property
    def filename(self) -> str:
        ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(self.mime, "png")
        return f"source-{(self.upload_sha256 or 'x')[:16]}.{ext}"

    @property
    def identity(self) -> str:
        """What names this source in cache keys and receipts: its pixels' hash, or its URL."""
        return self.pixel_sha256 if self.data is not None and self.pixel_sha256 else f"url:{self.url}"


def check_format(fmt: str) -> str:
    if fmt not in codec.UPLOAD_FORMATS:
        raise E.InputError(f"upload_format {fmt!r} is not one of {', '.join(codec.UPLOAD_FORMATS)}")
    return fmt


def from_pixels(pixels: np.ndarray, fmt: str, notes: list[str] | None = None, name: str = "") -> Source:
    """Encode one HxWx3 uint8 item the way Runflow gets it (blocking: call off the event loop)."""
    enc = codec.encode(pixels, fmt=fmt)
    return Source(data=enc.data, mime=enc.mime, pixel_sha256=pixels_sha256(pixels), upload_sha256=enc.sha256,
                  notes=[*(notes or []), *enc.notes], name=name, size=(enc.height, enc.width))


async def from_image(image, fmt: str) -> list[Source]:
    """One Source per item of a ComfyUI IMAGE batch (or any array batch), encoded in worker threads."""
    check_format(fmt)
    notes: list[str] = []
    items = codec.image_items(image, notes)
    return list(await asyncio.gather(*(asyncio.to_thread(from_pixels, item, fmt, notes) for item in items)))


def from_url(name: str, url: str, **hint) -> Source:
    return Source(url=check_image_url(name, url, **hint), name="url")


def from_file(path: Path, fmt: str) -> Source:
    """A local image file, decoded with its EXIF orientation, then encoded like the nodes do."""
    from PIL import Image, ImageOps

    check_format(fmt)
    try:
        with Image.open(path) as im:
            pixels = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except FileNotFoundError:
        raise E.InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise E.InputError(f"{path}: not a readable image ({exc})") from None
    return from_pixels(pixels, fmt, name=path.stem)


async def from_inputs(image, image_url: str, upload_format: str, memo: SourceMemo | None = None) -> list[Source]:
    """The nodes' two source inputs: an IMAGE batch OR an https URL, exactly one of the two. With ``memo``, a tensor
    already converted (another node fed by the same output) is not converted again."""
    url = (image_url or "").strip()
    if image is not None and url:
        raise E.InputError("connect an image OR fill image_url, not both (which one should Runflow use?)")
    if image is None and not url:
        raise E.InputError("no source: connect an IMAGE to the image input, or fill image_url with an https:// URL")
    if url:
        return [from_url("image_url", url)]
    if memo is None:
        return await from_image(image, upload_format)
    check_format(upload_format)
    return await memo.get(image, upload_format, lambda: from_image(image, upload_format))
