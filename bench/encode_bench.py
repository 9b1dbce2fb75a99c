"""Upload-encoding benchmark: PNG (ComfyUI API nodes' ``img.save(buf, "PNG")``) vs JPEG/WebP candidates.

    python bench/encode_bench.py [--sizes 1024x1024,2048x2048] [--repeats 5]

Prints a Markdown table: bytes, median encode ms, bytes and time ratios vs PNG, PSNR vs the source. Content is the
procedural product shot from assets/make_sample.py (smooth gradients, texture, edges, sensor noise) rendered at each
size; it takes a few seconds per size to render. ``run(sizes=...)`` returns the rows for other scripts.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from nodes.core import codec  # noqa: E402

DEFAULT_SIZES = ((1024, 1024), (2048, 2048))  # 1 MP and 4 MP

# (label, Pillow format, save kwargs); the first row is the reference everything is compared with
CANDIDATES = [
    ("PNG (reference)", "PNG", {}),
    ("PNG level 1 (codec 'png')", "PNG", {"compress_level": codec.PNG_COMPRESS_LEVEL}),
    *[(f"JPEG q{q} {'4:4:4' if s == 0 else '4:2:0'}", "JPEG", {"quality": q, "subsampling": s, "optimize": False})
      for q in (90, 95, 97) for s in (0, 2)],
    *[(f"WebP q{q} m{m}", "WEBP", {"quality": q, "method": m}) for q, m in ((90, 0), (90, 2), (95, 0), (95, 4))],
    ("WebP lossless m0", "WEBP", {"lossless": True, "method": 0, "quality": 0}),
]


def _make_sample(width: int, height: int) -> np.ndarray:
    spec = importlib.util.spec_from_file_location("_make_sample", ROOT / "assets" / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_sample(width, height)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of b against a (uint8); inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _time(fn, repeats: int) -> tuple[bytes, float]:
    times, data = [], b""
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = fn()
        times.append(time.perf_counter() - t0)
    return data, statistics.median(times) * 1000


def _save(im: Image.Image, fmt: str, kwargs: dict) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def run(sizes=DEFAULT_SIZES, repeats: int = 5) -> list[dict]:
    """Measure every candidate plus codec.encode(fmt="auto") at each (width, height); returns one dict per row."""
    rows = []
    for w, h in sizes:
        src = _make_sample(w, h)
        im = Image.fromarray(src)
        cases = [(label, (lambda f=fmt, k=kw, i=im: _save(i, f, k))) for label, fmt, kw in CANDIDATES]
        cases.append(("codec.encode auto", lambda s=src: codec.encode(s).data))
        ref_bytes = ref_ms = None
        for label, fn in cases:
            data, ms = _time(fn, repeats)
            dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            if ref_bytes is None:
                ref_bytes, ref_ms = len(data), ms
            rows.append({
                "size": f"{w}x{h}", "megapixels": round(w * h / 1e6, 2), "candidate": label, "bytes": len(data),
                "encode_ms": round(ms, 2), "bytes_ratio": round(ref_bytes / len(data), 2),
                "time_ratio": round(ref_ms / ms, 1), "psnr_db": round(psnr(src, dec), 2),
            })
    return rows


def markdown(rows: list[dict]) -> str:
    """Render rows from run() as a Markdown table."""
    lines = ["| size | candidate | bytes | encode ms | bytes vs PNG | time vs PNG | PSNR dB |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        p = "lossless" if r["psnr_db"] == float("inf") else f"{r['psnr_db']:.2f}"
        lines.append(f"| {r['size']} ({r['megapixels']} MP) | {r['candidate']} | {r['bytes']:,} | {r['encode_ms']:.1f}"
                     f" | {r['bytes_ratio']:.2f}\u00d7 | {r['time_ratio']:.1f}\u00d7 | {p} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description="upload-encoding benchmark")
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in DEFAULT_SIZES), help="e.g. 1024x1024,2048x2048")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per candidate (median is reported)")
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    print(markdown(run(sizes, max(args.repeats, 1))))  # noqa: T201
    print(f"\ndefault ('auto') = {codec.DEFAULT_FORMAT}, JPEG quality {codec.JPEG_QUALITY}, "  # noqa: T201
          f"subsampling {codec.JPEG_SUBSAMPLING} (0 = 4:4:4)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
