"""A free, local node: a Runflow pose as the multi-angle LoRA prompt and a LOAD3D_CAMERA camera_info.

Lets the Runflow pose picker drive a local Qwen-Image-Edit-2511 multiple-angles graph (prompt into the text encoder)
or any node that takes ComfyUI's camera_info (Preview3D, the multi-angle pickers' consumers). No Runflow call.
Node ids, input names and combo strings are a public API: never rename.
"""

from __future__ import annotations

from ..core.pose import Pose, to_camera_info, to_json, to_lora_prompt
from ..runflow.contract import ANGLES, DEFAULT_ANGLE, DEFAULT_SHOT, DEFAULT_VIEW, SHOTS, TOOLTIPS, VIEWS


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
