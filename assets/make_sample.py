"""Regenerate the bundled sample image: a procedural "product photo" of a glazed mug and a ball.

No network, no data files: a small numpy ray-marcher renders a studio shot (gradient backdrop, soft shadows,
glossy highlights, glaze texture, sensor noise). Deterministic: the same size always gives the same pixels.

    python assets/make_sample.py [--size 768] [--out assets/sample.png]

``make_sample(width, height)`` is also used by ``bench/encode_bench.py`` to make photo-like test content.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# ---- scene (world units, y up, floor at y=0) -------------------------------------------------------------------
CAM_POS = np.array([0.1, 2.7, 6.6])
CAM_TARGET = np.array([0.2, 0.6, 0.1])
FOV_DEG = 27.0
LIGHT_DIR = np.array([-0.5, 0.7, 0.65]) / np.linalg.norm([-0.5, 0.7, 0.65])  # key light, upper left front
MUG_C = np.array([-0.45, 0.0, -0.05])  # mug base centre
MUG_R, MUG_H, MUG_WALL = 0.62, 1.25, 0.055
MUG_YAW = np.radians(-35.0)  # handle turned toward the camera's right-front: a 3/4 product view
BALL_C, BALL_R = np.array([0.95, 0.42, 0.55]), 0.42


def _hash_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Trilinear value noise at world points p[..., 3] (resolution-independent texture)."""
    rng = np.random.default_rng(seed)
    lattice = rng.random((64, 64, 64), dtype=np.float32)
    i = np.floor(p).astype(np.int64)
    f = p - i
    f = f * f * (3 - 2 * f)  # smoothstep fade: no grid artefacts
    out = 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[..., 0] if dx else 1 - f[..., 0]) * (f[..., 1] if dy else 1 - f[..., 1])
                w = w * (f[..., 2] if dz else 1 - f[..., 2])
                out = out + w * lattice[(i[..., 0] + dx) % 64, (i[..., 1] + dy) % 64, (i[..., 2] + dz) % 64]
    return out


def _fbm(p: np.ndarray, seed: int, octaves: int = 4) -> np.ndarray:
    total, amp = 0.0, 0.5
    for o in range(octaves):
        total = total + amp * _hash_noise(p * (2.0**o), seed + o)
        amp *= 0.5
    return total


def _mug_local(p: np.ndarray) -> np.ndarray:
    q = p - MUG_C
    c, s = np.cos(MUG_YAW), np.sin(MUG_YAW)
    return np.stack([c * q[..., 0] - s * q[..., 2], q[..., 1], s * q[..., 0] + c * q[..., 2]], axis=-1)


def _sdf(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to the scene objects and a material id (1 = mug, 2 = ball)."""
    q = _mug_local(p)
    r = np.hypot(q[..., 0], q[..., 2])
    # hollow capped cylinder with slightly rounded rims
    outer = np.maximum(r - MUG_R, np.abs(q[..., 1] - MUG_H / 2) - MUG_H / 2)
    inner = np.maximum(r - (MUG_R - MUG_WALL), 0.12 - q[..., 1])
    body = np.maximum(outer, -inner) - 0.012
    # handle: a torus in the local xy plane, outside the body only
    hx, hy = q[..., 0] - (MUG_R + 0.05), q[..., 1] - 0.66
    ring = np.hypot(np.hypot(hx, hy) - 0.30, q[..., 2]) - 0.07
    ring = np.maximum(ring, (MUG_R - 0.03) - q[..., 0])
    mug = np.minimum(body, ring)
    ball = np.linalg.norm(p - BALL_C, axis=-1) - BALL_R
    return np.minimum(mug, ball), np.where(mug < ball, 1, 2)


def _normal(p: np.ndarray) -> np.ndarray:
    e = 1e-3
    n = np.stack([_sdf(p + d)[0] - _sdf(p - d)[0] for d in np.eye(3) * e], axis=-1)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)


def _march(ro: np.ndarray, rd: np.ndarray, t_max: np.ndarray, steps: int = 96) -> np.ndarray:
    """Sphere-trace rays; returns hit distance or inf. Only still-active rays are evaluated (fast)."""
    t = np.full(len(ro), 0.0)
    hit = np.full(len(ro), np.inf)
    active = np.arange(len(ro))
    for _ in range(steps):
        if not active.size:
            break
        d, _m = _sdf(ro[active] + rd[active] * t[active, None])
        done = d < 1e-3 * (1 + t[active])
        hit[active[done]] = t[active[done]]
        t[active] += d
        active = active[~done & (t[active] < t_max[active])]
    return hit


def _soft_shadow(p: np.ndarray, k: float = 9.0, steps: int = 48) -> np.ndarray:
    """Penumbra factor toward the key light (1 = lit), the classic SDF soft-shadow estimate."""
    res = np.ones(len(p))
    t = np.full(len(p), 0.02)
    active = np.arange(len(p))
    for _ in range(steps):
        if not active.size:
            break
        d, _m = _sdf(p[active] + LIGHT_DIR * t[active, None])
        res[active] = np.minimum(res[active], k * d / t[active])
        t[active] += np.clip(d, 0.01, 0.25)
        active = active[(res[active] > 0.001) & (t[active] < 6.0)]
    res = np.clip(res, 0, 1)
    return res * res * (3 - 2 * res)


def _ao(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    occ = np.zeros(len(p))
    for i in range(1, 6):
        h = 0.05 * i
        occ += (h - _sdf(p + n * h)[0]) / (2.0**i)
    return np.clip(1 - 2.2 * occ, 0, 1)


def _backdrop(rd: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Studio sweep: warm grey, brighter behind the subject, darker to the corners."""
    g = np.clip(0.5 + 1.6 * rd[:, 1], 0, 1)[:, None]
    col = (1 - g) * np.array([0.80, 0.78, 0.75]) + g * np.array([0.56, 0.58, 0.62])
    vign = 1 - 0.35 * np.sum(xy**2, axis=-1)
    return col * vign[:, None]


def _env(rd: np.ndarray) -> np.ndarray:
    """What glossy surfaces reflect: a dim studio with one big softbox up-left."""
    base = 0.25 + 0.25 * np.clip(rd[:, 1], 0, 1)
    box = np.clip((rd @ LIGHT_DIR - 0.82) * 12, 0, 1) ** 2 * 2.2
    return (base + box)[:, None] * np.array([1.0, 0.99, 0.97])


def make_sample(width: int = 768, height: int = 768) -> np.ndarray:
    """Render the sample product shot at width x height; returns uint8 HxWx3 RGB (deterministic)."""
    fwd = CAM_TARGET - CAM_POS
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0, 1, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    scale = np.tan(np.radians(FOV_DEG) / 2)
    aspect = width / height
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    sx = ((xs + 0.5) / width * 2 - 1) * scale * max(aspect, 1)
    sy = (1 - (ys + 0.5) / height * 2) * scale * max(1 / aspect, 1)
    xy = np.stack([sx, sy], axis=-1).reshape(-1, 2) / scale
    rd = fwd + sx.reshape(-1, 1) * right + sy.reshape(-1, 1) * up
    rd /= np.linalg.norm(rd, axis=-1, keepdims=True)
    ro = np.broadcast_to(CAM_POS, rd.shape).copy()

    # floor plane y=0 (analytic); objects by sphere tracing up to the floor (or a far cut)
    t_floor = np.where(rd[:, 1] < -1e-6, -ro[:, 1] / np.minimum(rd[:, 1], -1e-6), np.inf)
    t_obj = _march(ro, rd, np.minimum(t_floor, 12.0))
    img = _backdrop(rd, xy)

    # floor: the backdrop colour (seamless sweep) with texture, shadow and contact darkening
    fl = np.isfinite(t_floor) & ~np.isfinite(t_obj)
    fi = np.nonzero(fl)[0]
    pf = ro[fi] + rd[fi] * t_floor[fi, None]
    near = (np.abs(pf[:, 0]) < 3.5) & (pf[:, 2] > -3.5) & (pf[:, 2] < 3.0)
    sh = np.ones(len(fi))
    sh[near] = _soft_shadow(pf[near] + [0, 1e-3, 0])
    ao = np.ones(len(fi))
    ao[near] = _ao(pf[near], np.tile([0.0, 1.0, 0.0], (near.sum(), 1)))
    grain = 0.94 + 0.08 * _fbm(pf * [6, 6, 6], 11)
    fade = np.clip((t_floor[fi] - 4.0) / 6.0, 0, 1)[:, None]  # far floor melts into the sweep
    floor_col = np.array([0.86, 0.84, 0.80]) * grain[:, None] * (0.42 + 0.58 * sh * ao)[:, None]
    img[fi] = (1 - fade) * floor_col + fade * img[fi]

    # objects: Lambert + Blinn-Phong + Fresnel-weighted environment reflection
    oi = np.nonzero(np.isfinite(t_obj))[0]
    po = ro[oi] + rd[oi] * t_obj[oi, None]
    nrm = _normal(po)
    mat = _sdf(po)[1]
    q = _mug_local(po)
    glaze = _fbm(po * 9.0, 3)
    speckle = (_hash_noise(po * 90.0, 7) > 0.93) * 0.25
    mug_col = np.array([0.18, 0.42, 0.50]) * (0.85 + 0.3 * glaze)[:, None]  # teal glaze
    rq = np.hypot(q[:, 0], q[:, 2])
    band = (np.abs(q[:, 1] - 0.95) < 0.07) & (rq > MUG_R - 0.02) & (rq < MUG_R + 0.03)
    mug_col[band] = [0.90, 0.86, 0.78]  # cream stripe
    inside = (q[:, 1] > 0.1) & (np.hypot(q[:, 0], q[:, 2]) < MUG_R - MUG_WALL + 0.01)
    mug_col[inside] *= 0.75
    mug_col -= speckle[:, None] * 0.3
    seam = np.abs(np.sum((po - BALL_C) * [0.6, 0.3, -0.74], axis=-1)) < 0.018  # a moulding seam line
    ball_col = np.array([0.80, 0.36, 0.10]) * (0.8 + 0.35 * glaze)[:, None]  # orange, mottled
    ball_col[seam] *= 0.55
    albedo = np.where((mat == 1)[:, None], mug_col, ball_col)
    lit = np.clip(nrm @ LIGHT_DIR, 0, 1) * _soft_shadow(po + nrm * 2e-3)
    amb = (0.35 + 0.15 * nrm[:, 1]) * _ao(po, nrm)
    half = LIGHT_DIR - rd[oi]
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    spec = np.clip(np.sum(nrm * half, axis=-1), 0, 1) ** 90 * lit * 1.4
    cos_v = np.clip(-np.sum(nrm * rd[oi], axis=-1), 0, 1)
    fres = (0.04 + 0.96 * (1 - cos_v) ** 5)[:, None]
    refl = _env(rd[oi] - 2 * np.sum(rd[oi] * nrm, axis=-1, keepdims=True) * nrm)
    col = albedo * (0.95 * lit + amb)[:, None] + spec[:, None] + fres * refl * 0.6
    img[oi] = col

    img = img.reshape(height, width, 3)
    # simple tone map + gamma, then sensor-like noise (what real product photos carry)
    img = np.clip(img, 0, None)
    img = img / (1 + 0.25 * img)
    img = np.clip(img * 1.15, 0, 1) ** (1 / 1.1)
    rng = np.random.default_rng(1234 + width * 7 + height)
    img = img * 255 + rng.normal(0, 1.6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    """Command line: write the sample PNG."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=768, help="square side in px (default 768)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("sample.png"))
    args = ap.parse_args(argv)
    from PIL import Image

    Image.fromarray(make_sample(args.size, args.size)).save(args.out, "PNG", optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
