"""nodes/codec.py: IMAGE tensor <-> bytes."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, JpegImagePlugin

from nodes.core.batch import fit_batch, to_tensor
from nodes.core.codec import (
    DEFAULT_FORMAT,
    UPLOAD_FORMATS,
    EncodedImage,
    decode,
    encode,
    image_items,
    prepare,
)
from nodes.runflow.errors import InputError, ResultError

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample.png"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """Photo-like content: the bundled product shot (gradients, texture, edges, noise)."""
    return np.array(Image.open(SAMPLE).convert("RGB"))  # a writable copy (torch.from_numpy warns otherwise)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


# ---- round trips ------------------------------------------------------------------------------------------------


def test_upload_formats_tuple_is_frozen():
    assert UPLOAD_FORMATS == ("auto", "jpeg", "webp", "png")
    assert DEFAULT_FORMAT in UPLOAD_FORMATS and DEFAULT_FORMAT != "auto"


def test_default_format_round_trip_is_high_quality_and_small(photo):
    tensor = torch.from_numpy(photo).float().div(255)[None]
    (item,) = image_items(tensor)
    enc = encode(item)
    assert isinstance(enc, EncodedImage)
    assert enc.mime == "image/jpeg" and enc.extension == "jpg"
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(enc.data))) == 0  # 4:4:4: colour edges kept
    assert (enc.width, enc.height) == (768, 768) and enc.notes == []
    assert enc.sha256 == hashlib.sha256(enc.data).hexdigest()
    back = decode_to_tensor(enc.data)
    assert back.shape == (1, 768, 768, 3) and back.dtype == torch.float32
    out = (back[0].numpy() * 255).round().astype(np.uint8)
    assert psnr(photo, out) >= 40
    assert len(png_bytes(Image.fromarray(photo))) / len(enc.data) >= 4  # the product goal, on bytes


def test_png_round_trip_is_exact(photo):
    tensor = torch.from_numpy(photo[:100, :130]).float().div(255)[None]
    enc = encode(image_items(tensor)[0], fmt="png")
    assert enc.mime == "image/png" and enc.data.startswith(b"\x89PNG")
    assert torch.equal(decode_to_tensor([enc.data]), tensor)


def test_webp_round_trip(photo):
    enc = encode(photo, fmt="webp")
    assert enc.mime == "image/webp" and enc.data[8:12] == b"WEBP"
    assert psnr(photo, decode(enc.data)) >= 40


def test_uint8_float_uint8_is_exact():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    (item,) = image_items(torch.from_numpy(values).float() / 255)
    assert np.array_equal(item, values[0])  # rounding, not truncation


def test_unknown_format_refused(photo):
    with pytest.raises(InputError, match="gif"):
        encode(photo, fmt="gif")


# ---- shapes, channels, dtypes ------------------------------------------------------------------------------------


def test_three_dim_tensor_is_a_batch_of_one():
    items = image_items(torch.zeros(5, 7, 3))
    assert len(items) == 1 and items[0].shape == (5, 7, 3) and items[0].dtype == np.uint8


def test_batch_splits_in_order():
    t = torch.stack([torch.full((4, 4, 3), v) for v in (0.0, 0.5, 1.0)])
    assert [int(i[0, 0, 0]) for i in image_items(t)] == [0, 128, 255]


def test_rgba_composited_over_white():
    t = torch.zeros(1, 2, 2, 4)
    t[0, 0, 0] = torch.tensor([1.0, 0, 0, 0.0])  # transparent red -> white
    t[0, 0, 1] = torch.tensor([1.0, 0, 0, 0.5])  # half red -> pink
    t[0, 1, :] = torch.tensor([0.0, 0, 1, 1.0])  # opaque blue stays blue
    notes: list[str] = []
    (item,) = image_items(t, notes)
    assert item[0, 0].tolist() == [255, 255, 255]
    assert item[0, 1].tolist() == [255, 128, 128]
    assert item[1, 0].tolist() == [0, 0, 255]
    assert notes == ["RGBA composited over white"]


def test_opaque_rgba_needs_no_note():
    notes: list[str] = []
    image_items(torch.ones(1, 3, 3, 4), notes)
    assert notes == []


def test_grey_and_grey_alpha():
    (grey,) = image_items(torch.full((1, 2, 2, 1), 0.2))
    assert grey.shape == (2, 2, 3) and (grey == 51).all()
    ga = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])  # 1x1x2x2: transparent black, opaque black
    notes: list[str] = []
    (item,) = image_items(ga, notes)
    assert item[0, 0].tolist() == [255, 255, 255] and item[0, 1].tolist() == [0, 0, 0]
    assert notes == ["grey+alpha composited over white"]


@pytest.mark.parametrize("shape", [(1, 4, 4, 5), (1, 3, 64, 64), (2, 8, 8, 16)])
def test_too_many_channels_names_the_shape(shape):
    with pytest.raises(InputError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        image_items(torch.zeros(shape))


def test_wrong_rank_refused():
    with pytest.raises(InputError, match="shape"):
        image_items(torch.zeros(8, 8))
    with pytest.raises(InputError, match="IMAGE tensor"):
        image_items("not an image")


def test_empty_batch():
    with pytest.raises(InputError, match="the image batch is empty"):
        image_items(torch.zeros(0, 64, 64, 3))


@pytest.mark.parametrize("shape", [(1, 0, 8, 3), (1, 8, 0, 3)])
def test_zero_size_refused(shape):
    with pytest.raises(InputError, match="no pixels"):
        image_items(torch.zeros(shape))


def test_one_by_one_is_valid():
    (item,) = image_items(torch.tensor([[[[0.2, 0.4, 0.6]]]]))
    enc = encode(item, fmt="png")
    assert (enc.width, enc.height) == (1, 1)
    assert decode(enc.data).tolist() == [[[51, 102, 153]]]
    assert decode(encode(item).data).shape == (1, 1, 3)


def test_nan_inf_and_out_of_range_clipped_with_notes():
    t = torch.full((1, 1, 8, 3), 0.5)
    t[0, 0, 0, 0] = float("nan")
    t[0, 0, 1, 0] = float("inf")
    t[0, 0, 2, 0] = float("-inf")
    t[0, 0, 3, 0] = 1.5
    t[0, 0, 4, 0] = -0.2
    t[0, 0, 5, 0] = 1.0000001  # float noise from upstream nodes: not worth a note
    before = t.clone()
    notes: list[str] = []
    (item,) = image_items(t, notes)
    assert item[0, :6, 0].tolist() == [0, 255, 0, 255, 0, 255]
    assert notes == ["3 NaN/inf values clipped", "2 values outside 0..1 clipped"]
    assert torch.equal(t.isnan(), before.isnan()) and torch.equal(t.nan_to_num(), before.nan_to_num())  # untouched


def test_integer_and_other_dtypes():
    u8 = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    assert image_items(u8)[0].tolist() == [[[0, 128, 255]]]
    u16 = np.array([[[[0, 32896, 65535]]]], dtype=np.uint16)
    assert image_items(u16)[0].tolist() == [[[0, 128, 255]]]
    assert image_items(np.ones((1, 1, 1, 3), dtype=bool))[0].tolist() == [[[255, 255, 255]]]
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        assert image_items(torch.full((1, 1, 1, 3), 0.5, dtype=dtype))[0].tolist() == [[[128, 128, 128]]]
    assert image_items(np.full((2, 2, 3), 0.25, dtype=np.float64))[0][0, 0].tolist() == [64, 64, 64]


# ---- size limits -------------------------------------------------------------------------------------------------


def test_8192_square_downscaled_to_4096_with_note():
    big = np.zeros((8192, 8192, 3), np.uint8)
    big[:, 4096:] = 200  # something to resample
    enc = encode(big)
    assert (enc.width, enc.height) == (4096, 4096)
    assert decode(enc.data).shape == (4096, 4096, 3)
    assert enc.notes == ["downscaled 8192\u00d78192 \u2192 4096\u00d74096 (Runflow's limit is 4096 px per side)"]


def test_downscale_keeps_aspect():
    item, notes = prepare(np.zeros((1000, 5000, 3), np.uint8), max_side=4096)
    assert item.shape == (819, 4096, 3) and "5000\u00d71000 \u2192 4096\u00d7819" in notes[0]
    item, notes = prepare(np.zeros((300, 200, 3), np.uint8), max_side=4096)
    assert item.shape == (300, 200, 3) and notes == []


def test_prepare_refuses_a_batch():
    with pytest.raises(InputError, match="batch of 2"):
        prepare(np.zeros((2, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_over_max_bytes_is_reencoded_to_fit(fmt):
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    assert len(encode(noise, fmt=fmt).data) > 150_000
    enc = encode(noise, fmt=fmt, max_bytes=150_000)
    assert len(enc.data) <= 150_000
    assert decode(enc.data).shape == (enc.height, enc.width, 3)
    assert len(enc.notes) == 1 and enc.notes[0].startswith("re-encoded as") and "150,000-byte" in enc.notes[0]


def test_impossible_max_bytes_refused():
    with pytest.raises(InputError, match="cannot be encoded under 100 bytes"):
        encode(np.full((64, 64, 3), 7, np.uint8), max_bytes=100)


# ---- decoding results --------------------------------------------------------------------------------------------


def test_exif_orientation_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 20))  # stored left edge red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode(buf.getvalue())
    assert out.shape == (40, 20, 3)  # transposed: 20 wide, 40 high
    assert out[2, 10, 0] > 200 and out[2, 10, 2] < 60  # the red edge is now on top
    assert out[37, 10, 2] > 200


def test_decompression_bomb_refused_quickly():
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")  # 400 MP declared, ~50 kB on disk
    assert len(buf.getvalue()) < 200_000
    t0 = time.perf_counter()
    with pytest.raises(ResultError, match="safety limit"):
        decode(buf.getvalue())
    assert time.perf_counter() - t0 < 1.0


def test_declared_size_checked_against_our_limit_before_decoding():
    saved = Image.MAX_IMAGE_PIXELS
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, "PNG")  # 81 MP: under Pillow's limit, over ours (64 MP)
    with pytest.raises(ResultError, match="9000\u00d79000"):
        decode(buf.getvalue())
    with pytest.raises(ResultError, match="safety limit"):
        decode(png_bytes(Image.new("RGB", (100, 100))), max_pixels=5000)
    assert decode(png_bytes(Image.new("RGB", (100, 50))), max_pixels=5000).shape == (50, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == saved  # the global is left alone


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_result(photo, fmt, monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, fmt)
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(ResultError, match="the result image is truncated or corrupt"):
        decode(cut)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what some other node packs do globally
    with pytest.raises(ResultError, match="the result image is truncated or corrupt"):
        decode(cut)


def test_not_an_image():
    with pytest.raises(ResultError, match=r"not an image \(starts with b'<htm'\)"):
        decode(b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(ResultError, match="empty"):
        decode(b"")
    with pytest.raises(ResultError, match="truncated or corrupt"):
        decode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # right magic, garbage body


def test_decode_formats_and_modes():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert (decode(png_bytes(rgba)) == 255).all()  # transparent -> white
    assert decode(png_bytes(Image.new("L", (3, 2), 77))).tolist() == [[[77] * 3] * 3] * 2
    i16 = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert (decode(png_bytes(i16)) == 255).all()
    for fmt in ("GIF", "BMP", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (6, 5), (0, 0, 0)).save(buf, fmt)
        out = decode(buf.getvalue())
        assert out.shape == (5, 6, 3) and out.dtype == np.uint8 and out.max() < 10


# ---- batching ----------------------------------------------------------------------------------------------------


def test_to_tensor_and_size_mismatch():
    t = to_tensor([np.full((2, 3, 3), 255, np.uint8)] * 2)
    assert t.shape == (2, 2, 3, 3) and t.dtype == torch.float32 and float(t.max()) == 1.0
    with pytest.raises(ValueError, match="fit_batch"):
        to_tensor([np.zeros((2, 3, 3), np.uint8), np.zeros((3, 2, 3), np.uint8)])


def test_fit_batch_pads_with_white_by_default():
    a = np.zeros((48, 64, 3), np.uint8)
    sq = np.zeros((32, 32, 3), np.uint8)
    t, note = fit_batch([a, sq, a])
    assert t.shape == (3, 48, 64, 3)
    assert note == "fitted (scaled, white padding) 1 of 3 results to 64\u00d748 to form one batch"
    padded = t[1]
    assert float(padded[:, :7].min()) == 1.0 and float(padded[:, -7:].min()) == 1.0  # white bars left and right
    assert float(padded[:, 9:55].max()) == 0.0  # the content: 48x48, undistorted, centred


def test_fit_batch_resize_and_no_op():
    a, b = np.zeros((48, 64, 3), np.uint8), np.full((10, 10, 3), 9, np.uint8)
    t, note = fit_batch([a, b, b], mode="resize")
    assert t.shape == (3, 48, 64, 3) and note == "resized 2 of 3 results to 64\u00d748 to form one batch"
    assert abs(float(t[1].mean()) * 255 - 9) < 0.5  # stretched, no padding
    assert fit_batch([a, a])[1] is None
    with pytest.raises(ValueError):
        fit_batch([a], mode="crop")


def decode_to_tensor(data, notes: list[str] | None = None):
    """What the nodes do with results: decode each, fit them into one batch (noting any fitting)."""
    blobs = [data] if isinstance(data, bytes) else list(data)
    tensor, note = fit_batch([decode(b) for b in blobs])
    if note and notes is not None:
        notes.append(note)
    return tensor


def test_decode_list_reports_fitting():
    blobs = [png_bytes(Image.new("RGB", (8, 4))), png_bytes(Image.new("RGB", (4, 4)))]
    notes: list[str] = []
    t = decode_to_tensor(blobs, notes=notes)
    assert t.shape == (2, 4, 8, 3) and len(notes) == 1 and "1 of 2" in notes[0]
