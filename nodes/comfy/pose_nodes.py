"""A free, local node: a Runflow pose as the multi-angle LoRA prompt and a LOAD3D_CAMERA camera_info.

Lets the Runflow pose picker drive a local Qwen-Image-Edit-2511 multiple-angles graph (prompt into the text encoder)
or any node that takes ComfyUI's camera_info (Preview3D, the multi-angle pickers' consumers). No Runflow call.
Node ids, input names and combo strings are a public API: never rename.
"""

from __future__ import annotations

from ..core.pose import FORMS, Pose, PoseReading, parse_pose, parse_pose_list, to_camera_info, to_json, to_lora_prompt
from ..runflow.contract import ANGLES, DEFAULT_ANGLE, DEFAULT_SHOT, DEFAULT_VIEW, SHOTS, TOOLTIPS, VIEWS
from ..runflow.errors import InputError

POSE_TOOLTIP = ("Optional: connect a camera pose to set view, angle and shot from it: the Qwen Multiangle Camera "
                "prompt (\"<sks> right side view eye-level shot medium shot\"), the plain words, or JSON "
                "{\"horizontal_angle\", \"vertical_angle\", \"zoom\"} (snapped to the nearest of the 96 poses). "
                "Parts it leaves out come from the widgets.")
CAMERA_TOOLTIP = ("Optional: a LOAD3D_CAMERA camera_info (Qwen Multiangle Camera, Load3D) to set view, angle and "
                  "shot from, snapped to the nearest of the 96 poses.")
POSES_TOOLTIP = ("Optional: connect a pose list, one pose per line (any form the single node's pose input takes), "
                 "to render exactly those poses instead of views × angle × shot. Each pose is one $0.20 run.")


def node_pose(view: str, angle: str, shot: str, pose=None, camera_info=None) -> PoseReading:
    """The single node's pose: the widgets, or what a connected ``pose`` / ``camera_info`` says (not both)."""
    widgets = Pose(view, angle, shot)
    connected = [v for v in (pose, camera_info) if v is not None]  # connected but empty: an error, not the widgets
    if len(connected) > 1:
        raise InputError("both pose and camera_info are connected; connect one (which camera should be used?)")
    if not connected:
        return PoseReading(widgets, "widgets")
    return parse_pose(connected[0], widgets, what="camera_info" if camera_info is not None else "pose")


def turnaround_poses(views: list[str], angle: str, shot: str, poses=None) -> list[PoseReading]:
    """The Turnaround's poses: each chosen view at the widgets' angle/shot, or a connected pose list."""
    if poses is None:  # connected but empty is an error (parse_pose_list says so), never a silent fallback
        return [PoseReading(Pose(v, angle, shot), "widgets") for v in views]
    if isinstance(poses, dict):
        raise InputError(f"poses takes a list of poses, one per line, not one camera. {FORMS}")
    return parse_pose_list(poses, {"angle": angle, "shot": shot})


def pose_info(readings: list[PoseReading]) -> tuple[list[str], dict[str, dict]]:
    """What the node says about connected poses: status notes (which pose was used when one was snapped, clamped or
    filled in), and per pose (``JobSpec.pose`` text) the run_info fields ``pose_input`` {form, snapped, note}."""
    notes, extra = [], {}
    for r in readings:
        if r.form == "widgets":
            continue
        extra[str(r.pose)] = {"pose_input": {"form": r.form, "snapped": r.snapped, "note": r.note}}
        if r.snapped or r.note:
            notes.append(f"pose used: {r.pose}" + (f" ({r.note})" if r.note else ""))
    if len(notes) > 3:  # a long pose list: the first ones, then a count (run_info has every one)
        notes = notes[:3] + [f"… {len(notes) - 3} more poses snapped or filled in (see run_info pose_input)"]
    return notes, extra


class RunflowPoseToPrompt:
    """view/angle/shot -> "<sks> view angle shot", camera_info, pose JSON. Free and local."""

    DESCRIPTION = ("Turns a camera pose (8 views × 4 angles × 3 shots) into the Qwen-Image-Edit-2511 Multiple-Angles "
                   "LoRA prompt (\"<sks> right side view eye-level shot medium shot\") and a LOAD3D_CAMERA "
                   "camera_info, for local multi-angle graphs and 3D nodes. Free, local: no Runflow call.")
    CATEGORY = "Runflow"
    FUNCTION = "execute"
    RETURN_TYPES = ("STRING", "LOAD3D_CAMERA", "STRING")
    RETURN_NAMES = ("lora_prompt", "camera_info", "pose")
    OUTPUT_TOOLTIPS = (
        "The Multiple-Angles LoRA prompt, as the Qwen Multiangle Camera node writes it: \"<sks> view angle shot\".",
        "The camera for this pose as ComfyUI's LOAD3D_CAMERA (position/target/zoom/cameraType), placed the way "
        "the Qwen Multiangle Camera node places it.",
        "The pose as JSON {\"view\", \"angle\", \"shot\"}: connect it to a Runflow node's pose input.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "view": (list(VIEWS), {"default": DEFAULT_VIEW, "tooltip": TOOLTIPS["view"]}),
            "angle": (list(ANGLES), {"default": DEFAULT_ANGLE, "tooltip": TOOLTIPS["angle"]}),
            "shot": (list(SHOTS), {"default": DEFAULT_SHOT, "tooltip": TOOLTIPS["shot"]}),
        }}

    def execute(self, view: str, angle: str, shot: str) -> tuple[str, dict, str]:
        pose = Pose(view, angle, shot)  # InputError (one line, lists the valid words) on a stale combo value
        return (to_lora_prompt(pose), to_camera_info(pose), to_json(pose))


NODE_CLASS_MAPPINGS = {"RunflowPoseToPrompt": RunflowPoseToPrompt}
NODE_DISPLAY_NAME_MAPPINGS = {"RunflowPoseToPrompt": "Runflow Pose → LoRA Prompt"}
