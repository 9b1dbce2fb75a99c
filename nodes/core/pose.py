"""Camera poses from other ComfyUI pickers, read into Runflow's exact view/angle/shot words, and back.

Peers (read from their sources; conventions followed exactly):

* jtydhr88/ComfyUI-qwenmultiangle ``nodes.py`` (0.4.1 c264343 .. 0.6.1 6f93d9b, same in forks
  ethanfel/ComfyUI-qwenmultiangle 2d3faac and yoshida-imari/ComfyUI-qwenmultiangle 81770d3):
  inputs horizontal_angle INT 0..360, vertical_angle INT -30..60, zoom FLOAT 0..10, clamped with ``int()``;
  words by ``h % 360`` buckets [337.5, 22.5) front, then every 45 degrees (lower edge inclusive);
  vertical < -15 low-angle, < 15 eye-level, < 45 elevated, else high-angle; zoom < 2 wide, < 6 medium, else close-up;
  prompt ``f"<sks> {h_direction} {v_direction} {distance}"``. Its dropdown presets (src/CameraWidget.ts,
  src/components/ControlPanel.vue) put a shot at zoom wide 1, medium 4, close-up 8.
  Since 0.6.0 (a776902) it also outputs ``camera_info`` (LOAD3D_CAMERA) from ``_build_camera_info``:
  Y up, subject centre (0, 0.5, 0), d = 2.6 - zoom / 10 * 2, position = centre + d * (sin az cos el, sin el,
  cos az cos el) (azimuth 0 = +Z, 90 = +X), target = centre, ``"zoom": 1``, ``"cameraType": "perspective"``.
* ComfyUI's LOAD3D_CAMERA (Comfy-Org/ComfyUI comfy_api/latest/_io.py ``Load3DCamera.CameraInfo``; emitted by
  comfy_extras/nodes_load_3d.py Load3D, read by Preview3D; wire format in Comfy-Org/ComfyUI_frontend
  src/extensions/core/load3d/cameraInfo.ts): ``{"position": {x,y,z}, "target": {x,y,z}, "zoom": n,
  "cameraType": "perspective" | "orthographic"}`` (three.js, Y up).
* ComfyUI core CameraAngle (Comfy-Org/ComfyUI PR #16251, comfy_extras/nodes_camera_angle.py, open): the same
  words and thresholds without ``<sks>``, and a camera_info at fixed distance 6 around (0, 0, 0) whose lens
  ``zoom`` = 1 + zoom / 10 * 0.875 carries the framing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ..runflow.contract import ANGLES, SHOTS, VIEWS
from ..runflow.errors import InputError
from .pose_camera import angles_to_camera, camera_to_angles, is_camera_info

LORA_TRIGGER = "<sks>"
SLOTS = ("view", "angle", "shot")
ALLOWED = {"view": VIEWS, "angle": ANGLES, "shot": SHOTS}
# The peer's dropdown presets: the numeric pose it emits when a user picks these words.
VIEW_HORIZONTAL = {view: i * 45 for i, view in enumerate(VIEWS)}
ANGLE_VERTICAL = {"low-angle shot": -30, "eye-level shot": 0, "elevated shot": 30, "high-angle shot": 60}
SHOT_ZOOM = {"wide shot": 1.0, "medium shot": 4.0, "close-up": 8.0}

FORMS = ("accepted pose forms: the LoRA prompt (\"<sks> right side view eye-level shot medium shot\", <sks> "
         "optional), the plain triple (\"right side view, low-angle shot, wide shot\"), JSON "
         "{\"horizontal_angle\": 90, \"vertical_angle\": 0, \"zoom\": 5} or {\"view\": ..., \"angle\": ..., "
         "\"shot\": ...}, or a LOAD3D_CAMERA camera_info (position/target)")


@dataclass(frozen=True)
class Pose:
    """One of the 96 poses, in Runflow's exact words."""

    view: str
    angle: str
    shot: str

    def __post_init__(self) -> None:
        for slot in SLOTS:
            if getattr(self, slot) not in ALLOWED[slot]:
                raise InputError(f"{slot} {getattr(self, slot)!r} is not one of Runflow's values: "
                                 f"{', '.join(ALLOWED[slot])}")

    def __str__(self) -> str:
        return f"{self.view} · {self.angle} · {self.shot}"


@dataclass(frozen=True)
class PoseReading:
    """A pose and how it was read: ``form`` is words | json-words | numeric | camera; ``note`` says what was
    snapped, clamped or filled in (empty when the input named the pose exactly)."""

    pose: Pose
    form: str
    snapped: bool = False
    note: str = ""


# ---- words --------------------------------------------------------------------------------------------------------

def _key(text: str) -> tuple[str, ...]:
    return tuple(re.sub(r"[-_\s]+", " ", text.lower()).split())


_VOCAB = {_key(w): (slot, w) for slot, words in (("view", VIEWS), ("angle", ANGLES), ("shot", SHOTS)) for w in words}
_LONGEST = max(len(k) for k in _VOCAB)


def _read_words(text: str, fill: dict[str, str], what: str = "pose") -> PoseReading:
    tokens = _key(re.sub(re.escape(LORA_TRIGGER), " ", text, flags=re.I).replace(",", " ").replace(";", " "))
    found: dict[str, str] = {}
    unknown: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
            hit = _VOCAB.get(tokens[i:i + n])
            if hit:
                slot, word = hit
                if slot in found and found[slot] != word:
                    raise InputError(f"{what} {text.strip()!r} names two {slot}s ({found[slot]!r} and {word!r}); "
                                     f"give one of each. {FORMS}")
                found[slot] = word
                i += n
                break
        else:
            unknown.append(tokens[i])
            i += 1
    if unknown:
        raise InputError(f"{what} {text.strip()!r}: {' '.join(unknown)!r} is not a view, angle or shot word "
                         f"(views: {', '.join(VIEWS)}; angles: {', '.join(ANGLES)}; shots: {', '.join(SHOTS)}). "
                         f"{FORMS}")
    return _complete(found, fill, "words", what, text)


def _complete(found: dict[str, str], fill: dict[str, str], form: str, what: str, text: str) -> PoseReading:
    lacking = [slot for slot in SLOTS if slot not in found and slot not in fill]
    if lacking:
        raise InputError(f"{what} {text.strip()!r} has no {' or '.join(lacking)}; give view, angle and shot. {FORMS}")
    filled = [slot for slot in SLOTS if slot not in found]
    note = f"{', '.join(filled)} from the node's widgets" if filled else ""
    return PoseReading(Pose(**{slot: found.get(slot) or fill[slot] for slot in SLOTS}), form, note=note)


def _fill(default: Pose | dict | None) -> dict[str, str]:
    """The node's own widgets as slot -> word (a Pose, a partial dict such as {"angle", "shot"}, or nothing)."""
    if default is None:
        return {}
    if isinstance(default, Pose):
        return {slot: getattr(default, slot) for slot in SLOTS}
    fill = {slot: default[slot] for slot in SLOTS if default.get(slot)}
    for slot, word in fill.items():
        if word not in ALLOWED[slot]:
            raise InputError(f"{slot} {word!r} is not one of Runflow's values: {', '.join(ALLOWED[slot])}")
    return fill


# ---- numbers (the peer's controls) ---------------------------------------------------------------------------------

def view_of(horizontal: float) -> str:
    """The peer's 8 azimuth buckets: [337.5, 22.5) front view, then every 45 degrees, lower edge inclusive."""
    h = horizontal % 360
    return VIEWS[0] if h >= 337.5 else VIEWS[int((h + 22.5) // 45)]


def angle_of(vertical: float) -> str:
    """The peer's elevation buckets: < -15 low-angle, < 15 eye-level, < 45 elevated, else high-angle."""
    return ANGLES[0] if vertical < -15 else ANGLES[1] if vertical < 15 else ANGLES[2] if vertical < 45 else ANGLES[3]


def shot_of(zoom: float) -> str:
    """The peer's zoom buckets: < 2 wide shot, < 6 medium shot, else close-up (0 = far, 10 = near)."""
    return "wide shot" if zoom < 2 else "medium shot" if zoom < 6 else "close-up"


def _number(data: dict, name: str, what: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what}: {name} must be a number, got {value!r}. {FORMS}")
    return float(value)


def from_numeric(horizontal: float, vertical: float, zoom: float, *, form: str = "numeric",
                 notes: tuple[str, ...] = ()) -> PoseReading:
    """Snap the peer's three controls to a pose with its own thresholds; the note names every value that moved."""
    pose = Pose(view_of(horizontal), angle_of(vertical), shot_of(zoom))
    moved = []
    if horizontal % 360 != VIEW_HORIZONTAL[pose.view]:
        moved.append(f"horizontal_angle {_fmt(horizontal)}° -> {pose.view}")
    if vertical != ANGLE_VERTICAL[pose.angle]:
        moved.append(f"vertical_angle {_fmt(vertical)}° -> {pose.angle}")
    if zoom != SHOT_ZOOM[pose.shot]:
        moved.append(f"zoom {_fmt(zoom)} -> {pose.shot}")
    parts = [*notes, "snapped " + ", ".join(moved)] if moved else list(notes)
    return PoseReading(pose, form, snapped=bool(moved or notes), note="; ".join(parts))


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


NUMERIC = (("horizontal_angle", "view"), ("vertical_angle", "angle"), ("zoom", "shot"))


def _read_numeric(data: dict, fill: dict[str, str], what: str) -> PoseReading:
    lacking = [key for key, slot in NUMERIC if key not in data and slot not in fill]
    if lacking:
        present = [key for key, _ in NUMERIC if key in data]
        raise InputError(f"{what}: JSON has {', '.join(present)} but no {', '.join(lacking)}; give all three "
                         f"(horizontal_angle 0-360, vertical_angle -30-60, zoom 0-10). {FORMS}")
    clamped = []
    # The peer clamps with int() for the angles and float() for zoom (nodes.py generate_prompt / execute).
    if "horizontal_angle" in data:
        raw = _number(data, "horizontal_angle", what)
        h = max(0, min(360, int(raw)))
        if h != raw:
            clamped.append(f"horizontal_angle {_fmt(raw)} read as {h} (whole degrees 0-360)")
    else:
        h = VIEW_HORIZONTAL[fill["view"]]
    if "vertical_angle" in data:
        raw = _number(data, "vertical_angle", what)
        v = max(-30, min(60, int(raw)))
        if v != raw:
            clamped.append(f"vertical_angle {_fmt(raw)} read as {v} (whole degrees -30-60)")
    else:
        v = ANGLE_VERTICAL[fill["angle"]]
    if "zoom" in data:
        raw = _number(data, "zoom", what)
        z = max(0.0, min(10.0, raw))
        if z != raw:
            clamped.append(f"zoom {_fmt(raw)} read as {_fmt(z)} (0-10)")
    else:
        z = SHOT_ZOOM[fill["shot"]]
    reading = from_numeric(h, v, z, notes=tuple(clamped))
    filled = [slot for key, slot in NUMERIC if key not in data]
    if filled:
        note = "; ".join(x for x in (reading.note, f"{', '.join(filled)} from the node's widgets") if x)
        return PoseReading(reading.pose, reading.form, reading.snapped, note)
    return reading


# ---- public API ----------------------------------------------------------------------------------------------------

def parse_pose(value: object, default: Pose | dict | None = None, *, what: str = "pose") -> PoseReading:
    """Read a connected ``pose`` value: LoRA prompt / plain words, JSON (numbers or words), or a camera_info dict.

    With ``default`` (the node's own widgets: a Pose, or a partial {"angle": .., "shot": ..}) a value may leave
    those parts out (e.g. just a view); without it every part is required. Raises InputError naming the accepted forms.
    """
    if isinstance(value, Pose):
        return PoseReading(value, "pose")
    fill = _fill(default)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InputError(f"{what} is empty; connect a pose or disconnect the input. {FORMS}")
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{what} looks like JSON but does not parse ({exc.msg} at character {exc.pos}). "
                                 f"{FORMS}") from None
            if not isinstance(data, dict):
                raise InputError(f"{what} JSON must be an object. {FORMS}")
            return _read_dict(data, fill, what, text)
        return _read_words(text, fill, what)
    if isinstance(value, dict):
        return _read_dict(value, fill, what, json.dumps(value, default=str)[:120])
    raise InputError(f"{what} must be text or a camera_info, got {type(value).__name__}. {FORMS}")


def _read_dict(data: dict, fill: dict[str, str], what: str, text: str) -> PoseReading:
    if is_camera_info(data):
        cam = camera_to_angles(data)
        reading = from_numeric(cam.horizontal, cam.vertical, cam.zoom, form="camera", notes=cam.notes)
        return PoseReading(reading.pose, "camera", reading.snapped, f"{cam.source}: {reading.note or 'exact pose'}")
    words = {k: data[k] for k in ("view", "angle", "shot") if k in data}
    if words:
        found = {}
        for slot, raw in words.items():
            if not isinstance(raw, str):
                raise InputError(f"{what}: JSON {slot} must be text, got {raw!r}. {FORMS}")
            hit = _VOCAB.get(_key(raw))
            if hit is None or hit[0] != slot:
                raise InputError(f"{what}: JSON {slot} {raw!r} is not one of {', '.join(ALLOWED[slot])}")
            found[slot] = hit[1]
        return _complete(found, fill, "json-words", what, text)
    if any(k in data for k, _ in NUMERIC):
        return _read_numeric(data, fill, what)
    raise InputError(f"{what}: JSON object has none of view/angle/shot, horizontal_angle/vertical_angle/zoom or "
                     f"position/target (keys: {', '.join(map(str, data)) or 'none'}). {FORMS}")


def parse_pose_list(text: str, default: Pose | dict | None = None) -> list[PoseReading]:
    """The Turnaround's pose list: one pose per line (any form above except multi-line), or a JSON array of them.

    Blank lines and lines starting with # are skipped; duplicates are kept once, in first-seen order."""
    if not isinstance(text, str):
        raise InputError(f"pose list must be text, one pose per line. {FORMS}")
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"pose list looks like a JSON array but does not parse ({exc.msg} at character "
                             f"{exc.pos}); or write one pose per line") from None
        lines = [(i + 1, item if isinstance(item, dict) else str(item)) for i, item in enumerate(items)]
    else:
        lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)]
        lines = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise InputError("pose list is empty; write one pose per line, e.g. \"<sks> front view eye-level shot "
                         "medium shot\"")
    readings, seen = [], set()
    for n, item in lines:
        reading = parse_pose(item, default, what=f"pose list line {n}")
        if reading.pose not in seen:
            seen.add(reading.pose)
            readings.append(reading)
    return readings


def to_lora_prompt(pose: Pose) -> str:
    """The Qwen-Image-Edit-2511-Multiple-Angles LoRA prompt, exactly as the peer picker writes it."""
    return f"{LORA_TRIGGER} {pose.view} {pose.angle} {pose.shot}"


def to_numeric(pose: Pose) -> dict:
    """The peer picker's controls for this pose (its own dropdown presets)."""
    return {"horizontal_angle": VIEW_HORIZONTAL[pose.view], "vertical_angle": ANGLE_VERTICAL[pose.angle],
            "zoom": SHOT_ZOOM[pose.shot]}


def to_camera_info(pose: Pose) -> dict:
    """A LOAD3D_CAMERA value: the camera_info the peer picker emits for this pose's presets."""
    n = to_numeric(pose)
    return angles_to_camera(n["horizontal_angle"], n["vertical_angle"], n["zoom"])


def to_json(pose: Pose) -> str:
    """The pose as {"view", "angle", "shot"} JSON (what parse_pose reads back as form json-words)."""
    return json.dumps({"view": pose.view, "angle": pose.angle, "shot": pose.shot})
