"""LOAD3D_CAMERA values <-> the multi-angle picker's numbers (horizontal_angle, vertical_angle, zoom).

Conventions (see nodes/core/pose.py for the sources): three.js, Y up; azimuth 0 puts the camera on +Z (the
subject's front), 90 on +X (right side view), i.e. position - target = d * (sin az cos el, sin el, cos az cos el).

Three flavours of camera_info are told apart by their scene:

* jtydhr88/ComfyUI-qwenmultiangle >= 0.6.0 ``_build_camera_info``: target (0, 0.5, 0), ``zoom`` 1 and distance
  2.6 - zoom / 10 * 2 (0.6 .. 2.6): the picker's zoom is read back from the distance.
* ComfyUI core CameraAngle (PR #16251): target (0, 0, 0), distance 6, lens ``zoom`` 1 + zoom / 10 * 0.875: the
  picker's zoom is read back from the lens zoom.
* any other camera (Load3D, whose distances are in the model's own units): direction as above; the distance,
  divided by the lens zoom, is read on the peer picker's scale (2.6 = zoom 0 ... 0.6 = zoom 10), clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..runflow.errors import InputError

PEER_CENTER = (0.0, 0.5, 0.0)
PEER_FAR, PEER_ZOOM_SPAN = 2.6, 2.0
CORE_CENTER = (0.0, 0.0, 0.0)
CORE_DISTANCE, CORE_MIN_ZOOM, CORE_MAX_ZOOM = 6.0, 1.0, 1.875
_EPS = 1e-6


@dataclass(frozen=True)
class CameraAngles:
    """A camera read as the picker's numbers, before snapping. ``source`` names the flavour recognised."""

    horizontal: float
    vertical: float
    zoom: float
    source: str
    notes: tuple[str, ...] = ()


def _vec(info: dict, name: str) -> tuple[float, float, float]:
    value = info.get(name)
    if isinstance(value, dict) and all(k in value for k in "xyz"):
        xyz = (value["x"], value["y"], value["z"])
    elif isinstance(value, (list, tuple)) and len(value) == 3:
        xyz = tuple(value)
    else:
        raise InputError(f"camera_info.{name} must be {{\"x\": .., \"y\": .., \"z\": ..}} (as Load3D and the "
                         f"multi-angle picker emit), got {value!r}")
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in xyz):
        raise InputError(f"camera_info.{name} must hold three finite numbers, got {value!r}")
    return tuple(float(c) for c in xyz)


def is_camera_info(value: object) -> bool:
    return isinstance(value, dict) and "position" in value


def camera_to_angles(info: dict) -> CameraAngles:
    """Azimuth/elevation/zoom of a LOAD3D_CAMERA value, in the peer picker's units (rounded to 1e-6 so values it
    emitted from whole degrees land back on them, not a float hair below a threshold)."""
    pos, target = _vec(info, "position"), _vec(info, "target")
    lens = info.get("zoom", 1)
    if isinstance(lens, bool) or not isinstance(lens, (int, float)) or not math.isfinite(lens) or lens <= 0:
        raise InputError(f"camera_info.zoom must be a positive number, got {lens!r}")
    dx, dy, dz = (p - t for p, t in zip(pos, target, strict=True))
    dist = math.sqrt(dx * dx + dy * dy + dz * dz)
    if dist < _EPS:
        raise InputError("camera_info: the camera sits on its target, so it has no direction; move it away")
    horizontal = round(math.degrees(math.atan2(dx, dz)) % 360, 6) % 360
    vertical = round(math.degrees(math.asin(max(-1.0, min(1.0, dy / dist)))), 6)
    notes = []

    def near(a, b):
        return all(abs(x - y) < 1e-4 for x, y in zip(a, b, strict=True))

    if near(target, PEER_CENTER) and lens == 1 and PEER_FAR - PEER_ZOOM_SPAN - 1e-4 <= dist <= PEER_FAR + 1e-4:
        source = "qwenmultiangle camera_info"
        zoom = (PEER_FAR - dist) / PEER_ZOOM_SPAN * 10
    elif near(target, CORE_CENTER) and abs(dist - CORE_DISTANCE) < 1e-4:
        source = "CameraAngle camera_info"
        zoom = (lens - CORE_MIN_ZOOM) / (CORE_MAX_ZOOM - CORE_MIN_ZOOM) * 10
    else:
        source = "3D camera"
        effective = dist / lens
        zoom = (PEER_FAR - effective) / PEER_ZOOM_SPAN * 10
        notes.append(f"distance {effective:.3g} read on the multi-angle picker's scale (2.6 wide .. 0.6 close)")
    zoom = round(zoom, 6)
    if not 0 <= zoom <= 10:
        notes.append(f"zoom {zoom:.3g} clamped to {min(10.0, max(0.0, zoom)):g}")
        zoom = min(10.0, max(0.0, zoom))
    if not -30 <= vertical <= 60:
        notes.append(f"elevation {vertical:.3g}° clamped to the picker's -30..60")
        vertical = min(60.0, max(-30.0, vertical))
    return CameraAngles(horizontal, vertical, zoom + 0.0, source, tuple(notes))


def angles_to_camera(horizontal: float, vertical: float, zoom: float) -> dict:
    """The camera_info jtydhr88/ComfyUI-qwenmultiangle (>= 0.6.0) emits for these controls."""
    az, el = math.radians(horizontal), math.radians(vertical)
    d = PEER_FAR - zoom / 10.0 * PEER_ZOOM_SPAN
    cx, cy, cz = PEER_CENTER
    return {
        "position": {"x": cx + d * math.sin(az) * math.cos(el), "y": cy + d * math.sin(el),
                     "z": cz + d * math.cos(az) * math.cos(el)},
        "target": {"x": cx, "y": cy, "z": cz},
        "zoom": 1,
        "cameraType": "perspective",
    }
